"""GPT optimizer schedule: the official accumulation rule and the corrected one, exact resume of the
stepper (pending gradients included), and the validation metrics."""

from __future__ import annotations

import copy

import pytest
import torch

from gptsovits_train.errors import GsvError
from gptsovits_train.models.t2s import Text2SemanticDecoder
from gptsovits_train.train.gpt_accumulation import AccumulationRule
from gptsovits_train.train.gpt_data import GptBatch, GptItem, gpt_collate
from gptsovits_train.train.gpt_step import GptStepper
from gptsovits_train.train.gpt_validation import validate_gpt
from tests.t2s_helpers import TINY


def test_official_rule_steps_like_the_official_trainer() -> None:
    rule = AccumulationRule("official", 4)
    # facts §10: steps after batch_idx 4, 8, ...; 25 batches -> 6 steps
    assert [i for i in range(25) if rule.steps_after(i, 25)] == [4, 8, 12, 16, 20, 24]
    assert [rule.steps_per_epoch(n) for n in (1, 4, 5, 8, 9, 25)] == [0, 0, 1, 1, 2, 6]
    assert rule.carries_gradients
    assert rule.check(5, 8) == 1
    with pytest.raises(GsvError, match="never steps the optimizer"):
        rule.check(4, 25)


def test_per_epoch_rule_uses_every_batch_of_its_epoch() -> None:
    rule = AccumulationRule("per_epoch", 4)
    assert [i for i in range(6) if rule.steps_after(i, 6)] == [3, 5]
    assert [rule.steps_per_epoch(n) for n in (1, 4, 5, 8, 9)] == [1, 1, 2, 2, 3]
    assert not rule.carries_gradients
    assert rule.check(1, 8) == 1


def _batches(n: int, seed: int) -> list[GptBatch]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        items = []
        for _ in range(2):
            tx = int(torch.randint(4, 9, (1,), generator=g))
            ty = int(torch.randint(5, 12, (1,), generator=g))
            items.append(
                GptItem(
                    "x",
                    torch.randint(0, 732, (tx,), generator=g),
                    torch.randint(0, 1024, (ty,), generator=g),
                    torch.randn(1024, tx, generator=g) if ty % 2 else None,
                )
            )
        out.append(gpt_collate(items))
    return out


def _stepper(model: Text2SemanticDecoder, mode: str) -> GptStepper:
    return GptStepper(
        model,
        rule=AccumulationRule(mode, 4),  # type: ignore[arg-type]
        text_mask="official",
        device=torch.device("cpu"),
        precision="fp32",
    )


def _grads_sum(model: Text2SemanticDecoder, batches: list[GptBatch]) -> list[torch.Tensor]:
    """Σ of each batch's gradient, computed one batch at a time on a copy (independent of the stepper)."""
    probe = copy.deepcopy(model)
    total = [torch.zeros_like(p) for p in probe.parameters()]
    for b in batches:
        probe.zero_grad()
        probe(
            b.phoneme_ids, b.phoneme_lens, b.semantic_ids, b.semantic_lens, b.bert, "official"
        ).loss.backward()
        for t, p in zip(total, probe.parameters(), strict=True):
            if p.grad is not None:
                t.add_(p.grad)
    return total


def test_official_rule_carries_gradients_into_the_next_epoch() -> None:
    torch.manual_seed(0)
    model = Text2SemanticDecoder(TINY).eval()  # dropout off: gradients are deterministic
    stepper = _stepper(model, "official")
    epoch1, epoch2 = _batches(6, 1), _batches(6, 2)
    results = [stepper.train_batch(b, i, 6) for i, b in enumerate(epoch1)]
    assert [r.stepped for r in results] == [False, False, False, False, True, False]
    assert [r.lr for r in results if r.stepped] == [0.01]
    stepper.end_epoch()
    assert stepper.pending_batches == 1  # batch 5 is carried
    expected = _grads_sum(model, [epoch1[5], *epoch2[:4]])
    for i in range(4):
        assert not stepper.train_batch(epoch2[i], i, 6).stepped
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, e, rtol=1e-5, atol=1e-6)
    r = stepper.train_batch(epoch2[4], 4, 6)
    assert r.stepped and r.lr == pytest.approx(0.002)


def test_per_epoch_rule_leaves_nothing_pending() -> None:
    torch.manual_seed(0)
    model = Text2SemanticDecoder(TINY).eval()
    stepper = _stepper(model, "per_epoch")
    batches = _batches(6, 3)
    before = [p.detach().clone() for p in model.parameters()]
    expected_last = _grads_sum(model, batches[:4])  # first step: batches 0-3 at the initial weights
    assert expected_last[0].abs().sum() > 0
    stepped = [stepper.train_batch(b, i, 6).stepped for i, b in enumerate(batches)]
    assert stepped == [False, False, False, True, False, True]
    stepper.end_epoch()
    assert stepper.pending_batches == 0 and all(p.grad is None for p in model.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


def test_stepper_resume_is_exact_with_pending_gradients() -> None:
    torch.manual_seed(0)
    model = Text2SemanticDecoder(TINY).eval()
    batches = _batches(12, 4)
    a = _stepper(model, "official")
    for i in range(7):  # one step after batch 4, then 2 pending batches
        a.train_batch(batches[i], i, 12)
    weights = copy.deepcopy(model.state_dict())
    state = copy.deepcopy(a.state_dict())
    assert state["pending_batches"] == 2
    for i in range(7, 12):
        a.train_batch(batches[i], i, 12)

    model_b = Text2SemanticDecoder(TINY).eval()
    model_b.load_state_dict(weights)
    b = _stepper(model_b, "official")
    b.load_state_dict(state)
    for i in range(7, 12):
        b.train_batch(batches[i], i, 12)
    for (k, va), vb in zip(model.state_dict().items(), model_b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


def test_non_finite_loss_is_not_back_propagated() -> None:
    torch.manual_seed(0)
    model = Text2SemanticDecoder(TINY).eval()
    stepper = _stepper(model, "per_epoch")
    bad = _batches(1, 5)[0]
    bad.bert[0, 0, 0] = float("nan")
    before = copy.deepcopy(model.state_dict())
    r = stepper.train_batch(bad, 0, 1)
    assert not r.finite and not r.stepped
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_validation_metrics_are_per_target_token_and_batch_independent() -> None:
    torch.manual_seed(0)
    model = Text2SemanticDecoder(TINY)
    model.train()  # validation must switch dropout off itself and restore the mode
    items = [b for batch in _batches(3, 6) for b in [batch]]
    singles: list[GptBatch] = []
    for batch in items:
        for i in range(batch.size):
            n_ph, n_c = int(batch.phoneme_lens[i]), int(batch.semantic_lens[i])
            singles.append(
                gpt_collate(
                    [
                        GptItem(
                            "x",
                            batch.phoneme_ids[i, :n_ph],
                            batch.semantic_ids[i, :n_c],
                            batch.bert[i, :, :n_ph],
                        )
                    ]
                )
            )
    batched = validate_gpt(model, items)
    one_by_one = validate_gpt(model, singles)
    assert model.training
    # independent expectation: the official single-clip loss (sum CE, no padding) over its n + 1 targets
    model.eval()
    with torch.no_grad():
        sums = [
            model(s.phoneme_ids, s.phoneme_lens, s.semantic_ids, s.semantic_lens, s.bert).loss
            for s in singles
        ]
    n_targets = sum(int(s.semantic_lens[0]) + 1 for s in singles)
    assert batched.n_targets == one_by_one.n_targets == n_targets
    assert batched.loss == pytest.approx(float(sum(sums)) / n_targets, rel=1e-6)
    assert one_by_one.loss == pytest.approx(batched.loss, rel=1e-6)
    assert (batched.top1, batched.top3, batched.eos_acc) == (
        one_by_one.top1,
        one_by_one.top3,
        one_by_one.eos_acc,
    )
    assert validate_gpt(model, items) == batched  # deterministic


def test_official_lr_keeps_a_plateau_factor_on_top() -> None:
    from gptsovits_train.train.scaled_adam import OfficialS1LR, ScaledAdam

    p = torch.nn.Parameter(torch.ones(3))
    opt = ScaledAdam([p])
    lr = OfficialS1LR(opt)
    used = []
    for i in range(4):
        if i == 2:  # a plateau reduction / NaN rollback multiplies the group LR
            opt.param_groups[0]["lr"] *= 0.5
        used.append(lr.current())
        lr.step_done()
    assert used == pytest.approx([0.01, 0.002, 0.001, 0.001])
    assert lr.factor() == pytest.approx(0.5)


def test_bf16_autocast_step_on_cpu_trains_in_fp32_weights() -> None:
    torch.manual_seed(0)
    model = Text2SemanticDecoder(TINY).eval()
    stepper = GptStepper(
        model,
        rule=AccumulationRule("per_epoch", 1),
        text_mask="per_item",
        device=torch.device("cpu"),
        precision="bf16",
    )
    batch = _batches(1, 7)[0]
    before = [p.detach().clone() for p in model.parameters()]
    r = stepper.train_batch(batch, 0, 1)
    assert r.finite and r.stepped
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    with torch.no_grad():
        ref = model(
            batch.phoneme_ids, batch.phoneme_lens, batch.semantic_ids, batch.semantic_lens, batch.bert
        )
    assert (
        abs(r.loss - float(ref.loss)) / float(ref.loss) < 0.05
    )  # bf16 forward vs fp32, before vs after 1 step
