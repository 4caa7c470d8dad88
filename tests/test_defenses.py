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

from helpers import attacks, data, defenses

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


BAD = [
    (lambda: defenses.smoothed_counts(Constant(), _grey(1), 0.0, 10), ValueError, "sigma"),
    (lambda: defenses.smoothed_counts(Constant(), _grey(1), -1.0, 10), ValueError, "sigma"),
    (lambda: defenses.smoothed_counts(Constant(), _grey(1), 0.25, 0), ValueError, "n must"),
    (lambda: defenses.certify(Constant(), _grey(1), 0.0, 1, 10, 0.01), ValueError, "sigma"),
    (lambda: defenses.certify(Constant(), _grey(1), 0.25, 20, 10, 0.01), ValueError, "n0"),
    (lambda: defenses.certify(Constant(), _grey(1), 0.25, 1, 10, 0.0), ValueError, "alpha"),
    (lambda: defenses.certify(Constant(), _grey(1), 0.25, 1, 10, 1.0), ValueError, "alpha"),
    (lambda: defenses.certify(Constant(), _grey(1), 0.25, 1, 10, 1.5), ValueError, "alpha"),
    (lambda: defenses.certify(Constant(), _grey(1), 0.25, 1.0, 10, 0.1), TypeError, "n0"),
    (lambda: defenses.smoothed_predict(Constant(), _grey(1), 0.25, 10, 0.0), ValueError,
     "alpha"),
    (lambda: defenses.soft_labels(torch.zeros(2, 3), 0.0), ValueError, "temperature"),
    (lambda: defenses.soft_labels(torch.zeros(2, 3), -1.0), ValueError, "temperature"),
    (lambda: defenses.soft_labels([[1.0]], 1.0), TypeError, "logits"),
    (lambda: defenses.temperature_cross_entropy(0), ValueError, "temperature"),
    (lambda: defenses.distilled_cnn(temperature=0.0), ValueError, "temperature"),
    (lambda: defenses.noise_trained_cnn(0.0), ValueError, "sigma"),
    (lambda: defenses.adversarial_perturbation("pgdx", 0.3), ValueError, "kind"),
    (lambda: defenses.adversarial_perturbation("fgsm", 0.0), ValueError, "eps"),
    (lambda: defenses.adversarial_perturbation("fgsm", 0.3, steps=2), ValueError, "steps"),
    (lambda: defenses.BitDepth(0), ValueError, "bits"),
    (lambda: defenses.MedianSmoothing(0), ValueError, "size"),
    (lambda: defenses.squeezing_score(_net(), _grey(1), []), TypeError, "squeezers"),
    (lambda: defenses.certified_accuracy(torch.zeros(2), torch.zeros(2), torch.zeros(3,
                                         dtype=torch.long), 0.5), ValueError, "y"),
]


@pytest.mark.parametrize(("call", "error", "pattern"), BAD)
def test_bad_arguments_raise_clear_errors(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()
