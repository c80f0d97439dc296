"""GPT validation: teacher-forced loss per target token and accuracies on held-out clips.

What is averaged (each validation clip with `n` codes has `n + 1` targets: its codes and one EOS, the
same targets the training loss gives it; the extra EOS targets of padded positions are not counted, so
the numbers do not depend on how clips are batched):

- `loss`: Σ cross-entropy over all those targets ÷ their number (nats per target token, EOS included);
- `top1`, `top3`: accuracy over the code targets (EOS targets ignored: the official metric settings);
- `eos_acc`: share of clips whose end position predicts EOS as top-1 (the official metric never
  measures this, but it decides where the generated audio ends).

The model runs in eval mode (no dropout) under `no_grad` with the per-item text mask, so each clip
gets the logits it gets alone — what inference computes — whatever the training mask. Deterministic.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from gptsovits_train.models.t2s.decoder import Text2SemanticDecoder, topk_hits
from gptsovits_train.train.gpt_data import GptBatch

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class GptValMetrics:
    """See the module docstring. `n_targets`: targets averaged by `loss`; `n_clips`: clips seen."""

    loss: float
    top1: float
    top3: float
    eos_acc: float
    n_targets: int
    n_clips: int

    def as_dict(self, prefix: str = "val_") -> dict[str, float]:
        return {f"{prefix}{k}": float(v) for k, v in asdict(self).items()}


SUM_FIELDS = ("loss_sum", "n_targets", "hits1", "hits3", "n_codes", "eos_hits", "n_clips")
"""The per-rank sums `validation_sums` returns (float64 vector; all-reduce it across ranks)."""


@torch.no_grad()
def validation_sums(
    model: Text2SemanticDecoder, batches: Iterable[GptBatch], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """`(len(SUM_FIELDS),)` float64 sums over `batches`; restores the model's train/eval mode."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(len(SUM_FIELDS), dtype=torch.float64)
    eos = model.eos
    try:
        for batch in batches:
            b = batch.to(device)
            out = model(b.phoneme_ids, b.phoneme_lens, b.semantic_ids, b.semantic_lens, b.bert, "per_item")
            logits = out.logits.float()
            ce = F.cross_entropy(logits.transpose(1, 2), out.targets, reduction="none")  # (B, Ty+1)
            valid = out.target_valid
            code_targets = valid & (out.targets != eos)
            h1, counted = topk_hits(logits, out.targets, 1, code_targets)
            h3, _ = topk_hits(logits, out.targets, 3, code_targets)
            rows = torch.arange(b.size, device=logits.device)
            end_pred = logits[rows, b.semantic_lens].argmax(dim=-1)
            sums += torch.tensor(
                [
                    float(ce[valid].double().sum()),
                    int(valid.sum()),
                    h1,
                    h3,
                    counted,
                    int((end_pred == eos).sum()),
                    b.size,
                ],
                dtype=torch.float64,
            )
    finally:
        model.train(was_training)
    return sums


def metrics_from_sums(sums: torch.Tensor) -> GptValMetrics:
    """`GptValMetrics` from (all-reduced) `validation_sums`."""
    v = dict(zip(SUM_FIELDS, sums.tolist(), strict=True))
    if v["n_targets"] == 0:
        raise ValueError("validation saw no targets (empty validation set)")
    return GptValMetrics(
        loss=v["loss_sum"] / v["n_targets"],
        top1=v["hits1"] / v["n_codes"] if v["n_codes"] else 0.0,
        top3=v["hits3"] / v["n_codes"] if v["n_codes"] else 0.0,
        eos_acc=v["eos_hits"] / v["n_clips"],
        n_targets=int(v["n_targets"]),
        n_clips=int(v["n_clips"]),
    )


def validate_gpt(
    model: Text2SemanticDecoder, batches: Iterable[GptBatch], device: torch.device | str = "cpu"
) -> GptValMetrics:
    """Evaluate `model` on `batches` in one process (see the module docstring)."""
    return metrics_from_sums(validation_sums(model, batches, device))
