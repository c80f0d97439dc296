"""Benchmark `gsv-train prepare` on long recordings: wall, CPU seconds and peak RSS per step and worker count.

Input: LJSpeech clips (../shared/data/ljspeech-mini, else the embedded sample) resampled to 44.1 kHz
and joined with seeded 0.3-1.5 s silences into `--files` stereo 16-bit WAV recordings of `--minutes`
each (several values: one row group per length), written block by block to a temporary folder
(`--tmp`, default the system's) and deleted afterwards.

Each setting runs the real command line in a fresh process (`python -m gptsovits_train prepare ...`),
so imports and the pool's start-up are counted as a user sees them:

1. `slice`: `prepare INPUT --slice-only --language en -j W`: decode, resample to 32 kHz, official
   silence slicer (+ 20 s maximum), slicer loudness mix, write the clips and the `.list` template;
2. `transcripts`: the template filled with a dummy text and passed back with `--transcripts`: each
   clip decoded, edge-trimmed, mixed to the training loudness, written, its spectrogram cached, its
   text phonemised (English), split, manifest, report (no HuBERT: `--hubert` is not given).

A second table (`--pipeline`, on by default) splits the CPU time of slicing one long file into the
parts of the `-j 2` design, measured with per-thread CPU clocks in this process, one part after the
other (other jobs on a shared machine change them far less than wall times). With more workers than
files, a long file is decoded in segments (`audio.segments`, `data.segmented_source`): each worker
runs segments (`decode` = decode + NaN check + channel mix + clipping count, `resample` (+ the peak and
the slicer's frame RMS of the segment), `write` = the spill file), the parent cuts them in order (`cuts` =
the frames at segment edges + silence slicer + clip groups), and the workers write the clips of each
group (`clips` = loudness mix + int16 + WAV writes). All of it but the parent's `cuts` runs on any free
core, so two cores need about half the sum; `-j 1` (one stream, `data.streamed_source`) needs the sum.

Settings run interleaved (`-j 1`, `-j 2`, `-j 1`, ...) so that a change in the machine's load hits
both alike; `--steps slice` skips the transcripts pass.

Columns: `wall s` = the whole command (fresh process); `prepare s` = the `prepare()` call alone
(`report.json`'s `wall_seconds`: no start-up/imports); `CPU s` = user + system time of the command and
its pool workers (`wait4`); `peak RSS` = the largest resident set of any one of its processes (the
main process's `VmHWM` and its workers' `ru_maxrss`; `wait4`'s own figure would include the
benchmark process that forked it); `x real time` = input seconds / `prepare s`.

    python scripts/bench_prepare.py [--minutes 10 30 60] [--workers 1 2] [--files 1] [--repeat 1]
                                    [--no-pipeline] [--tmp DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

REPO = Path(__file__).resolve().parents[1]
RATE = 44100


def clip_paths() -> list[Path]:
    shared = REPO.parent / "shared" / "data" / "ljspeech-mini" / "wavs"
    folder = shared if shared.is_dir() else REPO / "gptsovits_train" / "sample_data" / "wavs"
    return sorted(folder.glob("*.flac"))


def build_input(folder: Path, minutes: float, n_files: int, seed: int = 0) -> float:
    """Write `n_files` stereo recordings of `minutes` each (clips + silences); returns total seconds."""
    rng = np.random.default_rng(seed)
    clips = []
    for p in clip_paths():
        x, rate = sf.read(p, dtype="float32")
        clips.append(np.asarray(soxr.resample(x, rate, RATE), dtype=np.float32))
    total = 0.0
    k = 0
    for f in range(n_files):
        target = int(minutes * 60 * RATE)
        written = 0
        with sf.SoundFile(folder / f"long_{f:02d}.wav", "w", RATE, 2, "PCM_16") as out:
            while written < target:
                x = clips[k % len(clips)]
                k += 1
                gap = np.zeros(int(rng.uniform(0.3, 1.5) * RATE), dtype=np.float32)
                mono = np.concatenate([x, gap])[: target - written]
                out.write(np.stack([mono, 0.9 * mono], axis=1))  # a slightly different right channel
                written += mono.shape[0]
        total += written / RATE
    return total


def fill_template(template: Path, filled: Path) -> None:
    lines = [ln + "text" for ln in template.read_text(encoding="utf-8").splitlines() if ln.strip()]
    filled.write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass
class Run:
    wall: float
    prepare: float
    cpu: float
    rss_mb: float
    clips: int


#: Runs the CLI and, at exit, writes the peak RSS of this process (`VmHWM`, counted from its own exec,
#: unlike `wait4`'s figure, which includes the benchmark process that forked it) and of its largest
#: pool worker to the file named by `GSV_BENCH_RSS`.
LAUNCHER = """
import atexit, os, resource, sys

def report():
    hwm = 0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(os.environ["GSV_BENCH_RSS"], "w") as out:
        out.write(f"{hwm} {kids}")

atexit.register(report)
sys.argv = ["gsv-train", *sys.argv[1:]]
from gptsovits_train.cli import main
main()
"""


def run_command(args: list[str], out: Path) -> Run:
    """Run `gsv-train ARGS` in a fresh process; wall and CPU (with its workers) via wait4, peak RSS of
    the largest of its processes from the launcher."""
    rss_file = out.parent / f".rss_{out.name}"
    env = dict(os.environ, PYTHONPATH=str(REPO), GSV_BENCH_RSS=str(rss_file))
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(args)}\n{err.decode()[-2000:]}")
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    main_kib, worker_kib = (int(v) for v in rss_file.read_text().split())
    rss_file.unlink()
    return Run(
        wall=wall,
        prepare=float(report["wall_seconds"]),
        cpu=usage.ru_utime + usage.ru_stime,
        rss_mb=max(main_kib, worker_kib) / 1024,
        clips=int(report["clips"]),
    )


def pipeline_cpu(path: Path, work: Path) -> dict[str, float]:
    """CPU seconds of the parts of slicing `path` in segments (see the module docstring)."""
    from gptsovits_train.audio.segments import decode_segment
    from gptsovits_train.config import Config
    from gptsovits_train.data.segmented_source import SegmentedSource, segment_plan
    from gptsovits_train.data.source_clips import SourceJob
    from gptsovits_train.data.sources import Source
    from gptsovits_train.data.streamed_source import ClipGroup, write_clip_group

    cfg = Config()
    job = SourceJob(
        Source(path, "long", None, "spk", "en"), "slice", False, False, work, cfg.audio, cfg.prepare
    )
    spill = work / "spill.f32"
    groups: list[ClipGroup] = []
    plan = segment_plan(job, 2)
    if plan is None:
        raise SystemExit(f"{path} is not split into segments (too short?)")
    source = SegmentedSource.start(job, spill, plan, groups.append)
    cuts = None
    for k in range(len(plan)):
        cuts = source.add(decode_segment(path, plan, k, spill))
    assert cuts is not None
    start = time.thread_time()
    for group in groups:
        write_clip_group(job, spill, group)
    spill.unlink()
    return {**cuts.cpu, "clips": time.thread_time() - start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, nargs="+", default=[10.0, 30.0, 60.0])
    ap.add_argument("--files", type=int, default=1, help="recordings per length (default one long file)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=1, help="runs per setting; the fastest is reported")
    ap.add_argument("--tmp", type=Path, default=None, help="folder for the input and outputs")
    ap.add_argument("--no-pipeline", dest="pipeline", action="store_false", help="skip the CPU split table")
    ap.add_argument("--steps", nargs="+", choices=["slice", "transcripts"], default=["slice", "transcripts"])
    args = ap.parse_args()
    parts: list[tuple[float, dict[str, float]]] = []

    rows: list[tuple[float, int, str, Run, float]] = []
    for minutes in args.minutes:
        work = Path(tempfile.mkdtemp(prefix="bench_prepare_", dir=args.tmp))
        try:
            src = work / "input"
            src.mkdir()
            seconds = build_input(src, minutes, args.files)
            size = sum(p.stat().st_size for p in src.iterdir()) / 2**20
            print(
                f"input: {args.files} x {minutes:g} min, 44.1 kHz stereo 16-bit WAV ({size:.0f} MiB)",
                flush=True,
            )
            if args.pipeline:
                parts.append((minutes, pipeline_cpu(src / "long_00.wav", work / "pipeline")))
            best: dict[tuple[int, str], Run] = {}
            for r in range(args.repeat):
                for w in args.workers:
                    sliced, ds = work / f"sliced_{w}_{r}", work / f"dataset_{w}_{r}"
                    jobs = ["-j", str(w), "-q", "--language", "en", "--out"]
                    runs = {
                        "slice": run_command(
                            ["prepare", str(src), "--slice-only", *jobs, str(sliced)], sliced
                        )
                    }
                    if "transcripts" in args.steps:
                        fill_template(sliced / "transcripts_template.list", sliced / "filled.list")
                        filled = str(sliced / "filled.list")
                        runs["transcripts"] = run_command(
                            ["prepare", "--transcripts", filled, *jobs, str(ds)], ds
                        )
                    print(
                        f"  {minutes:g} min, -j {w}, run {r + 1}: "
                        + ", ".join(
                            f"{k} {v.wall:.1f} s ({v.clips} clips, {v.rss_mb:.0f} MB)"
                            for k, v in runs.items()
                        ),
                        flush=True,
                    )
                    for name, run in runs.items():
                        if (w, name) not in best or run.prepare < best[w, name].prepare:
                            best[w, name] = run
                    # outputs are deleted only at the end: on an ext4 without a journal (this
                    # machine's) a file created within a minute of many deletions in the folder's
                    # block group costs a scan past every recently freed inode (perf: 9 % of a run)
            for w in args.workers:
                for name in args.steps:
                    if (w, name) in best:
                        rows.append((minutes, w, name, best[w, name], seconds))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print("| input | workers | step | wall s | prepare s | x real time | CPU s | peak RSS MB | clips |")
    print("|---|---|---|---|---|---|---|---|---|")
    for minutes, w, name, run, seconds in rows:
        print(
            f"| {minutes:g} min | {w} | {name} | {run.wall:.2f} | {run.prepare:.2f} | "
            f"{seconds / run.prepare:.0f}x | {run.cpu:.2f} | {run.rss_mb:.0f} | {run.clips} |"
        )
    speedups = []
    for minutes in args.minutes:
        by_w = {w: run for m, w, name, run, _ in rows if m == minutes and name == "slice"}
        if 1 in by_w and 2 in by_w:
            speedups.append(
                f"{minutes:g} min: slice -j 2 vs -j 1 = "
                f"{by_w[1].prepare / by_w[2].prepare:.2f}x (prepare s), "
                f"{by_w[1].wall / by_w[2].wall:.2f}x (wall s)"
            )
    for line in speedups:
        print(line)
    if parts:
        print()
        names = ["decode", "resample", "write", "cuts", "clips"]
        print("| input | " + " | ".join(names) + " | sum | parent (cuts) |")
        print("|---" * (len(names) + 3) + "|")
        for minutes, cpu in parts:
            print(
                f"| {minutes:g} min | "
                + " | ".join(f"{cpu[n]:.2f}" for n in names)
                + f" | {sum(cpu[n] for n in names):.2f} | {cpu['cuts'] / sum(cpu[n] for n in names):.0%} |"
            )


if __name__ == "__main__":
    main()
