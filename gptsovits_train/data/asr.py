"""ASR for clips without a transcript: a local Whisper model (transformers), with language detection.

`gsv-train prepare --asr DIR` slices sources that have no transcript and runs `AsrStage` on the clips
with empty text (the official tool chain uses faster-whisper / FunASR; this uses transformers' Whisper
so that no other runtime is needed). Per clip:

1. the clip's 32 kHz wav → 16 kHz (soxr HQ), float in [-1, 1], Whisper log-mel features;
2. language: `WhisperForConditionalGeneration.detect_language` (the most likely language token), unless a
   language is forced; English-only checkpoints (`*.en`, no language tokens) are taken as `en`;
3. `generate(..., language=<detected>, task="transcribe")`, decoded without special tokens.

A clip is skipped (with the reason) when Whisper detects a language the text frontends do not handle
(`SUPPORTED_LANGUAGES`), hears no text, or the clip is longer than Whisper's 30 s window. Results are
recorded per clip in `.work/asr/<id>.json` (text, language, model folder), so a resumed `prepare` does
not transcribe a clip again with the same model.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gptsovits_train.audio.io import resample
from gptsovits_train.config import Config
from gptsovits_train.data.manifest import Clip
from gptsovits_train.data.report_types import Skipped, WarningItem
from gptsovits_train.data.stages import StageResult
from gptsovits_train.errors import GsvError
from gptsovits_train.fileio import atomic_write_json
from gptsovits_train.layout import DatasetLayout

if TYPE_CHECKING:
    import torch

LOG = logging.getLogger(__name__)

STAGE = "asr"
WHISPER_SAMPLE_RATE = 16000
#: Whisper's input window.
MAX_SECONDS = 30.0
#: Whisper language code → the language code of the manifest / text frontends.
SUPPORTED_LANGUAGES: dict[str, str] = {"zh": "zh", "en": "en", "ja": "ja", "ko": "ko", "yue": "yue"}


class AsrError(GsvError):
    """The Whisper folder is missing or unusable."""


@dataclass(frozen=True)
class AsrResult:
    """One transcription.

    Attributes:
        text: the decoded text, stripped ("" when Whisper heard nothing).
        language: Whisper's language code (`en`, `zh`, `fr`, ...), detected or forced.
    """

    text: str
    language: str

    @property
    def manifest_language(self) -> str | None:
        """The language code for the manifest, or None when the text frontends do not handle it."""
        return SUPPORTED_LANGUAGES.get(self.language)


def _check_folder(path: Path) -> None:
    if not path.exists():
        raise AsrError(
            f"Whisper folder not found: {path} (--asr takes a local HF-format Whisper model folder)"
        )
    if not path.is_dir():
        raise AsrError(f"{path} is a file; --asr takes the Whisper model folder")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise AsrError(f"{path} is not a Hugging Face model folder (no config.json)")
    try:
        data = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AsrError(f"{cfg_file} is not valid JSON ({exc})") from None
    model_type = data.get("model_type") if isinstance(data, dict) else None
    if model_type != "whisper":
        raise AsrError(f"{path} holds a {model_type!r} model, not Whisper (config.json model_type)")


class WhisperAsr:
    """A local Whisper model.

    Args:
        model_dir: HF-format folder (config.json, weights, tokenizer and preprocessor files).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        fp16: half precision on CUDA.
    Raises:
        AsrError: missing folder, not a Whisper model, files that transformers cannot load.
    """

    def __init__(self, model_dir: Path | str, device: str = "auto", fp16: bool = True) -> None:
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        from gptsovits_train.features.hubert import resolve_device

        self.model_dir = Path(model_dir)
        _check_folder(self.model_dir)
        try:
            self.processor: Any = WhisperProcessor.from_pretrained(str(self.model_dir), local_files_only=True)
            model: Any = WhisperForConditionalGeneration.from_pretrained(
                str(self.model_dir), local_files_only=True
            )
        except (OSError, ValueError, RuntimeError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AsrError(f"cannot load Whisper from {self.model_dir}: {first}") from None
        self.device = resolve_device(device)
        self.dtype = torch.float16 if (fp16 and self.device.type == "cuda") else torch.float32
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        gen = self.model.generation_config
        self.lang_to_id: dict[str, int] = dict(getattr(gen, "lang_to_id", None) or {})
        self.multilingual = bool(self.lang_to_id) and getattr(gen, "is_multilingual", True) is not False
        self._id_to_lang = {v: k.strip("<|>") for k, v in self.lang_to_id.items()}

    def _features(self, waves16: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor | None]:
        fe = self.processor.feature_extractor
        out = fe(
            [np.asarray(w, dtype=np.float32) for w in waves16],
            sampling_rate=WHISPER_SAMPLE_RATE,
            return_tensors="pt",
            return_attention_mask=True,
        )
        feats = out["input_features"].to(self.device, self.dtype)
        mask = out.get("attention_mask")
        return feats, (mask.to(self.device) if mask is not None else None)

    def detect_languages(self, features: torch.Tensor) -> list[str]:
        """Most likely language code per clip (Whisper language tokens only)."""
        ids = self.model.detect_language(input_features=features).tolist()
        return [self._id_to_lang[int(i)] for i in ids]

    def transcribe(self, waves16: Sequence[np.ndarray], language: str | None = None) -> list[AsrResult]:
        """Transcribe clips.

        Args:
            waves16: (N_i,) float arrays at 16 kHz in [-1, 1], each at most 30 s.
            language: force this Whisper language code instead of detecting it.
        Returns:
            one `AsrResult` per clip, in order.
        """
        import torch

        if not waves16:
            return []
        for w in waves16:
            if len(w) > MAX_SECONDS * WHISPER_SAMPLE_RATE:
                raise ValueError(
                    f"clip of {len(w) / WHISPER_SAMPLE_RATE:.1f} s is longer than Whisper's 30 s"
                )
        features, mask = self._features(waves16)
        if language is not None:
            langs = [language] * len(waves16)
        elif self.multilingual:
            langs = self.detect_languages(features)
        else:
            langs = ["en"] * len(waves16)
        kwargs: dict[str, Any] = {"input_features": features}
        if mask is not None:
            kwargs["attention_mask"] = mask
        if self.multilingual:
            kwargs["language"] = langs
            kwargs["task"] = "transcribe"
        with torch.no_grad():
            ids = self.model.generate(**kwargs)
        texts = self.processor.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return [AsrResult(text=t.strip(), language=lang) for t, lang in zip(texts, langs, strict=True)]


def _read_wave16(layout: DatasetLayout, clip: Clip) -> np.ndarray:
    import soundfile as sf

    try:
        data, sr = sf.read(str(layout.root / clip.path), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise ValueError(f"cannot read {clip.path} ({exc})") from None
    if data.ndim != 1:
        data = data.mean(axis=1)
    return resample(np.asarray(data, dtype=np.float32), int(sr), WHISPER_SAMPLE_RATE)


class AsrStage:
    """Post-audio stage: fill `text` and `language` of clips without text (see module doc).

    Args:
        model_dir: local Whisper folder (`--asr DIR`).
        device: "auto", "cpu" or "cuda".
        batch_size: clips per Whisper call.
        language: force a Whisper language code instead of detecting it per clip.
    """

    name = STAGE

    def __init__(
        self, model_dir: Path | str, device: str = "auto", batch_size: int = 8, language: str | None = None
    ) -> None:
        self.model_dir = Path(model_dir)
        self.device = device
        self.batch_size = batch_size
        self.language = language
        _check_folder(self.model_dir)

    def _record(self, layout: DatasetLayout, clip: Clip) -> AsrResult | None:
        path = layout.asr_record(clip.id)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("model") != str(self.model_dir.absolute()) or data.get("forced") != self.language:
                return None
            return AsrResult(text=str(data["text"]), language=str(data["language"]))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
            return None

    def __call__(self, layout: DatasetLayout, clips: list[Clip], cfg: Config) -> StageResult:
        from tqdm import tqdm

        results: dict[str, AsrResult] = {}
        failed: dict[str, str] = {}
        todo: list[Clip] = []
        for clip in clips:
            if clip.text:
                continue
            rec = self._record(layout, clip)
            if rec is not None:
                results[clip.id] = rec
            else:
                todo.append(clip)
        if todo:
            asr = WhisperAsr(self.model_dir, self.device, cfg.prepare.features.fp16)
            LOG.info("ASR: %d clips with Whisper %s on %s", len(todo), self.model_dir, asr.device)
            todo.sort(key=lambda c: -c.n_samples)
            bar = tqdm(total=len(todo), unit="clip", desc="asr", disable=not sys.stderr.isatty(), leave=False)
            for i in range(0, len(todo), self.batch_size):
                batch: list[tuple[Clip, np.ndarray]] = []
                for clip in todo[i : i + self.batch_size]:
                    if clip.duration > MAX_SECONDS:
                        failed[clip.id] = (
                            f"longer than Whisper's {MAX_SECONDS:g} s window ({clip.duration:.1f} s)"
                        )
                        continue
                    try:
                        batch.append((clip, _read_wave16(layout, clip)))
                    except ValueError as exc:
                        failed[clip.id] = str(exc)
                outs = asr.transcribe([w for _, w in batch], self.language) if batch else []
                for (clip, _), res in zip(batch, outs, strict=True):
                    results[clip.id] = res
                    atomic_write_json(
                        layout.asr_record(clip.id),
                        {
                            "text": res.text,
                            "language": res.language,
                            "model": str(self.model_dir.absolute()),
                            "forced": self.language,
                        },
                    )
                bar.update(len(todo[i : i + self.batch_size]))
            bar.close()
        kept: list[Clip] = []
        skipped: list[Skipped] = []
        n_asr = 0
        for clip in clips:
            if clip.text:
                kept.append(clip)
                continue
            if clip.id in failed:
                skipped.append(Skipped(clip.id, failed[clip.id], STAGE))
                continue
            res = results[clip.id]
            lang = res.manifest_language
            if lang is None:
                supported = ", ".join(SUPPORTED_LANGUAGES)
                reason = f"Whisper detected language '{res.language}', not one of {supported}"
                skipped.append(Skipped(clip.id, reason, STAGE))
            elif not res.text:
                skipped.append(Skipped(clip.id, "Whisper heard no text", STAGE))
            else:
                clip.text = res.text
                clip.language = lang
                clip.extra["asr"] = {"model": self.model_dir.name, "language": res.language}
                kept.append(clip)
                n_asr += 1
        warnings = []
        if n_asr:
            warnings.append(
                WarningItem(
                    str(self.model_dir),
                    f"{n_asr} clip(s) transcribed by Whisper; ASR makes mistakes, "
                    "check the text in manifest.jsonl",
                    STAGE,
                )
            )
        return StageResult(clips=kept, skipped=skipped, warnings=warnings)
