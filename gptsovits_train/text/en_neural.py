"""g2p_en's neural letter-to-sound model, run with numpy: the official frontend's last resort.

The official English frontend sends a word to this model only when it is in no dictionary, longer
than 3 letters, not a possessive and not split by wordsegment (shared/docs/text-frontend.md §2.2).
The weights are g2p_en's bundled `checkpoint20.npz` (Apache-2.0), read from the installed package
without importing it (its import tries to download NLTK data). `np.load` runs with pickles refused.

The model is a GRU encoder-decoder (PyTorch GRU gate layout r, z, n; hidden and embedding size 256):

- encoder: the word's letters then `</s>`, embedded (29 graphemes × 256), run through a GRU from a
  zero state; its last state starts the decoder;
- decoder: starts from `<s>`, greedy: each step feeds the embedding (74 phonemes × 256) of the
  previous output, projects the state to 74 logits and takes the arg-max; stops at `</s>` or after
  20 steps.

All arithmetic is float32 on (1, D) row vectors, the shapes the reference implementation uses, so
the arg-max sees the same numbers. The output may hold a bare `UW` (the only stress-less vowel of
the model's vocabulary), which the frontend drops, as upstream.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

import numpy as np

from gptsovits_train.text.en_lexicon import LexiconError, g2p_en_dir

LOG = logging.getLogger(__name__)

GRAPHEMES: tuple[str, ...] = ("<pad>", "<unk>", "</s>", *"abcdefghijklmnopqrstuvwxyz")
_VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")
_CONSONANTS = (
    "B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH",
    "T", "TH", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip
#: Output vocabulary: 4 specials, then the code-point sorted ARPAbet set of the model (all stressed
#: vowels, the consonants and a bare `UW`).
PHONEMES: tuple[str, ...] = (
    "<pad>",
    "<unk>",
    "<s>",
    "</s>",
    *sorted({v + s for v in _VOWELS for s in "012"} | set(_CONSONANTS) | {"UW"}),
)
_UNK_GRAPHEME = GRAPHEMES.index("<unk>")
_END_GRAPHEME = GRAPHEMES.index("</s>")
_START_PHONEME = PHONEMES.index("<s>")
_END_PHONEME = PHONEMES.index("</s>")
MAX_STEPS = 20
_G2IDX = {g: i for i, g in enumerate(GRAPHEMES)}

_H = 256  # GRU hidden size
_E = 256  # embedding size
#: name → expected shape.
_SHAPES: dict[str, tuple[int, ...]] = {
    "enc_emb": (len(GRAPHEMES), _E),
    "enc_w_ih": (3 * _H, _E),
    "enc_w_hh": (3 * _H, _H),
    "enc_b_ih": (3 * _H,),
    "enc_b_hh": (3 * _H,),
    "dec_emb": (len(PHONEMES), _E),
    "dec_w_ih": (3 * _H, _E),
    "dec_w_hh": (3 * _H, _H),
    "dec_b_ih": (3 * _H,),
    "dec_b_hh": (3 * _H,),
    "fc_w": (len(PHONEMES), _H),
    "fc_b": (len(PHONEMES),),
}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def gru_step(
    x: np.ndarray, h: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray
) -> np.ndarray:
    """One GRU step. x (1, E), h (1, H), w_ih (3H, E), w_hh (3H, H), b_* (3H,) → new h (1, H).

    Gates as PyTorch: r, z = σ(W_i x + b_i + W_h h + b_h) (first 2H rows),
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), h' = (1 − z) ⊙ n + z ⊙ h.
    """
    gates_x = np.matmul(x, w_ih.T) + b_ih
    gates_h = np.matmul(h, w_hh.T) + b_hh
    split = gates_x.shape[-1] * 2 // 3
    rz = _sigmoid(gates_x[:, :split] + gates_h[:, :split])
    r, z = np.split(rz, 2, axis=-1)
    n = np.tanh(gates_x[:, split:] + r * gates_h[:, split:])
    out: np.ndarray = (1 - z) * n + z * h
    return out


class NeuralG2P:
    """Greedy decoding of g2p_en's GRU encoder-decoder (weights: name → array, shapes in `_SHAPES`)."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        for name, shape in _SHAPES.items():
            if name not in weights:
                raise LexiconError(f"g2p_en checkpoint: missing array {name!r}")
            if tuple(weights[name].shape) != shape:
                raise LexiconError(
                    f"g2p_en checkpoint: {name} has shape {tuple(weights[name].shape)}, expected {shape}"
                )
        self.w = {name: np.asarray(weights[name], dtype=np.float32) for name in _SHAPES}

    @classmethod
    def from_file(cls, path: Path) -> NeuralG2P:
        try:
            with np.load(path, allow_pickle=False) as npz:
                return cls({name: npz[name] for name in npz.files})
        except FileNotFoundError as exc:
            raise LexiconError(f"g2p_en's model {path} is missing") from exc

    def predict(self, word: str) -> list[str]:
        """Lowercase word → ARPAbet phones (letters outside a–z are read as `<unk>`)."""
        w = self.w
        ids = [_G2IDX.get(ch, _UNK_GRAPHEME) for ch in word] + [_END_GRAPHEME]
        h = np.zeros((1, w["enc_w_hh"].shape[1]), np.float32)
        for i in ids:
            h = gru_step(w["enc_emb"][[i]], h, w["enc_w_ih"], w["enc_w_hh"], w["enc_b_ih"], w["enc_b_hh"])
        x = w["dec_emb"][[_START_PHONEME]]
        out: list[str] = []
        for _ in range(MAX_STEPS):
            h = gru_step(x, h, w["dec_w_ih"], w["dec_w_hh"], w["dec_b_ih"], w["dec_b_hh"])
            logits = np.matmul(h, w["fc_w"].T) + w["fc_b"]
            pred = int(logits.argmax())
            if pred == _END_PHONEME:
                break
            out.append(PHONEMES[pred])
            x = w["dec_emb"][[pred]]
        return out


@cache
def neural_g2p() -> NeuralG2P:
    """The model from the installed g2p_en package (loaded once, on first use)."""
    return NeuralG2P.from_file(g2p_en_dir() / "checkpoint20.npz")
