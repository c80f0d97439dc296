"""Speaker-verification (sv) features of SoVITS v2Pro/v2ProPlus, as the official `7-sv_cn` stage makes them.

Official recipe (`prepare_datasets/2-get-sv.py`, facts `v2pro-facts.md` §1-2), per clip:

1. the `5-wav32k` training copy read as int16 / 32768 (our `wavs/<id>.wav` holds that mix when
   `prepare.loudness.enabled`; otherwise the mix is applied here in float, without the int16 rounding);
2. resampled 32 → 16 kHz with torchaudio's default windowed-sinc `Resample` (`audio.resample`), in fp32;
3. 80-bin Kaldi fbank (`audio.kaldi_fbank`), no normalisation;
4. ERes2NetV2 `forward3` (`models.eres2netv2`): a `(20480,)` vector, the time mean of the fused map.

Precision: on CUDA with `prepare.features.fp16` the model (BatchNorm statistics included), the 16 kHz
wave, the fbank and the network run in fp16 and the feature is stored as float16, as the official
`is_half`; on the CPU everything is fp32. Each clip runs alone (as official): padding clips into a batch
would change every clip's time mean.

The network's embedding head (`ERes2NetV2.embed`, 192-d) also gives `speaker_embedding`, used by the
`val/spk_sim` validation metric (`train/spk_sim.py`).

Models: `load_sv_model(spec)` takes the official checkpoint `pretrained_eres2netv2w24s4ep4.ckpt` (a plain
state dict, loaded with the safe loader and a strict key check: all 1001 keys, shapes equal; only the
BatchNorm `num_batches_tracked` counters may be absent, as torch's strict load allows), or `random-tiny`:
a small seeded random ERes2NetV2 built in memory (`feature_size` 1280, pipeline checks only — such
features make no usable voice).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gptsovits_train.audio.kaldi_fbank import FRAME_LENGTH, kaldi_fbank
from gptsovits_train.audio.loudness import peak_mix
from gptsovits_train.audio.resample import sinc_resample
from gptsovits_train.errors import CheckpointError, GsvError
from gptsovits_train.features.hubert import RANDOM_TINY, WAV32K_ALPHA, WAV32K_PEAK, resolve_device

if TYPE_CHECKING:
    import torch

    from gptsovits_train.models.eres2netv2 import ERes2NetV2, ERes2NetV2Config

LOG = logging.getLogger(__name__)

SV_SAMPLE_RATE = 16000
#: seed of the `random-tiny` sv model's weights (`seeded_random_state`)
RANDOM_SV_SEED = 1234
SV_RANDOM_NOTICE = (
    "speaker-verification features come from a RANDOM ERes2NetV2 (random-tiny): this run checks the "
    "pipeline and does not make a usable voice; use --sv FILE with pretrained_eres2netv2w24s4ep4.ckpt "
    "(gsv-train download-pretrained --version v2Pro) for real training"
)
#: the official checkpoint's file name (facts §7)
SV_CHECKPOINT_NAME = "pretrained_eres2netv2w24s4ep4.ckpt"


class SvLoadError(GsvError):
    """The sv weights file is missing, unreadable, or not the official ERes2NetV2 state dict."""


def random_tiny_config() -> ERes2NetV2Config:
    """Structure of the `random-tiny` sv model: one block per layer, 8 stem channels (1280-d feature)."""
    from gptsovits_train.models.eres2netv2 import ERes2NetV2Config

    return ERes2NetV2Config(
        base_width=16, scale=2, expansion=2, num_blocks=(1, 1, 1, 1), m_channels=8, embedding_size=32
    )


@dataclass
class LoadedSv:
    """An sv model ready to run.

    Attributes:
        model: ERes2NetV2 in eval mode (fp32, CPU until a featurizer moves it).
        source: the weights file, or `random-tiny`.
        random: True for the random-tiny model.
        digest: sha256 of the weights file (random-tiny: of its structure and seed); identifies which
            model made a dataset's features.
    """

    model: ERes2NetV2
    source: str
    random: bool
    digest: str

    @property
    def feature_size(self) -> int:
        return self.model.cfg.feature_size


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _strict_key_problems(model: ERes2NetV2, state: dict[str, object]) -> list[str]:
    """Why `state` does not fit `model` exactly (missing / unexpected / wrong shape); [] when it does."""
    import torch

    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
        for k, v in state.items()
        if k in expected and isinstance(v, torch.Tensor) and tuple(v.shape) != tuple(expected[k].shape)
    ]
    not_tensor = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    problems = []
    for what, keys in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("of the wrong shape", wrong),
        ("not tensors", not_tensor),
    ):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            problems.append(f"{len(keys)} keys {what} ({', '.join(keys[:3])}{more})")
    return problems


@dataclass(frozen=True)
class SvModelId:
    """Which sv model a setting names, known without loading it (for the dataset stamp)."""

    source: str
    digest: str
    random: bool
    feature_size: int


def _missing(path: Path) -> SvLoadError:
    return SvLoadError(
        f"speaker-verification weights not found: {path} (give the official {SV_CHECKPOINT_NAME}; "
        "`gsv-train download-pretrained --version v2Pro` fetches it; "
        f"'{RANDOM_TINY}' for a pipeline check)"
    )


def sv_model_id(spec: str | Path) -> SvModelId:
    """Identify `spec` (a weights file: its sha256, read but not unpickled; or `random-tiny`).

    Raises:
        SvLoadError: the file does not exist.
    """
    if str(spec) == RANDOM_TINY:
        cfg = random_tiny_config()
        digest = hashlib.sha256(f"random-tiny:{cfg.to_dict()}:{RANDOM_SV_SEED}".encode()).hexdigest()
        return SvModelId(RANDOM_TINY, digest, True, cfg.feature_size)
    from gptsovits_train.models.eres2netv2 import ERes2NetV2Config

    path = Path(spec).expanduser()
    if not path.is_file():
        raise _missing(path)
    return SvModelId(str(path.absolute()), _file_digest(path), False, ERes2NetV2Config().feature_size)


def load_sv_model(spec: str | Path) -> LoadedSv:
    """Load the official ERes2NetV2 checkpoint, or build the `random-tiny` model.

    Raises:
        SvLoadError: missing file, unsafe/corrupt file, not a flat state dict, or keys/shapes that are not
            exactly the official 1001 (a `module.` prefix or a missing `seg_1` is refused, as by the
            official strict load).
    """
    from gptsovits_train.checkpoints.serialization import load_torch_file
    from gptsovits_train.models.eres2netv2 import ERes2NetV2, seeded_random_state

    if str(spec) == RANDOM_TINY:
        model = ERes2NetV2(random_tiny_config())
        model.load_state_dict(seeded_random_state(model, RANDOM_SV_SEED))
        ident = sv_model_id(RANDOM_TINY)
        return LoadedSv(
            model=model.eval().requires_grad_(False), source=RANDOM_TINY, random=True, digest=ident.digest
        )
    path = Path(spec).expanduser()
    if not path.is_file():
        raise _missing(path)
    try:
        state = load_torch_file(path)
    except CheckpointError as exc:
        raise SvLoadError(f"cannot read the speaker-verification weights: {exc}") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise SvLoadError(
            f"{path}: expected a flat ERes2NetV2 state dict (the official {SV_CHECKPOINT_NAME}), "
            f"got a {type(state).__name__}"
        )
    model = ERes2NetV2()
    problems = _strict_key_problems(model, state)
    if problems:
        raise SvLoadError(
            f"{path} is not the official ERes2NetV2(w24 s4 ep4) state dict: {'; '.join(problems)}"
        )
    model.load_state_dict(state)  # strict; the check above already named any difference
    return LoadedSv(
        model=model.eval().requires_grad_(False),
        source=str(path.absolute()),
        random=False,
        digest=_file_digest(path),
    )


def sv_wave(wave32k: np.ndarray, *, apply_mix: bool) -> np.ndarray:
    """The official sv input at 32 kHz: `wave32k` (L,) in [-1, 1], with the `5-wav32k` loudness mix
    applied when the clip does not already hold it. Returns (L,) float32."""
    x = np.asarray(wave32k, dtype=np.float32)
    return peak_mix(x, WAV32K_PEAK, WAV32K_ALPHA) if apply_mix else x


class SvFeaturizer:
    """Runs an sv model over single clips (official: one clip per forward).

    Args:
        loaded: a model from `load_sv_model`.
        device: "auto", "cpu", "cuda" or a torch.device.
        fp16: half precision on CUDA (ignored on the CPU), as the official `is_half`.
    """

    def __init__(self, loaded: LoadedSv, device: str | torch.device = "cpu", fp16: bool = True) -> None:
        import torch

        self.loaded = loaded
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.half = bool(fp16 and self.device.type == "cuda")
        self.dtype = torch.float16 if self.half else torch.float32
        self.model = loaded.model.to(device=self.device, dtype=self.dtype)

    def fbank(self, wave32k: np.ndarray | torch.Tensor, sample_rate: int = 32000) -> torch.Tensor:
        """(L,) wave at `sample_rate` → (T, 80) fbank in the compute dtype (resampled in fp32 first).

        Raises:
            ValueError: shorter than one 25 ms fbank frame at 16 kHz.
        """
        import torch

        x = torch.as_tensor(wave32k, dtype=torch.float32).to(self.device)
        w16 = sinc_resample(x, sample_rate, SV_SAMPLE_RATE)
        if w16.shape[-1] < FRAME_LENGTH:
            raise ValueError(
                f"too short for the sv fbank ({w16.shape[-1]} samples at 16 kHz, need {FRAME_LENGTH})"
            )
        return kaldi_fbank(w16.to(self.dtype))

    def features(self, wave32k: np.ndarray | torch.Tensor, sample_rate: int = 32000) -> np.ndarray:
        """The official sv feature of one clip: `(feature_size,)` (20480), float16 in fp16 mode else float32.

        Raises:
            ValueError: too short for one fbank frame.
        """
        import torch

        with torch.no_grad():
            out = self.model.forward3(self.fbank(wave32k, sample_rate)[None])[0]
        return out.cpu().numpy()

    def embedding(self, wave: np.ndarray | torch.Tensor, sample_rate: int = 32000) -> torch.Tensor:
        """Speaker embedding `(embedding_size,)` float32 CPU (TSTP + `seg_1`) of one clip.

        Raises:
            ValueError: too short for the embedding's statistics (fewer than 9 fbank frames, ~0.1 s).
        """
        import torch

        fb = self.fbank(wave, sample_rate)
        if fb.shape[0] < 9:
            raise ValueError(f"too short for a speaker embedding ({fb.shape[0]} fbank frames, need 9)")
        with torch.no_grad():
            return self.model.embed(fb[None])[0].float().cpu()
