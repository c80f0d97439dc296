"""`gsv-train prepare --from-official logs/<exp>`: import a folder made by the official preparation.

Reads (facts §1):

- `2-name2text.txt`: UTF-8, one clip per line, ``name \\t phones \\t word2ph \\t norm_text``; phones are
  space-separated symbols, word2ph the repr of a list of ints or `None`. Like the official loaders, a line
  without exactly 4 tab fields is skipped; here each such line is reported (file:line). When a name occurs
  twice the later line wins (official dict semantics), with a warning.
- `4-cnhubert/<name>.pt`: a torch tensor (1, 768, T) (fp16 or fp32), loaded with
  `torch.load(weights_only=True)` (no arbitrary unpickling).
- `5-wav32k/<name>`: int16 32 kHz mono WAV. `<name>` is the wav's basename with its extension.
- `7-sv_cn/<name>.pt` (v2Pro/v2ProPlus experiments, when the folder exists): the speaker-verification
  feature, a tensor (1, 20480) (float16 from the GPU, else float32), loaded the same safe way and stored
  as `sv/<id>.npy` (`(20480,)`, its dtype kept). With the folder present, a clip without its file is
  skipped and reported (the official loader drops it silently).
- GPT stage, when present: `6-name2semantic.tsv` (header `item_name\tsemantic_audio`, then
  ``name \t c1 c2 ...``; the unmerged part files `6-name2semantic-<i>.tsv` without header when the merged
  file is missing) → `semantic/<id>.npy` (int64); `3-bert/<name>.pt` (a (1024, n_phones) tensor, fp16 or
  fp32, read with `torch.load(weights_only=True)`) → `bert/<id>.npy` (float16). A clip whose codes or
  BERT features do not fit (code count other than `T_hubert // 2`, codes outside the codebook, BERT width
  or phone count other than the clip's) keeps its SoVITS data and loses only that part, with a warning;
  bad tsv lines are reported with file:line.

Like the official `TextAudioSpeakerLoader`, only names present in all three are used; every other name is
reported with what is missing. Per clip:

- the wav is copied byte for byte to `wavs/<id>.wav` when it is already 32 kHz mono 16-bit PCM WAV (else
  decoded, resampled to 32 kHz and written as such, with a warning), `<id>` = the name without its
  extension, made file-system safe (and unique);
- the linear spectrogram is computed from it (`data.source_clips.compute_spec`, float16 by default);
- the features are aligned to the spectrogram with the official one-frame rule (`features.align_to_spec`)
  and saved as (768, n_frames) float16;
- phone ids come from the official table of `prepare.text.version`; a phone outside it skips the clip
  (the official loader would drop it too);
- clips shorter than `prepare.min_clip_seconds` or of 54 s and more (the official loader's limit) are
  skipped.

The import has no model to run and is redone completely on every call (files are rewritten atomically;
files of clips that are no longer part of the import are removed). Language and speaker come from the
official `.list` when one is given (`list_file`), else the language is inferred from the phones and the
speaker is the experiment folder's name. `norm_text` is also used as the clip's `text` (the original
transcript is not part of the experiment folder).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gptsovits_train.config import Config
from gptsovits_train.data.manifest import Clip
from gptsovits_train.data.report import PrepareReport, write_dataset_outputs
from gptsovits_train.data.report_types import Skipped, WarningItem
from gptsovits_train.data.source_clips import compute_spec
from gptsovits_train.data.sources import safe_id
from gptsovits_train.data.split import SplitItem, assign_split
from gptsovits_train.data.stages import remove_unlisted
from gptsovits_train.errors import GsvError
from gptsovits_train.features.extract import FeatureStamp
from gptsovits_train.features.hubert import FeatureAlignmentError, align_to_spec
from gptsovits_train.features.sv_extract import SvStamp
from gptsovits_train.fileio import atomic_path, atomic_save_npy, atomic_write_json, atomic_write_text
from gptsovits_train.layout import DatasetLayout
from gptsovits_train.text import symbols as sym

if TYPE_CHECKING:
    import torch

LOG = logging.getLogger(__name__)

STAGE = "official-import"
NAME2TEXT = "2-name2text.txt"
HUBERT_DIR = "4-cnhubert"
SV_DIR = "7-sv_cn"
WAV_DIR = "5-wav32k"
BERT_DIR = "3-bert"
NAME2SEMANTIC = "6-name2semantic.tsv"
SEMANTIC_HEADER = "item_name\tsemantic_audio"
#: The official loader keeps clips with 0.6 < duration < 54 s.
MAX_SECONDS = 54.0
_LIST_LANGS = {"zh": "zh", "ja": "ja", "jp": "ja", "en": "en", "ko": "ko", "yue": "yue"}


@dataclass(frozen=True)
class Name2TextEntry:
    """One parsed line of `2-name2text.txt`."""

    name: str
    phones: list[str]
    word2ph: list[int] | None
    norm_text: str
    line: int


def parse_name2text(path: Path) -> tuple[dict[str, Name2TextEntry], list[Skipped], list[WarningItem]]:
    """Parse `2-name2text.txt` the way the official loaders read it, reporting what they silently drop.

    Returns:
        (entries by name, skipped lines, warnings). Blank lines are ignored without a report.
    """
    entries: dict[str, Name2TextEntry] = {}
    skipped: list[Skipped] = []
    warnings: list[WarningItem] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise GsvError(f"{path} is not UTF-8 ({exc})") from None
    for lineno, line in enumerate(text.strip("\n").split("\n"), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        where = f"{path.name}:{lineno}"
        if len(fields) != 4:
            skipped.append(Skipped(where, f"{len(fields)} tab-separated fields, expected 4", STAGE))
            continue
        name, phones_s, word2ph_s, norm_text = fields
        word2ph: list[int] | None = None
        if word2ph_s.strip() != "None":
            try:
                parsed = json.loads(word2ph_s)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, list) and all(isinstance(x, int) for x in parsed):
                word2ph = parsed
            else:
                message = f"word2ph {word2ph_s[:40]!r} is not a list of ints; ignored"
                warnings.append(WarningItem(where, message, STAGE))
        if name in entries:
            warnings.append(
                WarningItem(where, f"{name} also on line {entries[name].line}; the later line is used", STAGE)
            )
        entries[name] = Name2TextEntry(name, phones_s.split(" "), word2ph, norm_text, lineno)
    return entries, skipped, warnings


def parse_name2semantic(
    exp: Path, codebook_size: int = 1024
) -> tuple[dict[str, np.ndarray], list[Skipped], list[WarningItem]]:
    """Read `6-name2semantic.tsv` (or, without it, the part files `6-name2semantic-<i>.tsv`).

    Returns:
        (codes by name as int64 arrays, skipped lines, warnings); empty when the folder has none.
    """
    files = (
        [exp / NAME2SEMANTIC]
        if (exp / NAME2SEMANTIC).is_file()
        else sorted(exp.glob("6-name2semantic-*.tsv"))
    )
    codes: dict[str, np.ndarray] = {}
    skipped: list[Skipped] = []
    warnings: list[WarningItem] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise GsvError(f"{path} is not UTF-8 ({exc})") from None
        for lineno, line in enumerate(text.split("\n"), start=1):
            if not line.strip() or (lineno == 1 and line.strip() == SEMANTIC_HEADER):
                continue
            where = f"{path.name}:{lineno}"
            fields = line.split("\t")
            if len(fields) != 2:
                skipped.append(Skipped(where, f"{len(fields)} tab-separated fields, expected 2", STAGE))
                continue
            name, values = fields[0], fields[1].split()
            try:
                arr = np.array([int(v) for v in values], dtype=np.int64)
            except ValueError:
                skipped.append(Skipped(where, f"semantic codes of {name} are not integers", STAGE))
                continue
            if arr.size == 0 or int(arr.min()) < 0 or int(arr.max()) >= codebook_size:
                skipped.append(
                    Skipped(where, f"semantic codes of {name} empty or outside [0, {codebook_size})", STAGE)
                )
                continue
            if name in codes:
                warnings.append(WarningItem(where, f"{name} listed again; the later line is used", STAGE))
            codes[name] = arr
    return codes, skipped, warnings


def _load_bert(path: Path, hidden_size: int, n_phones: int) -> np.ndarray:
    """(hidden, n_phones) float32 of one `3-bert/<name>.pt`; ValueError with the reason when unusable."""
    import pickle

    import torch

    where = f"{BERT_DIR}/{path.name}"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot load {where} ({first})") from None
    if not isinstance(obj, torch.Tensor) or not obj.is_floating_point():
        raise ValueError(f"{where} holds a {type(obj).__name__}, not a float tensor")
    if tuple(obj.shape) != (hidden_size, n_phones):
        raise ValueError(
            f"{where} has shape {tuple(obj.shape)}, expected ({hidden_size}, {n_phones}) for its phones"
        )
    arr = obj.float().numpy()
    if not np.isfinite(arr).all():
        raise ValueError(f"{where} contains NaN/Inf")
    return arr


def _arpabet() -> set[str]:
    return (
        {v + s for v in sym.ARPA_VOWELS for s in "012"} | set(sym.ARPA_UNSTRESSED) | set(sym.ARPA_CONSONANTS)
    )


def guess_language(phones: list[str], word2ph: list[int] | None) -> str:
    """The language of an official phone sequence (only metadata: the phones are used as they are)."""
    core = [p for p in phones if p not in sym.PUNCTUATION and p not in sym.SPECIAL]
    arpa = _arpabet()
    if any(p.startswith("Y") and p not in arpa for p in core):
        return "yue"
    if any(p in sym.KO_SYMBOLS for p in core):
        return "ko"
    if core and all(p in arpa for p in core):
        return "en"
    if word2ph is not None:
        return "zh"
    ja = set(sym.JA_PHONES) | set(sym.JA_PITCH_MARKS)
    if core and all(p in ja for p in core):
        return "ja"
    return "zh"


def read_official_list(path: Path) -> dict[str, tuple[str, str]]:
    """Official `.list` (``wav_path|speaker|LANG|text``) → basename → (speaker, language)."""
    out: dict[str, tuple[str, str]] = {}
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        fields = line.split("|")
        if len(fields) != 4:
            continue
        lang = _LIST_LANGS.get(fields[2].strip().lower())
        if lang is None:
            continue
        out[Path(fields[0].replace("\\", "/")).name] = (fields[1].strip(), lang)
    return out


def _load_tensor(path: Path, folder: str) -> torch.Tensor:
    """The tensor in one official `.pt` feature file (safe loader); ValueError with the reason."""
    import pickle

    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot load {folder}/{path.name} ({first})") from None
    if not isinstance(obj, torch.Tensor):
        raise ValueError(f"{folder}/{path.name} holds a {type(obj).__name__}, not a tensor")
    return obj


def _load_sv(path: Path) -> np.ndarray:
    """(D,) sv feature of one `7-sv_cn/<name>.pt` (dtype kept); ValueError with the reason when unusable."""
    import torch

    obj = _load_tensor(path, SV_DIR)
    t = obj[0] if obj.dim() == 2 and obj.shape[0] == 1 else obj
    if t.dim() != 1 or t.dtype not in (torch.float16, torch.float32):
        raise ValueError(
            f"{SV_DIR}/{path.name} has shape {tuple(obj.shape)} {obj.dtype}, expected (1, D) float"
        )
    arr = t.numpy()
    if not np.isfinite(arr).all():
        raise ValueError(f"{SV_DIR}/{path.name} contains NaN/Inf")
    return arr


def _load_ssl(path: Path, hidden_size: int) -> np.ndarray:
    """(C, T) float32 features of one `.pt` file; ValueError with the reason when unusable."""
    obj = _load_tensor(path, HUBERT_DIR)
    t = obj
    if t.dim() == 3 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 2 or t.shape[0] != hidden_size or not t.is_floating_point():
        raise ValueError(
            f"{HUBERT_DIR}/{path.name} has shape {tuple(obj.shape)} {obj.dtype}, "
            f"expected (1, {hidden_size}, T) float"
        )
    arr = t.float().numpy()
    if not np.isfinite(arr).all():
        raise ValueError(f"{HUBERT_DIR}/{path.name} contains NaN/Inf")
    return arr


def _import_wav(src: Path, target: Path, sample_rate: int) -> tuple[np.ndarray, str | None]:
    """Place the clip at `target`; returns its int16 samples and a warning when it had to be converted."""
    import soundfile as sf

    from gptsovits_train.audio.io import AudioLoadError, load_audio, resample, to_pcm16, wav_bytes_pcm16

    try:
        info = sf.info(str(src))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise ValueError(f"cannot read {WAV_DIR}/{src.name} ({exc})") from None
    as_is = (info.samplerate, info.channels, info.subtype, info.format) == (sample_rate, 1, "PCM_16", "WAV")
    if as_is:
        pcm, _ = sf.read(str(src), dtype="int16", always_2d=False)
        with atomic_path(target) as tmp:
            shutil.copyfile(src, tmp)
        return np.asarray(pcm, dtype=np.int16), None
    try:
        audio = load_audio(src)
    except AudioLoadError as exc:
        raise ValueError(f"cannot read {WAV_DIR}/{src.name} ({exc})") from None
    wave = resample(audio.samples, audio.sample_rate, sample_rate)
    pcm = to_pcm16(wave)
    with atomic_path(target) as tmp:
        tmp.write_bytes(wav_bytes_pcm16(pcm, sample_rate))
    note = f"{info.samplerate} Hz {info.channels} ch {info.subtype} converted to {sample_rate} Hz mono PCM_16"
    return pcm, note


def _check_dirs(exp: Path, layout: DatasetLayout, force: bool) -> None:
    if not exp.is_dir():
        raise GsvError(f"official experiment folder not found: {exp}")
    missing = [n for n in (NAME2TEXT, HUBERT_DIR, WAV_DIR) if not (exp / n).exists()]
    if missing:
        raise GsvError(
            f"{exp} is not a finished official experiment folder: no {', '.join(missing)} "
            "(run the official steps 1a and 1b first)"
        )
    root = layout.root.absolute()
    exp_abs = exp.absolute()
    if root == exp_abs or exp_abs in root.parents or root in exp_abs.parents:
        raise GsvError(f"--out {layout.root} must be outside the official folder {exp}")
    if root.is_dir() and any(root.iterdir()):
        ours = layout.manifest.is_file() or layout.work_dir.is_dir()
        if not ours:
            raise GsvError(
                f"{layout.root} is not empty and is not a gsv-train dataset; choose an empty folder"
            )
        stamp = layout.import_stamp
        previous = None
        if stamp.is_file():
            try:
                previous = json.loads(stamp.read_text(encoding="utf-8")).get("exp_dir")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                previous = None
        if previous != str(exp_abs) and not force:
            made_from = f"the official folder {previous}" if previous else "other sources"
            raise GsvError(
                f"{layout.root} already holds a dataset made from {made_from}; choose another folder "
                "or pass --force to replace it"
            )


def import_official(
    exp_dir: Path | str,
    out_dir: Path | str,
    cfg: Config,
    *,
    list_file: Path | str | None = None,
    force: bool = False,
) -> PrepareReport:
    """Import an official experiment folder into a gsv-train dataset (see module doc).

    Args:
        exp_dir: `logs/<exp>` of the official tool.
        out_dir: dataset folder to write.
        cfg: configuration (audio, split, min clip length, feature size, text version).
        list_file: the official `.list` the folder was made from (language and speaker per clip).
        force: replace a dataset in `out_dir` that was not imported from `exp_dir`.
    Returns:
        the report (also written as report.json / report.png).
    Raises:
        GsvError: not an official folder, unusable output folder, no usable clip.
    """
    t0 = time.perf_counter()
    exp = Path(exp_dir)
    layout = DatasetLayout(Path(out_dir))
    _check_dirs(exp, layout, force)
    layout.root.mkdir(parents=True, exist_ok=True)
    acfg, pcfg = cfg.audio, cfg.prepare
    version = pcfg.text.version
    table = sym.symbol_to_id(version)

    entries, skipped, warnings = parse_name2text(exp / NAME2TEXT)
    semantic, sem_skipped, sem_warnings = parse_name2semantic(exp, cfg.model.codebook_size)
    skipped += sem_skipped
    warnings += sem_warnings
    bert_names = (
        {p.name[:-3] for p in (exp / BERT_DIR).iterdir() if p.is_file() and p.name.endswith(".pt")}
        if (exp / BERT_DIR).is_dir()
        else set()
    )
    names4 = {p.name[:-3] for p in (exp / HUBERT_DIR).iterdir() if p.is_file() and p.name.endswith(".pt")}
    names5 = {p.name for p in (exp / WAV_DIR).iterdir() if p.is_file()}
    listed = read_official_list(Path(list_file)) if list_file is not None else {}
    has_sv = (exp / SV_DIR).is_dir()
    names7 = {p.name[:-3] for p in (exp / SV_DIR).iterdir() if p.name.endswith(".pt")} if has_sv else set()
    sv_sizes: set[int] = set()
    for name in sorted((names4 | names5) - set(entries)):
        skipped.append(Skipped(name, f"not in {NAME2TEXT}", STAGE))

    clips: list[Clip] = []
    used_ids: set[str] = set()
    for name in sorted(entries):
        entry = entries[name]
        if name not in names4 or name not in names5 or (has_sv and name not in names7):
            absent = [f"{HUBERT_DIR}/{name}.pt"] if name not in names4 else []
            absent += [f"{WAV_DIR}/{name}"] if name not in names5 else []
            absent += [f"{SV_DIR}/{name}.pt"] if has_sv and name not in names7 else []
            skipped.append(Skipped(name, f"no {' or '.join(absent)}", STAGE))
            continue
        unknown = sorted({p for p in entry.phones if p not in table})
        if unknown:
            shown = " ".join(repr(p) for p in unknown[:5])
            skipped.append(Skipped(name, f"phones not in the {version} table: {shown}", STAGE))
            continue
        base = safe_id(Path(name).stem)
        clip_id, k = base, 2
        while clip_id in used_ids:
            clip_id, k = f"{base}_{k}", k + 1
        try:
            pcm, note = _import_wav(exp / WAV_DIR / name, layout.wav(clip_id), acfg.sampling_rate)
        except ValueError as exc:
            skipped.append(Skipped(name, str(exc), STAGE))
            continue
        n = len(pcm)
        seconds = n / acfg.sampling_rate
        reason = None
        if seconds < pcfg.min_clip_seconds:
            reason = f"shorter than prepare.min_clip_seconds ({seconds:.2f} s < {pcfg.min_clip_seconds:g} s)"
        elif seconds >= MAX_SECONDS:
            reason = f"{seconds:.1f} s, the official loader keeps clips under {MAX_SECONDS:g} s"
        if reason is None:
            try:
                ssl = _load_ssl(exp / HUBERT_DIR / f"{name}.pt", pcfg.features.hidden_size)
                aligned = align_to_spec(ssl, n // acfg.hop_length)
                sv = _load_sv(exp / SV_DIR / f"{name}.pt") if has_sv else None
            except (ValueError, FeatureAlignmentError) as exc:
                reason = str(exc)
        if reason is not None:
            layout.wav(clip_id).unlink(missing_ok=True)
            skipped.append(Skipped(name, reason, STAGE))
            continue
        if note:
            warnings.append(WarningItem(name, note, STAGE))
        atomic_save_npy(layout.spec(clip_id), compute_spec(pcm, acfg, pcfg.spec_dtype))
        atomic_save_npy(layout.ssl(clip_id), np.ascontiguousarray(aligned, dtype=np.float16))
        if sv is not None:
            atomic_save_npy(layout.sv(clip_id), np.ascontiguousarray(sv))
            sv_sizes.add(int(sv.shape[0]))
        gpt_parts, gpt_notes = _import_gpt_parts(
            exp, layout, name, clip_id, n, len(entry.phones), semantic, bert_names, cfg
        )
        warnings += [WarningItem(name, note, STAGE) for note in gpt_notes]
        speaker, language = listed.get(name, (exp.name, guess_language(entry.phones, entry.word2ph)))
        used_ids.add(clip_id)
        clips.append(
            Clip(
                id=clip_id,
                path=layout.relative(layout.wav(clip_id)),
                source=str((exp / WAV_DIR / name).absolute()),
                start=0.0,
                end=seconds,
                duration=seconds,
                text=entry.norm_text,
                language=language,
                speaker=speaker,
                n_samples=n,
                n_frames=n // acfg.hop_length,
                spec=layout.relative(layout.spec(clip_id)),
                ssl=layout.relative(layout.ssl(clip_id)),
                phones=entry.phones,
                phone_ids=[table[p] for p in entry.phones],
                word2ph=entry.word2ph,
                norm_text=entry.norm_text,
                text_version=version,
                sv=layout.relative(layout.sv(clip_id)) if sv is not None else None,
                semantic=gpt_parts.get("semantic"),
                bert=gpt_parts.get("bert"),
                extra={"official_name": name},
            )
        )

    _remove_orphans(layout, used_ids)
    remove_unlisted(layout.semantic_dir, {c.id for c in clips if c.semantic})
    remove_unlisted(layout.bert_dir, {c.id for c in clips if c.bert})
    for name in sorted(set(semantic) - set(entries)):
        warnings.append(WarningItem(name, f"in {NAME2SEMANTIC} but not in {NAME2TEXT}; ignored", STAGE))
    split = assign_split([SplitItem(c.id, c.n_samples) for c in clips], pcfg.split.val_ratio, pcfg.split.seed)
    for clip in clips:
        clip.split = "val" if split[clip.id] == "val" else "train"
    report = PrepareReport(
        out_dir=str(layout.root),
        slice_only=False,
        clips=clips,
        skipped=skipped,
        warnings=warnings,
        n_sources=len(entries),
        stages=[STAGE],
        audio_seconds_processed=sum(c.duration for c in clips),
    )
    atomic_write_text(layout.config, cfg.to_yaml())
    atomic_write_json(
        layout.import_stamp,
        {
            "exp_dir": str(exp.absolute()),
            "list_file": str(list_file) if list_file else None,
            "clips": len(clips),
        },
    )
    # provenance of ssl/: the official chinese-hubert-base features (a later feature stage with a model
    # recomputes them, see features.extract)
    stamp = FeatureStamp(
        model=f"official:{(exp / HUBERT_DIR).absolute()}",
        digest="official-4-cnhubert",
        random=False,
        hidden_size=pcfg.features.hidden_size,
    )
    atomic_write_json(layout.features_stamp, stamp.to_dict())
    if has_sv:
        if len(sv_sizes) > 1:
            raise GsvError(
                f"{exp / SV_DIR}: features of different sizes {sorted(sv_sizes)}; not one model's output"
            )
        sv_stamp = SvStamp(
            model=f"official:{(exp / SV_DIR).absolute()}",
            digest="official-7-sv_cn",
            random=False,
            feature_size=sv_sizes.pop() if sv_sizes else 0,
        )
        atomic_write_json(layout.sv_stamp, sv_stamp.to_dict())
    else:  # no 7-sv_cn: drop the sv files and stamp of an earlier import
        for f in layout.sv_dir.glob("*.npy") if layout.sv_dir.is_dir() else []:
            f.unlink()
        layout.sv_stamp.unlink(missing_ok=True)
    _write_gpt_stamps(exp, layout, clips, cfg)
    report.wall_seconds = time.perf_counter() - t0
    write_dataset_outputs(
        layout,
        report,
        clips,
        empty_message=f"no usable clip in {exp}: all {len(entries)} entries were skipped "
        f"(see {layout.report_json})",
    )
    LOG.info("imported %d clips from %s (%d skipped)", len(clips), exp, len(skipped))
    return report


def _remove_orphans(layout: DatasetLayout, keep_ids: set[str]) -> None:
    """Delete clip files of earlier imports whose clip is not part of this one."""
    folders = (
        (layout.wavs_dir, "*.wav"),
        (layout.spec_dir, "*.npy"),
        (layout.ssl_dir, "*.npy"),
        (layout.sv_dir, "*.npy"),
    )
    for folder, pattern in folders:
        if folder.is_dir():
            for f in folder.glob(pattern):
                if f.stem not in keep_ids:
                    f.unlink()


def _import_gpt_parts(
    exp: Path,
    layout: DatasetLayout,
    name: str,
    clip_id: str,
    n_samples: int,
    n_phones: int,
    semantic: dict[str, np.ndarray],
    bert_names: set[str],
    cfg: Config,
) -> tuple[dict[str, str], list[str]]:
    """Write the clip's semantic codes and BERT features when the folder has them.

    Returns:
        (manifest fields {"semantic": ..., "bert": ...} that were written, warnings for parts left out).
    """
    from gptsovits_train.features.hubert import expected_frames

    parts: dict[str, str] = {}
    notes: list[str] = []
    if name in semantic:
        codes = semantic[name]
        want = expected_frames(n_samples, cfg.audio.sampling_rate) // 2
        if len(codes) != want:
            notes.append(
                f"{NAME2SEMANTIC}: {len(codes)} semantic codes, the clip's HuBERT frames give {want}; "
                "codes left out (the GPT stage skips this clip)"
            )
        else:
            atomic_save_npy(layout.semantic(clip_id), codes)
            parts["semantic"] = layout.relative(layout.semantic(clip_id))
    if name in bert_names:
        try:
            bert = _load_bert(exp / BERT_DIR / f"{name}.pt", cfg.prepare.bert.hidden_size, n_phones)
        except ValueError as exc:
            notes.append(f"{exc}; BERT features left out (the GPT stage uses zeros)")
        else:
            atomic_save_npy(layout.bert(clip_id), np.ascontiguousarray(bert, dtype=np.float16))
            parts["bert"] = layout.relative(layout.bert(clip_id))
    return parts, notes


def _write_gpt_stamps(exp: Path, layout: DatasetLayout, clips: list[Clip], cfg: Config) -> None:
    """Provenance of imported semantic/ and bert/ files (a later GPT stage with a model recomputes them)."""
    from gptsovits_train.features.bert import bert_stamp
    from gptsovits_train.features.semantic import SemanticStamp

    if any(c.semantic for c in clips):
        sem = SemanticStamp(
            model=f"official:{(exp / NAME2SEMANTIC).absolute()}",
            digest="official-6-name2semantic",
            features_digest="official-4-cnhubert",
            fp16=False,
            random=False,
        )
        atomic_write_json(layout.semantic_stamp, sem.to_dict())
    if any(c.bert for c in clips):
        stamp = bert_stamp(f"official:{(exp / BERT_DIR).absolute()}", "official-3-bert", False, cfg)
        atomic_write_json(layout.bert_stamp, stamp)
