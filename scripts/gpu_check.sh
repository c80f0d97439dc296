#!/usr/bin/env bash
# One command for a GPU machine: the CUDA tests (tests marked `gpu`) and the step/loop benchmarks, one table.
#
#   bash scripts/gpu_check.sh            # from the project root, in the project's environment
#
# On the lent GPU machine of the `device` tool, first `bash ../shared/tools/device-prep.sh` here, then run
# the prefix it prints followed by `bash scripts/gpu_check.sh` (carry .whl and .shared).
# Writes the raw outputs to ${OUT:-/tmp}/gpu_check/ and prints the summary table at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
out=${OUT:-/tmp}/gpu_check
mkdir -p "$out"
"$py" -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to check')" || exit 1
"$py" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" | tee "$out/device.txt"

echo "== CUDA tests"
"$py" -m pytest -q -m gpu tests/test_gpu.py 2>&1 | tee "$out/tests.txt"
tests_rc=${PIPESTATUS[0]}

echo "== one training step, official v2 config (scripts/profile_step.py)"
: >"$out/steps.md"
for spec in "8 fp32" "8 bf16" "8 fp16" "32 bf16"; do
  set -- $spec
  "$py" scripts/profile_step.py --config configs/base.yaml --device cuda --batch "$1" --seconds 6 \
    --precision "$2" --steps 20 2>&1 | tee -a "$out/steps.md"
done

echo "== whole fit loop (scripts/bench_fit.py, batch 8, default precision)"
"$py" scripts/bench_fit.py --config configs/base.yaml --set train.batch_size=8 --set train.device=cuda \
  2>&1 | tee "$out/fit.txt"

echo
echo "== summary ($(cat "$out/device.txt"))"
echo "CUDA tests: $(tail -n 1 "$out/tests.txt")"
grep -E '^(device|\| [0-9])' "$out/steps.md"
tail -n 5 "$out/fit.txt"
exit "$tests_rc"
