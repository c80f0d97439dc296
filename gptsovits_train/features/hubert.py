"""HuBERT content features exactly as the official preparation computes them (`4-cnhubert`).

Official recipe (`prepare_datasets/2-get-hubert-wav32k.py`, facts §1):

1. From the 32 kHz clip `a` (float, peak <= 2.2), the loudness mix ``a / max|a| * (0.95 * 0.5) + 0.5 * a``
   scaled by **1145.14** (not 32768): peaks end up near 1e3. The mix is the same one that makes the
   `5-wav32k` training copy, so for a dataset clip that already holds the mix (our `wavs/<id>.wav` when
   `prepare.loudness.enabled`) the input is just ``wav * 1145.14`` (`hubert_input(..., apply_mix=False)`).
   Equal to the official input up to the int16 rounding of the stored wav.
2. Resampled to 16 kHz with `librosa.resample` and its default `res_type` (`soxr_hq` since librosa 0.10).
   We call soxr "HQ" directly (`audio.io.resample`): measured bit-identical to `librosa.resample`
   (librosa 0.11, soxr 1.1; same output length ``ceil(L / 2)``).
3. Fed straight into the `HubertModel` (no `Wav2Vec2FeatureExtractor` normalisation); the
   `last_hidden_state` transposed is the feature: (1, 768, T) at 50 Hz, ``T = floor((N16 - 400) / 320) + 1``.
4. Alignment with the spectrogram (`TextAudioSpeakerLoader`): when ``ssl.T != spec.T`` the features are
   padded by one frame, replicating the last one. With ``spec.T = floor(L / 640)`` and ``N16 = ceil(L / 2)``
   the difference is always 0 or 1 (1 when ``L mod 640 < 159``). `align_to_spec` applies that rule and
   rejects any other difference (features not computed from this audio) instead of padding blindly.

Batching (`HubertFeaturizer`): HuBERT-base normalises its first conv layer with a GroupNorm over the
whole time axis, so zero-padding a clip inside a batch changes its features (the transformers docs say
so too). We therefore run the convolutional feature encoder and the feature projection per clip, pad
only the projected frames, and run the transformer encoder batched with an attention mask (padded
frames are zeroed before the positional convolution, whose own zero padding then sees the same values
as for a lone clip). The result equals `model(clip)` per clip up to float rounding (tested); `load_hubert`
checks it once against the model's own forward on the installed transformers version.

Precision: fp16 on CUDA like the official `is_half`; any clip whose output is not finite (the official
checks NaN; we also catch Inf) is recomputed alone in fp32.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gptsovits_train.audio.io import resample
from gptsovits_train.audio.loudness import peak_mix
from gptsovits_train.errors import GsvError
from gptsovits_train.features.model_folder import WEIGHT_FILES, read_model_config, write_folder_atomically

if TYPE_CHECKING:
    import torch

LOG = logging.getLogger(__name__)

#: Official HuBERT input scale (`2-get-hubert-wav32k.py`: ``tmp_audio32b``).
HUBERT_INPUT_SCALE = 1145.14
#: The `5-wav32k` loudness mix: ``x / peak * (WAV32K_PEAK * WAV32K_ALPHA) + (1 - WAV32K_ALPHA) * x``.
WAV32K_PEAK = 0.95
WAV32K_ALPHA = 0.5
HUBERT_SAMPLE_RATE = 16000
#: Receptive field and hop of HuBERT-base's convolutional encoder, in 16 kHz samples.
HUBERT_WINDOW = 400
HUBERT_HOP = 320
#: `prepare.features.hubert` value that builds a seeded random HuBERT (pipeline check only).
RANDOM_TINY = "random-tiny"
#: Marker file written into a random HuBERT folder.
RANDOM_MARKER = "gsv_random_hubert.json"
RANDOM_NOTICE = (
    "features come from a RANDOM HuBERT (random-tiny): this run checks the pipeline and does not make "
    "a usable voice; use --hubert DIR with chinese-hubert-base (gsv-train download-pretrained) "
    "for real training"
)
_WEIGHT_FILES = WEIGHT_FILES


class HubertLoadError(GsvError):
    """The HuBERT folder is missing, is not a HuBERT model, or does not fit (hidden size, weights)."""


class FeatureAlignmentError(GsvError):
    """HuBERT frames and spectrogram frames differ by more than the official one-frame pad."""


# ----------------------------------------------------------------------------------------- numerics
def hubert_frames(n_samples_16k: int) -> int:
    """HuBERT-base frame count for `n_samples_16k` samples at 16 kHz (0 when shorter than one window)."""
    if n_samples_16k < HUBERT_WINDOW:
        return 0
    return (n_samples_16k - HUBERT_WINDOW) // HUBERT_HOP + 1


def hubert_input(wave32k: np.ndarray, *, apply_mix: bool, sample_rate: int = 32000) -> np.ndarray:
    """The official HuBERT input of one clip.

    Args:
        wave32k: (L,) float waveform in [-1, 1] (a dataset wav read as int16 / 32768).
        apply_mix: apply the `5-wav32k` loudness mix first; False when the clip already holds it
            (dataset wavs written with `prepare.loudness.enabled`, official `5-wav32k` files).
        sample_rate: rate of `wave32k`.
    Returns:
        (ceil(L * 16000 / sample_rate),) float32 at 16 kHz, peaks near 1e3.
    """
    x = np.asarray(wave32k, dtype=np.float32)
    if apply_mix:
        x = peak_mix(x, WAV32K_PEAK, WAV32K_ALPHA)
    x = x * np.float32(HUBERT_INPUT_SCALE)
    return resample(x, sample_rate, HUBERT_SAMPLE_RATE)


def align_to_spec(ssl: np.ndarray, n_frames: int) -> np.ndarray:
    """Apply the official one-frame rule so that the features have the spectrogram's frame count.

    Args:
        ssl: (C, T) features.
        n_frames: spectrogram frames of the same clip.
    Returns:
        (C, n_frames): `ssl` itself when T == n_frames, else `ssl` with its last frame repeated once
        when T == n_frames - 1 (official replicate pad, computed in float32 then cast back).
    Raises:
        FeatureAlignmentError: any other difference (the official loader would pad once and leave a
            mismatch; here it means the features were not computed from this audio).
    """
    if ssl.ndim != 2:
        raise FeatureAlignmentError(f"features must be (channels, frames), got shape {tuple(ssl.shape)}")
    t = ssl.shape[1]
    if t == n_frames:
        return ssl
    if t == n_frames - 1 and t > 0:
        padded = np.concatenate([ssl.astype(np.float32), ssl[:, -1:].astype(np.float32)], axis=1)
        return padded.astype(ssl.dtype)
    raise FeatureAlignmentError(
        f"HuBERT features have {t} frames but the spectrogram has {n_frames}; only a difference of one "
        "frame is expected (the features were not computed from this audio)"
    )


# ------------------------------------------------------------------------------------------ loading
@dataclass
class LoadedHubert:
    """A HuBERT model ready for `HubertFeaturizer`.

    Attributes:
        model: `transformers.HubertModel` in eval mode (fp32, on the CPU until a featurizer moves it).
        path: the folder it came from.
        random: True for a `random-tiny` model (pipeline check only).
        hidden_size: feature size (768 for chinese-hubert-base).
    """

    model: Any
    path: Path
    random: bool
    hidden_size: int


def _read_config(path: Path) -> dict[str, Any]:
    hint = "--hubert takes the chinese-hubert-base folder holding config.json and the weights"
    return read_model_config(path, "HuBERT", HubertLoadError, hint)


def check_hubert_folder(path: Path | str, hidden_size: int = 768) -> dict[str, Any]:
    """Validate a HuBERT folder without loading the weights; returns its config.json.

    Raises:
        HubertLoadError: missing folder, a file instead of a folder, no/invalid config.json, a model
            that is not HuBERT, a hidden size other than `hidden_size`, no weight file.
    """
    path = Path(path)
    if not path.exists():
        raise HubertLoadError(
            f"HuBERT folder not found: {path} (give --hubert DIR with chinese-hubert-base, run "
            f"`gsv-train download-pretrained`, or use '{RANDOM_TINY}' for a pipeline check)"
        )
    if not path.is_dir():
        raise HubertLoadError(
            f"{path} is a file; --hubert takes the folder holding config.json and the weights"
        )
    data = _read_config(path)
    model_type = data.get("model_type")
    if model_type != "hubert":
        raise HubertLoadError(
            f"{path} holds a {model_type!r} model, not HuBERT (config.json model_type); "
            "SoVITS v2 needs chinese-hubert-base"
        )
    size = data.get("hidden_size")
    if size != hidden_size:
        raise HubertLoadError(
            f"{path}: HuBERT hidden size is {size}, expected {hidden_size} (prepare.features.hidden_size); "
            "SoVITS v2 needs the 768-d chinese-hubert-base"
        )
    if not any((path / name).is_file() for name in _WEIGHT_FILES):
        raise HubertLoadError(f"{path} has no weights ({' / '.join(_WEIGHT_FILES)})")
    return data


def load_hubert(path: Path | str, hidden_size: int = 768, *, verify: bool = True) -> LoadedHubert:
    """Load an HF-format HuBERT folder offline (`HubertModel.from_pretrained(..., local_files_only=True)`).

    `.bin` weights are read by transformers with `torch.load(weights_only=True)` (no arbitrary
    unpickling). Missing or shape-mismatched weights are an error (they would be random); weights the
    model does not use are logged with their names.

    Args:
        path: the model folder.
        hidden_size: required hidden size.
        verify: run one short input through both the batched path and the model's own forward and
            require the same result (guards against a transformers version whose internals differ).
    Raises:
        HubertLoadError: see `check_hubert_folder`, plus unreadable or incomplete weights.
    """
    path = Path(path)
    check_hubert_folder(path, hidden_size)
    from transformers import HubertModel

    try:
        loaded_pair: Any = HubertModel.from_pretrained(
            str(path), local_files_only=True, output_loading_info=True
        )
    except pickle.UnpicklingError as exc:  # refused by torch's restricted unpickler: one line, ours
        from gptsovits_train.checkpoints.serialization import unpickling_error

        raise HubertLoadError(str(unpickling_error(str(path / "pytorch_model.bin"), exc))) from None
    except (OSError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HubertLoadError(f"cannot load HuBERT from {path}: {first}") from None
    model, info = loaded_pair
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(str(k) for k in (info.get("mismatched_keys") or []))
    unexpected = sorted(info.get("unexpected_keys") or [])
    if missing or mismatched:
        bad = missing + mismatched
        raise HubertLoadError(
            f"{path}: {len(missing)} weights missing and {len(mismatched)} of the wrong shape "
            f"(e.g. {', '.join(bad[:3])}); the folder does not hold a complete HuBERT checkpoint"
        )
    if unexpected:
        LOG.warning(
            "%s: %d weights in the checkpoint are not used by HubertModel: %s%s",
            path,
            len(unexpected),
            ", ".join(unexpected[:5]),
            " ..." if len(unexpected) > 5 else "",
        )
    model.eval()
    model.requires_grad_(False)
    is_random = (path / RANDOM_MARKER).is_file()
    loaded = LoadedHubert(model=model, path=path, random=is_random, hidden_size=hidden_size)
    if verify:
        _verify_batched_path(loaded)
    return loaded


def _verify_batched_path(loaded: LoadedHubert) -> None:
    import torch

    gen = torch.Generator().manual_seed(0)
    wave = (torch.randn(6400, generator=gen) * 100.0).numpy()  # 0.4 s at 16 kHz
    feats = HubertFeaturizer(loaded, device="cpu", fp16=False)
    ours = feats.forward([wave], torch.float32)[0]
    with torch.no_grad():
        ref = loaded.model(torch.from_numpy(wave)[None]).last_hidden_state[0]
    err = float((ours - ref).abs().max())
    if not err <= 1e-3 * max(1.0, float(ref.abs().max())):
        raise HubertLoadError(
            f"{loaded.path}: the per-clip encoder path differs from HubertModel.forward by {err:.3g} "
            "with this transformers version; please report it"
        )


def model_digest(path: Path | str) -> str:
    """sha256 over config.json and the weight files of a model folder (which model made the features)."""
    path = Path(path)
    h = hashlib.sha256()
    for name in ("config.json", *_WEIGHT_FILES):
        f = path / name
        if not f.is_file():
            continue
        h.update(name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    if path.is_dir():
        for shard in sorted(path.glob("*-of-*.safetensors")) + sorted(path.glob("pytorch_model-*-of-*.bin")):
            h.update(shard.name.encode())
            with open(shard, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------- random-tiny
def random_hubert_config(hidden_size: int = 768) -> Any:
    """A small HuBERT config: HuBERT-base strides/kernels (so 50 Hz and the same frame count), the
    requested hidden size, 2 encoder layers, narrow convolutions. Fast on a CPU; a pipeline check only."""
    from transformers import HubertConfig

    return HubertConfig(
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=12 if hidden_size % 12 == 0 else 1,
        intermediate_size=1024,
        conv_dim=(64, 64, 64, 64, 64, 64, 64),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=16 if hidden_size % 16 == 0 else 1,
        feat_extract_norm="group",
        do_stable_layer_norm=False,
    )


def ensure_random_hubert(folder: Path | str, hidden_size: int = 768, seed: int = 0) -> Path:
    """Build the seeded random HuBERT once and save it in HF format under `folder` (reused afterwards).

    The folder holds a `gsv_random_hubert.json` marker, so every later load knows the model is random.
    Written to a temporary folder first, then renamed (a crash leaves no half model).
    """
    import torch
    from transformers import HubertModel

    folder = Path(folder)
    if (folder / RANDOM_MARKER).is_file() and (folder / "config.json").is_file():
        try:
            check_hubert_folder(folder, hidden_size)
            return folder
        except HubertLoadError as exc:
            LOG.warning("rebuilding the random HuBERT in %s (%s)", folder, exc)

    def write(tmp: Path) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = HubertModel(random_hubert_config(hidden_size)).eval()
        model.save_pretrained(str(tmp))
        marker = {"random": True, "seed": seed, "hidden_size": hidden_size, "notice": RANDOM_NOTICE}
        (tmp / RANDOM_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")

    write_folder_atomically(folder, write)
    LOG.info("built a random HuBERT in %s (pipeline check only)", folder)
    return folder


# ---------------------------------------------------------------------------------------- featurizer
def resolve_device(name: str) -> torch.device:
    """`auto` → cuda when available, else cpu; `cuda` without a GPU is an error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GsvError(f"--device cuda, but torch {torch.__version__} sees no CUDA device; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise GsvError(f"unknown device {name!r} (auto, cpu or cuda)")
    return torch.device(name)


class HubertFeaturizer:
    """Runs a HuBERT model over clips, batched, with the fp16 → fp32 retry.

    Args:
        loaded: a model from `load_hubert`.
        device: "auto", "cpu", "cuda" or a torch.device.
        fp16: use half precision on CUDA (ignored on CPU).
    """

    def __init__(self, loaded: LoadedHubert, device: str | torch.device = "auto", fp16: bool = True) -> None:
        import torch

        self.loaded = loaded
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.half = bool(fp16 and self.device.type == "cuda")
        self.dtype = torch.float16 if self.half else torch.float32
        self.model = loaded.model.to(device=self.device, dtype=self.dtype)
        self._fp32_model: Any = None
        #: clips recomputed in fp32 after a non-finite fp16 output, and clips still non-finite in fp32
        self.n_retried = 0
        self.n_failed = 0

    def _model_for(self, dtype: torch.dtype) -> Any:
        import torch

        if dtype == self.dtype:
            return self.model
        if dtype != torch.float32:
            raise ValueError(f"unsupported dtype {dtype}")
        if self._fp32_model is None:
            self._fp32_model = copy.deepcopy(self.model).float()
        return self._fp32_model

    def forward(self, waves16: Sequence[np.ndarray], dtype: torch.dtype) -> list[torch.Tensor]:
        """One batched pass.

        Args:
            waves16: clips as (N_i,) float arrays at 16 kHz (output of `hubert_input`), N_i >= 400.
            dtype: compute dtype (the featurizer's, or float32 for the retry).
        Returns:
            per clip a (T_i, H) float32 CPU tensor, T_i = hubert_frames(N_i).
        """
        import torch

        model = self._model_for(dtype)
        with torch.no_grad():
            frames = []
            for w in waves16:
                x = torch.as_tensor(np.asarray(w, dtype=np.float32)).to(self.device, dtype)[None]
                conv = model.feature_extractor(x).transpose(1, 2)  # (1, T, C_conv)
                frames.append(model.feature_projection(conv)[0])  # (T, H)
            lengths = [f.shape[0] for f in frames]
            if len(frames) == 1:
                out = model.encoder(frames[0][None]).last_hidden_state
            else:
                hidden = frames[0].new_zeros(len(frames), max(lengths), frames[0].shape[1])
                mask = torch.zeros(len(frames), max(lengths), dtype=torch.bool, device=self.device)
                for i, f in enumerate(frames):
                    hidden[i, : f.shape[0]] = f
                    mask[i, : f.shape[0]] = True
                out = model.encoder(hidden, attention_mask=mask).last_hidden_state
            return [out[i, :n].float().cpu() for i, n in enumerate(lengths)]

    def __call__(self, waves16: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        """Features of a batch of clips, with the fp32 retry for non-finite fp16 outputs.

        Args:
            waves16: (N_i,) float arrays at 16 kHz, N_i >= 400 samples.
        Returns:
            per clip a (H, T_i) float32 array (the official (1, 768, T) without the batch axis), or None
            when the output is not finite even in fp32.
        """
        import torch

        for w in waves16:
            if len(w) < HUBERT_WINDOW:
                raise ValueError(f"clip of {len(w)} samples at 16 kHz is shorter than HuBERT's window")
        first = [o.T.numpy() for o in self.forward(waves16, self.dtype)]
        outs: list[np.ndarray | None] = []
        for i, feats in enumerate(first):
            result: np.ndarray | None = feats
            if not np.isfinite(feats).all():
                if self.half:
                    self.n_retried += 1
                    LOG.warning("non-finite fp16 HuBERT output; recomputing the clip in fp32")
                    result = self.forward([waves16[i]], torch.float32)[0].T.numpy()
                if result is not None and not np.isfinite(result).all():
                    self.n_failed += 1
                    result = None
            outs.append(result)
        return outs


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of up to `batch_size` clips of similar length (sorted, longest first)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def expected_frames(n_samples_32k: int, sample_rate: int = 32000) -> int:
    """HuBERT frames of a clip of `n_samples_32k` samples at `sample_rate` (after the 16 kHz resample)."""
    return hubert_frames(math.ceil(n_samples_32k * HUBERT_SAMPLE_RATE / sample_rate))
