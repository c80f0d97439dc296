"""`Text2SemanticDecoder`: the GPT (s1) model that turns phonemes + BERT features into semantic codes.

Official counterpart: `AR/models/t2s_model.py: Text2SemanticDecoder` (training forward `forward_old`,
greedy part of `infer_panel_naive`). Our own implementation with the official state dict: 295 keys for
v2 (shapes and order as ``t2s_v2_state.json``; the official LightningModule adds the ``model.`` prefix,
see `gptsovits_train.checkpoints.gpt_files`).

Training forward (official by default, facts §6.1):

- text `x = text_emb(phones) + bert_proj(bertᵀ)` + positions 0…; audio input `y_in` = the codes
  without BOS, EOS (= ``vocab_size − 1``) at padded positions, + positions 0…;
- one sequence `[x, y]`; text rows see all text keys and no audio key, audio rows see all text keys
  and the audio keys up to their own position; padded keys are blocked;
- `logits = predict(h[:, Tx−1:])` `(B, Ty+1, V)`: the last text position predicts the first code, code k
  predicts code k+1, the last code predicts EOS; `targets` = codes then EOS at every position ≥ length.

`text_mask` chooses how padded text keys are blocked:

- ``"official"``: as the official code, a *left*-padding mask on the right-padded text (the first
  `Tx − len` real phones are blocked, the pads are attended, the first code is predicted from
  position `Tx − 1`). Needed to match official losses on batches with unequal phone counts.
- ``"per_item"``: the pads (positions ≥ len) are blocked and the first code is predicted from the item's
  last real phone `len − 1`. Every item then gets the logits it would get alone (what inference sees).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from gptsovits_train.config import GptModelConfig
from gptsovits_train.models.t2s.layers import (
    SinePositionalEmbedding,
    TokenEmbedding,
    TransformerStack,
)

LOG = logging.getLogger(__name__)

BERT_DIM = 1024
"""Width of the BERT features (hard-coded officially)."""

TextMask = Literal["official", "per_item"]


T2SModelConfig = GptModelConfig
"""The decoder's configuration: the ``gpt.model`` config section (official ``model`` fields)."""


@dataclass
class T2SForward:
    """Training-forward results.

    `logits (B, Ty+1, V)`, `targets (B, Ty+1)` int64, `y_in (B, Ty)` (decoder input),
    `target_valid (B, Ty+1)` bool: the item's own targets (its codes and its one EOS; False at the
    extra EOS targets of padded positions), `loss`: the official summed cross-entropy over *all*
    `B·(Ty+1)` targets (fp32 scalar), `acc_top3`: official top-3 accuracy (EOS targets ignored).
    """

    logits: torch.Tensor
    targets: torch.Tensor
    y_in: torch.Tensor
    target_valid: torch.Tensor
    loss: torch.Tensor
    acc_top3: float


def summed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Official loss: `Σ CE(logits, targets)` over every position, fp32. `(B, T, V)`, `(B, T)` -> scalar."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")


def topk_hits(logits: torch.Tensor, targets: torch.Tensor, k: int, keep: torch.Tensor) -> tuple[int, int]:
    """(hits, counted): targets among the top-k logits, over positions where `keep` is True.

    `logits (B, T, V)`, `targets (B, T)`, `keep (B, T)` bool.
    """
    top = logits.detach().topk(k, dim=-1).indices  # (B, T, k)
    hit = (top == targets.unsqueeze(-1)).any(dim=-1) & keep
    return int(hit.sum()), int(keep.sum())


def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor, k: int, ignore_index: int) -> float:
    """Micro top-k accuracy over targets `!= ignore_index` (torchmetrics MulticlassAccuracy settings).

    Returns 0.0 when every target is ignored (as torchmetrics).
    """
    hits, counted = topk_hits(logits, targets, k, targets != ignore_index)
    return hits / counted if counted else 0.0


def blocked_attention(
    x_pad: torch.Tensor, y_pad: torch.Tensor, heads: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training attention mask from key-padding masks.

    `x_pad (B, Tx)`, `y_pad (B, Ty)` bool (True = blocked key). Returns `blocked (B, L, L)` bool and the
    float mask `(B·heads, L, L)` (0 / −inf) the layers add to the scores; L = Tx + Ty.
    """
    b, tx = x_pad.shape
    ty = y_pad.shape[1]
    length = tx + ty
    device = x_pad.device
    structure = torch.zeros(length, length, dtype=torch.bool, device=device)
    structure[:tx, tx:] = True  # text rows see no audio
    structure[tx:, tx:] = torch.ones(ty, ty, dtype=torch.bool, device=device).triu(1)  # causal audio
    keys = torch.cat([x_pad, y_pad], dim=1)  # (B, L)
    blocked = structure.unsqueeze(0) | keys.unsqueeze(1)
    float_mask = torch.zeros(b, length, length, device=device).masked_fill(blocked, float("-inf"))
    return blocked, float_mask.repeat_interleave(heads, dim=0)


def lengths_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """`(B,)` -> `(B, width)` bool, True at positions ≥ length (right padding)."""
    return torch.arange(width, device=lengths.device).unsqueeze(0) >= lengths.unsqueeze(1)


class Text2SemanticDecoder(nn.Module):
    """The s1 model. Parameters registered in the official order (see module docstring)."""

    def __init__(self, config: T2SModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.hidden_dim
        self.bert_proj = nn.Linear(BERT_DIM, d)
        self.ar_text_embedding = TokenEmbedding(d, config.phoneme_vocab_size)
        self.ar_text_position = SinePositionalEmbedding(d, config.layer_dropout)
        self.ar_audio_embedding = TokenEmbedding(d, config.vocab_size)
        self.ar_audio_position = SinePositionalEmbedding(d, config.layer_dropout)
        self.h = TransformerStack(d, config.head, config.n_layer, config.layer_dropout)
        self.ar_predict_layer = nn.Linear(d, config.vocab_size, bias=False)

    @property
    def eos(self) -> int:
        return self.config.EOS

    def embed_text(self, phoneme_ids: torch.Tensor, bert: torch.Tensor) -> torch.Tensor:
        """`phoneme_ids (B, Tx)`, `bert (B, 1024, Tx)` -> `(B, Tx, D)` with positions 0…Tx−1."""
        x = self.ar_text_embedding(phoneme_ids) + self.bert_proj(bert.transpose(1, 2))
        return self.ar_text_position(x)

    def decoder_io(
        self, semantic_ids: torch.Tensor, semantic_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(y_in (B, Ty), targets (B, Ty+1), y_pad (B, Ty) bool)` from right-padded codes."""
        y_pad = lengths_mask(semantic_lens, semantic_ids.shape[1])
        codes = semantic_ids.masked_fill(y_pad, 0)
        pad_eos = F.pad(y_pad.long(), (0, 1), value=1)
        targets = F.pad(codes, (0, 1), value=0) + self.eos * pad_eos
        return targets[:, :-1], targets, y_pad

    def forward(
        self,
        phoneme_ids: torch.Tensor,
        phoneme_lens: torch.Tensor,
        semantic_ids: torch.Tensor,
        semantic_lens: torch.Tensor,
        bert: torch.Tensor,
        text_mask: TextMask = "official",
    ) -> T2SForward:
        """Teacher-forced training forward.

        `phoneme_ids (B, Tx)` right-padded, `phoneme_lens (B,)`, `semantic_ids (B, Ty)` right-padded,
        `semantic_lens (B,)`, `bert (B, 1024, Tx)` float. See `T2SForward`.
        """
        tx = phoneme_ids.shape[1]
        x = self.embed_text(phoneme_ids, bert)
        y_in, targets, y_pad = self.decoder_io(semantic_ids, semantic_lens)
        y = self.ar_audio_position(self.ar_audio_embedding(y_in))
        if text_mask == "official":
            x_pad = torch.arange(tx, device=x.device).unsqueeze(0) < (tx - phoneme_lens).unsqueeze(1)
        elif text_mask == "per_item":
            x_pad = lengths_mask(phoneme_lens, tx)
        else:
            raise ValueError(f"text_mask must be 'official' or 'per_item', got {text_mask!r}")
        _, mask = blocked_attention(x_pad, y_pad, self.config.head)
        hidden = self.h(torch.cat([x, y], dim=1), mask.to(x.dtype))
        if text_mask == "official":
            out = hidden[:, tx - 1 :]
        else:
            rows = torch.arange(hidden.shape[0], device=hidden.device)
            last_phone = hidden[rows, phoneme_lens - 1].unsqueeze(1)
            out = torch.cat([last_phone, hidden[:, tx:]], dim=1)
        logits = self.ar_predict_layer(out)
        target_valid = ~F.pad(y_pad, (1, 0), value=False)
        loss = summed_cross_entropy(logits, targets)
        acc = topk_accuracy(logits, targets, 3, self.eos)
        return T2SForward(logits, targets, y_in, target_valid, loss, acc)

    @torch.no_grad()
    def next_token_logits(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Raw logits for the next code after `y`: `x (1, Tx, D)` embedded text, `y (1, Ty)` -> `(1, V)`.

        Recomputes the whole sequence (no cache); the same numbers as teacher forcing.
        """
        b, tx = x.shape[:2]
        ty = y.shape[1]
        seq = x
        if ty:
            seq = torch.cat([x, self.ar_audio_position(self.ar_audio_embedding(y))], dim=1)
        no_pad_x = torch.zeros(b, tx, dtype=torch.bool, device=x.device)
        no_pad_y = torch.zeros(b, ty, dtype=torch.bool, device=x.device)
        _, mask = blocked_attention(no_pad_x, no_pad_y, self.config.head)
        hidden = self.h(seq, mask.to(seq.dtype))
        return self.ar_predict_layer(hidden[:, -1])

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
