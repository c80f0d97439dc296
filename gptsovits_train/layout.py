"""Every on-disk path of a prepared dataset and of a training run, in one place.

Dataset folder (written by `gsv-train prepare`)::

    <dataset>/
      manifest.jsonl          one JSON object per clip (see `data.manifest.Clip`)
      report.json             counts, minutes per split, duration stats, skipped sources with reasons
      report.png              duration histogram by split
      prepare_config.yaml     the resolved prepare configuration
      transcripts_template.list   (--slice-only) official `.list` with empty text, to fill in
      wavs/<id>.wav           32 kHz mono int16 clips
      spec/<id>.npy           linear spectrogram (1025, T) float16, T = floor(samples / 640)
      ssl/<id>.npy            HuBERT content features (768, T) float16, aligned to the spectrogram
      semantic/<id>.npy       (GPT stage) 25 Hz semantic codes (T_hubert // 2,) int64, from ssl_proj + RVQ
      bert/<id>.npy           (GPT stage, zh clips) BERT features (1024, n_phones) float16
      .work/                  per-source progress records that make a second run resume
      .work/features.json     the HuBERT model that made ssl/ (digest; random-tiny flag)
      .work/semantic.json     the ssl_proj + quantizer that made semantic/ (digest; random-tiny flag)
      .work/bert.json         the BERT model that made bert/ (digest; random-tiny flag)
      .work/random-bert/      the seeded random BERT of `random-tiny` runs (pipeline check only)
      .work/random-hubert/    the seeded random HuBERT of `random-tiny` runs (pipeline check only)
      .work/asr/<id>.json     ASR results (text, language) of clips that had no transcript
      .work/official_import.json  the official experiment folder a `--from-official` dataset came from

Run folder (written by `gsv-train fit`)::

    <run>/
      config.yaml             the resolved fit configuration
      metrics.jsonl           one event per logged step and per validation
      summary.json            best epoch, best/after-reload validation loss, stop reason, ...
      curves.png              train/val mel loss per epoch, best epoch marked, lr on a second axis
      tb/                     TensorBoard events
      checkpoints/last.pt     latest state (resume point)
      checkpoints/best.pt     best validation state
      checkpoints/epoch_XXXX.pt   top-k by validation loss
      exports/                `export-best` output
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DatasetLayout:
    """Paths inside a dataset folder made by `prepare`."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.jsonl"

    @property
    def report_json(self) -> Path:
        return self.root / "report.json"

    @property
    def report_png(self) -> Path:
        return self.root / "report.png"

    @property
    def config(self) -> Path:
        return self.root / "prepare_config.yaml"

    @property
    def list_template(self) -> Path:
        return self.root / "transcripts_template.list"

    @property
    def wavs_dir(self) -> Path:
        return self.root / "wavs"

    @property
    def spec_dir(self) -> Path:
        return self.root / "spec"

    @property
    def ssl_dir(self) -> Path:
        return self.root / "ssl"

    @property
    def semantic_dir(self) -> Path:
        return self.root / "semantic"

    @property
    def bert_dir(self) -> Path:
        return self.root / "bert"

    @property
    def work_dir(self) -> Path:
        return self.root / ".work"

    def wav(self, clip_id: str) -> Path:
        return self.wavs_dir / f"{clip_id}.wav"

    def spec(self, clip_id: str) -> Path:
        return self.spec_dir / f"{clip_id}.npy"

    def ssl(self, clip_id: str) -> Path:
        return self.ssl_dir / f"{clip_id}.npy"

    def semantic(self, clip_id: str) -> Path:
        """25 Hz semantic codes of one clip (GPT stage): 1-D integers, length T_hubert // 2."""
        return self.semantic_dir / f"{clip_id}.npy"

    def bert(self, clip_id: str) -> Path:
        """BERT features of one zh clip (GPT stage): (1024, n_phones) float16."""
        return self.bert_dir / f"{clip_id}.npy"

    def source_record(self, source_key: str) -> Path:
        """Progress record of one source file (its clips are done when this exists)."""
        return self.work_dir / "sources" / f"{source_key}.json"

    @property
    def features_stamp(self) -> Path:
        """Which HuBERT model made `ssl/*.npy` (features of another model are recomputed, not reused)."""
        return self.work_dir / "features.json"

    @property
    def semantic_stamp(self) -> Path:
        """Which ssl_proj + quantizer made `semantic/*.npy` (codes of other weights are recomputed)."""
        return self.work_dir / "semantic.json"

    @property
    def bert_stamp(self) -> Path:
        """Which BERT model made `bert/*.npy`."""
        return self.work_dir / "bert.json"

    @property
    def random_bert_dir(self) -> Path:
        """The seeded random BERT of `prepare.bert.model: random-tiny` (pipeline checks only)."""
        return self.work_dir / "random-bert"

    @property
    def random_hubert_dir(self) -> Path:
        """The seeded random HuBERT of `prepare.features.hubert: random-tiny` (pipeline checks only)."""
        return self.work_dir / "random-hubert"

    def asr_record(self, clip_id: str) -> Path:
        """ASR result of one clip (text + language), so a resumed run does not transcribe it again."""
        return self.work_dir / "asr" / f"{clip_id}.json"

    @property
    def import_stamp(self) -> Path:
        """Where `prepare --from-official` records the official experiment folder it imported."""
        return self.work_dir / "official_import.json"

    def relative(self, path: Path) -> str:
        """`path` relative to the dataset root, with forward slashes (as stored in the manifest)."""
        return Path(path).relative_to(self.root).as_posix()


@dataclass(frozen=True)
class RunLayout:
    """Paths inside a run folder made by `fit`."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def tb_dir(self) -> Path:
        return self.root / "tb"

    @property
    def ckpt_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.ckpt_dir / "last.pt"

    @property
    def best(self) -> Path:
        return self.ckpt_dir / "best.pt"

    def epoch_ckpt(self, epoch: int) -> Path:
        return self.ckpt_dir / f"epoch_{epoch:04d}.pt"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"
