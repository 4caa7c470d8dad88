"""Tests of helpers.defenses: randomized smoothing (CERTIFY, PREDICT, counts), distillation's
soft labels and loss, feature squeezing, the adversarial-training hook and the evaluation
suite. Toy models only (hand-built threshold classifiers, a tiny ReLU net): seconds in all.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage, stats
from torch import nn

from helpers import attacks, data, defenses, models

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class PixelThreshold(nn.Module):
    """Class 1 if pixel (0, 0) exceeds t, else class 0 (10 logits, the rest very negative)."""

    def __init__(self, t: float = 0.5):
        super().__init__()
        self.t = t
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        on = (x[:, 0, 0, 0] > self.t).float()
        z = torch.full((len(x), 10), -10.0) + 0 * self.dummy
        z[:, 0] = 10.0 * (1 - on)
        z[:, 1] = 10.0 * on
        return z


class Constant(nn.Module):
    def __init__(self, k: int = 3):
        super().__init__()
        self.k = k
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return F.one_hot(torch.full((len(x),), self.k), 10).float() + 0 * self.dummy


def _grey(n: int, value: float = 0.5) -> torch.Tensor:
    return torch.full((n, 1, 28, 28), value)


def test_smoothed_counts_follow_the_gaussian_probability():
    """Pixel 0.6, threshold 0.5, sigma 0.25: P(class 1) = Phi(0.4); 2000 draws, 4 s.e."""
    counts = defenses.smoothed_counts(PixelThreshold(), _grey(3, 0.6), 0.25, 2000, seed=0)
    assert counts.shape == (3, 10)
    assert bool((counts.sum(1) == 2000).all())
    p = stats.norm.cdf(0.1 / 0.25)
    se = (p * (1 - p) / 2000) ** 0.5
    assert bool(((counts[:, 1] / 2000 - p).abs() < 4 * se).all())


def test_certify_abstains_on_a_fifty_fifty_classifier():
    labels, radii = defenses.certify(PixelThreshold(), _grey(10), 0.25, 20, 200, 0.001, seed=0)
    assert bool((labels == -1).all())
    assert bool((radii == 0).all())


@pytest.mark.parametrize(("sigma", "n", "alpha"), [(0.25, 100, 0.001), (0.5, 1000, 0.01)])
def test_certify_on_a_constant_classifier_has_the_closed_form_radius(sigma, n, alpha):
    """All n votes for class 3: the one-sided Clopper-Pearson bound is alpha ** (1 / n)
    (solve P(Bin(n, p) >= n) = p ** n = alpha), so R = sigma * Phi^-1(alpha ** (1 / n))."""
    labels, radii = defenses.certify(Constant(3), _grey(4), sigma, 10, n, alpha, seed=0)
    assert bool((labels == 3).all())
    expected = sigma * stats.norm.ppf(alpha ** (1.0 / n))
    assert torch.allclose(radii, torch.full((4,), expected, dtype=torch.float64), rtol=1e-6)


def test_smoothed_predict_is_reproducible_and_abstains_when_split():
    x = torch.cat([_grey(5, 0.5), _grey(5, 0.9)])
    a = defenses.smoothed_predict(PixelThreshold(), x, 0.25, 300, 0.001, seed=4)
    b = defenses.smoothed_predict(PixelThreshold(), x, 0.25, 300, 0.001, seed=4)
    assert torch.equal(a, b)
    assert bool((a[:5] == -1).all())  # 50/50: binomial test cannot reject p = 1/2
    assert bool((a[5:] == 1).all())  # P(class 1) = Phi(1.6) = 0.945: clear majority


def test_certified_accuracy_by_hand():
    labels = torch.tensor([1, 2, -1, 3])
    radii = torch.tensor([0.5, 1.0, 0.0, 2.0], dtype=torch.float64)
    y = torch.tensor([1, 2, 0, 0])
    assert defenses.certified_accuracy(labels, radii, y, 0.0) == 0.5
    assert defenses.certified_accuracy(labels, radii, y, 0.75) == 0.25
    assert defenses.certified_accuracy(labels, radii, y, 1.5) == 0.0


def test_soft_labels_sum_to_one_and_match_the_formula():
    z = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 10.0]])
    for t in (1.0, 10.0, 100.0):
        p = defenses.soft_labels(z, t)
        assert torch.allclose(p.sum(1), torch.ones(2))
        e = np.exp(z.numpy() / t)
        assert np.allclose(p.numpy(), e / e.sum(1, keepdims=True), atol=1e-6)
    flat = defenses.soft_labels(z, 1e6)  # high temperature: nearly uniform
    assert torch.allclose(flat, torch.full_like(flat, 1 / 3), atol=1e-4)


def test_temperature_cross_entropy_by_hand():
    z = torch.tensor([[2.0, 0.0, -2.0]])
    t = 4.0
    soft = torch.tensor([[0.2, 0.5, 0.3]])
    logp = z[0].numpy() / t - np.log(np.exp(z[0].numpy() / t).sum())
    expected = -(soft[0].numpy() * logp).sum()
    assert float(defenses.temperature_cross_entropy(t)(z, soft)) == pytest.approx(expected)
    assert float(defenses.temperature_cross_entropy(t)(z, torch.tensor([1]))) == \
        pytest.approx(-logp[1])


def test_bit_depth_by_hand():
    x = torch.tensor([0.0, 0.2, 0.49, 0.51, 0.9, 1.0]).view(1, 1, 1, 6)
    assert defenses.BitDepth(1)(x).flatten().tolist() == [0, 0, 0, 1, 1, 1]
    two = defenses.BitDepth(2)(x).flatten()
    assert torch.allclose(two, torch.tensor([0, 1 / 3, 1 / 3, 2 / 3, 1, 1]))  # 0.9 * 3 = 2.7 -> 3


def test_median_smoothing_matches_scipy_and_a_hand_case():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 9, 9, generator=g)
    ours = defenses.MedianSmoothing(3)(x)
    ref = ndimage.median_filter(x.numpy(), size=(1, 1, 3, 3), mode="mirror")
    assert np.allclose(ours.numpy(), ref)
    # 2x2 windows anchored at the top-left, lower median of the four values
    y = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    assert defenses.MedianSmoothing(2)(y)[0, 0, 0, 0] == 2.0


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)).eval()


def test_squeezing_score_is_zero_on_already_squeezed_images_and_matches_the_formula():
    model = _net()
    binary = (torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    assert float(defenses.squeezing_score(model, binary, [defenses.BitDepth(1)]).max()) == 0.0
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    sq = [defenses.BitDepth(1), defenses.MedianSmoothing(2)]
    with torch.no_grad():
        p = F.softmax(model(x), 1)
        each = [(p - F.softmax(model(s(x)), 1)).abs().sum(1) for s in sq]
    assert torch.allclose(defenses.squeezing_score(model, x, sq), torch.maximum(*each))


def test_input_gradient_zero_share_detects_saturation():
    model = _net()
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = model(x).argmax(1)
    assert defenses.input_gradient_zero_share(model, x, y) == 0.0
    saturated = nn.Sequential(model, type("S", (nn.Module,), {"forward": lambda s, z: z * 1e6})())
    assert defenses.input_gradient_zero_share(saturated, x, y) == 1.0


def test_adversarial_perturbation_kinds_and_ramp():
    model = _net()
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    y = torch.arange(6)
    fgsm = defenses.adversarial_perturbation("fgsm", 0.1)
    assert torch.equal(fgsm(model, x, y), attacks.fgsm(model, x, y, 0.1))
    rs = defenses.adversarial_perturbation("fgsm_rs", 0.1, seed=0)(model, x, y)
    assert float((rs - x).abs().max()) <= 0.1 + 1e-6
    pgd = defenses.adversarial_perturbation("pgd", 0.1, steps=3, seed=0)(model, x, y)
    assert float((pgd - x).abs().max()) <= 0.1 + 1e-6
    ramp = defenses.adversarial_perturbation("fgsm", 0.2, ramp_batches=4)
    first = ramp(model, x, y)  # call 1 of 4: eps 0.05
    assert float((first - x).abs().max()) == pytest.approx(0.05, abs=1e-6)
    for _ in range(4):
        last = ramp(model, x, y)
    assert float((last - x).abs().max()) == pytest.approx(0.2, abs=1e-6)


def test_train_with_probe_probes_once_per_epoch():
    model = _net()
    x = torch.rand(40, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    y = torch.arange(40) % 10
    calls = []
    out = defenses.train_with_probe(model, data.tensor_loader(x, y, batch_size=16), 3,
                                    probe=lambda m: calls.append(1) or len(calls), lr=1e-3)
    assert out["probe"] == [1.0, 2.0, 3.0]
    assert len(out["history"]) == 3
    assert out["seconds"] > 0


def test_evaluation_suite_worst_case_is_below_every_attack():
    model = _net()
    x = torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        y = model(x).argmax(1)
    out = defenses.evaluation_suite(model, x, y, 0.05, steps=5, transfer_from=x.clone())
    assert set(out) == {"clean", "fgsm", "pgd_ce", "pgd_margin", "transfer", "worst_case"}
    for name in ("fgsm", "pgd_ce", "pgd_margin", "transfer"):
        assert int(out["worst_case"].sum()) <= int(out[name].sum())
    assert torch.equal(out["transfer"], out["clean"])
    assert int(out["pgd_margin"].sum()) < 20


# every message is matched from its start (^), with the bound it states: a parameter misnamed in
# its message, or a bound that moved, fails here
BAD = [
    (lambda: defenses.smoothed_counts(Constant(), _grey(1), 0.0, 10), ValueError,
     r"^sigma must be a number > 0"),
    (lambda: defenses.smoothed_counts(Constant(), _grey(1), -1.0, 10), ValueError,
     r"^sigma must be a number > 0"),
    (lambda: defenses.smoothed_counts(Constant(), _grey(1), 0.25, 0), ValueError,
     r"^n must be an integer >= 1"),
    (lambda: defenses.smoothed_counts(Constant(), _grey(1), 0.25, 5, num_classes=1), ValueError,
     r"^num_classes must be an integer >= 2"),
    (lambda: defenses.smoothed_counts(Constant(), _grey(1), 0.25, 5, batch_size=0), ValueError,
     r"^batch_size must be an integer >= 1"),
    (lambda: defenses.certify(Constant(), _grey(1), 0.0, 1, 10, 0.01), ValueError,
     r"^sigma must be a number > 0"),
    (lambda: defenses.certify(Constant(), _grey(1), 0.25, 20, 10, 0.01), ValueError,
     r"^n0 must be <= n \(a few selection samples, many estimation samples\), got n0=20 > "
     r"n=10$"),
    (lambda: defenses.certify(Constant(), _grey(1), 0.25, 0, 10, 0.01), ValueError,
     r"^n0 must be an integer >= 1"),
    (lambda: defenses.certify(Constant(), _grey(1), 0.25, 1, 0, 0.01), ValueError,
     r"^n must be an integer >= 1"),
    (lambda: defenses.certify(Constant(), _grey(1), 0.25, 1, 10, 0.0), ValueError,
     r"^alpha must be a number > 0 and < 1"),
    (lambda: defenses.certify(Constant(), _grey(1), 0.25, 1, 10, 1.0), ValueError,
     r"^alpha must be a number > 0 and < 1"),
    (lambda: defenses.certify(Constant(), _grey(1), 0.25, 1, 10, 1.5), ValueError,
     r"^alpha must be a number > 0 and < 1"),
    (lambda: defenses.certify(Constant(), _grey(1), 0.25, 1.0, 10, 0.1), TypeError,
     r"^n0 must be an integer, got float"),
    (lambda: defenses.smoothed_predict(Constant(), _grey(1), 0.25, 10, 0.0), ValueError,
     r"^alpha must be a number > 0 and < 1"),
    (lambda: defenses.smoothed_predict(Constant(), _grey(1), 0.25, 10, 1.0), ValueError,
     r"^alpha must be a number > 0 and < 1"),
    (lambda: defenses.smoothed_predict(Constant(), _grey(1), 0.25, 0, 0.1), ValueError,
     r"^n must be an integer >= 1"),
    # n is checked before alpha (not only later, by smoothed_counts)
    (lambda: defenses.smoothed_predict(Constant(), _grey(1), 0.25, 0, 0.0), ValueError,
     r"^n must be an integer >= 1"),
    (lambda: defenses.soft_labels(torch.zeros(2, 3), 0.0), ValueError,
     r"^temperature must be a number > 0"),
    (lambda: defenses.soft_labels(torch.zeros(2, 3), -1.0), ValueError,
     r"^temperature must be a number > 0"),
    (lambda: defenses.soft_labels([[1.0]], 1.0), TypeError,
     r"^logits must be a floating-point torch\.Tensor$"),
    (lambda: defenses.soft_labels(torch.zeros(2, 3, dtype=torch.long), 1.0), TypeError,
     r"^logits must be a floating-point torch\.Tensor$"),
    (lambda: defenses.soft_labels(torch.zeros(3), 1.0), ValueError,
     r"^logits must have shape \(N, K\), got \(3,\)$"),
    (lambda: defenses.temperature_cross_entropy(0), ValueError,
     r"^temperature must be a number > 0"),
    (lambda: defenses.distilled_cnn(temperature=0.0), ValueError,
     r"^temperature must be a number > 0"),
    (lambda: defenses.noise_trained_cnn(0.0), ValueError, r"^sigma must be a number > 0"),
    (lambda: defenses.adversarial_perturbation("pgdx", 0.3), ValueError,
     r"^kind must be one of \('fgsm', 'fgsm_rs', 'pgd'\), got 'pgdx'$"),
    (lambda: defenses.adversarial_perturbation("fgsm", 0.0), ValueError,
     r"^eps must be a number > 0"),
    (lambda: defenses.adversarial_perturbation("fgsm", 0.3, steps=2), ValueError,
     r"^steps must be 1 for kind 'fgsm', got 2$"),
    (lambda: defenses.adversarial_perturbation("pgd", 0.3, steps=0), ValueError,
     r"^steps must be an integer >= 1"),
    (lambda: defenses.adversarial_perturbation("fgsm", 0.3, ramp_batches=-1), ValueError,
     r"^ramp_batches must be an integer >= 0"),
    (lambda: defenses.adversarial_perturbation("pgd", 0.3, alpha=0.0), ValueError,
     r"^alpha must be a number > 0"),
    (lambda: defenses.train_with_probe(_net(), [], 0), ValueError,
     r"^epochs must be an integer >= 1"),
    (lambda: defenses.train_with_probe(_net(), [], 1, probe=3), TypeError,
     r"^probe must be None or a callable probe\(model\) -> number$"),
    # epochs is checked first (not only later, by models.train)
    (lambda: defenses.train_with_probe(_net(), [], 0, probe=3), ValueError,
     r"^epochs must be an integer >= 1"),
    (lambda: defenses.input_gradient_zero_share(_net(), _grey(2), torch.zeros(3, dtype=torch.long)),
     ValueError, r"^y must have shape \(2,\)"),
    (lambda: defenses.BitDepth(0), ValueError, r"^bits must be an integer >= 1 and <= 16"),
    (lambda: defenses.BitDepth(17), ValueError, r"^bits must be an integer >= 1 and <= 16"),
    (lambda: defenses.MedianSmoothing(0), ValueError, r"^size must be an integer >= 1"),
    (lambda: defenses.squeezing_score(_net(), _grey(1), []), TypeError,
     r"^squeezers must be a non-empty list of callables sq\(x\) -> x$"),
    (lambda: defenses.squeezing_score(_net(), _grey(1), [3]), TypeError,
     r"^squeezers must be a non-empty list of callables sq\(x\) -> x$"),
    (lambda: defenses.SqueezeEnsemble(_net(), []), TypeError,
     r"^squeezers must be a non-empty list of callables sq\(x\) -> x$"),
    (lambda: defenses.SqueezeEnsemble(_net(), [3]), TypeError,
     r"^squeezers must be a non-empty list of callables sq\(x\) -> x$"),
    (lambda: defenses.SqueezeEnsemble("net", [defenses.BitDepth()]), TypeError,
     r"^model must be a torch\.nn\.Module"),
    (lambda: defenses.certified_accuracy(torch.zeros(2), torch.zeros(2), torch.zeros(3,
                                         dtype=torch.long), 0.5), ValueError,
     r"^y must have shape \(2,\)"),
    (lambda: defenses.certified_accuracy(torch.zeros(2), torch.zeros(2), torch.zeros(2,
                                         dtype=torch.long), -0.5), ValueError,
     r"^radius must be a number >= 0"),
    (lambda: defenses.evaluation_suite(_net(), _grey(2), torch.zeros(2, dtype=torch.long), 0.0),
     ValueError, r"^eps must be a number > 0"),
    (lambda: defenses.evaluation_suite(_net(), _grey(2), torch.zeros(2, dtype=torch.long),
                                       steps=0), ValueError, r"^steps must be an integer >= 1"),
    (lambda: defenses.evaluation_suite(_net(), _grey(2), torch.zeros(2, dtype=torch.long),
                                       restarts=0), ValueError,
     r"^restarts must be an integer >= 1"),
    # restarts is checked before transfer_from (not only later, by attacks.pgd)
    (lambda: defenses.evaluation_suite(_net(), _grey(2), torch.zeros(2, dtype=torch.long),
                                       restarts=0, transfer_from=_grey(3)), ValueError,
     r"^restarts must be an integer >= 1"),
    (lambda: defenses.evaluation_suite(_net(), _grey(2), torch.zeros(2, dtype=torch.long),
                                       transfer_from=_grey(3)), ValueError,
     r"^transfer_from must have the shape of x$"),
    (lambda: defenses.accuracy_vs_eps(_net(), _grey(2), torch.zeros(2, dtype=torch.long),
                                      [-0.1]), ValueError, r"^eps_values must hold values >= 0"),
    (lambda: defenses.accuracy_vs_eps(_net(), _grey(2), torch.zeros(2, dtype=torch.long),
                                      [[0.1]]), ValueError, r"^eps_values must be 1-D"),
]


@pytest.mark.parametrize(("call", "error", "pattern"), BAD)
def test_bad_arguments_raise_clear_errors(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


# --------------------------------------- mutation testing (make mutation MODULES=defenses)
# Each test below fails on single-token bugs that mutmut planted and the tests above missed: a
# setting that does not reach the attack or the training loop, a dropped seed, an off-by-one
# bound, a boundary case of a rule (p-value equal to alpha, a lower bound of exactly 1/2), a
# mode or a clock that is not restored or not subtracted. The cached models' recipes are
# tested in tests/test_defenses_models.py.


class _Recording(PixelThreshold):
    """PixelThreshold that records the mode and dtype of every batch it sees."""

    def __init__(self, t: float = 0.5):
        super().__init__(t)
        self.seen = []

    def forward(self, x):
        self.seen.append((self.training, x.dtype, len(x)))
        return super().forward(x.float())


def _counts_by_hand(x, t, sigma, n, chunk, seed):
    """The counts of PixelThreshold(t) under noise, written out: one generator seeded with seed,
    images in order, each image's n draws in chunks of ``chunk`` (the last one shorter)."""
    g = torch.Generator().manual_seed(seed)
    sizes = [chunk] * (n // chunk) + ([n % chunk] if n % chunk else [])
    out = torch.zeros(len(x), 10, dtype=torch.long)
    for j in range(len(x)):
        for m in sizes:
            e = torch.randn((m, *x.shape[1:]), generator=g)
            ones = int((x[j, 0, 0, 0] + sigma * e[:, 0, 0, 0] > t).sum())
            out[j, 1] += ones
            out[j, 0] += m - ones
    return out


def test_smoothed_counts_equal_a_direct_count_of_the_seeded_draws():
    """Image 1x5x5 (25 pixels: the generator's stream depends on the chunk sizes, so the chunk
    size shows); pixel values on both sides of the threshold, n not a multiple of the chunk."""
    x = torch.tensor([0.45, 0.6, 0.5]).view(3, 1, 1, 1).expand(3, 1, 5, 5).contiguous()
    counts = defenses.smoothed_counts(PixelThreshold(), x, 0.25, 15, batch_size=7, seed=3)
    assert counts.dtype == torch.int64
    assert torch.equal(counts, _counts_by_hand(x, 0.5, 0.25, 15, 7, 3))
    # the default chunk is 1000 draws
    assert torch.equal(defenses.smoothed_counts(PixelThreshold(), x[:1], 0.25, 1001, seed=3),
                       _counts_by_hand(x[:1], 0.5, 0.25, 1001, 1000, 3))
    # one draw, one image per chunk, two classes: the smallest values allowed
    one = defenses.smoothed_counts(PixelThreshold(), x, 0.25, 1, batch_size=1, seed=3)
    assert torch.equal(one, _counts_by_hand(x, 0.5, 0.25, 1, 1, 3))
    two = defenses.smoothed_counts(PixelThreshold(), x, 0.25, 9, num_classes=2, seed=3)
    assert torch.equal(two, _counts_by_hand(x, 0.5, 0.25, 9, 1000, 3)[:, :2])


def test_smoothed_counts_run_in_eval_mode_in_the_images_dtype_and_restore_the_mode():
    model = _Recording()
    model.train()
    x = torch.full((2, 1, 4, 4), 0.6, dtype=torch.float16)
    defenses.smoothed_counts(model, x, 0.25, 5, seed=0)
    assert model.seen == [(False, torch.float16, 5)] * 2
    assert all(m.training is True for m in model.modules())


def test_binomial_test_against_hand_computed_sums():
    """Two-sided exact p-values at p = 1/2: 7 of 10 -> 2 (C(10,7) + C(10,8) + C(10,9) +
    C(10,10)) / 2^10 = 2 * 176 / 1024; 10 of 10 -> 2 / 2^10; 1 of 1 -> 1; no trials -> 1."""
    p = defenses._binomial_test(np.array([7, 3, 10, 1, 0]), np.array([10, 10, 10, 1, 0]))
    np.testing.assert_allclose(p, [352 / 1024, 352 / 1024, 2 / 1024, 1.0, 1.0], rtol=1e-12)
    with pytest.raises(ValueError, match=r"^zip\(\) argument 2 is shorter"):  # k, n paired
        defenses._binomial_test(np.array([1, 2]), np.array([3]))


@pytest.fixture
def counts_spy(monkeypatch):
    """defenses.smoothed_counts behind a spy: returns (calls, the real function), where calls
    records (n, keyword arguments) of every call the code under test makes."""
    calls = []
    real = defenses.smoothed_counts

    def spy(model, x, sigma, n, **kwargs):
        calls.append((n, kwargs))
        return real(model, x, sigma, n, **kwargs)

    monkeypatch.setattr(defenses, "smoothed_counts", spy)
    return calls, real


def test_smoothed_predict_against_counts_and_scipy(counts_spy):
    """PREDICT from the same seeded counts by hand: the two largest counts, scipy's two-sided
    binomtest at p = 1/2, abstain (-1) when the p-value exceeds alpha. Pixel 0.55 (P(class 1)
    = Phi(0.2) = 0.58): about half the images abstain at n = 100, alpha 0.05."""
    calls, real = counts_spy
    x = torch.full((30, 1, 2, 2), 0.55)
    pred = defenses.smoothed_predict(PixelThreshold(), x, 0.25, 100, 0.05, batch_size=7, seed=2)
    assert [(n, kw["batch_size"]) for n, kw in calls] == [(100, 7)]
    counts = real(PixelThreshold(), x, 0.25, 100, batch_size=7, seed=2)
    expected = []
    for row in counts.numpy():
        order = np.argsort(-row, kind="stable")
        na, nb = row[order[0]], row[order[1]]
        pvalue = stats.binomtest(int(na), int(na + nb), 0.5).pvalue
        expected.append(int(order[0]) if pvalue <= 0.05 else -1)
    assert pred.tolist() == expected
    assert 5 < expected.count(-1) < 25  # both outcomes occur: the seed decides
    defenses.smoothed_predict(PixelThreshold(), x[:1], 0.25, 1, 0.5)
    assert calls[-1][0] == 1
    assert calls[-1][1]["batch_size"] == 1000


def test_smoothed_predict_keeps_a_p_value_equal_to_alpha():
    """All 10 votes for class 3: the p-value is exactly 2 / 2^10 = 2^-9; it is <= alpha = 2^-9
    (predict 3), not <= alpha just below it (abstain)."""
    assert defenses.smoothed_predict(Constant(3), _grey(2), 0.25, 10, 2.0**-9).tolist() == [3, 3]
    assert defenses.smoothed_predict(Constant(3), _grey(2), 0.25, 10,
                                     0.999 * 2.0**-9).tolist() == [-1, -1]


def test_certify_against_seeded_counts_and_scipy_clopper_pearson(counts_spy):
    """c_hat from the first n0 draws, n_A from the next n draws of the same generator; the
    lower bound from scipy's exact (Clopper-Pearson) two-sided interval at level 1 - 2 alpha,
    whose lower end is the one-sided bound at 1 - alpha; R = sigma * Phi^-1(p_lower)."""
    calls, real = counts_spy
    x = torch.tensor([0.55, 0.6, 0.7, 0.45, 0.3, 0.5]).view(6, 1, 1, 1).expand(6, 1, 3, 3)
    x = x.contiguous()
    labels, radii = defenses.certify(PixelThreshold(), x, 0.25, 16, 200, 0.01, batch_size=7,
                                     seed=5)
    assert [(n, kw["batch_size"]) for n, kw in calls] == [(16, 7), (200, 7)]
    g = calls[0][1]["seed"]
    assert isinstance(g, torch.Generator)
    assert calls[1][1]["seed"] is g
    assert g.initial_seed() == 5
    gen = torch.Generator().manual_seed(5)
    c_hat = real(PixelThreshold(), x, 0.25, 16, batch_size=7, seed=gen).argmax(1)
    counts = real(PixelThreshold(), x, 0.25, 200, batch_size=7, seed=gen)
    for i in range(len(x)):
        k = int(counts[i, c_hat[i]])
        low = stats.binomtest(k, 200).proportion_ci(confidence_level=0.98, method="exact").low
        if low > 0.5:
            assert int(labels[i]) == int(c_hat[i])
            assert float(radii[i]) == pytest.approx(0.25 * stats.norm.ppf(low), rel=1e-9)
        else:
            assert int(labels[i]) == -1
            assert float(radii[i]) == 0.0
    assert int((labels >= 0).sum()) >= 3
    assert int((labels == -1).sum()) >= 1
    assert radii.dtype == torch.float64
    assert labels.dtype == torch.int64
    # defaults: chunks of 1000; a generator passed in is used as it is
    own = torch.Generator().manual_seed(1)
    defenses.certify(Constant(), _grey(1), 0.25, 2, 3, 0.1, seed=own)
    assert [(n, kw["batch_size"], kw["seed"]) for n, kw in calls[2:]] == [(2, 1000, own),
                                                                          (3, 1000, own)]


class _FirstThenOther(nn.Module):
    """Class 0 for the first ``k`` images it ever sees, class 1 after."""

    def __init__(self, k: int):
        super().__init__()
        self.k, self.done = k, 0
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        first = (torch.arange(self.done, self.done + len(x)) < self.k).long()
        self.done += len(x)
        return F.one_hot(1 - first, 10).float() + 0 * self.dummy


def test_certify_selects_with_n0_and_estimates_with_n():
    """The n0 selection draws vote 0, the n estimation draws vote 1: c_hat = 0 with n_A = 0,
    so CERTIFY abstains (estimating with the selection counts would certify 0, selecting with
    the estimation counts would certify 1). With n = 1 and alpha 0.9 a zero count still
    abstains, although Beta(0.9; 1, 2) = 0.68 would exceed 1/2."""
    labels, radii = defenses.certify(_FirstThenOther(5), _grey(1), 0.25, 5, 50, 0.001)
    assert labels.tolist() == [-1]
    assert radii.tolist() == [0.0]
    labels, radii = defenses.certify(_FirstThenOther(1), _grey(1), 0.25, 1, 1, 0.9)
    assert labels.tolist() == [-1]
    assert radii.tolist() == [0.0]


def test_certify_with_one_sample_by_hand():
    """One vote for class 3 (n = n0 = 1): the lower bound is alpha^(1/1) = alpha. alpha 0.6 ->
    certified with R = sigma * Phi^-1(0.6); alpha 0.5 -> exactly 1/2, not > 1/2: abstain."""
    labels, radii = defenses.certify(Constant(3), _grey(2), 0.5, 1, 1, 0.6, seed=0)
    assert labels.tolist() == [3, 3]
    assert radii.tolist() == pytest.approx([0.5 * 0.2533471031357997] * 2, rel=1e-9)
    labels, radii = defenses.certify(Constant(3), _grey(2), 0.5, 1, 1, 0.5, seed=0)
    assert labels.tolist() == [-1, -1]
    assert radii.tolist() == [0.0, 0.0]
    labels, _ = defenses.certify(Constant(3), _grey(1), 0.5, 10, 10, 0.01, seed=0)  # n0 = n
    assert labels.tolist() == [3]


def test_certify_without_a_seed_follows_torchs_global_generator():
    x = torch.full((8, 1, 2, 2), 0.55)
    runs = []
    for s in (11, 11, 12):
        torch.manual_seed(s)
        runs.append(defenses.certify(PixelThreshold(), x, 0.25, 10, 100, 0.2)[1])
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_certified_accuracy_counts_a_radius_equal_to_r():
    labels = torch.tensor([1, 2, -1, 3])
    radii = torch.tensor([0.5, 1.0, 0.0, 2.0], dtype=torch.float64)
    y = torch.tensor([1, 2, 0, 3])
    assert defenses.certified_accuracy(labels, radii, y, 1.0) == 0.5  # 1.0 >= 1.0 and 2.0
    assert defenses.certified_accuracy(labels, radii, y, 2.0) == 0.25


def _shifted(x, d):
    return (x + d).clamp(0, 1)


def _correct(model, x, y):
    with torch.no_grad():
        return model(x).argmax(1) == y


@pytest.fixture
def pgd_spy(monkeypatch):
    """attacks.pgd and attacks.fgsm replaced by spies that record their arguments (the model,
    images and labels too); pgd returns x + eps for the cross-entropy, x - eps for the margin
    (clipped to [0, 1]: inside the threat model, and a result the tests can predict), fgsm x
    itself."""
    calls = []

    def pgd(model, x, y, eps, alpha, steps, **kwargs):
        calls.append({"attack": "pgd", "model": model, "x": x, "y": y, "eps": eps,
                      "alpha": alpha, "steps": steps, **kwargs})
        return _shifted(x, eps if kwargs.get("loss", "ce") == "ce" else -eps)

    def fgsm(model, x, y, eps, **kwargs):
        calls.append({"attack": "fgsm", "model": model, "x": x, "y": y, "eps": eps, **kwargs})
        return x

    monkeypatch.setattr(attacks, "pgd", pgd)
    monkeypatch.setattr(attacks, "fgsm", fgsm)
    return calls


def test_adversarial_perturbation_hands_pgd_eps_alpha_steps_start_and_seed(pgd_spy):
    """Default alpha: eps for FGSM, 1.25 eps for FGSM-RS, 2.5 eps / steps for PGD; random
    start except for FGSM; one generator (seeded from seed) for every call."""
    model, x, y = _net(), torch.rand(2, 1, 28, 28), torch.tensor([0, 1])
    cases = [(("fgsm", 0.2), {}, 0.2, 1, False), (("fgsm_rs", 0.2), {}, 0.25, 1, True),
             (("pgd", 0.2), {"steps": 4}, 0.125, 4, True),
             (("pgd", 0.2), {"steps": 4, "alpha": 0.07}, 0.07, 4, True),
             (("fgsm_rs", 0.4), {"alpha": 0.5}, 0.5, 1, True)]
    for args, kwargs, alpha, steps, start in cases:
        pgd_spy.clear()
        perturb = defenses.adversarial_perturbation(*args, seed=3, **kwargs)
        assert torch.equal(perturb(model, x, y), _shifted(x, args[1]))
        perturb(model, x, y)
        first, second = pgd_spy
        assert first["eps"] == pytest.approx(args[1], abs=1e-15) == second["eps"]
        assert first["alpha"] == pytest.approx(alpha, abs=1e-15) == second["alpha"]
        assert first["steps"] == steps
        assert first["random_start"] is start
        assert isinstance(first["seed"], torch.Generator)
        assert second["seed"] is first["seed"]
        assert first["seed"].initial_seed() == 3
    pgd_spy.clear()
    defenses.adversarial_perturbation("pgd", 0.2)(model, x, y)
    assert pgd_spy[0]["seed"] is None
    assert pgd_spy[0]["steps"] == 1


def test_adversarial_perturbation_ramp_grows_eps_and_alpha_linearly(pgd_spy):
    """ramp_batches = 4: calls 1..6 scale eps and alpha by 1/4, 2/4, 3/4, 1, 1, 1."""
    model, x, y = _net(), torch.rand(2, 1, 28, 28), torch.tensor([0, 1])
    perturb = defenses.adversarial_perturbation("fgsm_rs", 0.2, ramp_batches=4, seed=0)
    for _ in range(6):
        perturb(model, x, y)
    scale = [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert [c["eps"] for c in pgd_spy] == pytest.approx([0.2 * s for s in scale], abs=1e-12)
    assert [c["alpha"] for c in pgd_spy] == pytest.approx([0.25 * s for s in scale], abs=1e-12)


def test_train_with_probe_bookkeeping(monkeypatch):
    """models.train replaced by a loop that calls the hook on every batch and advances a fake
    clock one second per batch; the probe takes 50 fake seconds and returns the number of
    batches trained so far. Probes after each epoch, the probe's time left out of "seconds"."""
    from types import SimpleNamespace

    clock = {"t": 1000.0}
    monkeypatch.setattr(defenses, "time", SimpleNamespace(perf_counter=lambda: clock["t"]))
    trained = {"batches": 0, "inputs": [], "desc": [], "kwargs": []}
    history = [{"epoch": 1}]

    def fake_train(model, loader, epochs, *, perturb, desc, **kwargs):
        trained["desc"].append(desc)
        trained["kwargs"].append(kwargs)
        for _ in range(epochs):
            for xb, yb in loader:
                trained["inputs"].append((xb, perturb(model, xb, yb)))
                trained["batches"] += 1
                clock["t"] += 1.0
        return history

    monkeypatch.setattr(models, "train", fake_train)
    model = _net()
    probed = []

    def probe(m):
        probed.append(m)
        clock["t"] += 50.0
        return trained["batches"]

    x, y = torch.rand(6, 1, 28, 28), torch.arange(6)
    loader = data.tensor_loader(x, y, batch_size=2, shuffle=False)  # 3 batches per epoch
    perturbed = []

    def perturb(m, xb, yb):
        perturbed.append((m, yb))
        return xb + 1

    out = defenses.train_with_probe(model, loader, 3, probe=probe, perturb=perturb,
                                    desc="probing", lr=0.5)
    assert out["probe"] == [3.0, 6.0, 9.0]
    assert all(type(v) is float for v in out["probe"])
    assert out["seconds"] == 9.0  # 9 batches of 1 s; the 3 probes' 150 s left out
    assert out["history"] is history
    assert all(m is model for m in probed)
    assert trained["desc"] == ["probing"]
    assert trained["kwargs"] == [{"lr": 0.5}]
    assert len(perturbed) == 9
    assert all(m is model for m, _ in perturbed)
    assert all(torch.equal(out_b, xb + 1) for xb, out_b in trained["inputs"])
    assert all(torch.equal(yb, y[2 * (i % 3):2 * (i % 3) + 2])
               for i, (_, yb) in enumerate(perturbed))
    # one batch per epoch: still one probe per epoch; no perturb: the batch itself
    trained["inputs"].clear()
    one = data.tensor_loader(x, y, batch_size=6, shuffle=False)
    out = defenses.train_with_probe(model, one, 3, probe=probe)
    assert out["probe"] == [10.0, 11.0, 12.0]
    assert all(out_b is xb for xb, out_b in trained["inputs"])
    assert defenses.train_with_probe(model, one, 2)["probe"] == []
    # two batches per epoch (an even count: a hook that counted batches twice would probe
    # after every batch): after batches 2 and 4
    trained["batches"] = 0
    two = data.tensor_loader(x[:4], y[:4], batch_size=2, shuffle=False)
    assert defenses.train_with_probe(model, two, 2, probe=probe)["probe"] == [2.0, 4.0]


@pytest.mark.filterwarnings("error")  # softmax without dim warns: the dim must be given
def test_soft_labels_below_temperature_one_and_without_warnings():
    z = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]])
    e = np.exp(z.numpy() / 0.5)
    np.testing.assert_allclose(defenses.soft_labels(z, 0.5).numpy(), e / e.sum(1, keepdims=True),
                               rtol=1e-6)
    loss = defenses.temperature_cross_entropy(0.5)(z, torch.tensor([0, 2]))
    logp = np.log(e / e.sum(1, keepdims=True))
    assert float(loss) == pytest.approx(-(logp[0, 0] + logp[1, 2]) / 2, rel=1e-6)


def test_input_gradient_zero_share_counts_images_with_an_all_zero_gradient():
    """A linear model reading only the first 392 pixels, logits scaled by 1e4: a random image
    saturates the softmax (gradient exactly 0); a black image gives equal logits (a non-zero
    gradient on the pixels read, zero on the others). Share = 2 / 4, not the share of zero
    pixels (5 / 8). The model's mode is restored, submodules included."""
    torch.manual_seed(0)
    lin = nn.Linear(784, 10, bias=False)
    with torch.no_grad():
        lin.weight[:, 392:] = 0
    model = nn.Sequential(nn.Flatten(), lin, type("S", (nn.Module,),
                                                  {"forward": lambda s, z: z * 1e4})())
    x = torch.cat([torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0)),
                   torch.zeros(2, 1, 28, 28)])
    with torch.no_grad():
        y = model(x).argmax(1)
    model.train()
    assert defenses.input_gradient_zero_share(model, x, y.int()) == 0.5
    assert all(m.training is True for m in model.modules())


def test_bit_depth_three_bits_and_the_defaults():
    """3 bits: levels 2^3 - 1 = 7, round(0.3 * 7 = 2.1) / 7 = 2/7, round(0.95 * 7 = 6.65) = 7;
    16 bits is allowed. Defaults: 1 bit, 2x2 median."""
    x = torch.tensor([0.0, 0.3, 0.5, 0.95]).view(1, 1, 1, 4)
    assert torch.allclose(defenses.BitDepth(3)(x).flatten(), torch.tensor([0, 2 / 7, 4 / 7, 1]))
    sixteen = defenses.BitDepth(16)(torch.tensor([0.3]).view(1, 1, 1, 1))
    assert float(sixteen) == pytest.approx(round(0.3 * 65535) / 65535, abs=1e-7)
    assert defenses.BitDepth()(x).flatten().tolist() == [0, 0, 0, 1]
    y = torch.arange(1.0, 10.0).view(1, 1, 3, 3) / 10
    assert torch.equal(defenses.MedianSmoothing()(y), defenses.MedianSmoothing(2)(y))


def test_median_smoothing_by_hand_and_against_numpy():
    """2x2 windows reaching down and right, the 3x3 input reflected at the bottom and right
    edge (row 3 = row 1, column 3 = column 1); lower median of four values. Sizes 1 (identity),
    2 and 4 against a numpy version (np.pad 'reflect', sort, element (k^2 - 1) // 2)."""
    y = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    assert defenses.MedianSmoothing(2)(y)[0, 0].tolist() == [[2, 3, 3], [5, 6, 6], [5, 6, 6]]
    x = torch.rand(2, 1, 7, 7, generator=torch.Generator().manual_seed(9))
    assert torch.equal(defenses.MedianSmoothing(1)(x), x)
    for k in (2, 4):
        lo, hi = (k - 1) // 2, k // 2
        p = np.pad(x.numpy(), ((0, 0), (0, 0), (lo, hi), (lo, hi)), mode="reflect")
        ref = np.empty_like(x.numpy())
        for i in range(7):
            for j in range(7):
                w = np.sort(p[:, :, i:i + k, j:j + k].reshape(2, 1, -1), axis=-1)
                ref[:, :, i, j] = w[..., (k * k - 1) // 2]
        np.testing.assert_array_equal(defenses.MedianSmoothing(k)(x).numpy(), ref)


@pytest.mark.filterwarnings("error")  # softmax without dim warns: the dim must be given
def test_squeezing_score_in_chunks_without_warnings():
    model = _net()
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(8))
    sq = [defenses.BitDepth(1)]
    with torch.no_grad():
        ref = (F.softmax(model(x), 1) - F.softmax(model(sq[0](x)), 1)).abs().sum(1)
    assert torch.allclose(defenses.squeezing_score(model, x, sq, batch_size=2), ref)


@pytest.mark.filterwarnings("error")  # log_softmax without dim warns: the dim must be given
def test_squeeze_ensemble_averages_log_softmax_and_passes_gradients_straight_through():
    """Forward: (log softmax f(x) + log softmax f(sq(x))) / 2. Backward (BPDA): the squeezer is
    the identity, so the gradient is (grad at x + grad of f at v = sq(x)) / 2."""
    model = _net()
    sq = defenses.BitDepth(1)
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(10))
    ens = defenses.SqueezeEnsemble(model, [sq])
    xg = x.clone().requires_grad_(True)
    out = ens(xg)
    with torch.no_grad():
        ref = (F.log_softmax(model(x), 1) + F.log_softmax(model(sq(x)), 1)) / 2
    torch.testing.assert_close(out, ref)
    (grad,) = torch.autograd.grad(out[:, 0].sum(), xg)

    def grad_at(v):
        v = v.clone().requires_grad_(True)
        return torch.autograd.grad(F.log_softmax(model(v), 1)[:, 0].sum(), v)[0]

    torch.testing.assert_close(grad, (grad_at(x) + grad_at(sq(x))) / 2)
    assert float(grad_at(sq(x)).abs().sum()) > 0


def test_evaluation_suite_hands_each_attack_its_settings(pgd_spy):
    """alpha = max(2.5 eps / steps, eps / 10): 2.5 * 0.3 / 5 = 0.15 beats 0.03; with the
    default 50 steps 0.015 loses to 0.03. Cross-entropy with seed, margin with seed + 1, the
    restarts, chunks of 250 by default, early stop; FGSM with eps and the chunk size. The
    worst case is correct only where clean and every attack are."""
    model, x = _net(), torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(11))
    y = torch.arange(16) % 10
    out = defenses.evaluation_suite(model, x, y, 0.3, steps=5, restarts=3, seed=7,
                                    batch_size=2)
    fgsm, ce, margin = pgd_spy
    settings = {k: v for k, v in fgsm.items() if k not in ("model", "x", "y")}
    assert settings == {"attack": "fgsm", "eps": 0.3, "batch_size": 2}
    common = {"attack": "pgd", "eps": 0.3, "steps": 5, "restarts": 3, "batch_size": 2,
              "early_stop": True}
    assert ce["alpha"] == pytest.approx(0.15, abs=1e-15)
    assert margin["alpha"] == pytest.approx(0.15, abs=1e-15)
    assert {k: ce[k] for k in (*common, "loss", "seed")} == {**common, "loss": "ce", "seed": 7}
    assert {k: margin[k] for k in (*common, "loss", "seed")} == {**common, "loss": "margin",
                                                                 "seed": 8}
    clean = _correct(model, x, y)
    up, down = _correct(model, _shifted(x, 0.3), y), _correct(model, _shifted(x, -0.3), y)
    assert torch.equal(out["clean"], clean)
    assert torch.equal(out["fgsm"], clean)
    assert torch.equal(out["pgd_ce"], up)
    assert torch.equal(out["pgd_margin"], down)
    assert torch.equal(out["worst_case"], clean & up & down)
    assert not torch.equal(up, down)  # the two losses' results differ: a swap would show
    pgd_spy.clear()
    defenses.evaluation_suite(model, x, y, 0.3)
    _, ce, margin = pgd_spy
    assert ce["alpha"] == pytest.approx(0.03, abs=1e-15)
    assert (ce["steps"], ce["restarts"], ce["seed"], ce["batch_size"]) == (50, 1, 0, 250)
    assert (margin["seed"], margin["batch_size"]) == (1, 250)


class _Moved:
    """A transfer_from stand-in that records how it is moved."""

    def __init__(self, t: torch.Tensor):
        self.t, self.shape, self.calls = t, t.shape, []

    def to(self, *args):
        self.calls.append(args)
        return self.t.to(*args)


def test_evaluation_suite_moves_transfer_examples_and_checks_the_threat_model(pgd_spy):
    model, x = _net(), torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(12))
    y = torch.tensor([0, 1, 2, 3])
    moved = _Moved(x.double())
    out = defenses.evaluation_suite(model, x, y, 0.05, transfer_from=moved)
    assert moved.calls == [(torch.device("cpu"), torch.float32)]
    assert torch.equal(out["transfer"], out["clean"])
    far = (x + 0.2).clamp(0, 1)
    with pytest.raises(ValueError, match=r"^attack 'transfer' left the threat model "
                                         r"\(linf eps 0\.05\)$"):
        defenses.evaluation_suite(model, x, y, 0.05, transfer_from=far)


def test_accuracy_vs_eps_bookkeeping(pgd_spy, capsys):
    """eps 0: the clean accuracy, no attack; eps > 0: accuracy on what PGD returns (the spy's
    x - eps for the margin loss) with alpha = 2.5 eps / steps, margin loss, seed 0, chunks of
    250 and early stop by default. A progress bar "eps sweep" that does not stay (leave=False)."""
    model, x = _net(), torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(13))
    with torch.no_grad():
        model[1].weight.mul_(10)  # a net whose predictions move under a shift of 0.1
        y = model(x).argmax(1)
    acc = [float(_correct(model, _shifted(x, -e), y).double().mean()) for e in (0, 0.1, 0.3)]
    assert len(set(acc)) == 3  # the three accuracies differ
    out = defenses.accuracy_vs_eps(model, x, y, [0.0, 0.1, 0.0, 0.3])
    assert out == pytest.approx([acc[0], acc[1], acc[0], acc[2]], abs=1e-12)
    assert [c["eps"] for c in pgd_spy] == pytest.approx([0.1, 0.3], abs=1e-15)
    assert [c["alpha"] for c in pgd_spy] == pytest.approx([0.0125, 0.0375], abs=1e-15)
    assert {(c["steps"], c["loss"], c["seed"], c["batch_size"], c["early_stop"])
            for c in pgd_spy} == {(20, "margin", 0, 250, True)}
    assert all(c["model"] is model and c["x"] is x and c["y"] is y for c in pgd_spy)
    err = capsys.readouterr().err
    # every redraw of the bar (between carriage returns) starts with its description
    bars = [line for line in err.split("\r") if line.strip()]
    assert bars
    assert all(line.startswith("eps sweep: ") for line in bars)
    assert "\n" not in err
    pgd_spy.clear()
    out = defenses.accuracy_vs_eps(model, x, y, [0.1], steps=10, loss="ce", seed=4,
                                   progress=False)
    assert out == pytest.approx([float(_correct(model, _shifted(x, 0.1), y).double().mean())])
    assert pgd_spy[0]["alpha"] == pytest.approx(0.025, abs=1e-15)
    assert (pgd_spy[0]["steps"], pgd_spy[0]["loss"], pgd_spy[0]["seed"]) == (10, "ce", 4)
    assert capsys.readouterr().err == ""


def test_smoothed_counts_default_chunks_and_noise_moved_to_the_images_device_and_dtype(
        monkeypatch):
    """n = 1001 draws in the default chunks of 1000: the model sees 1000 noisy copies, then 1.
    Each chunk of noise is drawn on the CPU, then moved to the images' device and dtype."""
    model = _Recording()
    x = torch.full((1, 1, 2, 2), 0.6, dtype=torch.float16)
    real = torch.randn
    noises = []

    def randn(*args, **kwargs):
        noises.append(_Moved(real(*args, **kwargs)))
        return noises[-1]

    monkeypatch.setattr(torch, "randn", randn)
    counts = defenses.smoothed_counts(model, x, 0.25, 1001, seed=0)
    assert [seen[2] for seen in model.seen] == [1000, 1]
    assert int(counts.sum()) == 1001
    assert [m.calls for m in noises] == [[(torch.device("cpu"), torch.float16)]] * 2


def test_squeezing_score_default_chunks_of_1000_images():
    model = _Recording()
    x = torch.rand(1001, 1, 2, 2, generator=torch.Generator().manual_seed(14))
    score = defenses.squeezing_score(model, x, [defenses.BitDepth(1)])
    assert [seen[2] for seen in model.seen] == [1000, 1000, 1, 1]  # raw, squeezed, per chunk
    assert score.shape == (1001,)


@pytest.fixture
def labels_spy(monkeypatch):
    """checks.torch_labels behind a spy that records its keyword arguments."""
    from helpers import checks

    calls = []
    real = checks.torch_labels

    def spy(y, *args, **kwargs):
        calls.append(kwargs)
        return real(y, *args, **kwargs)

    monkeypatch.setattr(checks, "torch_labels", spy)
    return calls


def test_the_labels_are_moved_where_they_are_used(labels_spy):
    """input_gradient_zero_share moves y to the images' device (the model's output is there);
    certified_accuracy compares with the CPU labels of certify, so moves y to the CPU."""
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(15))
    defenses.input_gradient_zero_share(_net(), x, torch.tensor([0, 1]))
    defenses.certified_accuracy(torch.tensor([1, -1]), torch.tensor([0.5, 0.0]),
                                torch.tensor([1, 0]), 0.25)
    assert [kw["device"] for kw in labels_spy] == [x.device, torch.device("cpu")]


class _TinyGradient(nn.Module):
    """Logit 0 = 2^-1070 * (sum of the pixels), logits 1..9 = 0, in float64: all ten logits
    are about 0, softmax 1/10 each, so for label 1 the input gradient of each image's
    cross-entropy is 0.1 * 2^-1070 on every pixel: a subnormal, 1.6 units of the smallest one
    (2^-1074), rounded to 2 units, not zero. Divided by a batch of 8 first (a mean instead of
    a sum of the per-image losses) it would be 0.2 units and round to zero."""

    def forward(self, x):
        z0 = 2.0**-1070 * x.sum((1, 2, 3))
        return torch.cat([z0[:, None], torch.zeros(len(x), 9, dtype=x.dtype)], 1)


def test_input_gradient_zero_share_takes_each_images_own_gradient():
    """The share of an image does not depend on the batch it comes in: each image's gradient
    is that of its own loss (a sum over the batch, not a mean)."""
    assert np.float64(0.1) * 2.0**-1070 > 0  # the per-image gradient, by hand
    assert np.float64(0.1) / 8 * 2.0**-1070 == 0  # what a mean over 8 images would leave
    x = torch.rand(8, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(16))
    y = torch.ones(8, dtype=torch.long)
    assert defenses.input_gradient_zero_share(_TinyGradient(), x[:1], y[:1]) == 0.0
    assert defenses.input_gradient_zero_share(_TinyGradient(), x, y) == 0.0


def test_certify_without_a_seed_draws_its_noise_from_a_generator_of_its_own():
    """Without a seed, certify takes one seed from torch's global generator and draws the noise
    from its own generator: what the global generator gives afterwards does not depend on how
    much noise certify drew (n = 20 or 400)."""
    x = torch.full((2, 1, 2, 2), 0.55)
    after = []
    for n in (20, 400):
        torch.manual_seed(21)
        defenses.certify(PixelThreshold(), x, 0.25, 10, n, 0.1)
        after.append(torch.rand(4))
    assert torch.equal(after[0], after[1])
