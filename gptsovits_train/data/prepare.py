"""`gsv-train prepare`: audio files + transcripts -> a dataset folder (see `layout.DatasetLayout`).

Stages, in order:

1. **sources** (`data.sources.collect_sources`): find the audio files, read transcripts, assign ids.
   Without `slice_only`, sources with no transcript are skipped ("no transcript"); when no source has
   one, the run stops here, before any audio is decoded.
2. **audio** (`source_clips.process_source`, one job per source file, in a process pool): decode, mix to mono,
   resample to 32 kHz (soxr HQ), then
   - a source with a transcript is not split: its edge silence is trimmed; longer than
     `prepare.slicer.max_clip_seconds` -> skipped;
   - a source without one (`slice_only`) is cut by the official silence slicer, and chunks longer than
     the maximum are split again at their quietest frame;
   - per clip: too short / silent -> skipped; peak above 1 -> divided by the peak (warning); official
     loudness mixes (`audio.loudness`); written as 16-bit WAV; linear spectrogram cached as `.npy`.
   Each finished source leaves a record in `.work/sources/`; a later run reuses it when the source file,
   its transcript and the audio settings are unchanged and its outputs exist.
   A source longer than `STREAM_MIN_SECONDS` is decoded, resampled and cut in one streaming pass
   instead (`streamed_source.analyse_streamed`: same clips, flat memory), which hands out its clips in
   groups while it runs; every worker writes them (`write_clip_group`); see `run_audio_stage`.
   SIGINT/SIGTERM stop the run at once, keeping finished sources (`data.workers`).
3. **post-audio stages** (`data.stages`): text (phonemes) and features (HuBERT) plug in here.
4. **split** (`data.split`), **manifest** (`manifest.jsonl`), **report** (`report.json`, `report.png`).

With `slice_only`, stage 2 slices every source, writes the clips and `transcripts_template.list`
(official `.list` format with empty text) and the run stops there.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import multiprocessing
import os
import queue
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gptsovits_train.audio.io import AUDIO_EXTENSIONS_TEXT
from gptsovits_train.audio.segments import decode_segment
from gptsovits_train.audio.stream import stream_info
from gptsovits_train.config import Config
from gptsovits_train.data import streamed_source
from gptsovits_train.data.manifest import Clip
from gptsovits_train.data.report import PrepareReport, write_dataset_outputs, write_report_json
from gptsovits_train.data.report_types import Skipped, WarningItem
from gptsovits_train.data.segmented_source import SegmentedSource, segment_plan
from gptsovits_train.data.source_clips import (
    Mode,
    SourceJob,
    SourceOutcome,
    note_repaired,
    process_source,
)
from gptsovits_train.data.sources import SourcePlan, collect_sources
from gptsovits_train.data.split import (
    SplitItem,
    assign_split,
    read_val_list,
    resolve_val_list,
    split_warning,
)
from gptsovits_train.data.stages import Stage, StageResult, stage_name
from gptsovits_train.data.streamed_source import ClipGroup, SourceCuts, write_clip_group
from gptsovits_train.data.workers import (
    StopRequested,
    interruptible,
    keep_freed_memory,
    kill_pool,
    release_free_memory,
    worker_init,
)
from gptsovits_train.errors import GsvError
from gptsovits_train.fileio import (
    OutputWriteError,
    atomic_write_bytes,
    atomic_write_text,
    output_failure,
)
from gptsovits_train.layout import DatasetLayout

LOG = logging.getLogger(__name__)


def _record_outputs_exist(layout: DatasetLayout, outcome: SourceOutcome) -> bool:
    """Every clip file of a record is present with the size it was written with."""
    for clip in outcome.clips:
        for rel in (clip.path, clip.spec):
            if rel is None:
                continue
            try:
                size = (layout.root / rel).stat().st_size
            except OSError:
                return False
            if size != outcome.file_sizes.get(rel):
                return False
    return True


def _load_record(layout: DatasetLayout, job: SourceJob, fingerprint: str) -> SourceOutcome | None:
    path = layout.source_record(job.source.key)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("fingerprint") != fingerprint:
            return None
        outcome = SourceOutcome.from_dict(data["outcome"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        LOG.warning("ignoring unreadable progress record %s (%s); redoing %s", path, exc, job.source.path)
        return None
    return outcome if _record_outputs_exist(layout, outcome) else None


def default_workers() -> int:
    """Usable CPU cores of this process."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _needs_stream(job: SourceJob) -> bool:
    """Long files that libsndfile can stream are cut with flat memory (`analyse_streamed`)."""
    info = stream_info(job.source.path)
    return info is not None and info.seconds > job.stream_min_seconds


class _InlineExecutor:
    """Runs each submitted call at once in this process (`-j 1`); same interface as the pool."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001  (delivered through the future, as a pool would)
            fut.set_exception(exc)
        return fut


def _init_worker(parent_pid: int, with_torch: bool, groups: Any) -> None:
    worker_init(parent_pid, with_torch)
    streamed_source.set_group_queue(groups)


@dataclass
class _LongSource:
    """Progress of one streamed source: its analysis result and the groups its clips came in."""

    cuts: SourceCuts | None = None
    segments: SegmentedSource | None = None  # decoded in segments, cut here
    received: int = 0  # groups received (each became a write task)
    written: dict[int, tuple[SourceOutcome, list[float]]] = field(default_factory=dict)

    def done(self) -> bool:
        return self.cuts is not None and len(self.written) == self.received == self.cuts.n_groups

    def outcome(self, job: SourceJob, layout: DatasetLayout) -> SourceOutcome:
        """The source's outcome once `done()`; a source skipped whole loses the clips already written."""
        assert self.cuts is not None
        outcome = self.cuts.outcome
        parts = [self.written[k] for k in sorted(self.written)]
        if self.cuts.discard:
            for part, _ in parts:
                for rel in part.file_sizes:
                    (layout.root / rel).unlink(missing_ok=True)
            return outcome
        repaired: list[float] = []
        for part, part_repaired in parts:
            outcome.clips.extend(part.clips)
            outcome.skipped.extend(part.skipped)
            outcome.file_sizes.update(part.file_sizes)
            repaired.extend(part_repaired)
        note_repaired(job, repaired, outcome, self.cuts.source_peak)
        return outcome


@dataclass
class _Immediately:
    """A stand-in for a queue whose `put(item)` hands the item on at once."""

    take: Callable[[Any], None]

    def put(self, item: Any) -> None:
        self.take(item)


def _mp_context() -> Any:
    """How pool workers start: forked on Linux (they inherit the imports), spawned elsewhere."""
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def _new_group_pipe() -> Any:
    """The pipe the pool workers send clip groups through (its `put` returns once the group is in the
    pipe, so all of a task's groups are there when its result is)."""
    return _mp_context().SimpleQueue()


def _start_pool(n_workers: int, with_torch: bool, groups: Any) -> ProcessPoolExecutor:
    """`n_workers` worker processes, started now (forked on Linux)."""
    if with_torch:
        import torch  # noqa: F401  (imported once here: forked workers inherit it)

    pool = ProcessPoolExecutor(
        max_workers=n_workers,
        mp_context=_mp_context(),
        initializer=_init_worker,
        initargs=(os.getpid(), with_torch, groups),
    )
    # fork the workers now, before the progress bar starts a thread; with the objects of this process
    # out of the garbage collector's reach, a worker's collections do not write to (and so copy) every
    # page of the heap it shares with this process
    gc.freeze()
    try:
        pool.submit(int).result()
    finally:
        gc.unfreeze()
    return pool


def _delete_in_background(path: Path) -> threading.Thread:
    """Delete `path` on a new thread (started; join it); a failure is logged, not raised."""

    def delete() -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            LOG.warning("cannot delete %s (%s); delete it yourself", path, exc)

    thread = threading.Thread(target=delete, name="delete-spill")
    thread.start()
    return thread


#: With `-j 1`, freed heap memory is given back to the system after this many sources (`malloc_trim`):
#: the decoding, resampling and spectrogram buffers of clips of every length fragment the heap, and
#: the transcripts pass of a 60-minute recording (638 clips) peaked 8-11 % above a 10-minute one
#: without it, 6-7 % with it.
TRIM_EVERY_SOURCES = 20

#: Seconds between looks at the clip groups sent by analysis tasks while waiting for pool tasks.
GROUP_POLL_SECONDS = 0.02


def run_audio_stage(
    layout: DatasetLayout,
    jobs: Sequence[SourceJob],
    *,
    workers: int,
    progress: bool,
) -> tuple[list[SourceOutcome], int]:
    """Run (or reuse) every job; returns outcomes in job order and how many were reused.

    A short source is one task (`process_source`). A long one (`_needs_stream`) is cut with flat memory,
    its clips written in groups of ~`CLIP_GROUP_SECONDS` by write tasks (`write_clip_group`) for any free
    worker while the file is still being decoded:
    - with more workers than sources, in segments (`data.segmented_source`): every worker decodes and
      resamples segments of the file (`audio.segments.decode_segment`), and this process cuts them in
      order and hands out the groups;
    - otherwise (or for a file that cannot be split) by one analysis task
      (`streamed_source.analyse_streamed`: decode, resample, frame RMS and slicer in one streaming pass)
      that sends its groups while it runs.
    A source's progress record is written when all its clips are.

    Raises:
        StopRequested: SIGINT/SIGTERM (see `data.workers`); the pool is killed, finished sources kept.
    """
    layout.work_dir.mkdir(parents=True, exist_ok=True)
    outcomes: list[SourceOutcome | None] = [None] * len(jobs)
    fingerprints = [job.fingerprint() for job in jobs]
    todo: list[int] = []
    for i, job in enumerate(jobs):
        rec = _load_record(layout, job, fingerprints[i])
        if rec is None:
            todo.append(i)
        else:
            outcomes[i] = rec
    reused = len(jobs) - len(todo)
    if reused:
        LOG.info("resuming: %d of %d sources already done", reused, len(jobs))
    if not todo:
        return [o for o in outcomes if o is not None], reused

    from tqdm import tqdm

    streamed = {i for i in todo if _needs_stream(jobs[i])}
    n_workers = max(1, min(workers, len(todo))) if not streamed else max(1, workers)
    with_torch = any(jobs[i].write_spec for i in todo)
    helper_thread = n_workers > len(todo)
    pool: ProcessPoolExecutor | None = None
    executor: ProcessPoolExecutor | _InlineExecutor
    threads: int | None = None
    groups: Any  # where analysis tasks send their clip groups (`_new_group_pipe`, or see below)
    if n_workers == 1:
        keep_freed_memory()  # this process decodes (pool workers do it in `worker_init`)
        executor = _InlineExecutor()
        groups = queue.SimpleQueue()  # stays empty: the groups are written as they come (below)
        if with_torch:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # one worker means one core, in this process too
    else:
        groups = _new_group_pipe()
        executor = pool = _start_pool(n_workers, with_torch, groups)
    tasks: dict[Future[Any], tuple[str, int, int]] = {}
    long_sources: dict[int, _LongSource] = {}
    deleting: list[threading.Thread] = []
    # at most one long source per worker at a time: each holds a spill file (128 KB per second)
    waiting = [i for i in todo if i in streamed]

    def start_long_sources() -> None:
        while waiting and len(long_sources) < n_workers:
            i = waiting.pop(0)
            long_sources[i] = state = _LongSource()
            job, spill = jobs[i], layout.source_spill(jobs[i].source.key)
            # cores to spare: every worker decodes segments of the file, cut here in order
            plan = segment_plan(job, n_workers) if helper_thread else None
            if plan is None:
                task = executor.submit(streamed_source.analyse_task, job, spill, helper_thread, i)
                tasks[task] = ("analyse", i, 0)
                continue
            state.segments = SegmentedSource.start(job, spill, plan, functools.partial(dispatch, i))
            start_segments(i)

    def start_segments(i: int) -> None:
        """Hand out the next segments of source `i`: one more than there are workers at a time."""
        seg = long_sources[i].segments
        assert seg is not None
        for k in seg.to_start(n_workers + 1):
            task = executor.submit(decode_segment, seg.job.source.path, seg.plan, k, seg.spill)
            tasks[task] = ("segment", i, k)

    def finish(i: int, outcome: SourceOutcome) -> None:
        long_sources.pop(i, None)
        source = str(jobs[i].source.path)
        record = {"fingerprint": fingerprints[i], "source": source, "outcome": outcome.to_dict()}
        # last, so that a record means "all files done"; no fsync: a record lost in a power cut
        # only means that the source is done again
        atomic_write_bytes(layout.source_record(jobs[i].source.key), json.dumps(record).encode(), fsync=False)
        if i in streamed:  # freeing the spill's pages takes a while: on a thread, joined at the end
            deleting.append(_delete_in_background(layout.source_spill(jobs[i].source.key)))
        outcomes[i] = outcome
        bar.update(1)
        start_long_sources()

    def dispatch(i: int, group: ClipGroup) -> None:
        """A write task for a clip group of source `i`."""
        long_sources[i].received += 1
        spill = layout.source_spill(jobs[i].source.key)
        tasks[executor.submit(write_clip_group, jobs[i], spill, group)] = ("clips", i, group.index)

    def take_groups() -> None:
        """Turn every clip group the analysis tasks have sent so far into a write task."""
        while not groups.empty():
            dispatch(*groups.get())

    if pool is None:  # in this process: each group is written as soon as it is sent, not held to the end
        streamed_source.set_group_queue(_Immediately(lambda item: dispatch(*item)))

    def collect(fut: Future[Any], kind: str, i: int, g: int) -> None:
        job = jobs[i]
        try:
            result = fut.result()
        except GsvError:  # a full disk or unwritable folder (OutputWriteError): one line, not a bug
            raise
        except Exception as exc:  # a bug, not bad audio: keep the traceback, name the file
            message = output_failure(exc, job.root) if isinstance(exc, OSError) else None
            if message is not None:
                raise OutputWriteError(message) from exc
            raise RuntimeError(f"unexpected error while preparing {job.source.path}: {exc}") from exc
        if kind == "whole":
            finish(i, result)
            return
        state = long_sources[i]
        if kind == "analyse":
            take_groups()  # every group of this task is in the queue now
            state.cuts = result
        elif kind == "segment":
            assert state.segments is not None
            state.segments.receive(result)
            start_segments(i)  # first, so that no worker waits for the cutting below
            state.cuts = state.segments.cut()  # sends the groups it completes
            if state.cuts is not None:
                state.segments = None  # its frame RMS (2.9 MB per hour) is not needed any more
        else:
            state.written[g] = result
        if state.done():
            finish(i, state.outcome(job, layout))

    try:
        with tqdm(total=len(todo), disable=not progress, file=sys.stderr, unit="file", desc="audio") as bar:
            start_long_sources()
            take_groups()
            for n, i in enumerate(todo):
                if i not in streamed:
                    tasks[executor.submit(process_source, jobs[i])] = ("whole", i, 0)
                    if pool is None and n % TRIM_EVERY_SOURCES == TRIM_EVERY_SOURCES - 1:
                        release_free_memory()  # keeps this process's peak flat over thousands of clips
                    # collect what is done now (all of it with -j 1: each source is recorded at once)
                    while finished := [fut for fut in tasks if fut.done()]:
                        for fut in finished:
                            collect(fut, *tasks.pop(fut))
                        take_groups()
            while tasks:
                poll = GROUP_POLL_SECONDS if long_sources else None
                done, _ = wait(list(tasks), timeout=poll, return_when=FIRST_COMPLETED)
                take_groups()
                for fut in done:
                    collect(fut, *tasks.pop(fut))
                take_groups()
    except BaseException as exc:
        # Ctrl-C, SIGTERM or a bug: stop at once; finished sources keep their records
        if pool is not None:
            kill_pool(pool)
            pool = None
        for i in todo:
            if outcomes[i] is None:
                layout.source_spill(jobs[i].source.key).unlink(missing_ok=True)
        if isinstance(exc, StopRequested | KeyboardInterrupt):
            stop = exc if isinstance(exc, StopRequested) else StopRequested(int(signal.SIGINT))
            done_now = sum(1 for i in todo if outcomes[i] is not None)
            stop.detail = f"{reused + done_now} of {len(jobs)} source files done"
            raise stop from None
        raise
    finally:
        streamed_source.set_group_queue(None)
        for thread in deleting:
            thread.join()
        if pool is not None:
            pool.shutdown(wait=True)
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
    return [o for o in outcomes if o is not None], reused


# ---------------------------------------------------------------------------------------- pipeline
def _check_out_dir(layout: DatasetLayout, inputs: Sequence[Path]) -> None:
    """Refuse an output folder that holds inputs, lies inside an input folder, or is someone else's."""
    root = layout.root.absolute()
    if root.exists() and not root.is_dir():
        raise GsvError(f"--out {layout.root} exists and is not a folder")
    for inp in inputs:
        p = Path(inp).absolute()
        if p == root or root in p.parents:
            raise GsvError(f"input {inp} is inside the output folder {layout.root}; choose another --out")
        if p.is_dir() and p in root.parents:
            raise GsvError(
                f"output folder {layout.root} is inside the input folder {inp}; choose another --out"
            )
    if root.is_dir() and any(root.iterdir()):
        ours = layout.work_dir.is_dir() or layout.manifest.is_file() or layout.list_template.is_file()
        if not ours:
            raise GsvError(
                f"{layout.root} is not empty and is not a gsv-train dataset; choose an empty folder"
            )


def _clear_outputs(layout: DatasetLayout) -> None:
    """--force: delete what an earlier run wrote (only the dataset's own paths)."""
    if layout.root.is_dir():
        for d in (
            layout.wavs_dir,
            layout.spec_dir,
            layout.ssl_dir,
            layout.semantic_dir,
            layout.bert_dir,
            layout.work_dir,
        ):
            if d.is_dir():
                shutil.rmtree(d)
        for f in (
            layout.manifest,
            layout.report_json,
            layout.report_png,
            layout.list_template,
            layout.config,
        ):
            f.unlink(missing_ok=True)


def _remove_orphans(layout: DatasetLayout, clips: Sequence[Clip], jobs: Sequence[SourceJob]) -> int:
    """Delete clip files and records that belong to no current clip/source (from earlier runs)."""
    keep = {layout.root / c.path for c in clips} | {layout.root / c.spec for c in clips if c.spec}
    removed = 0
    for folder, pattern in ((layout.wavs_dir, "*.wav"), (layout.spec_dir, "*.npy")):
        if folder.is_dir():
            for f in folder.glob(pattern):
                if f not in keep:
                    f.unlink()
                    removed += 1
            for f in folder.glob(".*.tmp-*"):
                f.unlink()
    records = {layout.source_record(j.source.key) for j in jobs}
    rec_dir = layout.work_dir / "sources"
    if rec_dir.is_dir():
        for f in rec_dir.glob("*.json"):
            if f not in records:
                f.unlink()
    return removed


def _write_template(layout: DatasetLayout, clips: Sequence[Clip], language: str) -> None:
    """Official `.list` with empty text: ``wavs/<id>.wav|speaker|LANG|`` (paths relative to the list)."""
    lines = [f"{c.path}|{c.speaker}|{(c.language or language).upper()}|" for c in clips]
    atomic_write_text(layout.list_template, "".join(line + "\n" for line in lines))


def no_transcript_message(n_sources: int, problems: Sequence[Skipped] = ()) -> str:
    """The error for a run where no source has a transcript, naming what went wrong with the
    transcript files that were given (their `Skipped` items of the transcripts stage)."""
    reasons = [p for p in problems if p.stage == "transcripts"]
    detail = ""
    if reasons:
        shown = "; ".join(f"{p.source}: {p.reason}" for p in reasons[:3])
        more = f" (and {len(reasons) - 3} more)" if len(reasons) > 3 else ""
        detail = f" Transcript problems: {shown}{more}."
    return (
        f"none of the {n_sources} audio files has a transcript.{detail} Give one with --transcripts FILE "
        "(.list or LJSpeech metadata.csv) or <name>.txt/<name>.lab beside each file, "
        "or run with --slice-only to cut clips and get a .list template to fill in, "
        "or transcribe them with --asr DIR"
    )


def default_post_audio_stages(cfg: Config) -> list[Stage]:
    """The stages `prepare` runs after the audio stage when the caller passes none, in order.

    1. text: phonemes via `gptsovits_train.text.g2p` (`data.phonemize.phonemize_clips`);
    2. features: HuBERT content features in `ssl/<id>.npy` (`features.extract_features`), only when
       `cfg.prepare.features.hubert` names a model folder (or `random-tiny`); without one the dataset has
       no features and `fit` refuses it with a message saying what to run.
    3. sv (v2Pro/v2ProPlus): speaker-verification features in `sv/<id>.npy`
       (`features.sv_extract.extract_sv_features`), only when `cfg.prepare.features.sv` names a model.
    4. only when `cfg.prepare.stages` names "gpt": semantic codes in `semantic/<id>.npy`
       (`features.semantic.extract_semantic`, from the HuBERT features) and BERT features of zh clips in
       `bert/<id>.npy` (`features.bert.extract_bert`).
    An ASR stage, when asked for, runs before these (see `data/prepare_request.py`).
    """
    from gptsovits_train.data.phonemize import phonemize_clips

    stages: list[Stage] = [phonemize_clips]
    if cfg.prepare.features.hubert:
        from gptsovits_train.features import extract_features

        stages.append(extract_features)
    if cfg.prepare.features.sv:
        from gptsovits_train.features.sv_extract import extract_sv_features

        stages.append(extract_sv_features)
    elif cfg.model.version in ("v2Pro", "v2ProPlus"):
        LOG.warning(
            "model.version is %s but prepare.features.sv names no speaker-verification model: the dataset "
            "gets no sv features and a %s fit will refuse it (pass --sv FILE or 'random-tiny')",
            cfg.model.version,
            cfg.model.version,
        )
    if "gpt" in cfg.prepare.stages:
        from gptsovits_train.features.bert import extract_bert
        from gptsovits_train.features.semantic import extract_semantic

        stages += [extract_semantic, extract_bert]
    return stages


@interruptible("prepare")
def prepare(
    inputs: Sequence[Path | str],
    out_dir: Path | str,
    cfg: Config,
    *,
    transcripts: Sequence[Path | str] = (),
    language: str | None = None,
    speaker: str | None = None,
    workers: int | None = None,
    val_list: Path | str | None = None,
    slice_only: bool = False,
    keep_untranscribed: bool = False,
    force: bool = False,
    stages: Sequence[Stage] | None = None,
    progress: bool = True,
) -> PrepareReport:
    """Build (or resume) a dataset folder from audio files and transcripts.

    Args:
        inputs: audio files and folders (recursive); may be empty when `transcripts` name the audio.
        out_dir: dataset folder (created; resumed when it holds an earlier run).
        cfg: configuration; `cfg.prepare` and `cfg.audio` are used. Seed/val ratio: `cfg.prepare.split`.
        transcripts: `.list` / LJSpeech metadata files.
        language: language of transcripts that carry none (default `cfg.prepare.text.language`).
        speaker: speaker name where a transcript has none (default: the source's folder name).
        workers: processes for the audio stage (default `cfg.prepare.workers`, else all cores).
        val_list: file of clip ids / paths that form the validation set.
        slice_only: slice every source, write clips + `transcripts_template.list`, and stop.
        keep_untranscribed: slice sources without a transcript and keep their clips (text "") for a
            post-audio stage to transcribe (ASR); clips still without text afterwards are skipped.
        force: delete the outputs of an earlier run first.
        stages: post-audio stages (default `default_post_audio_stages(cfg)`).
        progress: show a progress bar on stderr.
    Returns:
        The report (also written to report.json).
    Raises:
        GsvError: no audio, no transcript at all, bad output folder, or no usable clip in the end.
        Interrupted: SIGINT/SIGTERM (Ctrl-C, `timeout`, `docker stop`); finished work is kept and the
            same call resumes (`data.workers`).
    """
    t0 = time.perf_counter()
    layout = DatasetLayout(Path(out_dir))
    pcfg = cfg.prepare
    lang = language or pcfg.text.language
    if slice_only and lang == "auto":
        raise GsvError("--slice-only needs --language (zh or en) for the LANG column of the template")
    _check_out_dir(layout, [Path(p) for p in inputs])

    # 1. sources + transcripts ------------------------------------------------------------------
    plan: SourcePlan = collect_sources(inputs, transcripts, language=lang, speaker=speaker)
    skipped = list(plan.skipped)
    warnings = list(plan.warnings)
    root = layout.root.absolute()
    inside = [s.path for s in plan.sources if root in s.path.parents]
    if inside:
        raise GsvError(f"source {inside[0]} is inside the output folder {layout.root}; choose another --out")
    if force:
        _clear_outputs(layout)
    if not plan.sources:
        detail = f"; first problem: {skipped[0].source}: {skipped[0].reason}" if skipped else ""
        raise GsvError(f"no audio files to prepare (looked for {AUDIO_EXTENSIONS_TEXT}){detail}")
    jobs: list[SourceJob] = []
    for src in plan.sources:
        has_text = src.transcript is not None and bool(src.transcript.text)
        if slice_only or (not has_text and keep_untranscribed):
            mode: Mode = "slice"
        elif has_text:
            mode = "trim"
        else:
            reason = "no transcript"
            if src.transcript is not None:
                reason = f"empty transcript ({src.transcript.origin})"
            skipped.append(Skipped(str(src.path), reason, "transcripts"))
            continue
        jobs.append(
            SourceJob(src, mode, not slice_only, not slice_only, layout.root.absolute(), cfg.audio, pcfg)
        )
    if not slice_only and not keep_untranscribed and plan.n_with_transcript == 0:
        raise GsvError(no_transcript_message(len(plan.sources), plan.skipped))
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.work_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(layout.config, cfg.to_yaml())

    # 2. audio stage ------------------------------------------------------------------------------
    n_workers = workers or pcfg.workers or default_workers()
    outcomes, reused = run_audio_stage(layout, jobs, workers=n_workers, progress=progress)
    clips: list[Clip] = []
    seen: dict[str, str] = {}
    audio_seconds = 0.0
    for outcome in outcomes:
        skipped.extend(outcome.skipped)
        warnings.extend(outcome.warnings)
        audio_seconds += outcome.audio_seconds
        for clip in outcome.clips:
            if clip.id in seen:
                skipped.append(
                    Skipped(clip.source, f"duplicate clip id {clip.id!r} (also from {seen[clip.id]})")
                )
                continue
            seen[clip.id] = clip.source
            clips.append(clip)
    clips.sort(key=lambda c: c.id)
    _remove_orphans(layout, clips, jobs)
    stage_names = ["audio"]

    report = PrepareReport(
        out_dir=str(layout.root),
        slice_only=slice_only,
        clips=clips,
        skipped=skipped,
        warnings=warnings,
        n_sources=len(plan.sources),
        n_sources_reused=reused,
        audio_seconds_processed=audio_seconds,
        stages=stage_names,
    )
    if slice_only:
        _write_template(layout, clips, lang)
        report.wall_seconds = time.perf_counter() - t0
        write_report_json(layout.report_json, report)
        if not clips:
            raise GsvError(
                f"no usable clip: all {len(plan.sources)} sources were skipped (see {layout.report_json})"
            )
        return report

    # 3. post-audio stages (text, features; see data/stages.py) ---------------------------------------
    for stage in default_post_audio_stages(cfg) if stages is None else stages:
        name = stage_name(stage)
        LOG.info("stage %s: %d clips", name, len(clips))
        result: StageResult = stage(layout, clips, cfg)
        clips = sorted(result.clips, key=lambda c: c.id)
        skipped.extend(
            Skipped(s.source, s.reason, s.stage if s.stage != "audio" else name) for s in result.skipped
        )
        warnings.extend(result.warnings)
        stage_names.append(name)
    if keep_untranscribed:
        kept = []
        for clip in clips:
            if clip.text:
                kept.append(clip)
            else:
                span = f"{clip.source} [{clip.start:.2f}-{clip.end:.2f} s]"
                skipped.append(Skipped(span, "no transcript", "transcripts"))
        clips = kept

    # 4. split, manifest, report ----------------------------------------------------------------------
    pinned = None
    if val_list is not None:
        keys = {
            c.id: [c.path, Path(c.path).name, c.source, Path(c.source).name, Path(c.source).stem]
            for c in clips
        }
        pinned, unmatched = resolve_val_list(read_val_list(val_list), keys)
        for entry in unmatched:
            warnings.append(WarningItem(str(val_list), f"--val-list entry matches no clip: {entry}", "split"))
    split = assign_split(
        [SplitItem(c.id, c.n_samples) for c in clips], pcfg.split.val_ratio, pcfg.split.seed, pinned
    )
    for clip in clips:
        clip.split = "val" if split[clip.id] == "val" else "train"
    n_val = sum(c.split == "val" for c in clips)
    split_problem = (
        split_warning(len(clips) - n_val, n_val, pcfg.split.val_ratio, pinned=pinned is not None)
        if clips
        else None
    )
    if split_problem is not None:
        warnings.append(WarningItem("split", split_problem, "split"))
    report.clips = clips
    report.skipped = skipped
    report.warnings = warnings
    report.wall_seconds = time.perf_counter() - t0
    write_dataset_outputs(
        layout,
        report,
        clips,
        empty_message=f"no usable clip: all {len(plan.sources)} sources were skipped "
        f"(reasons in {layout.report_json})",
    )
    if len(report.split_clips("train")) == 0:
        warnings.append(
            WarningItem(str(val_list), "every clip is in the validation set; nothing to train on", "split")
        )
        write_report_json(layout.report_json, report)
    return report
