"""Tests of the adaptive attacks in helpers.attacks (HW3): Carlini-Wagner L2, BPDA, EOT and the
per-example worst case over attacks.

Toy models only: a random linear classifier (whose minimal L2 adversarial distance has a closed
form) and a small ReLU network, so that the whole file runs in seconds.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from test_attacks import (  # the same toy models and forward-pass spy as test_attacks
    _MeanBrightness,
    _Sizes,
    _tanh_net,
)
from torch import nn

from helpers import attacks

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _linear(seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(784, 10)
    with torch.no_grad():
        lin.weight.copy_(0.05 * torch.randn(10, 784, generator=g))
        lin.bias.zero_()
    return nn.Sequential(nn.Flatten(), lin).eval()


def _images(n: int, seed: int = 1) -> torch.Tensor:
    """Mid-grey images (pixels in [0.3, 0.7]) so that the [0, 1] box rarely binds."""
    g = torch.Generator().manual_seed(seed)
    return 0.3 + 0.4 * torch.rand(n, 1, 28, 28, generator=g)


def _min_l2_linear(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Closed form without the box: min_{j != y} (z_y - z_j) / ||w_y - w_j||_2."""
    w = model[1].weight
    with torch.no_grad():
        z = model(x)
        gaps = z.gather(1, y[:, None]) - z
        dist = (w[y][:, None, :] - w[None, :, :]).norm(dim=2)
        ratio = gaps / dist.clamp_min(1e-12)
        ratio[torch.arange(len(y)), y] = float("inf")
    return ratio.min(1).values


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_untouched(model, snap):
    for k, v in model.state_dict().items():
        assert torch.equal(v, snap[k]), f"{k} changed"
    assert all(p.grad is None for p in model.parameters())


def _pgd_l2_binary_search(model, x, y, rounds: int = 12, hi: float = 10.0) -> torch.Tensor:
    """Smallest L2 budget (per example, by bisection) at which PGD-L2-50 succeeds."""
    lo_b = torch.zeros(len(x))
    hi_b = torch.full((len(x),), hi)
    for _ in range(rounds):
        mid = (lo_b + hi_b) / 2
        fooled = torch.zeros(len(x), dtype=torch.bool)
        for i in range(len(x)):  # per-example budget
            xa = attacks.pgd(model, x[i:i + 1], y[i:i + 1], float(mid[i]), float(mid[i]) / 10,
                             50, norm="l2", random_start=False)
            with torch.no_grad():
                fooled[i] = bool(model(xa).argmax(1) != y[i])
        hi_b = torch.where(fooled, mid, hi_b)
        lo_b = torch.where(fooled, lo_b, mid)
    return hi_b


def test_cw_matches_the_closed_form_and_beats_pgd_with_binary_search():
    model = _linear()
    x = _images(6)
    with torch.no_grad():
        y = model(x).argmax(1)
    snap = _snapshot(model)
    x_adv, l2 = attacks.carlini_wagner_l2(model, x, y, binary_steps=7, steps=120, lr=0.01)
    _assert_untouched(model, snap)
    exact = _min_l2_linear(model, x, y)
    with torch.no_grad():
        assert bool((model(x_adv).argmax(1) != y).all()), "CW failed on a linear model"
    assert torch.allclose(l2, (x_adv - x).flatten(1).norm(dim=1), atol=1e-5)
    assert float(x_adv.min()) >= 0.0
    assert float(x_adv.max()) <= 1.0
    # A lower bound that no attack can beat (the box only makes it larger) ...
    assert bool((l2 >= exact - 1e-4).all())
    # ... and CW comes within 5% of it (binary search over c, 120 Adam steps).
    assert bool((l2 <= 1.05 * exact).all()), (l2 / exact)
    pgd_l2 = _pgd_l2_binary_search(model, x[:3], y[:3], rounds=10)
    assert float(l2[:3].median()) <= float(pgd_l2.median()) * 1.01


def test_cw_kappa_demands_a_confident_misclassification():
    model = _linear()
    x = _images(4)
    with torch.no_grad():
        y = model(x).argmax(1)
    kappa = 0.5
    x_adv, l2 = attacks.carlini_wagner_l2(model, x, y, kappa=kappa, binary_steps=5, steps=60)
    with torch.no_grad():
        z = model(x_adv)
    others = z.masked_fill(F.one_hot(y, 10).bool(), float("-inf")).max(1).values
    margin = others - z.gather(1, y[:, None]).squeeze(1)
    assert bool((margin >= kappa - 1e-5).all())
    _, l2_zero = attacks.carlini_wagner_l2(model, x, y, binary_steps=5, steps=60)
    assert bool((l2 > l2_zero).all())  # confidence costs distance


def test_cw_reports_failures_as_infinite_distance():
    """A model whose prediction never changes cannot be attacked: x returned, distance inf."""
    constant = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with torch.no_grad():
        constant[1].weight.zero_()
        constant[1].bias.copy_(torch.arange(10.0))
    x = _images(3)
    y = torch.full((3,), 9)
    x_adv, l2 = attacks.carlini_wagner_l2(constant, x, y, binary_steps=2, steps=5)
    assert torch.isinf(l2).all()
    assert torch.equal(x_adv, x)


def _relu_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)).eval()


def test_bpda_with_the_identity_equals_plain_pgd():
    model = _relu_net()
    x = _images(16)
    with torch.no_grad():
        y = model(x).argmax(1)
    plain = attacks.pgd(model, x, y, 0.1, 0.02, 10, seed=3)
    wrapped = attacks.pgd(attacks.BPDA(model, lambda v: v), x, y, 0.1, 0.02, 10, seed=3)
    assert torch.equal(plain, wrapped)


def test_bpda_attacks_through_a_zero_gradient_preprocessor():
    """Rounding to 4 levels has zero gradient: plain PGD from x cannot move (it returns x), while
    BPDA (backward as the identity) lowers the accuracy of the rounded model."""
    model = _relu_net()
    x = _images(64)

    def squeeze(v):
        return torch.round(v * 3) / 3

    defended = nn.Sequential(attacks.BPDA(nn.Identity(), lambda v: v), model)  # plain forward
    rounded = type("Rounded", (nn.Module,), {"forward": lambda self, v: model(squeeze(v))})()
    rounded.add_module("model", model)
    with torch.no_grad():
        y = rounded(x).argmax(1)
    masked = attacks.pgd(rounded, x, y, 0.2, 0.05, 10, random_start=False)
    assert torch.equal(masked, x)  # zero gradient: sign(0) = 0, no step
    bpda = attacks.pgd(attacks.BPDA(model, squeeze), x, y, 0.2, 0.05, 10, random_start=False)
    with torch.no_grad():
        acc = (rounded(bpda).argmax(1) == y).float().mean().item()
    assert acc < 0.5
    assert defended is not None


def test_eot_without_randomness_equals_the_margin_attack():
    """With the identity transformation log-mean-softmax is log-softmax, whose margin equals the
    logit margin: EOT-PGD and PGD-margin agree."""
    model = _relu_net()
    x = _images(16)
    with torch.no_grad():
        y = model(x).argmax(1)
    eot = attacks.EOT(model, lambda v, g: v, samples=3)
    a = attacks.pgd(eot, x, y, 0.1, 0.02, 10, loss="margin", seed=0)
    b = attacks.pgd(model, x, y, 0.1, 0.02, 10, loss="margin", seed=0)
    assert float((a == b).float().mean()) > 0.99
    with torch.no_grad():
        assert torch.allclose(eot(x), F.log_softmax(model(x), 1), atol=1e-5)


def test_eot_averages_over_noise_and_is_reproducible():
    model = _relu_net()
    x = _images(4)
    transform = attacks.gaussian_noise(0.5)
    out1 = attacks.EOT(model, transform, samples=5, seed=7)(x)
    out2 = attacks.EOT(model, transform, samples=5, seed=7)(x)
    assert torch.equal(out1, out2)
    # the transform: mean 0 and standard deviation sigma (784*4 draws: 4 standard errors)
    g = torch.Generator().manual_seed(0)
    noise = transform(x, g) - x
    n = noise.numel()
    assert abs(float(noise.mean())) < 4 * 0.5 / n ** 0.5
    assert abs(float(noise.std()) - 0.5) < 4 * 0.5 / (2 * n) ** 0.5
    # rows are log-probabilities of an average: they exponentiate to distributions
    assert torch.allclose(out1.exp().sum(1), torch.ones(4), atol=1e-5)


def test_worst_case_is_the_conjunction_and_checks_the_ball():
    model = _relu_net()
    x = _images(32)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:4] = (y[:4] + 1) % 10  # four clean mistakes
    suite = {"fgsm": lambda m, a, b: attacks.fgsm(m, a, b, 0.05),
             "pgd": lambda m, a, b: attacks.pgd(m, a, b, 0.05, 0.01, 10, seed=0),
             "noop": lambda m, a, b: a.clone()}
    snap = _snapshot(model)
    out = attacks.worst_case(model, x, y, suite, eps=0.05)
    _assert_untouched(model, snap)
    assert set(out) == {"clean", "fgsm", "pgd", "noop", "worst_case"}
    expected = out["clean"] & out["fgsm"] & out["pgd"] & out["noop"]
    assert torch.equal(out["worst_case"], expected)
    assert not bool(out["worst_case"][:4].any())
    assert torch.equal(out["noop"], out["clean"])
    assert int(out["worst_case"].sum()) < int(out["pgd"].sum()) or \
        int(out["worst_case"].sum()) <= int(out["fgsm"].sum())
    cheat = {"big": lambda m, a, b: (a + 0.1).clamp(0, 1)}
    with pytest.raises(ValueError, match="left the threat model"):
        attacks.worst_case(model, x, y, cheat, eps=0.05)



def test_worst_case_measures_the_ball_in_the_chosen_norm_and_checks_the_box():
    model = _relu_net()
    x = _images(8)
    x[0, 0, 0, :2] = torch.tensor([0.0, 1.0])  # pixels on the box are inside the threat model
    with torch.no_grad():
        y = model(x).argmax(1)
    noop = {"noop": lambda m, a, b: a.clone()}
    assert torch.equal(attacks.worst_case(model, x, y, noop, eps=0.0)["noop"], torch.ones(8) > 0)
    shift = {"shift": lambda m, a, b: a + 0.05 * (a < 0.95)}  # linf 0.05, l2 about 1.4
    attacks.worst_case(model, x, y, shift, eps=0.05)
    attacks.worst_case(model, x, y, shift, eps=1.5, norm="l2")
    with pytest.raises(ValueError, match=r"^attack 'shift' left the threat model \(l2 eps 1\)"):
        attacks.worst_case(model, x, y, shift, eps=1.0, norm="l2")
    # within 1e-5 of the budget is inside (float rounding), beyond it is outside
    attacks.worst_case(model, x, y, {"a": lambda m, a, b: a - 0.05 * (a > 0.05)}, eps=0.05 - 5e-6)
    with pytest.raises(ValueError, match=r"^attack 'a' left the threat model \(linf eps 0.0499"):
        attacks.worst_case(model, x, y, {"a": lambda m, a, b: a - 0.05 * (a > 0.05)},
                           eps=0.05 - 2e-5)
    above = {"above": lambda m, a, b: a + 0.01}  # in the ball, but pixel 1.0 leaves the box
    with pytest.raises(ValueError, match=r"^attack 'above' left the threat model \(linf eps"):
        attacks.worst_case(model, x, y, above, eps=0.05)
    below = {"below": lambda m, a, b: a - 0.01}
    with pytest.raises(ValueError, match=r"^attack 'below' left the threat model \(linf eps"):
        attacks.worst_case(model, x, y, below, eps=0.05)
    # without eps nothing is checked: the attack's own result is scored
    out = attacks.worst_case(model, x, y, above)
    with torch.no_grad():
        assert torch.equal(out["above"], model(x + 0.01).argmax(1) == y)


def _cw_reference(model, x, y, kappa, c0, rounds, steps, lr):
    """Carlini-Wagner L2 one example at a time, the binary search over c kept in Python floats
    (x10 until a round succeeds, then bisection between the largest failing and the smallest
    succeeding c); returns x_adv, the distances and each example's sequence of c."""
    out, dist, trace = [], [], []
    for i in range(len(x)):
        x0, t = x[i : i + 1], int(y[i])
        w0 = torch.atanh((2 * x0 - 1) * 0.999)
        c, lo, hi = c0, 0.0, math.inf
        best, best_l2, cs = x0.clone(), math.inf, []
        for _ in range(rounds):
            cs.append(c)
            w = w0.clone().requires_grad_(True)
            opt = torch.optim.Adam([w], lr=lr)
            success = False
            for _ in range(steps):
                xa = (torch.tanh(w) + 1) / 2
                z = model(xa)[0]
                margin = z[t] - torch.cat([z[:t], z[t + 1 :]]).max()
                l2 = (xa - x0).norm()
                if float(margin.detach()) <= -kappa and int(z.argmax()) != t:
                    success = True
                    if float(l2.detach()) < best_l2:
                        best, best_l2 = xa.detach().clone(), float(l2.detach())
                loss = l2**2 + c * torch.clamp(margin + kappa, min=0)
                opt.zero_grad()
                loss.backward()
                opt.step()
            if success:
                hi = min(hi, c)
            else:
                lo = max(lo, c)
            c = 10 * c if math.isinf(hi) else (lo + hi) / 2
        out.append(best)
        dist.append(best_l2)
        trace.append(cs)
    return torch.cat(out), torch.tensor(dist, dtype=x.dtype), trace


@pytest.mark.parametrize("kappa", [0.0, 0.3])
def test_cw_matches_a_one_example_at_a_time_reference(kappa):
    # A curved 9-pixel model in float64 where the binary search takes both branches: some
    # examples need c raised tenfold, some bisect down, some are never fooled (distance inf).
    g = torch.Generator().manual_seed(2)
    x = torch.rand(8, 1, 3, 3, generator=g).double()
    model = _tanh_net(2, 9, 4, 2.0)
    with torch.no_grad():
        y = model(x).argmax(1)
    # c = 0.3 has no exact float32 form: c must be kept in x's dtype
    x_adv, l2 = attacks.carlini_wagner_l2(model, x, y, kappa=kappa, c=0.3, binary_steps=4,
                                          steps=15, lr=0.05, batch_size=3)
    expected, expected_l2, trace = _cw_reference(model, x, y, kappa, 0.3, 4, 15, 0.05)
    assert torch.allclose(x_adv, expected, atol=1e-9, rtol=0)
    assert torch.equal(torch.isinf(l2), torch.isinf(expected_l2))
    finite = torch.isfinite(l2)
    assert torch.allclose(l2[finite], expected_l2[finite], atol=1e-9, rtol=0)
    assert 0 < int(finite.sum()) < len(x)
    assert any(cs[1] == 3.0 for cs in trace)  # raised tenfold after a failing first round
    assert any(cs[1] == 0.15 for cs in trace)  # bisected after a successful first round

BAD = [
    (lambda m, x, y: attacks.carlini_wagner_l2(m, x, y, kappa=-1.0), ValueError, "kappa"),
    (lambda m, x, y: attacks.carlini_wagner_l2(m, x, y, c=0.0), ValueError, "c must"),
    (lambda m, x, y: attacks.carlini_wagner_l2(m, x, y, binary_steps=0), ValueError,
     "binary_steps"),
    (lambda m, x, y: attacks.carlini_wagner_l2(m, x, y, steps=1.5), TypeError, "steps"),
    (lambda m, x, y: attacks.carlini_wagner_l2(m, x, y, lr=-0.1), ValueError, "lr"),
    (lambda m, x, y: attacks.carlini_wagner_l2(m, x * 2, y), ValueError, r"\[0, 1\]"),
    (lambda m, x, y: attacks.carlini_wagner_l2(m, x, y + 20), ValueError,
     r"^y must hold labels in \[0, 10\), got 21$"),
    (lambda m, x, y: attacks.carlini_wagner_l2(m, x, torch.tensor([0, 10])), ValueError,
     r"^y must hold labels in \[0, 10\), got 10$"),
    (lambda m, x, y: attacks.carlini_wagner_l2("m", x, y), TypeError, "model"),
    (lambda m, x, y: attacks.BPDA(m, 3), TypeError, r"^preprocess must be callable as"),
    (lambda m, x, y: attacks.EOT(m, lambda v, g: v, samples=0), ValueError, "samples"),
    (lambda m, x, y: attacks.EOT(m, None), TypeError, r"^transform must be callable as"),
    (lambda m, x, y: attacks.EOT(m, lambda v, g: v, seed=-1), ValueError, "seed"),
    (lambda m, x, y: attacks.gaussian_noise(0.0), ValueError, "sigma"),
    (lambda m, x, y: attacks.gaussian_noise("a"), TypeError, "sigma"),
    (lambda m, x, y: attacks.worst_case(m, x, y, {}), TypeError,
     r"^attacks must be a non-empty dict"),
    (lambda m, x, y: attacks.worst_case(m, x, y, [lambda *a: x]), TypeError,
     r"^attacks must be a non-empty dict"),
    (lambda m, x, y: attacks.worst_case(m, x, y, {"a": 1}), TypeError,
     r"^attacks must map names \(str\) to callables, got 'a'"),
    (lambda m, x, y: attacks.worst_case(m, x, y, {3: lambda *a: x}), TypeError,
     r"^attacks must map names \(str\) to callables, got 3"),
    (lambda m, x, y: attacks.worst_case(m, x, y, {"clean": lambda *a: x}), ValueError,
     r"^attack name 'clean' is reserved"),
    (lambda m, x, y: attacks.worst_case(m, x, y, {"worst_case": lambda *a: x}), ValueError,
     r"^attack name 'worst_case' is reserved"),
    (lambda m, x, y: attacks.worst_case(m, x, y, {"a": lambda *a: x[:1]}), ValueError,
     r"^attack 'a' must return a tensor shaped like x"),
    (lambda m, x, y: attacks.worst_case(m, x, y, {"a": lambda *a: x.numpy()}), ValueError,
     r"^attack 'a' must return a tensor shaped like x"),
    (lambda m, x, y: attacks.worst_case(m, x, y, {"a": lambda *a: x}, eps=-1), ValueError,
     "eps"),
    (lambda m, x, y: attacks.worst_case(m, x, y, {"a": lambda *a: x}, norm="l1"), ValueError,
     "norm"),
]


@pytest.mark.parametrize(("call", "error", "pattern"), BAD)
def test_bad_arguments_raise_clear_errors(call, error, pattern):
    model = _relu_net()
    x = _images(2)
    y = torch.tensor([0, 1])
    with pytest.raises(error, match=pattern):
        call(model, x, y)


class _Counting(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x):
        self.calls += 1
        return self.model(x)


def test_cw_defaults():
    # kappa 0, c 1, 6 rounds of 100 Adam steps at lr 0.1: one forward pass per step, plus one
    # per chunk that reads the number of classes
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 1, 3, 3, generator=g).double()
    net = _tanh_net(2, 9, 4, 2.0)
    with torch.no_grad():
        y = net(x).argmax(1)
    counting = _Counting(net)
    x_adv, l2 = attacks.carlini_wagner_l2(counting, x, y)
    assert counting.calls == 1 + 6 * 100
    explicit, l2_explicit = attacks.carlini_wagner_l2(net, x, y, kappa=0.0, c=1.0,
                                                      binary_steps=6, steps=100, lr=0.1,
                                                      batch_size=None)
    assert torch.equal(x_adv, explicit)
    assert torch.equal(l2, l2_explicit)
    assert bool(torch.isfinite(l2).all())


def test_eot_draws_the_default_eight_transformations_per_forward_pass():
    calls = []

    def transform(v, generator):
        calls.append(generator)
        return v

    eot = attacks.EOT(_relu_net(), transform)
    eot(_images(2))
    assert len(calls) == 8
    assert calls[0] is None  # seed=None: torch's global generator
    one = attacks.EOT(_relu_net(), transform, samples=1)  # the smallest legal value
    with torch.no_grad():
        assert torch.allclose(one(_images(2)), F.log_softmax(_relu_net()(_images(2)), 1),
                              atol=1e-6)


def test_bpda_forward_is_the_preprocessed_model_and_backward_the_identity():
    model = _relu_net()
    x = _images(4)

    def squeeze(v):
        return torch.round(v * 3) / 3

    bpda = attacks.BPDA(model, squeeze)
    xr = x.clone().requires_grad_(True)
    out = bpda(xr)
    with torch.no_grad():
        assert torch.allclose(out, model(squeeze(x)), atol=1e-6)
    (grad,) = torch.autograd.grad(out[:, 0].sum(), xr)
    v = squeeze(x).requires_grad_(True)
    (expected,) = torch.autograd.grad(model(v)[:, 0].sum(), v)
    assert torch.allclose(grad, expected, atol=1e-6)


def test_gaussian_noise_is_x_plus_sigma_times_the_generator_draw():
    x = _images(3)
    noise = attacks.gaussian_noise(0.25)(x, torch.Generator().manual_seed(4))
    expected = x + 0.25 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(noise, expected, atol=1e-7)


def test_smallest_legal_adaptive_arguments_are_accepted():
    model = _relu_net()
    x = _images(3)
    with torch.no_grad():
        y = model(x).argmax(1)
    attacks.carlini_wagner_l2(model, x, y, kappa=0.0, binary_steps=1, steps=1, batch_size=1)
    attacks.worst_case(model, x, y, {"noop": lambda m, a, b: a}, eps=0.0, batch_size=1)


_NO = "must be True or False"
ADAPTIVE_ARG_ERRORS = [
    (lambda m, x, y: attacks.carlini_wagner_l2(m, x, y, kappa=-1.0), ValueError,
     r"^kappa must be a number >= 0, got -1$"),
    (lambda m, x, y: attacks.carlini_wagner_l2(m, x, y, c=0.0), ValueError,
     r"^c must be a number > 0, got 0$"),
    (lambda m, x, y: attacks.carlini_wagner_l2(m, x, y, binary_steps=0), ValueError,
     r"^binary_steps must be an integer >= 1, got 0$"),
    (lambda m, x, y: attacks.carlini_wagner_l2(m, x, y, steps=0), ValueError,
     r"^steps must be an integer >= 1, got 0$"),
    (lambda m, x, y: attacks.carlini_wagner_l2(m, x, y, lr=0.0), ValueError,
     r"^lr must be a number > 0, got 0$"),
    (lambda m, x, y: attacks.carlini_wagner_l2(m, x, y, batch_size=0), ValueError,
     r"^batch_size must be an integer >= 1, got 0$"),
    (lambda m, x, y: attacks.carlini_wagner_l2(m, x, y[:1]), ValueError,
     r"^y must have shape \(2,\)"),
    (lambda m, x, y: attacks.carlini_wagner_l2(m, x, y.float()), TypeError,
     r"^y must be an integer tensor"),
    (lambda m, x, y: attacks.carlini_wagner_l2(m, x, y.numpy()), TypeError,
     r"^y must be a torch.Tensor"),
    (lambda m, x, y: attacks.EOT(m, lambda v, g: v, samples=0), ValueError,
     r"^samples must be an integer >= 1, got 0$"),
    (lambda m, x, y: attacks.EOT(m, lambda v, g: v, seed=-1), ValueError,
     r"^seed must be an int >= 0, got -1$"),
    (lambda m, x, y: attacks.gaussian_noise(0.0), ValueError,
     r"^sigma must be a number > 0, got 0$"),
    (lambda m, x, y: attacks.worst_case(m, x, y, {"a": lambda *a: x}, eps=-1), ValueError,
     r"^eps must be a number >= 0, got -1$"),
    (lambda m, x, y: attacks.worst_case(m, x, y, {"a": lambda *a: x}, norm="l1"), ValueError,
     r"^norm must be one of \('linf', 'l2'\), got 'l1'$"),
    (lambda m, x, y: attacks.worst_case(m, x, y, {"a": lambda *a: x}, batch_size=0), ValueError,
     r"^batch_size must be an integer >= 1, got 0$"),
    (lambda m, x, y: attacks.worst_case(m, x, y[:1], {"a": lambda *a: x}), ValueError,
     r"^y must have shape \(2,\)"),
]


@pytest.mark.parametrize(("call", "error", "message"), ADAPTIVE_ARG_ERRORS)
def test_adaptive_argument_errors_name_the_argument_and_its_bound(call, error, message):
    model = _relu_net()
    x = _images(2)
    y = torch.tensor([0, 1])
    with pytest.raises(error, match=message):
        call(model, x, y)


def test_eot_forward_takes_the_softmax_over_the_classes_without_a_warning():
    model = _relu_net()
    x = _images(3)
    eot = attacks.EOT(model, lambda v, g: v, samples=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torch's "implicit dimension choice for softmax"
        out = eot(x)
    with torch.no_grad():
        assert torch.allclose(out, F.log_softmax(model(x), 1), atol=1e-6)


class _TieAtBest(nn.Module):
    """Two classes on one-pixel images: logits (min(20 (p - 0.55), 0), 0). Class 1 (the label)
    is never beaten, only tied, for p >= 0.55, where argmax picks class 0."""

    def forward(self, x):
        z0 = torch.clamp(20.0 * (x.flatten(1) - 0.55), max=0.0)
        return torch.cat([z0, torch.zeros_like(z0)], 1)


def test_cw_counts_a_tie_at_kappa_zero_as_success():
    # kappa = 0: success needs max_{j != y} z_j - z_y >= 0 with another class predicted, which
    # here is exactly the tie; the smallest such perturbation has L2 norm 0.55 - 0.5 = 0.05.
    x = torch.full((2, 1, 1, 1), 0.5, dtype=torch.float64)
    y = torch.ones(2, dtype=torch.long)
    x_adv, l2 = attacks.carlini_wagner_l2(_TieAtBest(), x, y, binary_steps=1, steps=30)
    assert bool(torch.isfinite(l2).all())
    assert float(l2.min()) >= 0.05 - 1e-9
    with torch.no_grad():
        assert bool((_TieAtBest()(x_adv).argmax(1) == 0).all())


def test_cw_chunks_and_reads_the_classes_from_one_image():
    x = torch.full((3, 1, 1, 1), 0.5)
    spy = _Sizes(_MeanBrightness())
    y = torch.full((3,), 5)
    attacks.carlini_wagner_l2(spy, x, y, binary_steps=1, steps=1, batch_size=2)
    assert spy.sizes == [1, 2, 1, 1]  # per chunk: the number of classes, then one Adam step


def test_worst_case_batch_sizes_including_the_default_1000():
    x = torch.rand(1500, 1, 1, 1, generator=torch.Generator().manual_seed(0))
    model = _MeanBrightness()
    y = model(x).argmax(1)
    spy = _Sizes(model)
    noop = {"noop": lambda m, a, b: a.clone()}
    out = attacks.worst_case(spy, x, y, noop)
    assert spy.sizes == [1000, 500, 1000, 500]  # clean, then the attack's output
    assert bool(out["worst_case"].all())
    spy.sizes.clear()
    attacks.worst_case(spy, x[:5], y[:5], noop, batch_size=2)
    assert spy.sizes == [2, 2, 1, 2, 2, 1]


def test_worst_case_accepts_a_perturbation_of_exactly_eps_plus_the_tolerance():
    # "within 1e-5" includes the bound itself: a float64 shift of exactly eps + 1e-5 is inside,
    # the next float above it is outside
    x = torch.zeros(4, 1, 1, 1, dtype=torch.float64)
    y = torch.zeros(4, dtype=torch.long)
    bound = 0.25 + 1e-5
    attacks.worst_case(_MeanBrightness(), x, y, {"edge": lambda m, a, b: a + bound}, eps=0.25)
    over = math.nextafter(bound, 1.0)
    with pytest.raises(ValueError, match=r"^attack 'over' left the threat model"):
        attacks.worst_case(_MeanBrightness(), x, y, {"over": lambda m, a, b: a + over}, eps=0.25)
