"""The one typed configuration of gsv-train, loaded from YAML.

Sections:
- `audio`: spectrogram/mel parameters (the official `data` section of s2.json).
- `prepare`: slicing, loudness, split, features, text (used by `gsv-train prepare`).
- `model`: SoVITS generator/discriminator hyper-parameters (the official `model` section).
- `train`: optimisation, validation, early stopping, scheduler, checkpoints (used by `gsv-train fit`).
- `stages`: what `gsv-train fit` trains (`sovits`, `gpt`); `gpt`: the GPT (s1) stage's own settings.

Every section rejects unknown keys; errors name the full key path (`train.batch_sizee`).
Defaults are the official v2 values; `configs/base.yaml` documents every field.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key path."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------------------------- audio
class AudioConfig(_Section):
    """Spectrogram and mel parameters (official `data` section; change them only for tiny test models)."""

    sampling_rate: int = 32000
    filter_length: int = 2048
    hop_length: int = 640
    win_length: int = 2048
    n_mel_channels: int = 128
    mel_fmin: float = 0.0
    mel_fmax: float | None = None
    max_wav_value: float = 32768.0

    @property
    def n_freq(self) -> int:
        return self.filter_length // 2 + 1


# ------------------------------------------------------------------------------------------- prepare
class SlicerConfig(_Section):
    """Official silence slicer (web-UI defaults) plus a maximum clip length."""

    threshold_db: float = -34.0
    min_length_ms: int = Field(4000, ge=1)
    min_interval_ms: int = Field(300, ge=1)
    hop_size_ms: int = Field(10, ge=1)
    max_sil_kept_ms: int = Field(500, ge=0)
    max_clip_seconds: float = Field(20.0, gt=0)

    @model_validator(mode="after")
    def _check_order(self) -> SlicerConfig:
        if not self.min_length_ms >= self.min_interval_ms >= self.hop_size_ms:
            raise ValueError("need min_length_ms >= min_interval_ms >= hop_size_ms")
        if self.max_sil_kept_ms < self.hop_size_ms:
            raise ValueError("need max_sil_kept_ms >= hop_size_ms")
        return self


class LoudnessConfig(_Section):
    """Official loudness handling (see `audio/loudness.py`).

    Slicing post-processing (tools/slice_audio.py), applied to chunks cut by the slicer: divide by the
    peak if it exceeds 1, then `chunk/peak * (max_peak*alpha) + (1-alpha)*chunk`.
    Training copy (2-get-hubert-wav32k.py, `5-wav32k`), applied to every clip of the dataset (not to
    `--slice-only` output, which is an intermediate like the official slicer output):
    `x/peak * (wav32k_peak*wav32k_alpha) + (1-wav32k_alpha)*x`.
    `enabled: false` keeps the level as recorded (peaks above 1 are still divided by the peak).
    """

    enabled: bool = True
    max_peak: float = Field(0.9, gt=0, le=1.0)
    alpha: float = Field(0.25, ge=0, le=1.0)
    wav32k_peak: float = Field(0.95, gt=0, le=1.0)
    wav32k_alpha: float = Field(0.5, ge=0, le=1.0)


class SplitConfig(_Section):
    val_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = 1234


class FeaturesConfig(_Section):
    """HuBERT content features (`ssl/<id>.npy`, see `gptsovits_train.features`).

    `hubert`: a local HF-format folder of chinese-hubert-base, or `random-tiny` to build a small seeded
    random HuBERT in the dataset's `.work/random-hubert/` (pipeline check only: such features make no
    usable voice), or null to skip features.
    `device`: `auto` uses CUDA when torch sees a GPU. `fp16`: half precision on CUDA, as the official
    preparation does (`is_half`); a clip whose fp16 output is not finite is recomputed in fp32. CPU always
    runs fp32. `batch_size`: clips per forward pass (clips are sorted by length and padded; the result
    is the same as one clip at a time, up to float rounding). `hidden_size`: the feature size the model
    must have (768 for SoVITS v2).
    """

    hubert: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    fp16: bool = True
    batch_size: int = Field(8, ge=1)
    hidden_size: int = Field(768, ge=1)
    # v2Pro/v2ProPlus speaker-verification features (`sv/<id>.npy`, official `7-sv_cn`): the official
    # ERes2NetV2 weights file (pretrained_eres2netv2w24s4ep4.ckpt), or `random-tiny` (a small seeded random
    # model, 1280-d features: pipeline check only), or null (no sv stage). Uses `device` and `fp16`.
    sv: str | None = None


class TextConfig(_Section):
    """Transcripts → phonemes (`gptsovits_train.text`, `data/phonemize.py`).

    `language`: language of transcripts that carry none (`auto` splits Mandarin/English by script).
    `max_phones`: a clip with more phones is skipped (too long a line for one clip).
    `official_prereplace`: apply the official data preparation's substitution `%` → `-`, `￥` → `,`
    before phonemisation (official default; it means percentages are not read as words).
    `zh_latin`: Latin words inside a Mandarin line: `split` phonemises them with the English frontend
    (as the official inference does for mixed text); `drop` deletes them as the official training
    preparation does (the clip keeps a warning).
    """

    language: Literal["zh", "en", "ja", "ko", "yue", "auto"] = "en"
    version: Literal["v1", "v2"] = "v2"
    max_phones: int = Field(1000, ge=1)
    official_prereplace: bool = True
    zh_latin: Literal["split", "drop"] = "split"


class SemanticConfig(_Section):
    """GPT stage: 25 Hz semantic codes (`semantic/<id>.npy`, see `gptsovits_train.features.semantic`).

    `model`: the SoVITS generator whose frozen `ssl_proj` + quantizer make the codes: an official pretrained
    s2G (`s2G2333k.pth`), an official export, or a gsv-train checkpoint/export (fine-tuning never changes
    these two parts, so all give the same codes); `random-tiny` for a seeded random one (pipeline check
    only); null = `train.pretrained_s2G`, else the s2G of `gsv-train download-pretrained` when present.
    `fp16`: compute in half precision on CUDA as the official `3-get-semantic.py` does on a half GPU
    (measured on the reference fixture: 1 of 49 and 1 of 35 codes differ from fp32); the default fp32
    gives the exact nearest codes on every device (official CPU behaviour). `batch_size`: clips per pass
    (the result does not depend on it).
    """

    model: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    fp16: bool = False
    batch_size: int = Field(16, ge=1)


class BertConfig(_Section):
    """GPT stage: BERT features of `zh` clips (`bert/<id>.npy`, see `gptsovits_train.features.bert`).

    `model`: a local Hugging Face folder of chinese-roberta-wwm-ext-large (config.json, tokenizer files,
    weights), `random-tiny` for a seeded random BERT built in the dataset's `.work/random-bert/` (pipeline
    check only: makes no usable voice), or null = the folder of `gsv-train download-pretrained` when
    present. `fp16`: half precision on CUDA as the official `is_half` (CPU always fp32). `batch_size`:
    sentences per forward pass (padded with an attention mask; same result as one at a time up to float
    rounding). `hidden_size`: the feature size the model must have (1024: the GPT's `bert_proj` input).
    """

    model: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    fp16: bool = True
    batch_size: int = Field(8, ge=1)
    hidden_size: int = Field(1024, ge=1)


PrepareStage = Literal["sovits", "gpt"]


def _sovits_only() -> list[PrepareStage]:
    return ["sovits"]


class PrepareConfig(_Section):
    slicer: SlicerConfig = SlicerConfig()
    loudness: LoudnessConfig = LoudnessConfig()
    split: SplitConfig = SplitConfig()
    features: FeaturesConfig = FeaturesConfig()
    text: TextConfig = TextConfig()
    min_clip_seconds: float = Field(0.6, gt=0)
    max_source_peak: float = Field(2.2, gt=0)
    # share of a source's samples in flat runs at full scale (audio/clipping.py): warn above / skip above
    clipping_warn_share: float = Field(0.001, ge=0, le=1)
    clipping_skip_share: float = Field(0.25, ge=0, le=1)
    workers: int | None = Field(None, ge=1)
    spec_dtype: Literal["float16", "float32"] = "float16"
    # Training stages the dataset is prepared for. "sovits": clips, spectrograms, phonemes, HuBERT features.
    # "gpt" adds semantic codes (prepare.semantic) and BERT features of zh clips (prepare.bert); it needs
    # the HuBERT features (prepare.features.hubert).
    stages: list[PrepareStage] = Field(default_factory=_sovits_only, min_length=1)
    semantic: SemanticConfig = SemanticConfig()
    bert: BertConfig = BertConfig()


# --------------------------------------------------------------------------------------------- model
SoVITSVersion = Literal["v1", "v2", "v2Pro", "v2ProPlus"]

#: What each SoVITS version's official config (s2.json, s2v2Pro.json, s2v2ProPlus.json) changes from the
#: `ModelConfig` defaults (which are s2.json's). The one source of truth of the version presets: a
#: `model` section that names a version gets these values for every key it does not set itself.
MODEL_VERSION_PRESETS: dict[str, dict[str, Any]] = {
    "v1": {},
    "v2": {},
    "v2Pro": {"p_dropout": 0.0, "gin_channels": 1024},
    "v2ProPlus": {
        "p_dropout": 0.0,
        "gin_channels": 1024,
        "upsample_initial_channel": 768,
        "upsample_kernel_sizes": [20, 16, 8, 2, 2],
    },
}


class ModelConfig(_Section):
    """SoVITS generator hyper-parameters (official `model` section of s2.json); v2 defaults.

    `version` selects the official preset (`MODEL_VERSION_PRESETS`): keys the section leaves out take
    the preset's value, keys it sets win (`model: {version: v2Pro}` is the official v2Pro structure).
    """

    @model_validator(mode="before")
    @classmethod
    def _apply_version_preset(cls, data: Any) -> Any:
        if isinstance(data, dict):
            preset = MODEL_VERSION_PRESETS.get(str(data.get("version", "v2")), {})
            data = {**preset, **data}
        return data

    version: SoVITSVersion = "v2"
    inter_channels: int = 192
    hidden_channels: int = 192
    filter_channels: int = 768
    n_heads: int = 2
    n_layers: int = 6
    kernel_size: int = 3
    p_dropout: float = 0.1
    resblock: Literal["1", "2"] = "1"
    resblock_kernel_sizes: list[int] = [3, 7, 11]
    resblock_dilation_sizes: list[list[int]] = [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    upsample_rates: list[int] = [10, 8, 2, 2, 2]
    upsample_initial_channel: int = 512
    upsample_kernel_sizes: list[int] = [16, 16, 8, 2, 2]
    n_layers_q: int = 3
    use_spectral_norm: bool = False
    gin_channels: int = 512
    semantic_frame_rate: Literal["25hz", "50hz"] = "25hz"
    freeze_quantizer: bool = True
    n_speakers: int = 300
    segment_size: int = 20480
    ssl_dim: int = 768
    codebook_size: int = 1024
    # v2Pro/v2ProPlus: size of the speaker-verification feature (`sv_emb` input): 20480 for the official
    # ERes2NetV2; 1280 for datasets prepared with `prepare.features.sv: random-tiny` (tests, demo).
    sv_dim: int = Field(20480, ge=1)


# --------------------------------------------------------------------------------------------- train
#: A training batch size: items per optimizer step, or "auto" (the largest that fits; train/batch_fit.py).
BatchSize = Annotated[int, Field(ge=1)] | Literal["auto"]


class EarlyStoppingConfig(_Section):
    """Stop when the validation metric stops improving (see `train/early_stopping.py`)."""

    enabled: bool = True
    # SoVITS stage: val/mel | val/total | val/spk_sim (needs train.spk_sim_model; maximised, the others are
    # minimised); GPT stage (gpt.early_stopping): val/loss
    monitor: Literal["val/mel", "val/total", "val/spk_sim", "val/loss"] = "val/mel"
    patience: int = Field(5, ge=1)  # validations in a row without improvement
    min_delta: float = Field(1e-4, ge=0)  # an improvement must beat the best by more than this
    warmup_epochs: int = Field(0, ge=0)  # validations at epochs <= this never use up patience

    @property
    def mode(self) -> Literal["min", "max"]:
        """Direction of the monitor: val/spk_sim is maximised, the losses are minimised."""
        return "max" if self.monitor == "val/spk_sim" else "min"


class SchedulerConfig(_Section):
    """Learning-rate schedule of both optimizers (see `train/schedulers.py`)."""

    kind: Literal["plateau", "exponential"] = "plateau"
    factor: float = Field(0.5, gt=0, lt=1)  # plateau: lr multiplier
    patience: int = Field(3, ge=1)  # plateau: validations without improvement before a reduction
    min_lr: float = Field(1e-6, ge=0)  # plateau: floor of every param group's lr
    gamma: float = Field(0.999875, gt=0, le=1)  # exponential: official per-epoch decay


class TrainConfig(_Section):
    """`gsv-train fit`: data, optimisation (official s2 values), validation, checkpoints, logging.

    `configs/base.yaml` documents every field.
    """

    dataset: str | None = None  # folder written by `gsv-train prepare`
    pretrained_s2G: str | None = None  # official pretrained generator (s2G2333k.pth); null = random init
    pretrained_s2D: str | None = None  # official pretrained discriminator (s2D2333k.pth); null = random init
    seed: int = 1234
    device: Literal["auto", "cpu", "cuda"] = "auto"
    epochs: int = Field(100, ge=1)  # upper bound; early stopping usually ends the run sooner
    max_steps: int | None = Field(None, ge=1)  # stop after this many optimizer steps (smoke runs, benchmarks)
    # per process (per GPU under torchrun); "auto": the largest that fits the GPU (train/batch_fit.py)
    batch_size: BatchSize = 8
    batch_size_cap: int = Field(32, ge=1)  # the largest batch size "auto" may choose
    auto_batch_margin: float = Field(0.15, ge=0, lt=1)  # fraction of GPU memory "auto" leaves free
    learning_rate: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.8, 0.99)
    eps: float = 1e-9
    weight_decay: float = 0.01  # AdamW default, as official
    text_low_lr_rate: float = Field(0.4, gt=0)  # lr factor of enc_p.text_embedding/encoder_text/mrte
    c_mel: float = 45.0
    c_kl: float = 1.0
    c_fm: float = 1.0  # multiplies the official feature-matching loss (which already holds its 2x)
    c_gen: float = 1.0  # multiplies the adversarial generator loss
    # The discriminator exists only for training: its periods live here. null = official for model.version
    # (2,3,5,7,11; Pro: +17,23). Fewer periods make a smaller discriminator (CPU tests, the demo); [] keeps
    # the scale discriminator alone.
    discriminator_periods: list[int] | None = None
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    tf32: bool = True  # allow TF32 matmuls on NVIDIA GPUs (official: allowed)
    grad_clip: float | None = Field(None, gt=0)  # max total grad norm per optimizer; null = off (official)
    min_items_per_epoch: int = Field(100, ge=1)  # tiny datasets: an epoch repeats clips up to this
    num_workers: int = Field(2, ge=0)  # DataLoader worker processes
    # torch intra-op threads on CPU; null = cores per process minus DataLoader workers (at least 1), unless
    # OMP_NUM_THREADS is set. Spinning OpenMP threads that compete for cores make small CPU steps many times
    # slower (measured: demo 17 min with 2 threads on a busy 2-core machine, 96 s with 1).
    cpu_threads: int | None = Field(None, ge=1)
    bucket_boundaries: list[int] = [
        32,
        300,
        400,
        500,
        600,
        700,
        800,
        900,
        1000,
        1100,
        1200,
        1300,
        1400,
        1500,
        1600,
        1700,
        1800,
        1900,
    ]
    val_every: int = Field(1, ge=1)  # validate after epochs 1, 1+N, 1+2N, ... and the last one
    log_every: int = Field(10, ge=1)  # metrics.jsonl/TensorBoard step events every N steps
    keep_top_k: int = Field(3, ge=0)  # epoch_XXXX.pt files kept besides best.pt and last.pt
    nan_patience: int = Field(3, ge=1)  # non-finite steps in a row before a rollback
    nan_lr_factor: float = Field(0.5, gt=0, lt=1)  # lr multiplier applied at a rollback
    nan_max_rollbacks: int = Field(5, ge=0)  # give up (error) after this many rollbacks
    val_noise_scale: float = Field(0.0, ge=0)  # noise of the inference path in validation
    val_max_clips: int | None = Field(None, ge=1)  # validate on the first N validation clips only
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    tensorboard: bool = True
    val_audio_samples: int = Field(2, ge=0)  # validation clips whose audio/mels go to TensorBoard
    # report.html: the first N validation clips, heard at every validated epoch (0 = no audio in the report)
    listen_clips: int = Field(3, ge=0)
    # report audio under listen/: Ogg Vorbis 32 kHz (~0.5-0.6 MB per minute of audio) or 16-bit WAV (3.84 MB)
    listen_format: Literal["ogg", "wav"] = "ogg"
    # ERes2NetV2 speaker-verification weights (pretrained_eres2netv2w24s4ep4.ckpt, any SoVITS version) for
    # the `val/spk_sim` validation metric; `random-tiny` = seeded random model (plumbing tests); null = off
    spk_sim_model: str | None = None

    @model_validator(mode="after")
    def _check_spk_sim(self) -> TrainConfig:
        if self.early_stopping.monitor == "val/spk_sim" and not self.spk_sim_model:
            raise ValueError(
                "early_stopping.monitor val/spk_sim needs train.spk_sim_model (the sv weights file)"
            )
        return self

    @model_validator(mode="after")
    def _check_buckets(self) -> TrainConfig:
        b = self.bucket_boundaries
        if len(b) < 2 or any(x >= y for x, y in itertools.pairwise(b)) or b[0] < 1:
            raise ValueError("bucket_boundaries must be at least 2 strictly increasing positive frame counts")
        return self


# ---------------------------------------------------------------------------------------------- gpt
class GptModelConfig(_Section):
    """The GPT (s1) model: the official ``model`` section of ``s1longer-v2.yaml`` (values below are v2's).

    Official fields with no effect officially, and therefore not accepted here: ``linear_units`` (2048; the
    feed-forward width is always 4 x hidden_dim), ``dropout`` (0; the layers hard-code 0.1, which is our
    `layer_dropout`), ``random_bert`` (0; never read).
    """

    vocab_size: int = Field(1025, ge=2)  # semantic codes + EOS
    phoneme_vocab_size: int = Field(732, ge=1)  # 732 = v2 symbols, 512 = v1
    embedding_dim: int = Field(512, ge=1)  # must equal hidden_dim
    hidden_dim: int = Field(512, ge=1)
    head: int = Field(16, ge=1)
    n_layer: int = Field(24, ge=1)
    EOS: int = 1024  # must be vocab_size - 1
    layer_dropout: float = Field(0.1, ge=0, lt=1)  # official: hard-coded 0.1 (positions, attention, FFN)

    @model_validator(mode="after")
    def _check_shape(self) -> GptModelConfig:
        if self.vocab_size - 1 != self.EOS:
            raise ValueError(f"EOS must be vocab_size - 1 = {self.vocab_size - 1}")
        if self.embedding_dim != self.hidden_dim:
            raise ValueError("embedding_dim must equal hidden_dim (the official model adds them)")
        if self.hidden_dim % self.head:
            raise ValueError(f"hidden_dim {self.hidden_dim} is not divisible by head {self.head}")
        return self

    @classmethod
    def from_official(cls, model: dict[str, Any]) -> GptModelConfig:
        """From an official ``config["model"]`` dict (the official no-effect fields are dropped)."""
        fields = ("vocab_size", "phoneme_vocab_size", "embedding_dim", "hidden_dim", "head", "n_layer", "EOS")
        missing = [f for f in fields if f not in model]
        if missing:
            raise ValueError(f"official GPT config: model section lacks {missing}")
        return cls(**{f: int(model[f]) for f in fields})

    def to_official(self) -> dict[str, Any]:
        """The official ``model`` section (with the official no-effect fields at their v2 values)."""
        out = self.model_dump(exclude={"layer_dropout"})
        return {**out, "linear_units": 4 * self.hidden_dim, "dropout": 0, "random_bert": 0}


def _gpt_early_stopping() -> EarlyStoppingConfig:
    return EarlyStoppingConfig(monitor="val/loss")


class GptConfig(_Section):
    """`gsv-train fit` GPT (s1) stage. `configs/base.yaml` documents every field with its official value.

    The stage shares `train.dataset`, `train.seed`, `train.device`, the engine settings of `train`
    (val_every, log_every, keep_top_k, nan_*, tensorboard, num_workers, cpu_threads, max_steps) and the
    dataset's train/val split with the SoVITS stage (and `train.auto_batch_margin` for `batch_size: auto`);
    everything below is its own.
    Official s1longer-v2.yaml fields with no effect officially: ``optimizer.lr`` / ``lr_init`` /
    ``lr_end`` / ``warmup_steps`` / ``decay_steps`` (the effective LR is 0.01 for the first step, then
    0.002), ``train.gradient_clip`` (unused), ``data.max_eval_sample`` (no validation officially).
    """

    pretrained_s1: str | None = None  # official GPT weights to start from (s1bert25hz-...ckpt); null = random
    epochs: int = Field(15, ge=1)  # official: UI default 15 (yaml 20); early stopping usually ends sooner
    batch_size: BatchSize = 8  # official train.batch_size (yaml 8; the UI picks by GPU memory); or "auto"
    batch_size_cap: int = Field(32, ge=1)  # the largest batch size "auto" may choose
    official_batch_cap: bool = True  # official: batch = max(min(batch_size, epoch items // 4), 1)
    min_items_per_epoch: int = Field(100, ge=1)  # official: < 100 clips -> max(2, int(100/n)) visits/epoch
    max_sec: float = Field(54, gt=0)  # official data.max_sec: the dataset filters (facts §4)
    accumulation: Literal["official", "per_epoch"] = "per_epoch"
    accumulate_batches: int = Field(4, ge=1)  # official: 4 (hard-coded)
    text_mask: Literal["official", "per_item"] = "per_item"
    first_lr: float = Field(0.01, gt=0)  # official: ScaledAdam lr=0.01 (hard-coded), used by the 1st step
    lr: float = Field(0.002, gt=0)  # official: every later step (the scheduler pins 0.002)
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"  # official: 16-mixed on half GPUs, else 32
    val_batch_size: int = Field(8, ge=1)  # validation results do not depend on it
    early_stopping: EarlyStoppingConfig = Field(default_factory=_gpt_early_stopping)
    scheduler: SchedulerConfig = SchedulerConfig()  # plateau: a factor on top of first_lr / lr
    model: GptModelConfig = GptModelConfig()

    @field_validator("early_stopping", mode="before")
    @classmethod
    def _gpt_monitor_by_default(cls, value: Any) -> Any:
        """A `gpt.early_stopping` section that names no monitor watches the GPT's own metric, val/loss."""
        if isinstance(value, dict) and "monitor" not in value:
            return {**value, "monitor": "val/loss"}
        return value

    @model_validator(mode="after")
    def _check(self) -> GptConfig:
        if self.early_stopping.monitor != "val/loss":
            raise ValueError("early_stopping.monitor of the GPT stage must be val/loss")
        if self.scheduler.kind != "plateau":
            raise ValueError("scheduler.kind of the GPT stage must be plateau (the official LR has no decay)")
        return self


StageName = Literal["sovits", "gpt"]


def _default_stages() -> list[StageName]:
    return ["sovits"]


# -------------------------------------------------------------------------------------------- config
class Config(_Section):
    audio: AudioConfig = AudioConfig()
    prepare: PrepareConfig = PrepareConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    # stages `gsv-train fit` trains, in this order, each in its own subfolder of the run folder
    stages: list[StageName] = Field(default_factory=_default_stages, min_length=1)
    gpt: GptConfig = GptConfig()

    @model_validator(mode="after")
    def _check_stages(self) -> Config:
        if len(set(self.stages)) != len(self.stages):
            raise ValueError(f"stages lists a stage twice: {self.stages}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def digest(self) -> str:
        """sha256 of the canonical JSON form (stable across key order)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def _format_validation_error(err: ValidationError, origin: str) -> str:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"{origin}: unknown key '{path}'")
        else:
            lines.append(f"{origin}: '{path}': {e['msg']}")
    return "\n".join(lines)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse `a.b.c=value` (value in YAML syntax) into (["a","b","c"], value)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like 'section.key=value'")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML ({exc})") from exc
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each `a.b.c=value` override into a nested dict (creating sections as needed)."""
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{text}': '{'.'.join(parts[: i + 1])}' is not a section")
            node = child
        node[parts[-1]] = value
    return data


def config_from_dict(data: dict[str, Any], origin: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, origin)) from None


def load_config(path: Path | str | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults when `path` is None) and apply `a.b=value` overrides."""
    data: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        path = Path(path)
        origin = str(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not a readable YAML file ({exc})") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
        data = loaded
    if overrides:
        data = apply_overrides(data, overrides)
        origin = f"{origin} (+ --set overrides)"
    return config_from_dict(data, origin)
