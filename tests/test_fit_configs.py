"""configs/*.yaml: base.yaml documents every field with the defaults; tiny/demo load and build."""

from __future__ import annotations

import re

import pytest
import yaml

from gptsovits_train.config import Config, load_config
from gptsovits_train.models import build_generator_from_config
from tests.fit_helpers import CONFIGS


def leaf_paths(data: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        out.extend(leaf_paths(value, path + ".") if isinstance(value, dict) else [path])
    return out


def documented_keys(text: str) -> dict[str, bool]:
    """Key path -> whether its line (or, for a value too long for one line, the next line) has a comment."""
    lines = text.splitlines()
    stack: list[tuple[int, str]] = []
    out = {}
    for i, line in enumerate(lines):
        m = re.match(r"^( *)([A-Za-z_][A-Za-z0-9_]*):(.*)$", line)
        if not m:
            continue
        indent, key = len(m.group(1)), m.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [key])
        stack.append((indent, key))
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        out[path] = "#" in m.group(3) or nxt.strip().startswith("#")
    return out


def test_base_yaml_is_the_defaults():
    assert load_config(CONFIGS / "base.yaml").to_dict() == Config().to_dict()


def test_base_yaml_documents_every_field():
    text = (CONFIGS / "base.yaml").read_text(encoding="utf-8")
    documented = documented_keys(text)
    fields = leaf_paths(Config().to_dict())
    missing = [f for f in fields if f not in documented]
    assert not missing, f"fields missing from configs/base.yaml: {missing}"
    bare = [f for f in fields if not documented[f]]
    assert not bare, f"fields without a comment in configs/base.yaml: {bare}"


@pytest.mark.parametrize("name", ["tiny.yaml", "demo.yaml"])
def test_small_configs_build(name):
    cfg = load_config(CONFIGS / name)
    raw = yaml.safe_load((CONFIGS / name).read_text())
    assert set(raw) <= {"audio", "prepare", "model", "train", "stages", "gpt"}
    G = build_generator_from_config(cfg.model, cfg.audio)
    assert sum(p.numel() for p in G.parameters()) < 10_000_000  # small enough for CPU
    if "gpt" in cfg.stages:  # the demo's GPT is small too (official: 77.6M parameters)
        from gptsovits_train.models.t2s import Text2SemanticDecoder

        gpt = Text2SemanticDecoder(cfg.gpt.model)
        assert sum(p.numel() for p in gpt.parameters()) < 2_000_000
    assert cfg.train.bucket_boundaries[0] >= cfg.model.segment_size // cfg.audio.hop_length
