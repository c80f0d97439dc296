"""The `gpt` config section and `stages`: official values, no-effect official fields refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gptsovits_train.config import ConfigError, load_config


def test_gpt_model_defaults_are_the_official_v2_model(reference_dir: Path) -> None:
    official = json.loads((reference_dir / "t2s_v2_state.json").read_text())["config"]
    ours = load_config().gpt
    for key in ("vocab_size", "phoneme_vocab_size", "embedding_dim", "hidden_dim", "head", "n_layer", "EOS"):
        assert getattr(ours.model, key) == official["model"][key], key
    assert ours.batch_size == official["train"]["batch_size"]
    assert ours.max_sec == official["data"]["max_sec"]
    assert (ours.first_lr, ours.lr) == (0.01, 0.002)  # facts §9: the effective LR, not the yaml's schedule


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("gpt.model.linear_units=2048", "unknown key 'gpt.model.linear_units'"),
        ("gpt.optimizer={}", "unknown key 'gpt.optimizer'"),
        ("gpt.model.EOS=5", "EOS must be vocab_size - 1"),
        ("gpt.early_stopping.monitor=val/mel", "must be val/loss"),
        ("stages=[gpt,gpt]", "twice"),
        ("stages=[gpt,tts]", "stages.1"),
        ("gpt.accumulation=sometimes", "gpt.accumulation"),
    ],
)
def test_bad_gpt_settings_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_a_gpt_early_stopping_section_without_monitor_watches_val_loss(tmp_path: Path) -> None:
    """Setting only the patience (as configs/demo.yaml does) keeps the GPT's own metric."""
    config = tmp_path / "run.yaml"
    config.write_text("gpt:\n  early_stopping:\n    patience: 2\n")
    es = load_config(config).gpt.early_stopping
    assert (es.monitor, es.patience) == ("val/loss", 2)
    assert load_config(None, ["gpt.early_stopping.patience=2"]).gpt.early_stopping.monitor == "val/loss"


def test_stages_default_to_sovits_only() -> None:
    assert load_config().stages == ["sovits"]
    assert load_config(None, ["stages=[sovits, gpt]"]).stages == ["sovits", "gpt"]


def test_sovits_stage_refuses_the_gpt_monitor(tmp_path) -> None:
    from gptsovits_train.errors import GsvError
    from gptsovits_train.train.stages import fit_stages

    cfg = load_config(None, ["train.early_stopping.monitor=val/loss"])
    with pytest.raises(GsvError, match="val/loss is the GPT stage's"):
        fit_stages(cfg, tmp_path / "run")


def test_gpt_stage_without_gpt_features_fails_before_the_sovits_stage(tmp_path) -> None:
    from gptsovits_train.errors import GsvError
    from gptsovits_train.train.stages import fit_stages
    from tests.fit_helpers import make_dataset

    ds = make_dataset(tmp_path / "ds", n_train=2, n_val=1, max_seconds=1.0)  # no semantic codes
    cfg = load_config(None, [f"train.dataset={ds.root}", "stages=[sovits, gpt]"])
    with pytest.raises(GsvError, match=r"no training clip left for the GPT stage.*prepare\.stages"):
        fit_stages(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
