"""SoVITS runs that run out of memory (injected on CPU by a hook that raises `torch.OutOfMemoryError`).

- in the discriminator phase (before the D update): the whole step is redone in halves, and the run is
  bit-identical to one that used halves from that step on;
- in the generator phase (after the D update): only the G phase is redone; D is updated exactly once for
  that batch (equal to the D of a run without the error), the scaler updates once;
- a resume keeps the halved size; one item that still does not fit is a clear one-line error;
- pieces equal their own collate; the `batch_size: auto` measurement leaves every state as it was.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from gptsovits_train.cli import app
from gptsovits_train.config import Config, load_config
from gptsovits_train.layout import RunLayout
from gptsovits_train.train.batch_fit import BatchFit, choose_batch_size
from gptsovits_train.train.dataset import SoVITSDataset, collate, load_splits
from gptsovits_train.train.distributed import DistContext
from gptsovits_train.train.gpt_accumulation import AccumulationRule
from gptsovits_train.train.loop import StepInfo, run_stage
from gptsovits_train.train.metrics import read_metrics
from gptsovits_train.train.run_checkpoints import load_run_checkpoint
from gptsovits_train.train.sovits_stage import SovitsStage
from gptsovits_train.train.step import DPhase, SovitsStep, fitted_step
from tests.fit_helpers import CONFIGS, make_dataset

CPU_DEVICE = torch.device("cpu")
CTX = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), initialised_here=False)
STAGE_KEYS = ("generator", "discriminator", "optim_g", "optim_d", "scaler")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    seconds = [1.2, 0.9, 1.5, 1.1, 1.0]  # padding differs between pieces of a batch
    layout = make_dataset(tmp_path_factory.mktemp("ds"), n_train=4, n_val=1, seconds=seconds)
    return layout.root


def _cfg(ds: Path, *extra: str) -> Config:
    return load_config(
        CONFIGS / "tiny.yaml",
        [
            f"train.dataset={ds}",
            "train.epochs=1",
            "train.batch_size=4",
            "train.min_items_per_epoch=12",  # 3 steps of 4 per epoch
            "model.segment_size=1280",
            "train.tensorboard=false",
            "train.listen_clips=0",
            "train.val_audio_samples=0",
            *extra,
        ],
    )


class Inject:
    """A forward pre-hook that raises an out-of-memory error at the listed calls (0-based) and records
    the batch size of every call."""

    def __init__(self, at: set[int] | None = None, from_call: int | None = None) -> None:
        self.at, self.from_call = at or set(), from_call
        self.calls: list[int] = []

    def __call__(self, module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        index = len(self.calls)
        self.calls.append(int(args[0].shape[0]))
        if index in self.at or (self.from_call is not None and index >= self.from_call):
            raise torch.OutOfMemoryError(f"CUDA out of memory (injected at call {index})")


class HookedStage(SovitsStage):
    """The SoVITS stage with a hook on the discriminator (called once per piece in each phase)."""

    def __init__(self, cfg: Config, hook: Inject | None) -> None:
        super().__init__(cfg)
        self.hook = hook

    def build(self, ctx: DistContext, precision: Any) -> Any:
        data = super().build(ctx, precision)
        if self.hook is not None:
            self.D.register_forward_pre_hook(self.hook)
        return data


def _stage_state(run: Path) -> dict[str, Any]:
    ck = load_run_checkpoint(RunLayout(run).last)
    return {k: ck[k] for k in STAGE_KEYS}


def _assert_equal(a: Any, b: Any, path: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _assert_equal(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list | tuple):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def _adam_steps(optimizer_state: dict[str, Any]) -> set[int]:
    return {int(s["step"]) for s in optimizer_state["state"].values()}


def test_discriminator_phase_oom_redoes_the_step_in_halves(dataset: Path, tmp_path: Path) -> None:
    """Step 2's D call runs out of memory. The run finishes, records the halving, and ends bit-identical
    to a run without the error that switched to halves before step 2."""
    hook = Inject(at={2})  # step 1: calls 0 (D phase), 1 (G phase); step 2: call 2 = its D phase
    stage = HookedStage(_cfg(dataset), hook)
    result = run_stage(stage, stage.cfg, tmp_path / "a", progress=False)
    assert result.steps == 3
    assert hook.calls == [4, 4, 4] + [2] * 4 + [2] * 4  # the failed call, then steps 2 and 3 in halves
    record = {"epoch": 1, "step": 2, "old": 4, "new": 2, "where": "discriminator phase"}
    events = [e for e in read_metrics(RunLayout(tmp_path / "a").metrics) if e["event"] == "batch_halved"]
    assert [{k: e[k] for k in record} for e in events] == [record]
    summary = json.loads(RunLayout(tmp_path / "a").summary.read_text())
    assert summary["batch_size"]["halvings"] == [record]
    assert summary["batch_size"]["size"] == 4 and summary["batch_size"]["micro"] == 2

    reference = HookedStage(_cfg(dataset), None)

    def halve_before_step_2(info: StepInfo) -> None:
        if info.step == 1:
            reference.batch_fit.micro = 2

    run_stage(reference, reference.cfg, tmp_path / "b", progress=False, on_step=halve_before_step_2)
    _assert_equal(_stage_state(tmp_path / "a"), _stage_state(tmp_path / "b"))


def test_generator_phase_oom_applies_the_discriminator_update_once(dataset: Path, tmp_path: Path) -> None:
    """Step 2's second D call (G phase, after the D update) runs out of memory: only the G phase is
    redone. D after step 2 equals D after step 2 of a run without the error; each optimizer stepped once
    per batch."""
    snapshots: dict[str, dict[str, torch.Tensor]] = {}

    def keep_d(name: str):
        def on_step(info: StepInfo) -> None:
            if info.step == 2:
                snapshots[name] = {k: v.clone() for k, v in info.discriminator.state_dict().items()}

        return on_step

    hook = Inject(at={3})
    stage = HookedStage(_cfg(dataset), hook)
    run_stage(stage, stage.cfg, tmp_path / "a", progress=False, on_step=keep_d("oom"))
    assert hook.calls == [4, 4, 4, 4] + [2, 2] + [2] * 4  # step 2: D phase whole, G phase failed, halves
    assert stage.batch_fit.halvings == [
        {"epoch": 1, "step": 2, "old": 4, "new": 2, "where": "generator phase"}
    ]
    plain = HookedStage(_cfg(dataset), None)
    run_stage(plain, plain.cfg, tmp_path / "b", progress=False, on_step=keep_d("plain"))
    _assert_equal(snapshots["oom"], snapshots["plain"])
    with pytest.raises(AssertionError):  # the G phase did change: halves instead of the whole batch
        _assert_equal(_stage_state(tmp_path / "a")["generator"], _stage_state(tmp_path / "b")["generator"])
    state = _stage_state(tmp_path / "a")
    assert _adam_steps(state["optim_d"]) == {3} and _adam_steps(state["optim_g"]) == {3}
    assert all(torch.isfinite(v).all() for v in state["generator"].values() if v.is_floating_point())


def _train_set(cfg: Config, dataset: Path) -> SoVITSDataset:
    t = cfg.train
    splits = load_splits(dataset, cfg.audio, ssl_dim=cfg.model.ssl_dim, boundaries=t.bucket_boundaries)
    return SoVITSDataset(splits.root, splits.train, cfg.audio)


def _unit_step(dataset: Path) -> tuple[SovitsStep, Any, torch.amp.GradScaler]:
    """A SoVITS stage's step on CPU with an enabled CPU grad scaler (the fp16 code path)."""
    cfg = _cfg(dataset)
    stage = SovitsStage(cfg)
    stage.build(CTX, "fp32")
    stage.init_weights()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1)
    stage.scaler = scaler
    step = stage._step(stage.G, stage.D)
    ds = _train_set(cfg, dataset)
    batch = collate([ds[i] for i in range(4)])
    return step, batch, scaler


@pytest.mark.parametrize(
    "inject, at, where",
    [
        ("forward", 0, "discriminator phase"),
        ("forward", 1, "generator phase"),
        ("grad_norm", 0, "discriminator phase"),  # after unscale_(optim_d): the redo unscales again
        ("grad_norm", 1, "generator phase"),  # after unscale_(optim_g), with optim_d already stepped
    ],
)
def test_the_scaler_updates_once_per_redone_step(
    dataset: Path, monkeypatch: pytest.MonkeyPatch, inject: str, at: int, where: str
) -> None:
    """With an enabled grad scaler (growth every step): one step with an out-of-memory error in either
    phase — in a forward, or after the scaler unscaled that phase's gradients — ends with the scale
    doubled exactly once and each optimizer stepped exactly once."""
    import gptsovits_train.train.step as step_module

    step, batch, scaler = _unit_step(dataset)
    hook = Inject(at={at})
    if inject == "forward":
        step.D.register_forward_pre_hook(hook)
    else:
        real = step_module._grad_norm

        def failing(params: Any, clip: Any) -> torch.Tensor:
            hook(step.D, (torch.zeros(4),))
            return real(params, clip)

        monkeypatch.setattr(step_module, "_grad_norm", failing)
    fit = BatchFit(4, cap=4, margin=0.0)
    result = fitted_step(step, batch, fit)
    assert result.ok and [h["where"] for h in fit.halvings] == [where]
    assert scaler.get_scale() == 2048.0 and scaler.state_dict()["_growth_tracker"] == 0
    for opt in (step.optim_d, step.optim_g):
        assert _adam_steps(opt.state_dict()) == {1}
    assert all(p.grad is None for p in [*step.g_params, *step.d_params])


def test_generator_phase_redo_equals_its_own_reference(dataset: Path) -> None:
    """The G-phase redo is: the whole-batch D update, then the G phase in halves from the step's RNG
    state — computed here step by step on a second identical stage."""
    step, batch, _ = _unit_step(dataset)
    ref, _, _ = _unit_step(dataset)
    step.D.register_forward_pre_hook(Inject(at={1}))
    torch.manual_seed(7)
    fitted_step(step, batch, BatchFit(4, cap=4, margin=0.0))
    torch.manual_seed(7)
    rng = torch.get_rng_state()
    d = ref.d_phase(batch, [slice(0, 4)])
    torch.set_rng_state(rng)
    ref.g_phase(batch, [slice(0, 2), slice(2, 4)], DPhase(d.ok, d.gnorm, d.loss, None, []))
    _assert_equal(step.G.state_dict(), ref.G.state_dict())
    _assert_equal(step.D.state_dict(), ref.D.state_dict())


def test_resume_keeps_the_halved_size(dataset: Path, tmp_path: Path) -> None:
    stage = HookedStage(_cfg(dataset), Inject(at={2}))
    run_stage(stage, stage.cfg, tmp_path / "run", progress=False)
    watch = Inject()
    resumed = HookedStage(_cfg(dataset, "train.epochs=2"), watch)
    result = run_stage(resumed, resumed.cfg, tmp_path / "run", resume=True, progress=False)
    assert result.steps == 6
    assert watch.calls == [2] * 12  # 3 steps x 2 pieces x 2 phases
    assert resumed.batch_fit.micro == 2 and resumed.batch_fit.size == 4
    assert [h["step"] for h in result.summary["batch_size"]["halvings"]] == [2]


def test_one_item_that_does_not_fit_is_a_clear_error(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From step 2 on every D call runs out of memory: 4 -> 2 -> 1 -> a one-line error, exit 1, last.pt
    kept, both halvings in metrics.jsonl."""
    from gptsovits_train.train import sovits_stage

    real = sovits_stage.build_discriminator_from_config

    def hooked(*args: Any, **kwargs: Any) -> torch.nn.Module:
        D = real(*args, **kwargs)
        D.register_forward_pre_hook(Inject(from_call=2))
        return D

    monkeypatch.setattr(sovits_stage, "build_discriminator_from_config", hooked)
    run = tmp_path / "voice"
    args = [
        "fit",
        "--config",
        str(CONFIGS / "tiny.yaml"),
        "--run-dir",
        str(run),
        "--stage",
        "sovits",
        "--quiet",
    ]
    sets = [f"train.dataset={dataset}", "train.batch_size=4", "train.min_items_per_epoch=12"]
    sets += ["model.segment_size=1280", "train.tensorboard=false", "train.listen_clips=0"]
    result = CliRunner().invoke(app, args + [x for s in sets for x in ("--set", s)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "out of memory in the discriminator phase of step 2 even with one item per pass" in result.output
    layout = RunLayout(run / "sovits")
    assert layout.last.is_file()
    halved = [(e["old"], e["new"]) for e in read_metrics(layout.metrics) if e["event"] == "batch_halved"]
    assert halved == [(4, 2), (2, 1)]


def test_sovits_piece_is_its_own_collate(dataset: Path) -> None:
    cfg = _cfg(dataset)
    ds = _train_set(cfg, dataset)
    samples = [ds[i] for i in range(4)]
    whole = collate(samples)
    by_id = {s.clip_id: s for s in samples}
    assert len({int(n) for n in whole.spec_lengths}) > 1  # padding differs between the pieces
    for sl in (slice(0, 2), slice(2, 4), slice(1, 3), slice(3, 4)):
        piece, fresh = whole.piece(sl), collate([by_id[c] for c in whole.clip_ids[sl]])
        for name in (
            "ssl",
            "ssl_lengths",
            "spec",
            "spec_lengths",
            "wav",
            "wav_lengths",
            "text",
            "text_lengths",
        ):
            assert torch.equal(getattr(piece, name), getattr(fresh, name)), (sl, name)
        assert piece.clip_ids == fresh.clip_ids


def test_auto_measurement_leaves_every_state_as_it_was(dataset: Path) -> None:
    """The real SoVITS measurement passes on CPU, with an injected memory model (peak 1000 + 100·n bytes)
    and an out-of-memory error above 5 items raised halfway through the passes (in the G phase, after
    the D backward left gradients). The choice follows the formula; weights, buffers, optimizer and
    scaler states, RNG, gradients and train/eval flags are untouched."""
    cfg = _cfg(dataset)
    stage = SovitsStage(cfg)
    stage.build(CTX, "fp32")
    stage.init_weights()
    ds = _train_set(cfg, dataset)
    stage.train_step(collate([ds[0], ds[1]]))  # the optimizers hold state now
    stage.G.eval()
    before = {
        "models": {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in stage.models().items()},
        "optim": [o.state_dict() for o in (stage.optim_g, stage.optim_d)],
        "scaler": stage.scaler.state_dict(),
    }
    rng = torch.get_rng_state()

    class OomAbove5:
        calls = 0

        def __call__(self, module: torch.nn.Module, args: tuple[Any, ...]) -> None:
            self.calls += 1
            if self.calls % 2 == 0 and args[0].shape[0] > 5:  # the G-phase D call of each pass
                raise torch.OutOfMemoryError("injected")

    handle = stage.D.register_forward_pre_hook(OomAbove5())

    measured: list[int] = []

    def fake_peak(run: Any) -> int:
        watch = stage.G.register_forward_pre_hook(lambda m, a: measured.append(int(a[0].shape[0])))
        try:
            run()
        finally:
            watch.remove()
        return 1000 + 100 * measured[-1]

    measure = stage.memory_probe(ds, fake_peak)
    fit = BatchFit("auto", cap=16, margin=0.0)
    got = choose_batch_size(fit, CPU_DEVICE, measure=measure, extra=500, budget=2_200)
    handle.remove()
    assert got == min(16, 5, (2_200 - 500 - 1000) // 100)
    assert set(measured) >= {1, 2, 4, 8}
    after_models = {n: m.state_dict() for n, m in stage.models().items()}
    _assert_equal(before["models"], after_models)
    _assert_equal(before["optim"], [o.state_dict() for o in (stage.optim_g, stage.optim_d)])
    _assert_equal(before["scaler"], stage.scaler.state_dict())
    assert torch.equal(rng, torch.get_rng_state())
    assert all(p.grad is None for m in stage.models().values() for p in m.parameters())
    assert not stage.G.training and stage.D.training


def test_the_discriminator_overflow_survives_a_generator_phase_redo(
    dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-finite D loss (the scaler's overflow record of the D update), then an out-of-memory error in
    the G phase: the redo keeps D's record, so `scaler.update()` still halves the scale; D is not updated."""
    import gptsovits_train.train.step as step_module

    step, batch, scaler = _unit_step(dataset)
    d_before = {k: v.clone() for k, v in step.D.state_dict().items()}
    real = step_module.discriminator_loss

    def nan_loss(r: Any, f: Any) -> Any:
        loss, parts = real(r, f)
        return loss * float("nan"), parts

    monkeypatch.setattr(step_module, "discriminator_loss", nan_loss)
    step.D.register_forward_pre_hook(Inject(at={1}))
    fit = BatchFit(4, cap=4, margin=0.0)
    result = fitted_step(step, batch, fit)
    assert not result.d_ok and result.g_ok and fit.micro == 2
    assert scaler.get_scale() == 512.0
    _assert_equal(d_before, step.D.state_dict())


# ---------------------------------------------------------------------------------------------- GPT
@pytest.fixture(scope="module")
def gpt_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.gpt_helpers import add_gpt_features

    layout = make_dataset(tmp_path_factory.mktemp("gptds"), n_train=6, n_val=2, max_seconds=1.5)
    add_gpt_features(layout)
    return layout.root


def _gpt_cfg(ds: Path, *extra: str) -> Config:
    from tests.gpt_helpers import TINY_GPT

    sets = [f"train.dataset={ds}", "train.tensorboard=false", *TINY_GPT, "gpt.epochs=1", *extra]
    return load_config(CONFIGS / "tiny.yaml", sets)


def test_gpt_stage_halves_records_and_auto_on_cpu(gpt_dataset: Path, tmp_path: Path) -> None:
    """GPT through the engine: `batch_size: auto` on CPU takes min(8, cap, official cap); an injected
    out-of-memory error in the third batch halves it, the run finishes, metrics.jsonl and the summary
    record it, the checkpoint keeps it, and the optimizer stepped as the accumulation rule says."""
    from gptsovits_train.train.gpt_stage import GptStage, engine_config

    cfg = _gpt_cfg(gpt_dataset, "gpt.batch_size=auto", "gpt.batch_size_cap=5", "gpt.min_items_per_epoch=24")
    hook = Inject(at={2})

    class Hooked(GptStage):
        def build(self, ctx: DistContext, precision: Any) -> Any:
            data = super().build(ctx, precision)
            self.model.h.layers[0].register_forward_pre_hook(hook)
            return data

    stage = Hooked(cfg, tmp_path / "gpt")
    result = run_stage(stage, engine_config(cfg), tmp_path / "gpt", progress=False)
    # 6 clips x 4 visits = 24 items: official cap 24 // 4 = 6; auto on CPU: min(8, cap 5, 6) = 5
    assert stage.batch_fit.size == 5 and stage.batch_fit.source.startswith("auto (cpu")
    assert hook.calls[:4] == [5, 5, 5, 3]  # batches 0, 1, then batch 2 fails and the window is replayed
    batches = result.summary["dataset"]["batches_per_epoch"]
    assert batches == 5 and result.steps == batches
    record = {"epoch": 1, "step": 3, "old": 5, "new": 3, "where": "GPT forward/backward"}
    events = [e for e in read_metrics(RunLayout(tmp_path / "gpt").metrics) if e["event"] == "batch_halved"]
    assert [{k: e[k] for k in record} for e in events] == [record]
    assert result.summary["batch_size"]["halvings"] == [record]
    ck = load_run_checkpoint(RunLayout(tmp_path / "gpt").last)
    assert ck["batch_fit"]["micro"] == 3 and ck["batch_fit"]["size"] == 5
    steps = {int(s["step"]) for s in ck["stepper"]["optimizer"]["state"].values()}
    assert steps == {AccumulationRule("per_epoch", 2).steps_per_epoch(batches)}


def test_auto_measures_before_the_initial_weights(dataset: Path) -> None:
    """`batch_size: auto` measures inside `build`, before the initial weights (and the random codebook)
    are in place: the measurement works, and the generator's codebook is still uninitialised after."""
    cfg = _cfg(dataset)
    stage = SovitsStage(cfg)
    stage.build(CTX, "fp32")
    quantizer: Any = stage.G.quantizer
    assert not quantizer.is_initialized()
    before = {k: v.clone() for k, v in stage.G.state_dict().items()}
    ran: list[int] = []
    measure = stage.memory_probe(_train_set(cfg, dataset), lambda run: ran.append(1) or run() or 7)
    assert measure(2) == 7 and ran == [1]
    assert not quantizer.is_initialized()
    _assert_equal(before, stage.G.state_dict())


# ----------------------------------------------------------------------------------------- validation
class EvalOnly(Inject):
    """Raises an out-of-memory error in eval mode (validation) for passes of more than `over` items."""

    def __init__(self, over: int) -> None:
        super().__init__()
        self.over = over

    def __call__(self, module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        if module.training:
            return
        self.calls.append(int(args[0].shape[0]))
        if self.calls[-1] > self.over:
            raise torch.OutOfMemoryError(f"CUDA out of memory (injected, {self.calls[-1]} items)")


def test_gpt_validation_out_of_memory_halves_the_validation_batch(
    gpt_dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Validation results do not depend on the clips per pass: after an out-of-memory error the pass is
    redone with half as many (for the rest of the run) and gives the one-clip-at-a-time metrics; at one
    clip per pass it is a clear error."""
    from gptsovits_train.train.batch_fit import OutOfMemory
    from gptsovits_train.train.gpt_stage import GptStage

    stage = GptStage(_gpt_cfg(gpt_dataset, "gpt.val_batch_size=2"), tmp_path / "gpt")
    stage.build(CTX, "fp32")
    stage.val_batch = 1
    reference = stage.validate(1, final=False)
    assert reference.n_clips == 2
    stage.val_batch = 2
    hook = EvalOnly(over=1)
    handle = stage.model.h.layers[0].register_forward_pre_hook(hook)
    with caplog.at_level("WARNING"):
        got = stage.validate(1, final=False)
    assert hook.calls == [2, 1, 1] and stage.val_batch == 1
    assert got.metrics == reference.metrics and got.n_clips == reference.n_clips
    assert "out of memory during validation with 2 clips per pass: redoing it with 1" in caplog.text
    handle.remove()
    stage.model.h.layers[0].register_forward_pre_hook(EvalOnly(over=0))
    with pytest.raises(OutOfMemory, match=r"during validation \(1 clip per pass\).*longest validation clip"):
        stage.validate(2, final=False)


def test_sovits_validation_out_of_memory_is_a_clear_error(dataset: Path) -> None:
    """SoVITS validates one clip per pass already: an out-of-memory error there is one clear error."""
    from gptsovits_train.train.batch_fit import OutOfMemory

    stage = SovitsStage(_cfg(dataset))
    stage.build(CTX, "fp32")
    stage.init_weights()
    stage.G.dec.register_forward_pre_hook(EvalOnly(over=0))
    stage.G.eval()
    with pytest.raises(OutOfMemory, match=r"during validation \(1 clip per pass\).*max_clip_seconds"):
        stage.validate(1, final=False)
