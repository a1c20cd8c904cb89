"""Short-training proxy: learns digits, deterministic, reports, diverges cleanly, learned-op hook."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from evaluators.data import load_data
from evaluators.train_proxy import DEFAULT_EPOCHS, TrainingDiverged, evaluate, train, train_and_evaluate
from spaces import LearnedOp, build_model, get_backbone


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", seed=0)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_learns_digits_well_above_chance(digits):
    seen = []
    model = build_model(get_backbone("small", digits.input_shape, digits.num_classes))
    acc = train_and_evaluate(model, digits, DEFAULT_EPOCHS, report=lambda e, a: seen.append((e, a)))
    assert acc > 0.8  # chance is 0.1
    assert [e for e, _ in seen] == list(range(1, DEFAULT_EPOCHS + 1)) and seen[-1][1] == acc
    # the accuracy is what an independent count on the val split gives
    model.eval()
    with torch.no_grad():
        pred = model(digits.x_val).argmax(1)
    assert acc == pytest.approx(float((pred == digits.y_val).float().mean()))


def _tiny(seed: int = 0) -> nn.Module:
    return build_model(get_backbone("small", (1, 32, 32), 10, width=0.25), seed=seed)


def test_deterministic_for_a_seed(digits):
    small = load_data("digits", limit=300)
    a, b, c = _tiny(), _tiny(), _tiny()
    ra = train(a, small, 1, seed=5)
    rb = train(b, small, 1, seed=5)
    train(c, small, 1, seed=6)
    assert ra.accuracy == rb.accuracy
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))
    state = torch.random.get_rng_state()
    train(_tiny(), small, 1, seed=5)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched


def test_scoring_the_last_epoch_only_gives_the_same_weights_and_accuracy(digits):
    small = load_data("digits", limit=300)
    a, b = _tiny(), _tiny()
    seen: list[int] = []
    ra = train(a, small, 3, seed=2)
    rb = train(b, small, 3, seed=2, score_every_epoch=False, report=lambda e, acc: seen.append(e))
    assert len(ra.history) == 3 and rb.history == [ra.accuracy] and seen == [3]
    assert rb.accuracy == ra.accuracy
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


class _Stop(Exception):
    pass


def test_report_exception_propagates(digits):
    calls = []

    def report(epoch, acc):
        calls.append(epoch)
        raise _Stop("pruned")

    with pytest.raises(_Stop, match="pruned"):
        train_and_evaluate(_tiny(), load_data("digits", limit=200), 3, report=report)
    assert calls == [1]


def test_diverging_trial_fails_cleanly(digits):
    with pytest.raises(TrainingDiverged, match=r"lr=1000000.0"):
        train_and_evaluate(_tiny(), load_data("digits", limit=300), 2, lr=1e6)


def test_bad_arguments(digits):
    with pytest.raises(ValueError, match="epochs"):
        train_and_evaluate(_tiny(), digits, 0)
    with pytest.raises(ValueError, match="lr"):
        train_and_evaluate(_tiny(), digits, 1, lr=-1.0)
    with pytest.raises(ValueError, match="split"):
        train_and_evaluate(_tiny(), digits, 1, split="train")


def test_threads_option_is_used_then_restored(digits):
    """``threads=2`` is in force while training (seen from the epoch callback) and undone after."""
    old = torch.get_num_threads()
    seen = []
    try:
        torch.set_num_threads(1)
        train(_tiny(), load_data("digits", limit=100), 1, threads=2,
              report=lambda epoch, acc: seen.append(torch.get_num_threads()))
        assert seen == [2]
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(old)


def test_evaluate_counts_correct_predictions():
    lin = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(3, 2))  # class 0 if x0 largest, 1 if x1, never 2
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    y = torch.tensor([0, 1, 1, 2])
    assert evaluate(lin, x, y) == 0.5


class _ToyLearned(LearnedOp):
    """A learned linear classifier: L2 regularizer, records its schedule, condenses to a
    classifier that always answers class 3."""

    def __init__(self, features: int, classes: int, strength: float) -> None:
        super().__init__()
        self.fc = nn.Linear(features, classes)
        self.strength = strength
        self.progress: list[float] = []
        self.reg_calls = 0

    def forward(self, x):
        return self.fc(x)

    def schedule(self, progress: float) -> None:
        self.progress.append(progress)

    def regularizer(self):
        self.reg_calls += 1
        return self.strength * self.fc.weight.pow(2).sum()

    def condense(self) -> nn.Module:
        out = nn.Linear(self.fc.in_features, self.fc.out_features)
        with torch.no_grad():
            out.weight.zero_()
            out.bias.copy_(torch.nn.functional.one_hot(torch.tensor(3), self.fc.out_features).float())
        return out


def test_learned_op_hook(digits):
    def net(strength):
        torch.manual_seed(0)
        op = _ToyLearned(32 * 32, 10, strength)
        return nn.Sequential(nn.Flatten(), op), op

    seen = []
    model, op = net(0.0)
    res = train(model, digits, 3, lr=0.05, report=lambda e, a: seen.append(a))
    assert op.progress == pytest.approx([1 / 3, 2 / 3, 1.0])
    steps = 3 * -(-len(digits.train) // 64)
    assert op.reg_calls == steps
    chance_of_3 = float((digits.y_val == 3).float().mean())
    assert res.accuracy == pytest.approx(chance_of_3)  # measured on the condensed model
    assert seen[0] > 0.5 and seen[-1] == res.accuracy  # trained model itself learned
    assert isinstance(res.model[1], nn.Linear)  # condensed copy; the trained one is kept
    assert model[1] is op
    # the regularizer is part of the loss: a strong one shrinks the weights
    strong, sop = net(1.0)
    train(strong, digits, 3, lr=0.05)
    assert sop.fc.weight.norm() < 0.2 * op.fc.weight.norm()


def test_final_accuracy_pools_val_extra_and_pruning_epochs_do_not(digits):
    """issue 14: the last epoch is scored on val + val_extra, weighted by example count."""
    import dataclasses

    data = load_data("digits", limit=300, val_examples=700)
    n = len(data.val) + len(data.val_extra)
    assert abs(n - 700) <= 10  # per-class rounding of the stratified draw: at most one a class
    pooled = train(_tiny(), data, 2, seed=3)
    plain_model = _tiny()
    plain = train(plain_model, dataclasses.replace(data, val_extra=None), 2, seed=3)
    assert pooled.history[0] == plain.history[0]  # per-epoch (pruning) figures: the val split alone
    plain_model.eval()
    with torch.no_grad():
        hits_val = int((plain_model(data.val.x).argmax(1) == data.val.y).sum())
        hits_extra = int((plain_model(data.val_extra.x).argmax(1) == data.val_extra.y).sum())
    assert plain.accuracy == pytest.approx(hits_val / len(data.val))
    assert pooled.accuracy == pytest.approx((hits_val + hits_extra) / n)
    assert pooled.accuracy != plain.accuracy  # the two scores differ on these nets
    # the test split is never pooled with val_extra
    assert train(_tiny(), data, 1, seed=3, split="test").accuracy == \
        train(_tiny(), dataclasses.replace(data, val_extra=None), 1, seed=3, split="test").accuracy
