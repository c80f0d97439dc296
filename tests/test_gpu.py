"""CUDA paths of `fit` and of the HuBERT features. Skipped without a CUDA device (CI has none).

Run them on a GPU machine with `bash scripts/gpu_check.sh` (these tests + the step benchmark, one table).
What they hold on a GPU:
- fp16: the grad scaler runs (its scale is logged), the NaN guard skips and rolls back on CUDA too, and the
  reloaded best weights validate to exactly the recorded best;
- bf16: no scaler, reload == best;
- resume on CUDA continues the same run: losses equal to an uninterrupted run within 1e-3 relative
  (cuDNN/cuBLAS kernels are not bitwise deterministic between processes, so exact equality is CPU-only);
- HuBERT features on CUDA in fp32 equal the CPU features within 1e-3 (TF32 off), and the fp16 path is finite.
"""

from __future__ import annotations

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
