"""The GPT stage under DDP on CPU (gloo, 2 processes): both ranks agree, the validation is summed over the
ranks' shards, and it equals a single-process validation of the same weights."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from gptsovits_train.config import config_from_dict, load_config
from gptsovits_train.layout import RunLayout
from gptsovits_train.models.t2s import Text2SemanticDecoder
from gptsovits_train.train.gpt_data import GptDataset, gpt_collate, load_gpt_splits
from gptsovits_train.train.gpt_validation import validate_gpt
from tests.fit_helpers import CONFIGS, make_dataset
from tests.gpt_helpers import TINY_GPT, add_gpt_features
from tests.test_ddp import WORLD, _free_port, join_world


def _worker(rank: int, port: int, cfg_dict: dict, run_dir: str, out_dir: str) -> None:
    join_world(rank, port)
    from gptsovits_train.train.gpt_stage import GptStage, engine_config
    from gptsovits_train.train.loop import run_stage

    cfg = config_from_dict(cfg_dict)
    result = run_stage(GptStage(cfg, Path(run_dir)), engine_config(cfg), run_dir, progress=False)
    record = {
        "best_value": result.best_value,
        "val": result.summary["val_after_reload"],
        "steps": result.steps,
    }
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump(record, fh)


@pytest.mark.timeout(300)
def test_two_process_gloo_gpt_fit(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "ds", n_train=4, n_val=3, max_seconds=1.2)
    add_gpt_features(ds)
    cfg = load_config(
        CONFIGS / "tiny.yaml",
        [f"train.dataset={ds.root}", *TINY_GPT, "gpt.epochs=1", "gpt.min_items_per_epoch=4"],
    )
    run = tmp_path / "run"
    mp.spawn(_worker, args=(_free_port(), cfg.to_dict(), str(run), str(tmp_path)), nprocs=WORLD, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD))
    assert r0 == r1
    summary = json.loads(RunLayout(run).summary.read_text())
    assert summary["world_size"] == WORLD and summary["best_value"] == r0["best_value"]

    best = torch.load(RunLayout(run).best, weights_only=True)
    model = Text2SemanticDecoder(cfg.gpt.model)
    model.load_state_dict(best["decoder"])
    val = GptDataset(load_gpt_splits(ds.root).val)
    single = validate_gpt(model, [gpt_collate([val[i]]) for i in range(len(val))])
    assert single.n_clips == 3
    assert r0["val"]["val/loss"] == pytest.approx(single.loss, rel=1e-6)
    assert r0["val"]["val/top3"] == pytest.approx(single.top3, abs=1e-12)
