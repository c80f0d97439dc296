"""Builders shared by the feature / ASR / official-import tests: tiny random models, small datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gptsovits_train.audio.io import load_audio, resample, to_pcm16, wav_bytes_pcm16
from gptsovits_train.audio.loudness import apply_wav32k_mix
from gptsovits_train.config import AudioConfig
from gptsovits_train.data.manifest import Clip
from gptsovits_train.data.source_clips import compute_spec
from gptsovits_train.fileio import atomic_save_npy, atomic_write_bytes
from gptsovits_train.layout import DatasetLayout

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LJ_DIR = SHARED / "data" / "ljspeech-mini"


def tiny_hubert_config(hidden_size: int = 768, layers: int = 1):
    """HuBERT-base strides/kernels (50 Hz, same frame counts), narrow and shallow: fast on a CPU."""
    from transformers import HubertConfig

    return HubertConfig(
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=12 if hidden_size % 12 == 0 else 2,
        intermediate_size=256,
        conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=16 if hidden_size % 16 == 0 else 2,
    )


def build_tiny_hubert(
    folder: Path, *, hidden_size: int = 768, seed: int = 0, layers: int = 1, legacy_bin: bool = False
) -> Path:
    """Save a seeded random HubertModel in HF format.

    `legacy_bin`: write `pytorch_model.bin` with the old weight-norm names (`weight_g`/`weight_v`), as the
    real chinese-hubert-base checkpoint has them, instead of `model.safetensors`.
    """
    from transformers import HubertModel

    torch.manual_seed(seed)
    model = HubertModel(tiny_hubert_config(hidden_size, layers)).eval()
    folder.mkdir(parents=True, exist_ok=True)
    if legacy_bin:
        model.config.save_pretrained(str(folder))
        sd = {
            k.replace("parametrizations.weight.original0", "weight_g").replace(
                "parametrizations.weight.original1", "weight_v"
            ): v
            for k, v in model.state_dict().items()
        }
        torch.save(sd, folder / "pytorch_model.bin")
    else:
        model.save_pretrained(str(folder))
    return folder


def lj_waves_32k(n: int, *, max_seconds: float = 4.0, mix: bool = True) -> list[tuple[str, np.ndarray]]:
    """The first `n` LJSpeech-mini clips (at most `max_seconds` long, cut there) at 32 kHz, float32.

    `mix`: apply the `5-wav32k` loudness mix, as dataset wavs have it.
    """
    out = []
    for path in sorted((LJ_DIR / "wavs").glob("*.flac"))[:n]:
        audio = load_audio(path)
        wave = resample(audio.samples, audio.sample_rate, 32000)[: int(max_seconds * 32000)]
        out.append((path.stem, apply_wav32k_mix(wave) if mix else wave))
    return out


def make_dataset(root: Path, waves: list[tuple[str, np.ndarray]], acfg: AudioConfig | None = None):
    """A dataset folder with wavs/ and spec/ as the audio stage writes them; returns (layout, clips)."""
    acfg = acfg or AudioConfig()
    layout = DatasetLayout(root)
    clips = []
    for clip_id, wave in waves:
        pcm = to_pcm16(wave)
        atomic_write_bytes(layout.wav(clip_id), wav_bytes_pcm16(pcm, 32000))
        atomic_save_npy(layout.spec(clip_id), compute_spec(pcm, acfg, "float16"))
        n = len(pcm)
        clips.append(
            Clip(
                id=clip_id,
                path=layout.relative(layout.wav(clip_id)),
                source=f"/src/{clip_id}.flac",
                start=0.0,
                end=n / 32000,
                duration=n / 32000,
                text="hello",
                language="en",
                speaker="lj",
                n_samples=n,
                n_frames=n // acfg.hop_length,
                spec=layout.relative(layout.spec(clip_id)),
            )
        )
    return layout, clips


def build_tiny_whisper(
    folder: Path, *, languages: tuple[str, ...] = ("en", "zh"), text_chars: str = "abc", seed: int = 0
) -> Path:
    """Save a tiny random multilingual Whisper (model + tokenizer + feature extractor) in HF format.

    The tokenizer is byte-level BPE without merges plus the Whisper special tokens. Only the language
    tokens of `languages` can be detected, and generation can only emit the characters of `text_chars`
    (everything else is suppressed), so the random model yields a non-empty, checkable transcript.
    """
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    b2u = bytes_to_unicode()
    byte_chars = sorted(b2u.values())
    tok = WhisperTokenizer(vocab={ch: i for i, ch in enumerate(byte_chars)}, merges=[])
    all_langs = ("en", "zh", "ja", "ko", "yue", "fr")
    specials = [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *[f"<|{lang}|>" for lang in all_langs],
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nocaptions|>",
        "<|notimestamps|>",
    ]
    tok.add_special_tokens({"additional_special_tokens": specials})
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    eot = ids["<|endoftext|>"]
    sot = ids["<|startoftranscript|>"]
    allowed = {tok.convert_tokens_to_ids(b2u[b]) for b in text_chars.encode("utf-8")} | {eot}
    config = WhisperConfig(
        vocab_size=len(tok),
        num_mel_bins=80,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_source_positions=1500,
        max_target_positions=64,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=16,
        lang_to_id={f"<|{lang}|>": ids[f"<|{lang}|>"] for lang in languages},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        is_multilingual=True,
        no_timestamps_token_id=ids["<|notimestamps|>"],
        return_timestamps=False,
        suppress_tokens=[i for i in range(len(tok)) if i not in allowed],
        begin_suppress_tokens=[eot],
    )
    model.save_pretrained(str(folder))
    WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tok
    ).save_pretrained(str(folder))
    return folder
