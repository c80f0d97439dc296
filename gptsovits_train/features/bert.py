"""BERT features of the GPT stage (`bert/<id>.npy`), as the official `1-get-text.py` makes them.

Official recipe (gpt-stage facts §2): chinese-roberta-wwm-ext-large from a local folder; the normalised
sentence is tokenised in one call, the model runs with `output_hidden_states=True`, and
`hidden_states[-3]` (the embeddings are entry 0, so for 24 layers the output of layer 22) of batch row 0
without its first and last position ([CLS], [SEP]) gives one row per character. Row i is repeated
`word2ph[i]` times and the result transposed: **(1024, n_phones)**. Only `zh` clips get features; every
other language gets none and the GPT uses zeros (as the official dataset and inference do).

Differences from the official code, each a clear error instead of a silent one:

- the official code assumes one token per character and never checks it; a sentence whose token count
  differs from its character count is skipped here with the two counts as the reason;
- the model is loaded with `BertModel` (no MLM head: `hidden_states` are the same), missing weights are an
  error, weights the encoder does not use (MLM head, pooler) are ignored;
- sentences are batched (padded, with an attention mask; the result equals one sentence at a time up to
  float rounding, tested) and fp16 runs only on CUDA; a non-finite fp16 output is recomputed in fp32.

Public API:
    load_bert, check_bert_folder, LoadedBert, BertFeaturizer, expand_to_phones, ensure_random_bert
    extract_bert: the post-audio stage of `prepare` (see `data/stages.py`)
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gptsovits_train.config import Config
from gptsovits_train.data.manifest import Clip
from gptsovits_train.data.report_types import WarningItem
from gptsovits_train.data.stages import StageResult, drop_failed, remove_unlisted
from gptsovits_train.errors import GsvError
from gptsovits_train.features.hubert import RANDOM_TINY, model_digest, resolve_device
from gptsovits_train.features.model_folder import WEIGHT_FILES, read_model_config, write_folder_atomically
from gptsovits_train.fileio import atomic_save_npy, atomic_write_json
from gptsovits_train.layout import DatasetLayout

LOG = logging.getLogger(__name__)

STAGE = "bert"
STAMP_FORMAT = 1
#: `hidden_states` entry the official code takes.
HIDDEN_STATE_INDEX = -3
RANDOM_MARKER = "gsv_random_bert.json"
RANDOM_VOCAB_CHARS = 3000
RANDOM_BERT_NOTICE = (
    "BERT features come from a RANDOM BERT (prepare.bert.model: random-tiny): this run checks the pipeline "
    "and does not make a usable voice; use chinese-roberta-wwm-ext-large (gsv-train download-pretrained) "
    "for real training"
)
_TOKENIZER_FILES = ("vocab.txt", "tokenizer.json")
#: Languages whose clips get BERT features (official: only zh).
BERT_LANGUAGES = ("zh",)


class BertLoadError(GsvError):
    """The BERT folder is missing, is not a BERT model, or does not fit (hidden size, weights, tokenizer)."""


# ------------------------------------------------------------------------------------------ numerics
def expand_to_phones(char_feats: np.ndarray, word2ph: Sequence[int]) -> np.ndarray:
    """Repeat row i of `char_feats` `word2ph[i]` times and transpose (official `get_bert_feature`).

    Args:
        char_feats: (n_chars, H) one row per character (CLS/SEP already removed).
        word2ph: phones per character, `len(word2ph) == n_chars`.
    Returns:
        (H, sum(word2ph)) float32.
    """
    if char_feats.ndim != 2 or char_feats.shape[0] != len(word2ph):
        raise ValueError(f"{char_feats.shape[0]} character rows for {len(word2ph)} word2ph entries")
    return np.repeat(np.asarray(char_feats, dtype=np.float32), np.asarray(word2ph, dtype=np.int64), axis=0).T


# ------------------------------------------------------------------------------------------- loading
@dataclass
class LoadedBert:
    """A BERT model + tokenizer ready for `BertFeaturizer` (model in eval mode, fp32 on the CPU)."""

    model: Any
    tokenizer: Any
    path: Path
    random: bool
    hidden_size: int


def check_bert_folder(path: Path | str, hidden_size: int = 1024) -> dict[str, Any]:
    """Validate a BERT folder without loading the weights; returns its config.json.

    Raises:
        BertLoadError: missing folder, not a folder, no/invalid config.json, not BERT, a hidden size other
            than `hidden_size`, fewer than 3 hidden states, no weights, no tokenizer files.
    """
    path = Path(path)
    hint = (
        "give prepare.bert.model = the chinese-roberta-wwm-ext-large folder (`gsv-train download-pretrained` "
        f"fetches it), or '{RANDOM_TINY}' for a pipeline check"
    )
    data = read_model_config(path, "BERT", BertLoadError, hint)
    if data.get("model_type") != "bert":
        kind = data.get("model_type")
        raise BertLoadError(f"{path} holds a {kind!r} model, not BERT (config.json model_type); {hint}")
    if data.get("hidden_size") != hidden_size:
        raise BertLoadError(
            f"{path}: BERT hidden size is {data.get('hidden_size')}, expected {hidden_size} "
            "(prepare.bert.hidden_size; the GPT's bert_proj takes 1024)"
        )
    if int(data.get("num_hidden_layers", 0)) < 2:
        raise BertLoadError(
            f"{path}: {data.get('num_hidden_layers')} layers; hidden_states[-3] needs at least 2"
        )
    if not any((path / n).is_file() for n in WEIGHT_FILES):
        raise BertLoadError(f"{path} has no weights ({' / '.join(WEIGHT_FILES)})")
    if not any((path / n).is_file() for n in _TOKENIZER_FILES):
        raise BertLoadError(f"{path} has no tokenizer ({' / '.join(_TOKENIZER_FILES)})")
    return data


def load_bert(path: Path | str, hidden_size: int = 1024) -> LoadedBert:
    """Load a BERT folder offline (`local_files_only`); `.bin` weights are read by transformers with
    `torch.load(weights_only=True)`. Missing or wrongly shaped encoder weights are an error.

    Raises:
        BertLoadError: see `check_bert_folder`, plus unreadable or incomplete weights/tokenizer.
    """
    path = Path(path)
    check_bert_folder(path, hidden_size)
    from transformers import AutoTokenizer, BertModel

    try:
        pair: Any = BertModel.from_pretrained(
            str(path), local_files_only=True, output_loading_info=True, add_pooling_layer=False
        )
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except pickle.UnpicklingError:
        raise BertLoadError(
            f"cannot load BERT from {path}: its .bin weights hold objects other than tensors, which are "
            "never unpickled (torch.load weights_only); use a trusted chinese-roberta-wwm-ext-large folder"
        ) from None
    except (OSError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BertLoadError(f"cannot load BERT from {path}: {first}") from None
    model, info = pair
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(str(k) for k in (info.get("mismatched_keys") or []))
    if missing or mismatched:
        bad = missing + mismatched
        raise BertLoadError(
            f"{path}: {len(missing)} weights missing and {len(mismatched)} of the wrong shape "
            f"(e.g. {', '.join(bad[:3])}); the folder does not hold a complete BERT checkpoint"
        )
    unused = [
        k for k in info.get("unexpected_keys") or [] if not k.startswith(("cls.", "bert.pooler", "pooler"))
    ]
    if unused:
        LOG.warning("%s: %d weights not used by BertModel: %s", path, len(unused), ", ".join(unused[:5]))
    model.float().eval()  # whatever the stored dtype: fp32 on the CPU, the featurizer picks the precision
    tokenizer.padding_side = "right"  # BertFeaturizer reads rows 1..n of each padded sentence
    model.requires_grad_(False)
    return LoadedBert(model, tokenizer, path, (path / RANDOM_MARKER).is_file(), hidden_size)


def bert_digest(path: Path | str) -> str:
    """sha256 over config, weights and tokenizer vocabulary of a BERT folder."""
    h = hashlib.sha256(model_digest(path).encode())
    for name in _TOKENIZER_FILES:
        f = Path(path) / name
        if f.is_file():
            h.update(name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------- random-tiny
def random_bert_vocab(n_chars: int = RANDOM_VOCAB_CHARS) -> list[str]:
    """Special tokens, ASCII, Chinese punctuation and the `n_chars` most frequent single characters of
    jieba's dictionary (the Mandarin frontend's own dependency), so that Mandarin text is not all [UNK]."""
    import jieba

    singles: list[tuple[int, str]] = []
    with open(Path(jieba.__file__).parent / "dict.txt", encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 2 and len(parts[0]) == 1:
                singles.append((-int(parts[1]), parts[0]))
    chars = [ch for _, ch in sorted(singles)[:n_chars]]
    extra = [chr(c) for c in range(33, 127)] + list("，。！？、；：“”‘’（）《》…—·")
    seen: set[str] = set()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    for ch in extra + chars:
        if ch not in seen:
            seen.add(ch)
            vocab.append(ch)
    return vocab


def ensure_random_bert(folder: Path | str, hidden_size: int = 1024, seed: int = 0) -> Path:
    """Build the seeded random BERT (3 layers, narrow feed-forward, the requested width) once in `folder`
    with its tokenizer and a `gsv_random_bert.json` marker (temporary folder, then renamed)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = Path(folder)
    if (folder / RANDOM_MARKER).is_file():
        try:
            check_bert_folder(folder, hidden_size)
            return folder
        except BertLoadError as exc:
            LOG.warning("rebuilding the random BERT in %s (%s)", folder, exc)

    def write(tmp: Path) -> None:
        vocab = random_bert_vocab()
        tokenizer = BertTokenizer(vocab={tok: i for i, tok in enumerate(vocab)}, tokenize_chinese_chars=True)
        config = BertConfig(
            vocab_size=len(vocab),
            hidden_size=hidden_size,
            num_hidden_layers=3,
            num_attention_heads=16 if hidden_size % 16 == 0 else 1,
            intermediate_size=64,
            max_position_embeddings=512,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = BertModel(config, add_pooling_layer=False).eval()
        model.half().save_pretrained(str(tmp))  # fp16 on disk (half the size); loaded back as fp32
        tokenizer.save_pretrained(str(tmp))
        marker = {"random": True, "seed": seed, "hidden_size": hidden_size, "notice": RANDOM_BERT_NOTICE}
        (tmp / RANDOM_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")

    write_folder_atomically(folder, write)
    LOG.warning("built a random BERT in %s: %s", folder, RANDOM_BERT_NOTICE)
    return folder


# ---------------------------------------------------------------------------------------- featurizer
class TokenCountError(ValueError):
    """The tokenizer did not give one token per character."""


class BertFeaturizer:
    """Runs BERT over sentences, batched, with the fp16 → fp32 retry.

    Args:
        loaded: from `load_bert`.
        device: "auto", "cpu" or "cuda".
        fp16: half precision on CUDA (ignored on CPU).
    """

    def __init__(self, loaded: LoadedBert, device: str = "auto", fp16: bool = True) -> None:
        import torch

        self.loaded = loaded
        self.device = resolve_device(device)
        self.half = bool(fp16 and self.device.type == "cuda")
        self.model = loaded.model.to(device=self.device, dtype=torch.float16 if self.half else torch.float32)
        self.n_retried = 0

    def char_features(
        self, texts: Sequence[str], *, fp32: bool = False
    ) -> list[np.ndarray | TokenCountError]:
        """One batched pass.

        Args:
            texts: normalised sentences.
            fp32: run in fp32 even when the featurizer is half (the retry).
        Returns:
            per sentence (len(text), H) float32 = `hidden_states[-3]` without [CLS]/[SEP], or a
            `TokenCountError` when the tokenizer did not give one token per character.
        """
        import torch

        model = self.model.float() if fp32 and self.half else self.model
        try:
            enc = self.loaded.tokenizer(list(texts), return_tensors="pt", padding=True)
            with torch.no_grad():
                out = model(
                    input_ids=enc["input_ids"].to(self.device),
                    attention_mask=enc["attention_mask"].to(self.device),
                    token_type_ids=enc["token_type_ids"].to(self.device) if "token_type_ids" in enc else None,
                    output_hidden_states=True,
                )
            hidden = out.hidden_states[HIDDEN_STATE_INDEX].float().cpu().numpy()
        finally:
            if fp32 and self.half:
                self.model.half()
        lengths = enc["attention_mask"].sum(dim=1).tolist()
        result: list[np.ndarray | TokenCountError] = []
        for i, text in enumerate(texts):
            n_tokens = int(lengths[i]) - 2
            if n_tokens != len(text):
                result.append(
                    TokenCountError(f"the tokenizer gave {n_tokens} tokens for {len(text)} characters")
                )
            else:
                result.append(hidden[i, 1 : 1 + n_tokens])
        return result

    def __call__(self, texts: Sequence[str]) -> list[np.ndarray | TokenCountError | None]:
        """`char_features` with non-finite fp16 outputs recomputed alone in fp32 (None: still non-finite)."""
        first = self.char_features(texts)
        out: list[np.ndarray | TokenCountError | None] = []
        for i, feats in enumerate(first):
            result: np.ndarray | TokenCountError | None = feats
            if isinstance(feats, np.ndarray) and not np.isfinite(feats).all():
                result = None
                if self.half:
                    self.n_retried += 1
                    LOG.warning("non-finite fp16 BERT output; recomputing the sentence in fp32")
                    again = self.char_features([texts[i]], fp32=True)[0]
                    result = again if isinstance(again, np.ndarray) and np.isfinite(again).all() else None
            out.append(result)
        return out


# ------------------------------------------------------------------------------------------- stage
@dataclass(frozen=True)
class BertPiece:
    """A run of a clip's phones: Mandarin text with its word2ph (BERT rows), or `n_phones` zero columns."""

    text: str | None
    word2ph: tuple[int, ...]
    n_phones: int


def wants_bert(clip: Clip, cfg: Config) -> bool:
    """True for clips that may get BERT features: language zh (official: zh only) with phonemes, either
    a word2ph (pure Mandarin) or Latin words phonemised as English runs (`prepare.text.zh_latin: split`)."""
    from gptsovits_train.data.phonemize import clip_language

    if clip.language not in BERT_LANGUAGES or not clip.norm_text or not clip.phone_ids:
        return False
    return clip.word2ph is not None or clip_language(clip, cfg) == "auto"


def bert_pieces(clip: Clip, cfg: Config) -> list[BertPiece]:
    """How a zh clip's (1024, n_phones) BERT features are made, as the official inference does for mixed
    text: BERT rows for each Mandarin run, zeros for each English run.

    Raises:
        ValueError: the runs do not give the clip's phones (its text changed since the text stage).
    """
    from gptsovits_train.text import TextError, g2p_runs, official_prepare_replace

    n_phones = len(clip.phone_ids or [])
    if clip.word2ph is not None:
        return [BertPiece(clip.norm_text, tuple(clip.word2ph), n_phones)]
    text = official_prepare_replace(clip.text) if cfg.prepare.text.official_prereplace else clip.text
    try:
        runs = g2p_runs(text)
    except TextError as exc:
        raise ValueError(f"cannot split the text into Mandarin/English runs ({exc})") from None
    pieces = [
        BertPiece(r.norm_text, tuple(r.word2ph), len(r.phones))
        if lang == "zh" and r.word2ph is not None
        else BertPiece(None, (), len(r.phones))
        for lang, r in runs
    ]
    if sum(p.n_phones for p in pieces) != n_phones:
        total = sum(p.n_phones for p in pieces)
        raise ValueError(f"the Mandarin/English runs give {total} phones, the clip has {n_phones}")
    return pieces


def _resolve_model(layout: DatasetLayout, cfg: Config) -> Path:
    bcfg = cfg.prepare.bert
    if bcfg.model == RANDOM_TINY:
        return ensure_random_bert(layout.random_bert_dir, bcfg.hidden_size)
    if bcfg.model:
        return Path(bcfg.model).expanduser()
    from gptsovits_train.pretrained import find_bert

    found = find_bert()
    if found is not None:
        LOG.info("BERT features: using the downloaded %s", found)
        return found
    raise GsvError(
        "the GPT stage needs BERT for its zh clips: set prepare.bert.model to the "
        "chinese-roberta-wwm-ext-large folder (`gsv-train download-pretrained` fetches it), "
        f"or '{RANDOM_TINY}' for a pipeline check"
    )


def bert_stamp(model: str, digest: str, random: bool, cfg: Config) -> dict[str, Any]:
    """The `.work/bert.json` record: model, digest, width and the text settings the features depend on."""
    text = json.dumps(cfg.prepare.text.model_dump(mode="json"), sort_keys=True)
    return {
        "format": STAMP_FORMAT,
        "model": model,
        "digest": digest,
        "random": random,
        "hidden_size": cfg.prepare.bert.hidden_size,
        "text_settings": hashlib.sha256(text.encode()).hexdigest(),
        "note": RANDOM_BERT_NOTICE if random else "hidden_states[-3] without CLS/SEP, repeated by word2ph",
    }


def _same_stamp(path: Path, stamp: dict[str, Any]) -> bool:
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    keys = ("format", "digest", "hidden_size", "text_settings")
    return isinstance(old, dict) and all(old.get(k) == stamp[k] for k in keys)


def bert_problem(path: Path, hidden_size: int, n_phones: int) -> str | None:
    """Why `path` is not the BERT file of a clip with `n_phones` phones, or None when it is usable."""
    if not path.is_file():
        return "no BERT features file"
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        return f"unreadable BERT features file ({exc})"
    if arr.shape != (hidden_size, n_phones) or arr.dtype not in (np.float16, np.float32):
        return f"BERT features of shape {arr.shape} {arr.dtype}, expected ({hidden_size}, {n_phones}) float16"
    return None


def extract_bert(layout: DatasetLayout, clips: list[Clip], cfg: Config) -> StageResult:
    """Post-audio stage: BERT features of every `zh` clip (`Clip.bert`; other clips keep `bert = None`).

    Needs the text stage (`norm_text`, `word2ph`). Resumable: a file newer than the clip's wav with shape
    (hidden, n_phones) is kept; `.work/bert.json` records the model and text settings, and a change of
    either deletes the old files first. A zh clip with Latin words phonemised as English
    (`prepare.text.zh_latin: split`, no word2ph) gets BERT rows for its Mandarin runs and zeros for its
    English runs, as the official inference makes them for mixed text (`bert_pieces`).

    Raises:
        GsvError: no model configured/downloaded, model folder unusable, CUDA requested without a GPU.
    """
    bcfg = cfg.prepare.bert
    hidden = bcfg.hidden_size
    warnings: list[WarningItem] = []
    todo: list[Clip] = []
    for clip in clips:
        clip.bert = None
        if wants_bert(clip, cfg):
            todo.append(clip)
    if not todo:
        LOG.info("bert: no zh clips, nothing to do")
        remove_unlisted(layout.bert_dir, set())
        return StageResult(clips=clips, warnings=warnings)
    model_dir = _resolve_model(layout, cfg)
    check_bert_folder(model_dir, hidden)
    is_random = bcfg.model == RANDOM_TINY
    stamp = bert_stamp(
        RANDOM_TINY if is_random else str(model_dir.absolute()), bert_digest(model_dir), is_random, cfg
    )
    if not _same_stamp(layout.bert_stamp, stamp):
        stale = sorted(layout.bert_dir.glob("*.npy")) if layout.bert_dir.is_dir() else []
        if stale:
            LOG.warning(
                "%d BERT files in %s were made by another model or text settings; recomputing them",
                len(stale),
                layout.bert_dir,
            )
            for f in stale:
                f.unlink()
        atomic_write_json(layout.bert_stamp, stamp)
    if is_random:
        warnings.append(WarningItem(STAGE, RANDOM_BERT_NOTICE, STAGE))
        LOG.warning(RANDOM_BERT_NOTICE)

    pending: list[Clip] = []
    for clip in todo:
        path = layout.bert(clip.id)
        wav = layout.root / clip.path
        fresh = path.is_file() and wav.is_file() and path.stat().st_mtime_ns >= wav.stat().st_mtime_ns
        if fresh and bert_problem(path, hidden, len(clip.phone_ids or [])) is None:
            clip.bert = layout.relative(path)
        else:
            pending.append(clip)
    LOG.info("bert: %d of %d zh clips already done", len(todo) - len(pending), len(todo))
    failed: dict[str, str] = {}
    if pending:
        failed = _compute(layout, pending, cfg, model_dir)
    result = drop_failed(clips, failed, STAGE, warnings)
    remove_unlisted(layout.bert_dir, {c.id for c in result.clips if c.bert})
    return result


def _compute(layout: DatasetLayout, pending: list[Clip], cfg: Config, model_dir: Path) -> dict[str, str]:
    """Compute and save the features of `pending`; returns clip id -> reason for the clips that failed."""
    bcfg = cfg.prepare.bert
    featurizer = BertFeaturizer(load_bert(model_dir, bcfg.hidden_size), bcfg.device, bcfg.fp16)
    LOG.info(
        "BERT %s on %s (%s), batch %d",
        model_dir,
        featurizer.device,
        "fp16" if featurizer.half else "fp32",
        bcfg.batch_size,
    )
    failed: dict[str, str] = {}
    max_chars = int(featurizer.model.config.max_position_embeddings) - 2  # [CLS] and [SEP]
    plans: dict[str, list[BertPiece]] = {}
    texts: set[str] = set()
    for clip in pending:
        try:
            pieces = bert_pieces(clip, cfg)
        except ValueError as exc:
            failed[clip.id] = str(exc)
            continue
        long = [p.text for p in pieces if p.text is not None and len(p.text) > max_chars]
        if long:
            failed[clip.id] = f"{len(long[0])} characters, more than BERT's {max_chars} positions"
            continue
        if all(p.text is None for p in pieces):
            continue  # no Mandarin run: no features (zeros at training, like any non-zh clip)
        plans[clip.id] = pieces
        texts.update(p.text for p in pieces if p.text is not None)
    t0 = time.perf_counter()
    rows: dict[str, np.ndarray | TokenCountError | None] = {}
    order = sorted(texts, key=lambda t: (-len(t), t))
    for i in range(0, len(order), bcfg.batch_size):
        batch = order[i : i + bcfg.batch_size]
        rows.update(zip(batch, featurizer(batch), strict=True))
    for clip in pending:
        if clip.id not in plans:
            continue
        try:
            feats = _assemble(plans[clip.id], rows, bcfg.hidden_size)
        except ValueError as exc:
            failed[clip.id] = str(exc)
            continue
        atomic_save_npy(layout.bert(clip.id), np.ascontiguousarray(feats, dtype=np.float16))
        clip.bert = layout.relative(layout.bert(clip.id))
    LOG.info(
        "bert: %d clips (%d sentences) in %.1f s, %d retried in fp32, %d failed",
        len(pending),
        len(texts),
        time.perf_counter() - t0,
        featurizer.n_retried,
        len(failed),
    )
    return failed


def _assemble(
    pieces: list[BertPiece], rows: dict[str, np.ndarray | TokenCountError | None], hidden: int
) -> np.ndarray:
    """(hidden, n_phones) float32 of one clip from its pieces; ValueError with the reason."""
    parts = []
    for piece in pieces:
        if piece.text is None:
            parts.append(np.zeros((hidden, piece.n_phones), dtype=np.float32))
            continue
        feats = rows[piece.text]
        if feats is None:
            raise ValueError("BERT output is NaN/Inf")
        if isinstance(feats, TokenCountError):
            raise ValueError(f"norm_text {piece.text!r}: {feats}")
        expanded = expand_to_phones(feats, piece.word2ph)
        if expanded.shape[1] != piece.n_phones:
            raise ValueError(f"word2ph sums to {expanded.shape[1]}, the text has {piece.n_phones} phones")
        parts.append(expanded)
    return np.concatenate(parts, axis=1)
