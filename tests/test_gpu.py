"""CUDA paths of `fit` and of the HuBERT features. Skipped without a CUDA device (CI has none).

Run them on a GPU machine with `bash scripts/gpu_check.sh` (these tests + the step benchmark, one table).
What they hold on a GPU:
- fp16: the grad scaler runs (its scale is logged), the NaN guard skips and rolls back on CUDA too, and the
  reloaded best weights validate to exactly the recorded best;
- bf16: no scaler, reload == best;
- resume on CUDA continues the same run: losses equal to an uninterrupted run within 1e-3 relative
  (cuDNN/cuBLAS kernels are not bitwise deterministic between processes, so exact equality is CPU-only);
- HuBERT features on CUDA in fp32 equal the CPU features within 1e-3 (TF32 off), and the fp16 path is finite;
- `batch_size: auto` measures real passes on CUDA without leaving a trace, and picks and records a size (both
  stages); a real CUDA out-of-memory error (a memory fraction below one step's peak) halves and finishes.
"""

from __future__ import annotations

import copy
import json
import math
import signal

import numpy as np
import pytest
import torch

from gptsovits_train.config import load_config
from gptsovits_train.layout import RunLayout
from gptsovits_train.train.loop import StepInfo, fit
from gptsovits_train.train.metrics import read_metrics
from tests.fit_helpers import CONFIGS, make_dataset

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ds"), n_train=4, n_val=2, max_seconds=1.5)


def _cfg(ds_root, precision: str, epochs: int = 3, *extra: str):
    return load_config(
        CONFIGS / "tiny.yaml",
        [
            f"train.dataset={ds_root}",
            "train.device=cuda",
            f"train.precision={precision}",
            f"train.epochs={epochs}",
            "train.batch_size=2",
            "train.min_items_per_epoch=4",
            *extra,
        ],
    )


def _summary(run) -> dict:
    return json.loads(RunLayout(run).summary.read_text())


@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_tiny_fit_on_cuda_reloads_exactly_the_best(tmp_path, dataset, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    result = fit(_cfg(dataset.root, precision), tmp_path / "run", progress=False)
    summary = _summary(tmp_path / "run")
    assert summary["precision"] == precision and summary["device"].startswith("cuda")
    assert result.best_epoch is not None and summary["reload_matches_best"] is True
    steps = [e for e in read_metrics(RunLayout(tmp_path / "run").metrics) if e["event"] == "step"]
    assert steps and all(math.isfinite(e["loss/g"]) for e in steps)
    scales = [e.get("amp/scale") for e in steps]
    if precision == "fp16":
        assert all(isinstance(s, float) and s > 0 for s in scales), "fp16 must run the grad scaler"
    else:
        assert all(s is None for s in scales)


def test_nan_guard_on_cuda_fp16(tmp_path, dataset):
    cfg = _cfg(
        dataset.root, "fp16", 3, "train.nan_patience=2", "train.batch_size=1", "train.min_items_per_epoch=2"
    )

    def poison(info: StepInfo) -> None:
        if info.step == 2:
            with torch.no_grad():
                info.generator.dec.conv_post.weight.fill_(float("nan"))

    fit(cfg, tmp_path / "run", progress=False, on_step=poison)
    summary = _summary(tmp_path / "run")
    assert summary["nan_guard"]["rollbacks"] == 1 and summary["nan_guard"]["skipped_steps"] == 2
    assert summary["reload_matches_best"] is True


def test_resume_on_cuda_continues_the_same_run(tmp_path, dataset):
    whole = tmp_path / "whole"
    fit(_cfg(dataset.root, "fp32", 2, "train.tf32=false"), whole, progress=False)

    split = tmp_path / "split"

    def interrupt(info: StepInfo) -> None:
        if info.step == 3:
            signal.raise_signal(signal.SIGINT)

    first = fit(_cfg(dataset.root, "fp32", 2, "train.tf32=false"), split, progress=False, on_step=interrupt)
    assert first.stop_reason == "interrupted"
    fit(_cfg(dataset.root, "fp32", 2, "train.tf32=false"), split, resume=True, progress=False)

    def losses(run):
        return [e["loss/mel"] for e in read_metrics(RunLayout(run).metrics) if e["event"] == "step"]

    a, b = losses(whole), losses(split)
    assert len(a) == len(b) == 4
    np.testing.assert_allclose(b, a, rtol=1e-3)


def test_hubert_features_on_cuda_match_cpu(tmp_path):
    from gptsovits_train.features.hubert import HubertFeaturizer, hubert_input, load_hubert
    from tests.features_helpers import build_tiny_hubert, lj_waves_32k

    folder = build_tiny_hubert(tmp_path / "tiny")
    waves = [hubert_input(w, apply_mix=False) for _, w in lj_waves_32k(3, max_seconds=2.0)]
    cpu = HubertFeaturizer(load_hubert(folder), "cpu")(waves)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    gpu = HubertFeaturizer(load_hubert(folder), "cuda", fp16=False)(waves)
    half = HubertFeaturizer(load_hubert(folder), "cuda", fp16=True)(waves)
    for c, g, h in zip(cpu, gpu, half, strict=True):
        assert c is not None and g is not None and h is not None
        assert c.shape == g.shape == h.shape
        np.testing.assert_allclose(g, c, atol=1e-3)
        assert np.isfinite(h).all()


# ------------------------------------------------------------------------ batch size that fits (#13)
def _stage_snapshot(stage) -> dict:
    """Everything a `batch_size: auto` measurement must leave as it was (CPU copies)."""
    return {
        "models": {
            n: {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}
            for n, m in stage.models().items()
        },
        "optim": [copy.deepcopy(o.state_dict()) for o in stage.optimizers.values()],
        "scaler": dict(stage.scaler.state_dict()),
        "rng": (torch.get_rng_state(), torch.cuda.get_rng_state()),
    }


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a.cpu(), b.cpu())
    if isinstance(a, dict):
        return set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_auto_batch_size_on_cuda_measures_and_leaves_no_trace(tmp_path, dataset):
    """The real CUDA measurement: after one real step (optimizer state exists), measuring 1, 2 and 4 items
    leaves weights, optimizers, scaler, CPU+CUDA RNG and gradients as they were, and peaks grow with n."""
    from functools import partial

    from gptsovits_train.train.batch_fit import cuda_peak_bytes
    from gptsovits_train.train.dataset import SoVITSDataset, collate, load_splits
    from gptsovits_train.train.distributed import DistContext
    from gptsovits_train.train.sovits_stage import SovitsStage

    cfg = _cfg(dataset.root, "fp16", 1)
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cuda"), initialised_here=False)
    stage = SovitsStage(cfg)
    stage.build(ctx, "fp16")
    stage.init_weights()
    t = cfg.train
    splits = load_splits(dataset.root, cfg.audio, ssl_dim=cfg.model.ssl_dim, boundaries=t.bucket_boundaries)
    ds = SoVITSDataset(splits.root, splits.train, cfg.audio)
    stage.train_mode()
    stage.train_step(collate([ds[0], ds[1]]))
    before = _stage_snapshot(stage)
    measure = stage.memory_probe(ds, partial(cuda_peak_bytes, torch.device("cuda")))
    peaks = [measure(n) for n in (1, 2, 4)]
    assert 0 < peaks[0] <= peaks[1] <= peaks[2]
    assert _same(before, _stage_snapshot(stage))
    assert all(p.grad is None for m in stage.models().values() for p in m.parameters())


def test_auto_batch_size_on_cuda_is_chosen_and_recorded(tmp_path, dataset):
    """A real `batch_size: auto` run on CUDA (both stages): a measured size in [1, cap], recorded in the
    summary and the checkpoint; the run trains with it."""
    from gptsovits_train.train.run_checkpoints import load_run_checkpoint

    cfg = _cfg(dataset.root, "fp16", 1, "train.batch_size=auto", "train.batch_size_cap=6")
    result = fit(cfg, tmp_path / "run", progress=False)
    chosen = result.summary["batch_size"]
    assert chosen["source"] == "auto (measured)" and 1 <= chosen["size"] <= 6
    assert result.summary["dataset"]["batch_size"] == chosen["size"]
    ck = load_run_checkpoint(RunLayout(tmp_path / "run").last)
    assert ck["batch_fit"]["size"] == chosen["size"]


def test_real_cuda_out_of_memory_halves_and_finishes(tmp_path):
    """A real CUDA out-of-memory error: the official-size model (large activations) with 6 s clips may use
    only a memory fraction halfway between the measured peaks of a step of 4 and of 8 items (plus the
    AdamW state the first updates allocate). Training with 8 runs out of memory, halves (at least once)
    and finishes; the halving is in metrics.jsonl and the summary."""
    from functools import partial

    from gptsovits_train.train.batch_fit import cuda_peak_bytes
    from gptsovits_train.train.dataset import SoVITSDataset, load_splits
    from gptsovits_train.train.loop import run_stage
    from gptsovits_train.train.sovits_stage import SovitsStage

    ds_root = make_dataset(tmp_path / "ds", n_train=8, n_val=1, max_seconds=6.0).root
    sets = [f"train.dataset={ds_root}", "train.device=cuda", "train.precision=fp32", "train.epochs=1"]
    sets += ["train.batch_size=8", "train.min_items_per_epoch=16", "train.num_workers=0"]
    sets += ["train.tensorboard=false", "train.listen_clips=0", "train.val_audio_samples=0"]
    cfg = load_config(CONFIGS / "base.yaml", sets)
    total = torch.cuda.get_device_properties(0).total_memory
    limits: dict[str, float] = {}

    class Limited(SovitsStage):
        def build(self, ctx, precision):
            data = super().build(ctx, precision)
            t = cfg.train
            splits = load_splits(
                ds_root, cfg.audio, ssl_dim=cfg.model.ssl_dim, boundaries=t.bucket_boundaries
            )
            ds = SoVITSDataset(splits.root, splits.train, cfg.audio)
            measure = self.memory_probe(ds, partial(cuda_peak_bytes, ctx.device))
            half, whole = measure(4), measure(8)
            assert half < whole
            # + the fused AdamW state of the first step (2 x the trainable weights) and cache slack
            extra = (
                2
                * 4
                * sum(p.numel() for m in self.models().values() for p in m.parameters() if p.requires_grad)
            )
            limits["fraction"] = min(1.0, ((half + whole) / 2 + extra) / total)
            torch.cuda.empty_cache()
            torch.cuda.set_per_process_memory_fraction(limits["fraction"], 0)
            return data

    stage = Limited(cfg)
    try:
        result = run_stage(stage, cfg, tmp_path / "run", progress=False)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)
        torch.cuda.empty_cache()
    halvings = result.summary["batch_size"]["halvings"]
    assert halvings and halvings[0]["old"] == 8 and stage.batch_fit.micro <= 4, limits
    events = [e for e in read_metrics(RunLayout(tmp_path / "run").metrics) if e["event"] == "batch_halved"]
    assert len(events) == len(halvings)
    assert result.stop_reason == "max_epochs"
    assert result.steps == result.summary["dataset"]["steps_per_epoch"]  # every batch trained once


def test_gpt_auto_batch_size_on_cuda(tmp_path):
    """GPT `batch_size: auto` on CUDA: a measured size within the cap and the official cap, recorded."""
    from gptsovits_train.train.stages import fit_stages
    from tests.gpt_helpers import TINY_GPT, add_gpt_features

    gpt_ds = make_dataset(tmp_path / "ds", n_train=6, n_val=2, max_seconds=1.5)
    add_gpt_features(gpt_ds)
    sets = [f"train.dataset={gpt_ds.root}", "train.device=cuda", *TINY_GPT]
    cfg = load_config(
        CONFIGS / "tiny.yaml", [*sets, "gpt.batch_size=auto", "gpt.batch_size_cap=4", "gpt.epochs=1"]
    )
    (run,) = fit_stages(cfg, tmp_path / "voice", only="gpt", resume=False, progress=False)
    chosen = run.result.summary["batch_size"]
    assert chosen["source"] == "auto (measured)" and 1 <= chosen["size"] <= 4
