"""DDP on CPU: two processes with the gloo backend run a short tiny fit; both ranks get the same validation
numbers (reduced across ranks), rank 0 alone writes the run folder, and the reduced validation equals a
single-process validation of the same weights."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.multiprocessing as mp

from gptsovits_train.config import config_from_dict, load_config
from gptsovits_train.layout import RunLayout
from gptsovits_train.models import build_generator_from_config
from gptsovits_train.train.dataset import SoVITSDataset, load_splits
from gptsovits_train.train.distributed import DistContext
from gptsovits_train.train.loop import fit
from gptsovits_train.train.metrics import read_metrics
from gptsovits_train.train.validation import validate, validation_loader
from tests.fit_helpers import CONFIGS, make_dataset

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def join_world(rank: int, port: int) -> None:
    """What torchrun sets for one worker process (one torch thread each)."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)


def _worker(rank: int, port: int, cfg_dict: dict, run_dir: str, out_dir: str) -> None:
    join_world(rank, port)
    result = fit(config_from_dict(cfg_dict), run_dir, progress=False)
    record = {
        "best_epoch": result.best_epoch,
        "best_value": result.best_value,
        "val_after_reload": result.summary["val_after_reload"],
        "steps": result.steps,
        "world_size": result.summary["world_size"],
        "initialised": torch.distributed.is_initialized(),
    }
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump(record, fh)


@pytest.mark.timeout(300)
def test_two_process_gloo_fit(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_train=4, n_val=3, max_seconds=1.2)
    cfg = load_config(
        CONFIGS / "tiny.yaml",
        [
            f"train.dataset={ds.root}",
            "train.epochs=2",
            "train.batch_size=1",
            "train.min_items_per_epoch=4",  # 4 items over 2 ranks: 2 steps per epoch on each
            "model.segment_size=1280",
            "train.val_audio_samples=0",
            "train.listen_format=wav",
        ],
    )
    run = tmp_path / "run"
    mp.spawn(_worker, args=(_free_port(), cfg.to_dict(), str(run), str(tmp_path)), nprocs=WORLD, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD))
    assert r1["world_size"] == WORLD  # rank 1 ran the whole run too (its numbers are rank 0's, reduced)
    assert r0["world_size"] == WORLD and r0["steps"] == 4
    assert r0["initialised"] is False  # the process group is torn down at the end

    # rank 0 wrote everything; the reduced validation covers all 3 clips exactly once
    layout = RunLayout(run)
    summary = json.loads(layout.summary.read_text())
    assert summary["world_size"] == WORLD and summary["best_value"] == r0["best_value"]
    assert [e["clips"] for e in read_metrics(layout.metrics) if e["event"] == "val"] == [3, 3]

    # the same weights validated in one process give the same numbers (per-clip seeds, not per-rank), up to
    # float32 rounding (the workers run with one thread each)
    best = torch.load(layout.best, weights_only=True)
    G = build_generator_from_config(cfg.model, cfg.audio)
    G.load_state_dict(best["generator"])
    splits = load_splits(ds.root, cfg.audio, boundaries=cfg.train.bucket_boundaries)
    loader = validation_loader(SoVITSDataset(ds, splits.val, cfg.audio), [0, 1, 2], num_workers=0)
    single = validate(
        G,
        loader,
        audio=cfg.audio,
        train=cfg.train,
        device=torch.device("cpu"),
        precision="fp32",
        ctx=DistContext(0, 1, 0, torch.device("cpu"), initialised_here=False),
        n_samples=3,
    )
    for key, value in single.metrics.items():
        assert r0["val_after_reload"][key] == pytest.approx(value, rel=1e-6), key
    # the listening report holds the first 3 validation clips (2 on rank 0, 1 on rank 1, gathered), and
    # the best epoch's audio is what one process generates from the same weights (16-bit WAV)
    assert [s.clip_id for s in single.samples] == [c.id for c in splits.val]
    for sample in single.samples:
        path = layout.listen_sample(summary["best_epoch"], sample.clip_id, "wav")
        heard, _ = sf.read(path, dtype="float32")
        np.testing.assert_allclose(heard, sample.audio.clamp(-1, 1).numpy(), atol=2 / 32768)
