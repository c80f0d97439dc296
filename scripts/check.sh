#!/usr/bin/env bash
# Lint, type-check and test. Run from the repository root inside the project's environment.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff check"; ruff check .
echo "== ruff format --check"; ruff format --check .
echo "== mypy"; mypy
echo "== pytest"; python -m pytest -q "$@"
