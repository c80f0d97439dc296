"""`val/spk_sim`: speaker similarity with seeded random ERes2NetV2 weights (plumbing, determinism, rank)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from gptsovits_train.config import AudioConfig, ConfigError, TrainConfig, load_config
from gptsovits_train.layout import RunLayout
from gptsovits_train.models import build_generator_from_config
from gptsovits_train.models.eres2netv2 import ERes2NetV2, seeded_random_state
from gptsovits_train.train.dataset import SoVITSDataset, load_splits
from gptsovits_train.train.distributed import DistContext
from gptsovits_train.train.spk_sim import SpeakerSimilarity
from gptsovits_train.train.validation import validate, validation_loader
from tests.fit_helpers import CONFIGS, SAMPLE_WAVS, make_dataset

SPK = "val/spk_sim"


def _clip(i: int, seconds: float = 2.0) -> torch.Tensor:
    import soxr

    wave, sr = sf.read(sorted(SAMPLE_WAVS.glob("*.flac"))[i], dtype="float32")
    return torch.from_numpy(soxr.resample(wave, sr, 32000)[: int(seconds * 32000)].astype(np.float32))


@pytest.mark.parametrize("model", ["random-tiny", "recipe"])
def test_self_similarity_ranks_above_another_clip(model: str, tmp_path: Path) -> None:
    """Seeded random weights: a clip scores 1 against itself and more against a re-levelled, slightly
    noisy copy of itself than against a different clip (same speaker, other words) — the metric's
    plumbing works. `recipe` is the full-size official structure with the fixture's weight recipe."""
    if model == "recipe":
        net = ERes2NetV2()
        path = tmp_path / "sv.ckpt"
        torch.save(seeded_random_state(net, 1234), path)
        model = str(path)
    sim = SpeakerSimilarity(model, "cpu", 32000)
    a, b = _clip(0), _clip(3)
    noisy = 0.5 * a + 1e-3 * torch.randn(a.shape, generator=torch.Generator().manual_seed(0))
    self_sim = sim.similarity(a, a)
    assert self_sim == pytest.approx(1.0, abs=1e-9)
    near, far = sim.similarity(noisy, a, "a"), sim.similarity(b, a, "a")
    assert -1.0 <= far < near < 1.0
    again = SpeakerSimilarity(model, "cpu", 32000)  # a fresh instance: the same numbers, bit for bit
    assert again.similarity(noisy, a) == near and again.similarity(b, a) == far


def test_real_embeddings_are_cached_per_clip_and_length() -> None:
    sim = SpeakerSimilarity("random-tiny", "cpu", 32000)
    a = _clip(1, 1.5)
    sim.similarity(a, a, "x")
    sim.similarity(a, a, "x")
    assert list(sim._real) == [("x", len(a))]


def test_monitor_needs_the_model_and_is_maximised() -> None:
    with pytest.raises(ConfigError, match=r"needs train\.spk_sim_model"):
        load_config(None, ["train.early_stopping.monitor=val/spk_sim"])
    cfg = load_config(None, ["train.early_stopping.monitor=val/spk_sim", "train.spk_sim_model=random-tiny"])
    assert cfg.train.early_stopping.mode == "max"
    for other in ("val/mel", "val/total"):
        assert load_config(None, [f"train.early_stopping.monitor={other}"]).train.early_stopping.mode == "min"


@pytest.mark.parametrize("version", ["v2", "v2Pro"])
def test_validation_reports_deterministic_spk_sim(tmp_path: Path, version: str) -> None:
    cfg = load_config(CONFIGS / "tiny.yaml", [f"model.version={version}", "model.sv_dim=16"])
    audio = AudioConfig()
    layout = make_dataset(tmp_path / "d", n_train=1, n_val=2, max_seconds=1.5)
    pro = version == "v2Pro"
    if pro:
        from tests.test_sv_fit import add_sv

        add_sv(layout, 16)
    splits = load_splits(layout.root, audio, sv_dim=16 if pro else None, boundaries=[4, 300])
    ds = SoVITSDataset(splits.root, splits.val, audio, with_sv=pro)
    G = build_generator_from_config(cfg.model, audio, seed=0, random_codebook=True)
    train = TrainConfig(spk_sim_model="random-tiny")
    sim = SpeakerSimilarity("random-tiny", "cpu", audio.sampling_rate)

    def run() -> dict[str, float]:
        loader = validation_loader(ds, list(range(len(ds))), num_workers=0)
        return validate(
            G,
            loader,
            audio=audio,
            train=train,
            device=torch.device("cpu"),
            precision="fp32",
            ctx=DistContext(0, 1, 0, torch.device("cpu"), False),
            spk_sim=sim,
        ).metrics

    first, second = run(), run()
    assert first == second
    assert -1.0 <= first["val/spk_sim"] <= 1.0
    assert set(first) == {"val/mel", "val/recon", "val/kl", "val/total", "val/spk_sim"}


class ScriptedSpkSim:
    """Scripted validation numbers: speaker similarity rises to 0.7 at epoch 3, then falls."""

    def __init__(self) -> None:
        self.values = {1: 0.2, 2: 0.5, 3: 0.7, 4: 0.65, 5: 0.6, 6: 0.55, 7: 0.5}
        self.seen: dict[int, int] = {}

    def __call__(self, generator: torch.nn.Module, epoch: int, *, final: bool) -> Any:
        from gptsovits_train.train.validation import ValResult

        key = hash(generator.dec.conv_pre.weight.detach().numpy().tobytes())
        if not final:
            self.seen[key] = epoch
        sim = self.values[self.seen[key]]
        return ValResult({"val/mel": 1.0, "val/recon": 1.0, "val/kl": 1.0, "val/total": 46.0, SPK: sim}, 1)


def test_early_stopping_maximises_spk_sim(tmp_path: Path) -> None:
    """Monitor val/spk_sim: the highest value is the best, patience counts falls, the reload gives it back."""
    from gptsovits_train.train.loop import fit

    ds = make_dataset(tmp_path / "ds", n_train=1, n_val=1, max_seconds=1.2)
    overrides = [f"train.dataset={ds.root}", "train.epochs=7", "train.early_stopping.patience=3"]
    overrides += ["train.early_stopping.monitor=val/spk_sim", "train.spk_sim_model=random-tiny"]
    overrides += ["model.segment_size=1280", "train.batch_size=1", "train.min_items_per_epoch=1"]
    result = fit(
        load_config(CONFIGS / "tiny.yaml", overrides), tmp_path / "run", validate_fn=ScriptedSpkSim()
    )
    assert result.stop_reason == "early_stopping" and result.epochs_completed == 6
    assert result.best_epoch == 3 and result.best_value == 0.7 and result.val_after_reload == 0.7
    best = torch.load(RunLayout(tmp_path / "run").best, weights_only=True)
    assert best["best"]["metric"] == SPK and best["best"]["value"] == 0.7


def test_fit_logs_spk_sim_in_metrics_and_summary(tmp_path: Path) -> None:
    """The real validation with the random-tiny sv model, through the loop: logged, summarised, reloaded."""
    from gptsovits_train.train.loop import fit
    from gptsovits_train.train.metrics import read_metrics

    ds = make_dataset(tmp_path / "ds", n_train=1, n_val=1, max_seconds=1.2)
    overrides = [f"train.dataset={ds.root}", "train.epochs=2", "train.spk_sim_model=random-tiny"]
    overrides += ["train.early_stopping.monitor=val/spk_sim", "model.segment_size=1280"]
    overrides += ["train.batch_size=1", "train.min_items_per_epoch=1"]
    fit(load_config(CONFIGS / "tiny.yaml", overrides), tmp_path / "run")
    layout = RunLayout(tmp_path / "run")
    vals = [e for e in read_metrics(layout.metrics) if e["event"] == "val"]
    assert len(vals) == 2 and all(-1.0 <= e[SPK] <= 1.0 for e in vals)
    summary = json.loads(layout.summary.read_text())
    assert summary["monitor"] == SPK and SPK in summary["val_after_reload"]
    assert summary["best_value"] == max(e[SPK] for e in vals) and summary["reload_matches_best"] is True
