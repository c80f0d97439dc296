"""Greedy decoding of the GPT model with the official rules (facts §7, `infer_panel_naive`, top_k = 1).

Used to check a trained model end to end (parity with the official decoder), not as a TTS front end.
Rules reproduced:

- repetition penalty on every earlier token (prompt included), once per distinct token: a positive
  logit is divided by it, a negative one multiplied;
- EOS cannot be produced for the first `eos_blocked_steps` (11) steps;
- decoding stops when the chosen token is EOS (the EOS is not kept) or when more than
  `early_stop_num` tokens were generated (the last one is kept: `early_stop_num + 1` new tokens);
- the returned `idx` is the step index at which decoding stopped (callers keep ``y[:, -idx:]``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from gptsovits_train.models.t2s.decoder import Text2SemanticDecoder

LOG = logging.getLogger(__name__)

OFFICIAL_EOS_BLOCKED_STEPS = 11
OFFICIAL_MAX_STEPS = 1500


@dataclass
class GreedyResult:
    """`tokens (1, n_prompt + n_new)` int64 (prompt first), `stop_step` (official `idx`),
    `step_logits (n_steps, V)` raw logits of each step, `stopped_by`: "eos" | "early_stop" | "max_steps"."""

    tokens: torch.Tensor
    stop_step: int
    step_logits: torch.Tensor
    stopped_by: str


def apply_repetition_penalty(logits: torch.Tensor, previous: torch.Tensor, penalty: float) -> torch.Tensor:
    """`logits (1, V)`, `previous (1, T)` -> penalised copy (each distinct earlier token once)."""
    out = logits.clone()
    if previous.numel() == 0 or penalty == 1.0:
        return out
    idx = previous[0].unique()
    score = out[0, idx]
    out[0, idx] = torch.where(score < 0, score * penalty, score / penalty)
    return out


@torch.no_grad()
def greedy_decode(
    model: Text2SemanticDecoder,
    phoneme_ids: torch.Tensor,
    bert: torch.Tensor,
    prompt: torch.Tensor | None,
    *,
    early_stop_num: int = -1,
    repetition_penalty: float = 1.35,
    eos_blocked_steps: int = OFFICIAL_EOS_BLOCKED_STEPS,
    max_steps: int = OFFICIAL_MAX_STEPS,
) -> GreedyResult:
    """Decode one item. `phoneme_ids (1, Tx)`, `bert (1, 1024, Tx)`, `prompt (1, Tp)` codes or None.

    The model must be in eval mode (no dropout); a model in train mode raises `ValueError`.
    """
    if model.training:
        raise ValueError("greedy_decode needs model.eval() (dropout would make it random)")
    x = model.embed_text(phoneme_ids, bert)
    prefix = prompt.long() if prompt is not None else torch.zeros(1, 0, dtype=torch.long)
    y = prefix
    eos = model.eos
    logits_per_step: list[torch.Tensor] = []
    stopped_by = "max_steps"
    idx = 0
    for idx in range(max_steps):
        raw = model.next_token_logits(x, y)
        logits_per_step.append(raw[0])
        scored = apply_repetition_penalty(raw, y, repetition_penalty)
        if idx < eos_blocked_steps:
            scored = scored[:, :eos]
        token = int(scored.argmax(dim=-1))
        if token == eos:
            stopped_by = "eos"
            break
        y = torch.cat([y, torch.tensor([[token]], dtype=torch.long)], dim=1)
        if early_stop_num != -1 and y.shape[1] - prefix.shape[1] > early_stop_num:
            stopped_by = "early_stop"
            break
    return GreedyResult(y, idx, torch.stack(logits_per_step), stopped_by)
