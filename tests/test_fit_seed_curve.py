"""The project's seed: a run whose validation loss turns up must stop at the turn and end on the best weights.

The real loop, model, checkpoints and reload run on a tiny config; only the validation numbers are scripted
(0.72, 0.58, 0.46, 0.41, 0.45, 0.52, 0.61 at epochs 1, 3, ..., 13). The scripted validator remembers a
fingerprint of the weights it saw at each epoch, so the final validation after the reload can prove which
epoch's weights were reloaded.
"""

from __future__ import annotations

import hashlib
import json
import math

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gptsovits_train.config import load_config
from gptsovits_train.layout import RunLayout
from gptsovits_train.train.loop import fit
from gptsovits_train.train.metrics import read_metrics
from gptsovits_train.train.validation import ValResult
from tests.fit_helpers import CONFIGS, make_dataset

SEED_EPOCHS = [1, 3, 5, 7, 9, 11, 13]
SEED_VALUES = [0.72, 0.58, 0.46, 0.41, 0.45, 0.52, 0.61]


def fingerprint(module: torch.nn.Module) -> str:
    h = hashlib.sha1()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class ScriptedValidation:
    def __init__(self) -> None:
        self.by_epoch = dict(zip(SEED_EPOCHS, SEED_VALUES, strict=True))
        self.fingerprints: dict[int, str] = {}
        self.calls: list[tuple[int, bool]] = []
        self.final_fingerprint: str | None = None

    def __call__(self, generator, epoch, *, final):
        self.calls.append((epoch, final))
        fp = fingerprint(generator)
        if final:
            self.final_fingerprint = fp
            matches = [e for e, f in self.fingerprints.items() if f == fp]
            value = self.by_epoch[matches[0]] if matches else math.nan
        else:
            self.fingerprints[epoch] = fp
            value = self.by_epoch[epoch]
        metrics = {"val/mel": value, "val/recon": value / 2, "val/kl": 1.0, "val/total": 45 * value / 2 + 1}
        return ValResult(metrics=metrics, n_clips=1)


def test_seed_curve_stops_at_the_turn_and_reloads_epoch_7(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_train=1, n_val=1, max_seconds=1.2)
    cfg = load_config(
        CONFIGS / "tiny.yaml",
        [
            f"train.dataset={ds.root}",
            "train.epochs=20",
            "train.val_every=2",
            "train.early_stopping.patience=3",
            "train.keep_top_k=2",
            "model.segment_size=1280",
            "train.batch_size=1",
            "train.min_items_per_epoch=1",  # one step per epoch
        ],
    )
    scripted = ScriptedValidation()
    result = fit(cfg, tmp_path / "run", progress=False, validate_fn=scripted)
    layout = RunLayout(tmp_path / "run")

    # validation after epochs 1, 3, ..., 13; three validations without improvement after epoch 7 stop the run
    assert [c for c in scripted.calls if not c[1]] == [(e, False) for e in SEED_EPOCHS]
    assert result.stop_reason == "early_stopping"
    assert result.epochs_completed == 13 and result.steps == 13
    assert result.best_epoch == 7 and result.best_value == 0.41

    # the weights reloaded at the end are epoch 7's (and differ from the last epoch's)
    assert scripted.calls[-1] == (7, True)
    assert scripted.final_fingerprint == scripted.fingerprints[7] != scripted.fingerprints[13]
    assert result.val_after_reload == 0.41
    summary = json.loads(layout.summary.read_text())
    assert summary["best_epoch"] == 7 and summary["reload_matches_best"] is True
    assert summary["val_after_reload_value"] == 0.41 and summary["stop_reason"] == "early_stopping"

    # best.pt holds epoch 7; the top-2 are epochs 7 and 9; last.pt is epoch 13
    best = torch.load(layout.best, weights_only=True)
    assert best["epoch"] == 7 and best["best"] == {"epoch": 7, "step": 7, "metric": "val/mel", "value": 0.41}
    assert best["metrics"]["val/mel"] == 0.41
    assert torch.load(layout.last, weights_only=True)["epoch"] == 13
    assert sorted(p.name for p in layout.ckpt_dir.glob("epoch_*.pt")) == ["epoch_0007.pt", "epoch_0009.pt"]

    # metrics.jsonl and TensorBoard hold the curve
    events = read_metrics(layout.metrics)
    vals = [e for e in events if e["event"] == "val"]
    assert [(e["epoch"], e["val/mel"]) for e in vals] == list(zip(SEED_EPOCHS, SEED_VALUES, strict=True))
    assert [e["improved"] for e in vals] == [True, True, True, True, False, False, False]
    assert [e["patience_left"] for e in vals] == [3, 3, 3, 3, 2, 1, 0]
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == list(range(1, 14))
    acc = EventAccumulator(str(layout.tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    assert [round(e.value, 6) for e in acc.Scalars("val/mel")] == SEED_VALUES
    assert [e.step for e in acc.Scalars("val/mel")] == SEED_EPOCHS  # one step per epoch
    assert layout.curves.read_bytes()[:4] == b"\x89PNG"
