"""`batch_fit`: the `batch_size: auto` search, pieces that equal their own collate, halving, its state, and
the GPT accumulation window rebuilt after an out-of-memory error (injected on CPU)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from gptsovits_train.models.t2s import Text2SemanticDecoder
from gptsovits_train.train.batch_fit import (
    CPU_AUTO_BATCH,
    BatchFit,
    OutOfMemory,
    choose_batch_size,
    memory_fits,
    probe_batch_size,
)
from gptsovits_train.train.gpt_accumulation import AccumulationRule
from gptsovits_train.train.gpt_data import GptBatch, GptItem, gpt_collate
from gptsovits_train.train.gpt_step import GptStepper
from tests.t2s_helpers import TINY

CPU = torch.device("cpu")


# ------------------------------------------------------------------------------------------ the search
@pytest.mark.parametrize("cap", [1, 5, 8, 32])
def test_probe_finds_the_largest_fitting_size_up_to_the_cap(cap: int) -> None:
    for limit in range(0, 40):
        tried: list[int] = []

        def fits(n: int, limit: int = limit, tried: list[int] = tried) -> bool:
            tried.append(n)
            return n <= limit

        assert probe_batch_size(fits, cap) == min(limit, cap), (limit, cap)
        assert all(1 <= n <= cap for n in tried)
        assert len(tried) <= 2 * math.ceil(math.log2(cap + 1)) + 1  # doubling + bisection, not a linear scan


def test_memory_budget_choice_matches_the_formula() -> None:
    """Peak `a + b·n`, an out-of-memory error above `n_oom`, `extra` bytes of optimizer state to come:
    the choice is min(cap, n_oom, ⌊(budget − extra − a) / b⌋)."""
    a, b, extra = 1_000, 300, 500
    for n_oom in (3, 7, 100):
        for budget in (1_800, 4_000, 9_999, 50_000):

            def measure(n: int, n_oom: int = n_oom) -> int:
                if n > n_oom:
                    raise torch.OutOfMemoryError(f"injected: {n} items")
                return a + b * n

            expected = min(20, n_oom, (budget - extra - a) // b)
            fit = BatchFit("auto", cap=20, margin=0.1)
            if expected < 1:
                with pytest.raises(OutOfMemory, match="not even one item"):
                    choose_batch_size(fit, CPU, measure=measure, extra=extra, budget=budget)
                continue
            got = choose_batch_size(fit, CPU, measure=measure, extra=extra, budget=budget)
            assert got == expected and fit.size == fit.micro == expected, (n_oom, budget)
            assert fit.source == "auto (measured)"
            assert memory_fits(measure, budget=budget, extra=extra)(expected)


def test_auto_without_a_measurement_takes_the_default_within_the_cap() -> None:
    assert choose_batch_size(BatchFit("auto", cap=32, margin=0.1), CPU, measure=None) == CPU_AUTO_BATCH
    assert choose_batch_size(BatchFit("auto", cap=5, margin=0.1), CPU, measure=None) == 5
    assert choose_batch_size(BatchFit("auto", cap=32, margin=0.1), CPU, measure=None, cap=3) == 3
    fixed = BatchFit(6, cap=32, margin=0.1)
    assert choose_batch_size(fixed, CPU, measure=lambda n: 1 / 0) == 6  # type: ignore[arg-type,return-value]
    assert fixed.source == "config"


# ------------------------------------------------------------------------------------- halving, state
def test_halving_sequence_pieces_and_the_end_at_one_item() -> None:
    fit = BatchFit(8, cap=32, margin=0.1)
    fit.position = (2, 17)
    assert fit.pieces(8) == [slice(0, 8)]
    err = torch.OutOfMemoryError("injected")
    assert [fit.halve(8, "discriminator phase", err) for _ in range(3)] == [4, 2, 1]
    assert fit.pieces(8) == [slice(i, i + 1) for i in range(8)]
    assert fit.halvings[0] == {"epoch": 2, "step": 17, "old": 8, "new": 4, "where": "discriminator phase"}
    with pytest.raises(OutOfMemory, match="even with one item per pass"):
        fit.halve(8, "generator phase", err)
    odd = BatchFit(8, cap=32, margin=0.1)
    assert odd.halve(3, "x", err) == 2  # a short batch: ceil(3 / 2)
    assert odd.pieces(5) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    ddp = BatchFit(8, cap=32, margin=0.1, can_halve=False)
    with pytest.raises(OutOfMemory, match="several processes"):
        ddp.halve(8, "x", err)


def test_state_round_trip_and_a_changed_setting() -> None:
    fit = BatchFit("auto", cap=16, margin=0.1)
    fit.resolve(12, "auto (measured)")
    fit.halve(12, "generator phase", torch.OutOfMemoryError("x"))
    again = BatchFit("auto", cap=16, margin=0.1)
    assert again.load_state_dict(fit.state_dict())
    assert (again.size, again.micro, again.halvings) == (12, 6, fit.halvings)
    changed = BatchFit(8, cap=16, margin=0.1)
    assert not changed.load_state_dict(fit.state_dict())
    assert (changed.size, changed.micro, changed.halvings) == (8, 8, [])
    assert not BatchFit("auto", cap=16, margin=0.1).load_state_dict(None)


# ---------------------------------------------------------------------------------------------- GPT
def _gpt_batches(n: int, size: int, seed: int) -> list[GptBatch]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        items = []
        for _ in range(size):
            tx = int(torch.randint(4, 9, (1,), generator=g))
            ty = int(torch.randint(5, 12, (1,), generator=g))
            bert = torch.randn(1024, tx, generator=g) if ty % 2 else None
            items.append(
                GptItem("x", torch.randint(0, 732, (tx,), generator=g), torch.randint(0, 1024, (ty,)), bert)
            )
        out.append(gpt_collate(items))
    return out


def test_gpt_piece_is_its_own_collate() -> None:
    g = torch.Generator().manual_seed(3)
    items = [
        GptItem(
            f"c{i}",
            torch.randint(0, 732, (tx,), generator=g),
            torch.randint(0, 1024, (ty,), generator=g),
            torch.randn(1024, tx, generator=g) if i % 2 else None,
        )
        for i, (tx, ty) in enumerate([(5, 9), (8, 4), (3, 11), (6, 6), (4, 5)])
    ]
    whole = gpt_collate(items)
    for sl in (slice(0, 2), slice(2, 4), slice(4, 5), slice(1, 3)):
        piece, fresh = whole.piece(sl), gpt_collate(items[sl])
        for name in ("phoneme_ids", "phoneme_lens", "semantic_ids", "semantic_lens", "bert"):
            assert torch.equal(getattr(piece, name), getattr(fresh, name)), (sl, name)
        assert piece.clip_ids == fresh.clip_ids


class _InjectOOM:
    """A hook that raises an out-of-memory error at its `at`-th call (0-based), once."""

    def __init__(self, at: int) -> None:
        self.at, self.calls, self.fired = at, 0, 0

    def __call__(self, *args: object) -> None:
        self.calls += 1
        if self.calls - 1 == self.at:
            self.fired += 1
            raise torch.OutOfMemoryError(f"injected out-of-memory error at call {self.at}")


def _stepper(model: Text2SemanticDecoder, fit: BatchFit) -> GptStepper:
    """A CPU fp32 stepper with the corrected rule (a step every 4 batches)."""
    return GptStepper(
        model,
        rule=AccumulationRule("per_epoch", 4),
        text_mask="per_item",
        device=CPU,
        precision="fp32",
        fit=fit,
    )


def _gpt_run(
    batches: list[GptBatch], *, micro_from: int | None, hook: _InjectOOM | None, backward: bool
) -> tuple[Text2SemanticDecoder, GptStepper, BatchFit]:
    torch.manual_seed(0)
    model = Text2SemanticDecoder(TINY)
    fit = BatchFit(4, cap=4, margin=0.0)
    stepper = _stepper(model, fit)
    if hook is not None:
        layer = model.h.layers[0]  # type: ignore[index]
        if backward:  # raises after the output layers' gradients were accumulated: contaminated grads
            layer.register_full_backward_pre_hook(lambda *a: hook())
        else:
            layer.register_forward_pre_hook(lambda *a: hook())
    torch.manual_seed(1)
    for i, b in enumerate(batches):
        if micro_from is not None and i == micro_from:
            fit.micro = 2
        stepper.train_batch(b, i, len(batches))
    return model, stepper, fit


@pytest.mark.parametrize("backward", [False, True])
def test_gpt_out_of_memory_mid_window_rebuilds_the_window(backward: bool) -> None:
    """Batch 6 (the third of the second window of four) runs out of memory (in its forward, or halfway
    through its backward). The window is replayed in halves from its start: the result equals a run
    that used halves from batch 4 on, bit for bit, and the optimizer stepped as the rule says."""
    batches = _gpt_batches(8, 4, seed=5)
    hook = _InjectOOM(at=6)  # one call per batch of 4 before the halving
    model, stepper, fit = _gpt_run(batches, micro_from=None, hook=hook, backward=backward)
    reference, ref_stepper, _ = _gpt_run(batches, micro_from=4, hook=None, backward=backward)
    assert hook.fired == 1
    assert fit.micro == 2 and [(h["old"], h["new"]) for h in fit.halvings] == [(4, 2)]
    steps = AccumulationRule("per_epoch", 4).steps_per_epoch(8)
    assert stepper.lr.state_dict() == ref_stepper.lr.state_dict()
    assert {int(s["step"]) for s in stepper.optimizer.state.values()} == {steps}
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert torch.isfinite(p).all() and torch.equal(p, q), name
        assert p.grad is None
    assert stepper.pending_batches == 0 and not stepper.window.batches


def test_gpt_without_halving_matches_a_run_that_never_halved() -> None:
    """Control: the same comparison fails when the reference halves at another point (the test can fail)."""
    batches = _gpt_batches(8, 4, seed=5)
    model, _, _ = _gpt_run(batches, micro_from=None, hook=_InjectOOM(at=6), backward=False)
    other, _, _ = _gpt_run(batches, micro_from=None, hook=None, backward=False)
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), other.parameters(), strict=True))


def test_gpt_one_item_out_of_memory_is_a_clear_error() -> None:
    batches = _gpt_batches(2, 2, seed=1)
    torch.manual_seed(0)
    model = Text2SemanticDecoder(TINY)
    stepper = _stepper(model, BatchFit(2, cap=2, margin=0.0))
    model.h.layers[0].register_forward_pre_hook(  # type: ignore[index]
        lambda *a: (_ for _ in ()).throw(torch.OutOfMemoryError("injected"))
    )
    with pytest.raises(OutOfMemory, match="even with one item per pass"):
        stepper.train_batch(batches[0], 0, 2)
    assert all(p.grad is None for p in model.parameters())


def test_gpt_window_that_began_before_a_resume_keeps_its_restored_gradients() -> None:
    """Batches 0-1 of a window, a checkpoint (pending gradients), a new stepper resumed from it, then an
    out-of-memory error in batch 2: the rebuilt gradients are the restored ones plus batches 2-3 in
    halves — equal to a resumed stepper that halved before batch 2."""
    batches = _gpt_batches(4, 4, seed=9)

    def resumed(hook: _InjectOOM | None, micro: int) -> tuple[Text2SemanticDecoder, GptStepper]:
        torch.manual_seed(0)
        first = Text2SemanticDecoder(TINY)
        a = _stepper(first, BatchFit(4, cap=4, margin=0.0))
        torch.manual_seed(1)
        for i in range(2):
            a.train_batch(batches[i], i, 4)
        state = {k: v.clone() for k, v in first.state_dict().items()}, a.state_dict()
        torch.manual_seed(2)
        model = Text2SemanticDecoder(TINY)
        model.load_state_dict(state[0])
        fit = BatchFit(4, cap=4, margin=0.0)
        b = _stepper(model, fit)
        b.load_state_dict(state[1])
        fit.micro = micro
        if hook is not None:
            model.h.layers[0].register_forward_pre_hook(lambda *x: hook())  # type: ignore[index]
        torch.manual_seed(3)
        for i in (2, 3):
            b.train_batch(batches[i], i, 4)
        return model, b

    hook = _InjectOOM(at=0)
    model, stepper = resumed(hook, 4)
    reference, _ = resumed(None, 2)
    assert hook.fired == 1 and stepper.fit.micro == 2
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q)


def test_gpt_non_finite_piece_after_finite_ones_leaves_the_batch_out() -> None:
    """In halves, the second piece of batch 1 has a NaN loss after the first piece was back-propagated:
    the window is rebuilt without batch 1 — the result equals a window that never had batch 1's
    gradients (batch 1 still counts as a non-finite batch)."""
    batches = _gpt_batches(4, 4, seed=11)

    def run(nan_at: int | None, skip: bool) -> tuple[Text2SemanticDecoder, list[bool]]:
        torch.manual_seed(0)
        model = Text2SemanticDecoder(TINY)
        fit = BatchFit(4, cap=4, margin=0.0)
        fit.micro = 2
        stepper = _stepper(model, fit)
        calls = [0]

        def poison(module: torch.nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor:
            calls[0] += 1
            return out * float("nan") if calls[0] - 1 == nan_at else out

        model.h.layers[0].register_forward_hook(poison)  # type: ignore[index]
        torch.manual_seed(1)
        finite = []
        for i, b in enumerate(batches):
            if skip and i == 1:
                stepper.window.skip.add(1)
            finite.append(stepper.train_batch(b, i, 4).finite)
        return model, finite

    model, finite = run(nan_at=3, skip=False)  # calls 0-1: batch 0; call 3: batch 1's second piece
    assert finite == [True, False, True, True]
    reference, ref_finite = run(nan_at=None, skip=True)
    assert ref_finite == finite
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.isfinite(p).all() and torch.equal(p, q)


def test_official_exports_record_the_size_the_run_used() -> None:
    """An `auto` run's official export config carries the integer the run used, never the word."""
    from gptsovits_train.checkpoints.official import train_section_from_ours
    from gptsovits_train.config import load_config
    from gptsovits_train.train.gpt_stage import official_gpt_config

    auto = load_config(None, ["train.batch_size=auto", "gpt.batch_size=auto"])
    assert train_section_from_ours(auto, batch_size=6)["batch_size"] == 6
    assert "batch_size" not in train_section_from_ours(auto)
    assert official_gpt_config(auto, 5)["train"]["batch_size"] == 5
    fixed = load_config(None, ["train.batch_size=4"])
    assert train_section_from_ours(fixed)["batch_size"] == 4
