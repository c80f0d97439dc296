"""Full disks, unwritable folders and file modes (issue 12, items 8 and 10).

A full disk is the kernel's own ENOSPC: the file-writing layer (`fileio._make_temp`) is made to hand out
a temporary name that points at /dev/full, so the real write of a checkpoint, a spectrogram or a record
fails exactly as on a full device. A read-only folder is an injected EACCES from the same layer (the
tests run as root in CI, where chmod does not stop writes). Through `prepare`/`fit` and the CLI: one line
naming the cause, finished work kept, exit 1; a checkpoint is never truncated and a good one never replaced.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gptsovits_train import fileio
from gptsovits_train.cli import app
from gptsovits_train.config import Config, load_config
from gptsovits_train.data.prepare import prepare
from gptsovits_train.fileio import OutputWriteError
from gptsovits_train.layout import DatasetLayout, RunLayout
from gptsovits_train.train.loop import fit
from gptsovits_train.train.run_checkpoints import load_run_checkpoint
from tests.fit_helpers import CONFIGS, make_dataset

runner = CliRunner()
pytestmark = pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def full_disk(tmp: Path) -> Path:
    """Make the temporary file a link to /dev/full: every write to it fails with the kernel's ENOSPC."""
    tmp.unlink()
    tmp.symlink_to("/dev/full")
    return tmp


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ds"), n_train=4, n_val=2, max_seconds=1.5)


def tiny_config(dataset: DatasetLayout, epochs: int = 3) -> Config:
    return load_config(
        CONFIGS / "tiny.yaml",
        [f"train.dataset={dataset.root}", f"train.epochs={epochs}", "train.tensorboard=false"],
    )


# -------------------------------------------------------------------------------------------------- fit
def test_fit_on_a_full_disk_keeps_the_good_checkpoints(tmp_path, dataset, monkeypatch):
    layout = RunLayout(tmp_path / "run")
    real = fileio._make_temp
    before: dict[str, str] = {}

    def disk_full_after_epoch_1(target: Path) -> Path:
        tmp = real(target)
        if target.name.startswith(".staging") and layout.best.is_file():
            before.update(best=sha(layout.best), last=sha(layout.last))
            return full_disk(tmp)
        return tmp

    monkeypatch.setattr(fileio, "_make_temp", disk_full_after_epoch_1)
    with pytest.raises(OutputWriteError) as err:
        fit(tiny_config(dataset), layout.root, progress=False)
    assert str(err.value) == (
        f"no space left on the device holding {layout.ckpt_dir.absolute()} (while writing "
        f".staging-{os.getpid()}.pt)"
    )
    assert before, "the disk never filled up"
    assert sha(layout.best) == before["best"] and sha(layout.last) == before["last"]
    assert load_run_checkpoint(layout.best)["epoch"] == load_run_checkpoint(layout.last)["epoch"] == 1
    # no temporary or staging file is left behind
    assert sorted(p.name for p in layout.ckpt_dir.iterdir()) == ["best.pt", "epoch_0001.pt", "last.pt"]


def test_fit_cli_read_only_checkpoint_folder_is_one_line(tmp_path, dataset, monkeypatch):
    run = tmp_path / "run"
    layout = RunLayout(run / "sovits")  # each stage trains in its own subfolder
    real = fileio._make_temp

    def read_only_after_epoch_1(target: Path) -> Path:
        if target.name == "last.pt" and layout.best.is_file():
            raise PermissionError(errno.EACCES, "Permission denied", str(target.parent / ".last.pt.tmp-x"))
        return real(target)

    monkeypatch.setattr(fileio, "_make_temp", read_only_after_epoch_1)
    args = ["fit", "-c", str(CONFIGS / "tiny.yaml"), "--set", f"train.dataset={dataset.root}", "-r", str(run)]
    res = runner.invoke(app, [*args, "--set", "train.tensorboard=false", "-q"])
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    (line,) = error_lines(res.output)
    assert line.startswith(
        f"error: folder {layout.ckpt_dir.absolute()} is not writable (while writing last.pt); "
        "the checkpoints already written are kept."
    )
    assert line.endswith(
        f"continue with `gsv-train fit --config {CONFIGS / 'tiny.yaml'} --run-dir {run} --resume`"
    )
    assert load_run_checkpoint(layout.last)["epoch"] == 1
    assert sorted(p.name for p in layout.ckpt_dir.iterdir()) == ["best.pt", "epoch_0001.pt", "last.pt"]


# ---------------------------------------------------------------------------------------------- prepare
def lj_inputs(tmp_path: Path, sample_dir: Path) -> tuple[Path, Path]:
    src = tmp_path / "in"
    src.mkdir()
    names = ["LJ001-0002", "LJ001-0008", "LJ001-0013"]
    for name in names:
        (src / f"{name}.flac").write_bytes((sample_dir / "wavs" / f"{name}.flac").read_bytes())
        (src / f"{name}.txt").write_text("some words.", encoding="utf-8")
    return src, tmp_path / "ds"


def test_prepare_on_a_full_disk_keeps_finished_sources(tmp_path, sample_dir, monkeypatch):
    src, out = lj_inputs(tmp_path, sample_dir)
    real = fileio._make_temp

    def disk_full_at_the_third_spectrogram(target: Path) -> Path:
        tmp = real(target)
        if target.parent.name == "spec" and len(list(target.parent.glob("*.npy"))) == 2:
            return full_disk(tmp)
        return tmp

    monkeypatch.setattr(fileio, "_make_temp", disk_full_at_the_third_spectrogram)
    res = runner.invoke(app, ["prepare", str(src), "-l", "en", "-j", "1", "--out", str(out), "-q"])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    (line,) = error_lines(res.output)
    assert line.startswith(
        f"error: no space left on the device holding {(out / 'spec').absolute()} "
        "(while writing LJ001-0013.npy)"
    )
    assert "the finished clips are kept" in line and "run the same command again: it resumes" in line
    assert sorted(p.name for p in (out / "spec").iterdir()) == ["LJ001-0002.npy", "LJ001-0008.npy"]

    monkeypatch.setattr(fileio, "_make_temp", real)  # space again: the rerun resumes
    report = prepare([src], out, Config(), language="en", workers=1, progress=False)
    assert report.n_sources_reused == 2 and report.n_clips == 3


def test_prepare_unwritable_output_folder_is_one_line(tmp_path, sample_dir, monkeypatch):
    src, out = lj_inputs(tmp_path, sample_dir)
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: object, **kwargs: object) -> None:
        if self.name == ".work":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", mkdir)
    res = runner.invoke(app, ["prepare", str(src), "-l", "en", "--out", str(out), "-q"])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    (line,) = error_lines(res.output)
    assert line.startswith(f"error: folder {out.absolute()} is not writable (while writing .work)")


# ------------------------------------------------------------------------------------------- file modes
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002, 0o077])
def test_atomic_files_get_the_mode_of_a_plain_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w") as fh:
            fh.write("x")
        fileio.atomic_write_text(tmp_path / "atomic.txt", "x")
        fileio.atomic_write_bytes(tmp_path / "nofsync.bin", b"x", fsync=False)
    finally:
        os.umask(old)
    plain = (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert plain == 0o666 & ~umask
    assert (tmp_path / "atomic.txt").stat().st_mode & 0o777 == plain
    assert (tmp_path / "nofsync.bin").stat().st_mode & 0o777 == plain


def test_prepare_outputs_get_umask_modes(tmp_path, sample_dir):
    src, out = lj_inputs(tmp_path, sample_dir)
    old = os.umask(0o022)
    try:
        prepare([src], out, Config(), language="en", workers=1, progress=False)
    finally:
        os.umask(old)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 8
    assert {p.stat().st_mode & 0o777 for p in files} == {0o644}
