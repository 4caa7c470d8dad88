"""Tests of helpers.attacks: the invariants every attack must keep, and the algorithms' maths.

A tiny CNN (with batch norm and dropout, so that eval/train mode matters) is trained for a few
dozen steps on a synthetic 10-class problem of 28x28 images: noisy copies of ten random binary
prototypes. It reaches ~100% accuracy in about a second, which makes "the attack lowers the
accuracy" and "targeted attacks reach the target" testable without MNIST.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import attacks

N_CLASSES = 10


def _tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, stride=2),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(8 * 5 * 5, N_CLASSES),
    )


def _synthetic(n: int, generator: torch.Generator, prototypes: torch.Tensor):
    y = torch.randint(0, N_CLASSES, (n,), generator=generator)
    noise = 0.1 * torch.randn(n, 1, 28, 28, generator=generator)
    x = (prototypes[y] + noise).clamp(0.0, 1.0)
    return x, y


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def problem():
    g = torch.Generator().manual_seed(0)
    prototypes = 0.35 + 0.3 * (torch.rand(N_CLASSES, 1, 28, 28, generator=g) > 0.5).float()
    x_train, y_train = _synthetic(1024, g, prototypes)
    x_test, y_test = _synthetic(120, g, prototypes)
    torch.manual_seed(0)
    model = _tiny_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(60):
        idx = torch.arange(step * 64, step * 64 + 64) % x_train.shape[0]
        loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for p in model.parameters():
        p.grad = None
    model.eval()
    acc = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert acc > 0.95, f"toy model did not train ({acc:.3f})"
    return model, x_test, y_test, x_train


def _accuracy(model, x, y):
    with torch.no_grad():
        return (model.eval()(x).argmax(1) == y).float().mean().item()


def _linf(a, b):
    return (a - b).flatten(1).abs().max(dim=1).values


def _l2(a, b):
    return (a - b).flatten(1).norm(dim=1)


def _snapshot(model):
    return (
        {k: v.detach().clone() for k, v in model.state_dict().items()},
        [p.requires_grad for p in model.parameters()],
    )


def _assert_model_untouched(model, snap):
    state, flags = snap
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), f"{k} changed"
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters()), "gradient left on a parameter"


FOOL_MIN = {("linf", 0.1): 0.05, ("linf", 0.3): 0.3, ("l2", 2.0): 0.2}

ATTACKS = {
    "fgsm": lambda m, x, y: attacks.fgsm(m, x, y, 0.1),
    "pgd_linf": lambda m, x, y: attacks.pgd(m, x, y, 0.1, 0.02, 5, seed=0),
    "pgd_l2": lambda m, x, y: attacks.pgd(m, x, y, 1.5, 0.3, 5, norm="l2", seed=0),
    "pgd_margin_targeted": lambda m, x, y: attacks.pgd(
        m, x, (y + 1) % 10, 0.1, 0.02, 5, targeted=True, loss="margin", seed=0
    ),
    "pgd_restarts": lambda m, x, y: attacks.pgd(m, x, y, 0.05, 0.01, 3, restarts=3, seed=0),
    "deepfool": lambda m, x, y: attacks.deepfool(m, x, max_iter=3)[0],
    "uap": lambda m, x, y: attacks.universal_perturbation(
        m, x, 0.1, max_passes=1, seed=0, deepfool_max_iter=3
    ),
    "sgd_uap": lambda m, x, y: attacks.sgd_universal_perturbation(m, x, 0.1, epochs=1, seed=0),
    "fooling_rate": lambda m, x, y: attacks.fooling_rate(m, x, torch.full((1, 1, 28, 28), 0.1)),
    "grid": lambda m, x, y: attacks.targeted_success_grid(m, x, y, 0.1, 0.05, 2, per_class=1),
    "label_flow": lambda m, x, y: attacks.label_flow(m, x, torch.zeros(1, 1, 28, 28)),
}


# ------------------------------------------------------------------ model is never changed


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
def test_model_unchanged_no_grad_mode_restored(problem, name, mode):
    model, x, y, _ = problem
    model[0].weight.requires_grad_(False)  # a frozen layer must stay frozen
    try:
        if mode == "train":
            model.train()
        elif mode == "eval":
            model.eval()
        else:
            model.train()
            model[1].eval()
        modes = [m.training for m in model.modules()]
        snap = _snapshot(model)
        ATTACKS[name](model, x[:60], y[:60])
        _assert_model_untouched(model, snap)
        assert [m.training for m in model.modules()] == modes
    finally:
        model[0].weight.requires_grad_(True)
        model.eval()


def test_mode_restored_when_the_attack_raises(problem):
    model, x, y, _ = problem
    model.train()
    try:
        with pytest.raises(ValueError, match=LABEL_10):
            attacks.pgd(model, x[:4], torch.tensor([0, 1, 2, 10]), 0.1, 0.01, 2)
        assert all(m.training for m in model.modules())
    finally:
        model.eval()


def test_attack_in_train_mode_equals_attack_in_eval_mode(problem):
    """The attack runs the model in eval mode, so dropout does not make it random."""
    model, x, y, _ = problem
    a = attacks.pgd(model.eval(), x[:20], y[:20], 0.1, 0.02, 5, seed=3)
    model.train()
    try:
        b = attacks.pgd(model, x[:20], y[:20], 0.1, 0.02, 5, seed=3)
    finally:
        model.eval()
    assert torch.equal(a, b)


# ------------------------------------------------------------------ eps ball and pixel box


@pytest.mark.parametrize("eps", [0.0, 0.03, 0.1, 0.3])
def test_fgsm_ball_box_and_reference(problem, eps):
    model, x, y, _ = problem
    x_adv = attacks.fgsm(model, x, y, eps)
    assert x_adv.shape == x.shape
    assert x_adv.dtype == x.dtype
    assert float(_linf(x_adv, x).max()) <= eps + 1e-6
    assert float(x_adv.min()) >= 0.0
    assert float(x_adv.max()) <= 1.0
    xr = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(xr), y, reduction="sum")
    (g,) = torch.autograd.grad(loss, xr)
    expected = (x + eps * g.sign()).clamp(0, 1)
    assert torch.allclose(x_adv, expected, atol=1e-7)


@pytest.mark.parametrize(
    ("norm", "eps", "alpha"),
    [("linf", 0.1, 0.02), ("linf", 0.3, 0.05), ("l2", 1.0, 0.25), ("l2", 3.0, 0.5)],
)
@pytest.mark.parametrize("random_start", [True, False])
@pytest.mark.parametrize("loss", ["ce", "margin"])
@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_stays_in_ball_and_box(problem, norm, eps, alpha, random_start, loss, targeted):
    model, x, y, _ = problem
    labels = (y + 3) % N_CLASSES if targeted else y
    x_adv = attacks.pgd(
        model,
        x[:64],
        labels[:64],
        eps,
        alpha,
        6,
        norm=norm,
        random_start=random_start,
        loss=loss,
        targeted=targeted,
        seed=1,
    )
    dist = _linf(x_adv, x[:64]) if norm == "linf" else _l2(x_adv, x[:64])
    assert float(dist.max()) <= eps + 1e-6
    assert float(x_adv.min()) >= 0.0
    assert float(x_adv.max()) <= 1.0
    assert x_adv.shape == (64, 1, 28, 28)
    assert x_adv.dtype == torch.float32


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_start_is_inside_the_ball(problem, norm):
    """steps=1 with a tiny alpha: the result is (almost) the random start itself."""
    model, x, y, _ = problem
    eps = 0.2 if norm == "linf" else 2.0
    x_adv = attacks.pgd(model, x[:50], y[:50], eps, 1e-6, 1, norm=norm, seed=0)
    dist = _linf(x_adv, x[:50]) if norm == "linf" else _l2(x_adv, x[:50])
    assert float(dist.max()) <= eps + 1e-6
    assert float(dist.min()) > 0.0  # it did move


def test_eps_zero_returns_the_input(problem):
    model, x, y, _ = problem
    for out in (
        attacks.fgsm(model, x, y, 0.0),
        attacks.pgd(model, x, y, 0.0, 0.01, 3),
        attacks.pgd(model, x, y, 0, 0.01, 3, norm="l2", targeted=True, restarts=2),
        attacks.universal_perturbation(model, x, 0.0) + x,
        attacks.sgd_universal_perturbation(model, x, 0.0) + x,
    ):
        assert torch.equal(out, x)
    assert attacks.fgsm(model, x, y, 0.0) is not x


def test_project_perturbation():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(8, 1, 28, 28, generator=g)
    p = attacks.project_perturbation(d, 0.1, "linf")
    assert float(p.abs().max()) <= 0.1 + 1e-6
    assert torch.equal(p, d.clamp(-0.1, 0.1))
    p2 = attacks.project_perturbation(d, 2.0, "l2")
    assert torch.allclose(_l2(p2, torch.zeros_like(p2)), torch.full((8,), 2.0), atol=1e-5)
    small = 0.001 * d
    assert torch.equal(attacks.project_perturbation(small, 2.0, "l2"), small)  # inside: unchanged


# ------------------------------------------------------------------ determinism


def test_pgd_same_seed_same_result(problem):
    model, x, y, _ = problem
    a = attacks.pgd(model, x, y, 0.1, 0.02, 4, restarts=2, seed=7)
    b = attacks.pgd(model, x, y, 0.1, 0.02, 4, restarts=2, seed=7)
    c = attacks.pgd(model, x, y, 0.1, 0.02, 4, restarts=2, seed=torch.Generator().manual_seed(7))
    d = attacks.pgd(model, x, y, 0.1, 0.02, 4, restarts=2, seed=8)
    assert torch.equal(a, b)
    assert torch.equal(a, c)
    assert not torch.equal(a, d)
    torch.manual_seed(5)
    e = attacks.pgd(model, x, y, 0.1, 0.02, 4)
    torch.manual_seed(5)
    f = attacks.pgd(model, x, y, 0.1, 0.02, 4)
    assert torch.equal(e, f)  # seed=None: torch's global generator


def test_pgd_result_does_not_depend_on_batch_size(problem):
    model, x, y, _ = problem
    a = attacks.pgd(model, x[:50], y[:50], 0.1, 0.02, 4, restarts=2, seed=2)
    b = attacks.pgd(model, x[:50], y[:50], 0.1, 0.02, 4, restarts=2, seed=2, batch_size=7)
    assert torch.allclose(a, b, atol=1e-6)


def test_universal_perturbation_is_deterministic(problem):
    model, _, _, x_train = problem
    a = attacks.universal_perturbation(
        model, x_train[:60], 0.1, max_passes=2, seed=4, deepfool_max_iter=3
    )
    b = attacks.universal_perturbation(
        model, x_train[:60], 0.1, max_passes=2, seed=4, deepfool_max_iter=3
    )
    assert torch.equal(a, b)


# ------------------------------------------------------------------ attacks work


def test_attacks_lower_accuracy_and_pgd_beats_fgsm(problem):
    model, x, y, _ = problem
    clean = _accuracy(model, x, y)
    fgsm_acc = _accuracy(model, attacks.fgsm(model, x, y, 0.15), y)
    pgd_acc = _accuracy(model, attacks.pgd(model, x, y, 0.15, 0.02, 20, seed=0), y)
    assert fgsm_acc < clean
    assert pgd_acc <= fgsm_acc
    assert pgd_acc < 0.2


def test_pgd_accuracy_decreases_with_eps(problem):
    model, x, y, _ = problem
    accs = [
        _accuracy(model, attacks.pgd(model, x, y, e, max(e, 0.01) / 4, 10, seed=0), y)
        for e in (0.0, 0.03, 0.06, 0.1)
    ]
    assert accs == sorted(accs, reverse=True)
    assert accs[0] > accs[-1] + 0.5


def test_restarts_keep_every_success_of_the_first_restart(problem):
    """The first restart uses the same random start as restarts=1; later restarts only replace
    an example by a successful one or, among failures, by one with a higher loss."""
    model, x, y, _ = problem
    eps, alpha, steps = 0.06, 0.01, 5
    one = attacks.pgd(model, x, y, eps, alpha, steps, restarts=1, seed=11)
    many = attacks.pgd(model, x, y, eps, alpha, steps, restarts=4, seed=11)
    with torch.no_grad():
        ok_one, ok_many = model(one).argmax(1) != y, model(many).argmax(1) != y
        loss_one = F.cross_entropy(model(one), y, reduction="none")
        loss_many = F.cross_entropy(model(many), y, reduction="none")
    assert bool((ok_many | ~ok_one).all())
    fail = ~ok_many
    assert bool((loss_many[fail] >= loss_one[fail] - 1e-6).all())
    assert int(ok_many.sum()) >= int(ok_one.sum())


def test_early_stop_succeeds_wherever_the_last_iterate_does(problem):
    model, x, y, _ = problem
    args = (model, x, y, 0.08, 0.01, 8)
    last, step_last = attacks.pgd(*args, seed=0, return_success_step=True)
    early, step_early = attacks.pgd(*args, seed=0, early_stop=True, return_success_step=True)
    with torch.no_grad():
        ok_last, ok_early = model(last).argmax(1) != y, model(early).argmax(1) != y
    assert bool((ok_early | ~ok_last).all())
    assert torch.equal(ok_early, step_early <= 8)  # early stop returns the first fooling iterate
    assert torch.equal(step_last, step_early)  # same trajectory up to the first success
    assert int(step_early.min()) >= 0
    assert int(step_early.max()) <= 9


@pytest.mark.parametrize("loss", ["ce", "margin"])
@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_targeted_attacks_move_toward_the_target(problem, loss, attack):
    model, x, y, _ = problem
    target = (y + 1 + torch.arange(len(y)) % 9) % N_CLASSES
    if attack == "fgsm":
        x_adv = attacks.fgsm(model, x, target, 0.1, targeted=True, loss=loss)
    else:
        x_adv = attacks.pgd(model, x, target, 0.2, 0.02, 20, targeted=True, loss=loss, seed=0)
    with torch.no_grad():
        p_clean = F.softmax(model(x), 1).gather(1, target[:, None]).squeeze(1)
        logits_adv = model(x_adv)
        p_adv = F.softmax(logits_adv, 1).gather(1, target[:, None]).squeeze(1)
    assert float((p_adv > p_clean).float().mean()) > 0.9
    if attack == "pgd":
        assert float((logits_adv.argmax(1) == target).float().mean()) > 0.8


def test_margin_loss_attacks_a_saturated_softmax(problem):
    """Logits scaled by 1e4: softmax saturates and the cross-entropy gradient is exactly zero,
    so CE-PGD (without random start) cannot move; the Carlini-Wagner margin still can."""
    model, x, y, _ = problem
    saturated = nn.Sequential(model, ScaleLogits(1e4)).eval()
    ce = attacks.pgd(saturated, x, y, 0.15, 0.02, 15, random_start=False, loss="ce")
    margin = attacks.pgd(saturated, x, y, 0.15, 0.02, 15, random_start=False, loss="margin")
    assert _accuracy(saturated, margin, y) < _accuracy(saturated, ce, y) - 0.5


class ScaleLogits(nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, z):
        return z * self.scale


def test_float64_inputs_give_float64_outputs(problem):
    model, x, y, _ = problem
    m64 = _tiny_cnn().double().eval()
    m64.load_state_dict(
        {k: v.double() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    )
    x64 = x[:10].double()
    assert attacks.fgsm(m64, x64, y[:10], 0.1).dtype == torch.float64
    assert attacks.pgd(m64, x64, y[:10], 1.0, 0.2, 2, norm="l2").dtype == torch.float64
    assert attacks.deepfool(m64, x64, max_iter=3)[0].dtype == torch.float64
    assert attacks.universal_perturbation(m64, x64, 0.1, max_passes=1).dtype == torch.float64
    assert attacks.sgd_universal_perturbation(m64, x64, 0.1, epochs=1).dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_outputs_stay_on_cuda(problem):
    model, x, y, _ = problem
    m = _tiny_cnn().cuda().eval()
    m.load_state_dict(model.state_dict())
    xc, yc = x[:20].cuda(), y[:20].cuda()
    assert attacks.pgd(m, xc, yc, 0.1, 0.02, 3, seed=0).device.type == "cuda"
    assert attacks.deepfool(m, xc)[0].device.type == "cuda"
    assert attacks.universal_perturbation(m, xc, 0.1, max_passes=1, seed=0).device.type == "cuda"
    assert attacks.sgd_universal_perturbation(m, xc, 0.1, epochs=1, seed=0).device.type == "cuda"


# ------------------------------------------------------------------ DeepFool


def test_deepfool_is_exact_on_a_linear_classifier():
    """For an affine classifier one DeepFool step reaches the closest decision boundary:
    ||r|| = (1 + overshoot) * (min_k |f_k - f_k0| / ||w_k - w_k0|| + 1e-4)."""
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    with torch.no_grad():
        lin[1].weight.mul_(0.05)
    x = 0.5 + 0.01 * torch.randn(12, 1, 28, 28)  # far from the pixel box: no clipping
    overshoot = 0.02  # the default
    delta, iters = attacks.deepfool(lin, x)
    W, b = lin[1].weight.detach(), lin[1].bias.detach()
    f = x.flatten(1) @ W.T + b
    k0 = f.argmax(1)
    for i in range(len(x)):
        others = [k for k in range(10) if k != int(k0[i])]
        dist = torch.stack(
            [(f[i, k] - f[i, k0[i]]).abs() / (W[k] - W[k0[i]]).norm() for k in others]
        )
        expected = (1 + overshoot) * (float(dist.min()) + 1e-4)
        assert math.isclose(float(delta[i].norm()), expected, rel_tol=1e-3)
    assert bool((iters == 1).all())
    with torch.no_grad():
        assert bool((lin(x + delta).argmax(1) != k0).all())


def test_deepfool_flips_labels_with_small_perturbations(problem):
    model, x, _, _ = problem
    delta, iters = attacks.deepfool(model, x, max_iter=50)
    with torch.no_grad():
        flipped = model(x + delta).argmax(1) != model(x).argmax(1)
    assert float(flipped.float().mean()) > 0.95
    assert float((x + delta).min()) >= 0.0
    assert float((x + delta).max()) <= 1.0
    assert iters.dtype == torch.int64
    assert iters.shape == (len(x),)
    assert int(iters.min()) >= 1
    assert int(iters.max()) <= 50
    # DeepFool's perturbations are much smaller than PGD's at a budget that fools the same images.
    pgd_adv = attacks.pgd(model, x, model(x).argmax(1), 3.0, 0.3, 20, norm="l2", seed=0)
    assert float(delta[flipped].flatten(1).norm(dim=1).median()) < float(_l2(pgd_adv, x).median())
    batched, iters_b = attacks.deepfool(model, x, max_iter=50, batch_size=17)
    assert torch.allclose(batched, delta, atol=1e-5)
    assert torch.equal(iters_b, iters)


def test_deepfool_respects_max_iter(problem):
    model, x, _, _ = problem
    _, iters = attacks.deepfool(model, x, max_iter=1)
    assert int(iters.max()) <= 1


# ------------------------------------------------------------------ universal perturbations


# L2 radius 4.0, not 2.0: at 2.0 the toy model is fooled on 1-2 % of the test images, and
# whether that clears noise + 0.05 depended on the CPU's float rounding (it failed on one
# machine's kernels and passed on another's); at 4.0 the perturbation fools about 76 % and the
# noise 0 % on either.
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("linf", 0.3), ("l2", 4.0)])
def test_universal_perturbation_shape_ball_and_effect(problem, norm, eps):
    model, x_test, _, x_train = problem
    v, history = attacks.universal_perturbation(
        model,
        x_train[:100],
        eps,
        norm=norm,
        max_passes=2,
        seed=0,
        return_history=True,
        deepfool_max_iter=5,
    )
    assert v.shape == (1, 1, 28, 28)
    assert v.dtype == torch.float32
    size = float(v.abs().max()) if norm == "linf" else float(v.norm())
    assert size <= eps + 1e-6
    assert 1 <= len(history) <= 2
    assert [h["step"] for h in history] == list(range(1, len(history) + 1))
    assert history[-1]["fooling_rate"] == pytest.approx(
        attacks.fooling_rate(model, x_train[:100], v)
    )
    assert size > 0.5 * eps  # it grew to the budget
    # the control: random noise of the same norm (a sign pattern, or a uniform L2 direction)
    g = torch.Generator().manual_seed(0)
    if norm == "linf":
        noise = eps * (torch.randint(0, 2, (1, 1, 28, 28), generator=g).float() * 2 - 1)
    else:
        noise = torch.randn(1, 1, 28, 28, generator=g)
        noise = eps * noise / noise.norm()
    noise_rate = attacks.fooling_rate(model, x_test, noise)
    assert attacks.fooling_rate(model, x_test, v) > noise_rate + 0.05


def test_universal_perturbation_stops_at_the_target_rate(problem):
    model, _, _, x_train = problem
    _, history = attacks.universal_perturbation(
        model,
        x_train[:100],
        0.3,
        max_passes=6,
        target_fooling_rate=0.1,
        seed=0,
        return_history=True,
        deepfool_max_iter=5,
    )
    assert history[-1]["fooling_rate"] >= 0.1
    assert all(h["fooling_rate"] < 0.1 for h in history[:-1])


def _algorithm_1_reference(model, x, eps, norm, passes, seed, max_iter):
    """Moosavi-Dezfooli et al. 2017, Algorithm 1, written image by image with public calls;
    returns v and the history (fooling rate on x after each pass, and the input gradients of
    one image computed so far: DeepFool takes one per candidate class, 10, per iteration)."""
    g = torch.Generator().manual_seed(seed)
    v = torch.zeros(1, *x.shape[1:])
    with torch.no_grad():
        clean = model.eval()(x).argmax(1)
    history, gradients = [], 0
    for p in range(passes):
        for i in torch.randperm(len(x), generator=g).tolist():
            xi = (x[i : i + 1] + v).clamp(0, 1)
            with torch.no_grad():
                fooled = bool(model(xi).argmax(1) != clean[i])
            if not fooled:
                dv, iters = attacks.deepfool(model, xi, max_iter=max_iter)
                gradients += 10 * int(iters[0])
                v = attacks.project_perturbation(v + dv, eps, norm)
        with torch.no_grad():
            fooled_now = int((model((x + v).clamp(0, 1)).argmax(1) != clean).sum())
        history.append({"step": p + 1, "fooling_rate": fooled_now / len(x),
                        "image_gradients": gradients})
    return v, history


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.2), ("l2", 1.5)])
@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_universal_perturbation_is_algorithm_1_image_by_image(problem, norm, eps, batch_size):
    # A second implementation, sequential and written differently: the look-ahead batch size
    # only groups the fooled-or-not tests, so every batch size gives the paper's algorithm.
    model, _, _, x_train = problem
    expected, expected_history = _algorithm_1_reference(model, x_train[:24], eps, norm, 2, 5, 4)
    v, history = attacks.universal_perturbation(
        model,
        x_train[:24],
        eps,
        norm=norm,
        max_passes=2,
        target_fooling_rate=1.0,
        batch_size=batch_size,
        seed=5,
        deepfool_max_iter=4,
        return_history=True,
    )
    assert torch.allclose(v, expected, atol=1e-5)
    assert history == expected_history  # the fooling rates and the exact gradient counts
    assert history[-1]["image_gradients"] > history[0]["image_gradients"]


def test_universal_perturbation_stops_on_reaching_the_target_rate_exactly(problem):
    # The target equals the rate that Algorithm 1 reaches after one pass: the attack must stop
    # there ("reaches": >=), with the one-pass perturbation, not run a second pass.
    model, _, _, x_train = problem
    expected, expected_history = _algorithm_1_reference(model, x_train[:24], 0.2, "linf", 1, 5, 4)
    rate = expected_history[0]["fooling_rate"]
    assert 0 < rate < 1
    v, history = attacks.universal_perturbation(
        model, x_train[:24], 0.2, max_passes=3, target_fooling_rate=rate, seed=5,
        deepfool_max_iter=4, return_history=True,
    )
    assert history == expected_history
    assert torch.allclose(v, expected, atol=1e-5)


def test_universal_perturbations_at_eps_zero_return_zero_and_an_empty_history(problem):
    model, _, _, x_train = problem
    for fn in (attacks.universal_perturbation, attacks.sgd_universal_perturbation):
        v, history = fn(model, x_train[:8], 0.0, return_history=True)
        assert torch.equal(v, torch.zeros(1, 1, 28, 28))
        assert history == []


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("linf", 0.3), ("l2", 2.0)])
def test_sgd_universal_perturbation_shape_ball_and_effect(problem, norm, eps):
    model, x_test, _, x_train = problem
    v, history = attacks.sgd_universal_perturbation(
        model,
        x_train[:100],
        eps,
        norm=norm,
        epochs=5,
        batch_size=20,
        step_size=eps / 10,
        seed=0,
        return_history=True,
    )
    assert v.shape == (1, 1, 28, 28)
    assert v.dtype == torch.float32
    size = float(v.abs().max()) if norm == "linf" else float(v.norm())
    assert size <= eps + 1e-6
    assert size > 0.5 * eps  # it grew to the budget
    assert len(history) == 5
    assert [h["image_gradients"] for h in history] == [100 * k for k in range(1, 6)]
    assert history[-1]["fooling_rate"] == pytest.approx(
        attacks.fooling_rate(model, x_train[:100], v)
    )
    assert attacks.fooling_rate(model, x_test, v) > FOOL_MIN[(norm, eps)]


def test_sgd_universal_perturbation_beats_random_noise_and_is_deterministic(problem):
    model, x_test, _, x_train = problem
    a = attacks.sgd_universal_perturbation(
        model, x_train[:100], 0.2, epochs=5, batch_size=20, seed=3
    )
    b = attacks.sgd_universal_perturbation(
        model, x_train[:100], 0.2, epochs=5, batch_size=20, seed=3
    )
    assert torch.equal(a, b)
    g = torch.Generator().manual_seed(0)
    noise = 0.2 * (torch.randint(0, 2, (1, 1, 28, 28), generator=g).float() * 2 - 1)
    assert (
        attacks.fooling_rate(model, x_test, a) > attacks.fooling_rate(model, x_test, noise) + 0.05
    )


def test_fooling_rate_matches_definition(problem):
    model, x, _, _ = problem
    assert attacks.fooling_rate(model, x, torch.zeros(1, 1, 28, 28)) == 0.0
    g = torch.Generator().manual_seed(0)
    delta = 0.3 * torch.randn(1, 1, 28, 28, generator=g)
    with torch.no_grad():
        expected = (model(x).argmax(1) != model((x + delta).clamp(0, 1)).argmax(1)).float().mean()
    assert attacks.fooling_rate(model, x, delta) == pytest.approx(float(expected))
    per_image = delta.expand(len(x), -1, -1, -1).clone()
    assert attacks.fooling_rate(model, x, per_image) == pytest.approx(float(expected))
    flow = attacks.label_flow(model, x, delta)
    assert int(flow.sum()) == len(x)
    assert 1 - flow.diagonal().sum().item() / len(x) == pytest.approx(float(expected))


def test_targeted_success_grid(problem):
    model, x, y, _ = problem
    grid = attacks.targeted_success_grid(model, x, y, 0.2, 0.02, 15, per_class=3, seed=0)
    assert grid.shape == (10, 10)
    assert bool(torch.isnan(grid.diagonal()).all())
    off = grid[~torch.eye(10, dtype=torch.bool)]
    assert bool(((off >= 0) & (off <= 1)).all())
    assert float(off.mean()) > 0.5
    with pytest.raises(ValueError, match=r"^per_class must be at most the number of images of "
                       rf"each class; x has {int((y == 0).sum())} of class 0, per_class=1000$"):
        attacks.targeted_success_grid(model, x, y, 0.2, 0.02, 1, per_class=1000)


# ------------------------------------------------------------------ bad arguments


# the messages written in helpers/attacks.py, matched from their start
LABEL_10 = r"^y must hold labels in \[0, 10\) \(the model has 10 classes\), got label 10$"
DELTA_SHAPE = r"^delta must have shape \(1, 1, 28, 28\) or match x \(4, 1, 28, 28\), got "

BAD_CALLS = [
    ("eps", lambda model, x4, y4, y: attacks.fgsm(model, x4, y4, -0.1)),
    ("eps", lambda model, x4, y4, y: attacks.pgd(model, x4, y4, -1, 0.01, 2)),
    ("eps", lambda model, x4, y4, y: attacks.pgd(model, x4, y4, float("nan"), 0.01, 2)),
    ("eps", lambda model, x4, y4, y: attacks.pgd(model, x4, y4, "0.1", 0.01, 2)),
    ("alpha", lambda model, x4, y4, y: attacks.pgd(model, x4, y4, 0.1, 0.0, 2)),
    ("alpha", lambda model, x4, y4, y: attacks.pgd(model, x4, y4, 0.1, -0.01, 2)),
    ("steps", lambda model, x4, y4, y: attacks.pgd(model, x4, y4, 0.1, 0.01, 0)),
    ("steps", lambda model, x4, y4, y: attacks.pgd(model, x4, y4, 0.1, 0.01, 2.5)),
    ("norm", lambda model, x4, y4, y: attacks.pgd(model, x4, y4, 0.1, 0.01, 2, norm="l1")),
    ("norm", lambda model, x4, y4, y: attacks.universal_perturbation(model, x4, 0.1, norm="inf")),
    ("loss", lambda model, x4, y4, y: attacks.pgd(model, x4, y4, 0.1, 0.01, 2, loss="hinge")),
    ("restarts", lambda model, x4, y4, y: attacks.pgd(model, x4, y4, 0.1, 0.01, 2, restarts=0)),
    (
        r"^restarts > 1 needs random_start=True \(restarts from x would all be identical\)$",
        lambda model, x4, y4, y: attacks.pgd(
            model, x4, y4, 0.1, 0.01, 2, restarts=2, random_start=False
        ),
    ),
    ("targeted", lambda model, x4, y4, y: attacks.pgd(model, x4, y4, 0.1, 0.01, 2, targeted="yes")),
    ("seed", lambda model, x4, y4, y: attacks.pgd(model, x4, y4, 0.1, 0.01, 2, seed="seed")),
    ("batch_size", lambda model, x4, y4, y: attacks.pgd(model, x4, y4, 0.1, 0.01, 2, batch_size=0)),
    (
        LABEL_10,
        lambda model, x4, y4, y: attacks.fgsm(model, x4, torch.tensor([0, 1, 2, 10]), 0.1),
    ),
    (
        LABEL_10,
        lambda model, x4, y4, y: attacks.pgd(model, x4, torch.tensor([0, 1, 2, 10]), 0.0, 0.1, 1),
    ),
    (
        "must hold labels in",
        lambda model, x4, y4, y: attacks.pgd(model, x4, torch.tensor([0, -1, 2, 3]), 0.1, 0.01, 2),
    ),
    ("integer", lambda model, x4, y4, y: attacks.fgsm(model, x4, y4.float(), 0.1)),
    (r"y must have shape \(4,\)", lambda model, x4, y4, y: attacks.fgsm(model, x4, y[:3], 0.1)),
    (r"y must have shape", lambda model, x4, y4, y: attacks.fgsm(model, x4, y4[:, None], 0.1)),
    (r"\[0, 1\]", lambda model, x4, y4, y: attacks.fgsm(model, x4 * 2.0, y4, 0.1)),
    (r"\[0, 1\]", lambda model, x4, y4, y: attacks.pgd(model, x4 - 0.5, y4, 0.1, 0.01, 2)),
    (
        "NaN",
        lambda model, x4, y4, y: attacks.fgsm(
            model, x4.masked_fill(x4 > 0.5, float("nan")), y4, 0.1
        ),
    ),
    ("shape", lambda model, x4, y4, y: attacks.fgsm(model, x4[:, 0], y4, 0.1)),
    ("shape", lambda model, x4, y4, y: attacks.deepfool(model, x4.flatten(1))),
    ("shape", lambda model, x4, y4, y: attacks.pgd(model, x4[:0], y4[:0], 0.1, 0.01, 2)),
    (
        "floating-point",
        lambda model, x4, y4, y: attacks.fgsm(model, (x4 * 255).to(torch.uint8), y4, 0.1),
    ),
    ("nn.Module", lambda model, x4, y4, y: attacks.fgsm(lambda t: t, x4, y4, 0.1)),
    ("num_classes", lambda model, x4, y4, y: attacks.deepfool(model, x4, num_classes=1)),
    (
        r"^num_classes must be <= the model's 10 classes, got 11$",
        lambda model, x4, y4, y: attacks.deepfool(model, x4, num_classes=11),
    ),
    ("overshoot", lambda model, x4, y4, y: attacks.deepfool(model, x4, overshoot=-0.1)),
    ("max_iter", lambda model, x4, y4, y: attacks.deepfool(model, x4, max_iter=0)),
    (
        "max_passes",
        lambda model, x4, y4, y: attacks.universal_perturbation(model, x4, 0.1, max_passes=0),
    ),
    (
        "target_fooling_rate",
        lambda model, x4, y4, y: attacks.universal_perturbation(
            model, x4, 0.1, target_fooling_rate=0
        ),
    ),
    (
        "target_fooling_rate",
        lambda model, x4, y4, y: attacks.universal_perturbation(
            model, x4, 0.1, target_fooling_rate=1.5
        ),
    ),
    ("eps", lambda model, x4, y4, y: attacks.universal_perturbation(model, x4, -0.1)),
    ("eps", lambda model, x4, y4, y: attacks.sgd_universal_perturbation(model, x4, -0.1)),
    (
        "norm",
        lambda model, x4, y4, y: attacks.sgd_universal_perturbation(model, x4, 0.1, norm="l1"),
    ),
    (
        "epochs",
        lambda model, x4, y4, y: attacks.sgd_universal_perturbation(model, x4, 0.1, epochs=0),
    ),
    (
        "step_size",
        lambda model, x4, y4, y: attacks.sgd_universal_perturbation(model, x4, 0.1, step_size=0),
    ),
    (
        "batch_size",
        lambda model, x4, y4, y: attacks.sgd_universal_perturbation(model, x4, 0.1, batch_size=0),
    ),
    (
        "loss_clip",
        lambda model, x4, y4, y: attacks.sgd_universal_perturbation(model, x4, 0.1, loss_clip=-1),
    ),
    (
        r"\[0, 1\]",
        lambda model, x4, y4, y: attacks.sgd_universal_perturbation(model, x4 + 1.0, 0.1),
    ),
    (
        DELTA_SHAPE + r"\(1, 1, 14, 14\)$",
        lambda model, x4, y4, y: attacks.fooling_rate(model, x4, torch.zeros(1, 1, 14, 14)),
    ),
    (
        DELTA_SHAPE + r"\(3, 1, 28, 28\)$",
        lambda model, x4, y4, y: attacks.fooling_rate(model, x4, torch.zeros(3, 1, 28, 28)),
    ),
    (
        DELTA_SHAPE + r"\(1, 2, 28, 28\)$",
        lambda model, x4, y4, y: attacks.label_flow(model, x4, torch.zeros(1, 2, 28, 28)),
    ),
    (
        DELTA_SHAPE + r"\(1, 784\)$",
        lambda model, x4, y4, y: attacks.label_flow(model, x4, torch.zeros(1, 784)),
    ),
    ("norm", lambda model, x4, y4, y: attacks.project_perturbation(torch.zeros(2, 3), 0.1, "l0")),
]


@pytest.mark.parametrize(("pattern", "call"), BAD_CALLS)
def test_bad_arguments_raise_clear_errors(problem, pattern, call):
    model, x, y, _ = problem
    snap = _snapshot(model)
    with pytest.raises((ValueError, TypeError), match=pattern):
        call(model, x[:4], y[:4], y)
    _assert_model_untouched(model, snap)


# ------------------------------------------------------------------ references with a known optimum


class _Linear2(nn.Module):
    """Two-class linear model on flattened images: logits (x . w0, x . w1)."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w.clone())  # (2, 784)

    def forward(self, x):
        return x.flatten(1) @ self.w.T


def _linear_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = 0.01 * torch.randn(2, 784, generator=g)  # small logits: no float32 saturation
    x = 0.4 + 0.2 * torch.rand(6, 1, 28, 28, generator=g)  # interior: the box never binds
    y = torch.randint(0, 2, (6,), generator=g)
    return _Linear2(w), x, y


@pytest.mark.parametrize("steps", [1, 3, 4, 10])
def test_pgd_linf_on_a_linear_model_takes_exact_steps(steps):
    # For two classes the CE gradient is (p_other)(w_other - w_y): its sign is constant, so each
    # step moves every pixel by exactly alpha along sign(w_other - w_y) until the cube binds at
    # eps. The constrained optimum (reached once steps * alpha >= eps) is x + eps * sign(...).
    model, x, y = _linear_problem()
    eps, alpha = 0.12, 0.03
    d = (model.w[1 - y] - model.w[y]).detach().sign().view_as(x)
    expected = x + min(steps * alpha, eps) * d
    x_adv = attacks.pgd(model, x, y, eps, alpha, steps, random_start=False)
    assert torch.allclose(x_adv, expected, atol=1e-6)


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_pgd_l2_on_a_linear_model_follows_the_normalised_gradient(steps):
    # L2 steepest ascent on a linear margin: delta_k = min(k alpha, eps) * u with
    # u = (w_other - w_y) / ||w_other - w_y||, the optimum of the L2 ball once k alpha >= eps.
    model, x, y = _linear_problem(1)
    eps, alpha = 0.5, 0.2
    u = (model.w[1 - y] - model.w[y]).detach()
    u = (u / u.norm(dim=1, keepdim=True)).view_as(x)
    x_adv = attacks.pgd(model, x, y, eps, alpha, steps, norm="l2", random_start=False)
    assert torch.allclose(x_adv, x + min(steps * alpha, eps) * u, atol=1e-5)


def test_pgd_linf_box_is_the_exact_projection():
    # Pixels at 0 or 1 cannot move outward: the optimum over box and cube is the clip of
    # x + eps * sign(g) to [0, 1], coordinate by coordinate.
    model, x, y = _linear_problem(2)
    x = (x - 0.5).sign().clamp(min=0)  # black-and-white image: every pixel on the box
    d = (model.w[1 - y] - model.w[y]).detach().sign().view_as(x)
    x_adv = attacks.pgd(model, x, y, 0.2, 0.05, 8, random_start=False)
    assert torch.allclose(x_adv, (x + 0.2 * d).clamp(0, 1), atol=1e-6)


class _ConstantModel(nn.Module):
    """Logits that do not depend on the input: PGD's steps vanish (zero gradient), so what it
    returns is its random start (kept in the box by an interior x)."""

    def __init__(self):
        super().__init__()
        self.b = nn.Parameter(torch.tensor([0.0, 1.0]))

    def forward(self, x):
        return self.b.expand(x.shape[0], 2) + 0.0 * x.flatten(1).sum(1, keepdim=True)


def test_random_start_linf_is_uniform_in_the_cube():
    from scipy import stats

    x = torch.full((40, 1, 28, 28), 0.5)
    eps = 0.2
    delta = (
        attacks.pgd(_ConstantModel(), x, torch.zeros(40, dtype=torch.long), eps, 1e-3, 1, seed=0)
        - x
    )
    u = (delta.flatten() / eps).double().numpy()
    # KS against U(-1, 1) on 31,360 coordinates; p > 1e-3 fails a correct sampler 1 run in 1000
    assert stats.kstest(u, stats.uniform(loc=-1, scale=2).cdf).pvalue > 1e-3
    assert abs(u.mean()) < 4 * (1 / 3) ** 0.5 / len(u) ** 0.5  # symmetric: 4 standard errors


def test_random_start_l2_is_uniform_in_the_ball():
    from scipy import stats

    n, d, eps = 2000, 784, 0.5
    x = torch.full((n, 1, 28, 28), 0.5)
    delta = (
        attacks.pgd(
            _ConstantModel(), x, torch.zeros(n, dtype=torch.long), eps, 1e-6, 1, norm="l2", seed=0
        )
        - x
    )
    flat = delta.flatten(1).double()
    r = flat.norm(dim=1) / eps
    # uniform in the ball: P(R <= r) = r^d, so R^d ~ U(0, 1) (not the radius itself)
    assert stats.kstest((r**d).numpy(), "uniform").pvalue > 1e-3
    # uniform direction: (u_1 + 1) / 2 ~ Beta((d - 1) / 2, (d - 1) / 2) for one coordinate
    u1 = (flat[:, 0] / flat.norm(dim=1)).numpy()
    assert stats.kstest((u1 + 1) / 2, stats.beta((d - 1) / 2, (d - 1) / 2).cdf).pvalue > 1e-3


# ------------------------------------------------------------------ orientation of the tables


class _MeanBrightness(nn.Module):
    """Class k <=> mean pixel value in [0.1 k, 0.1 k + 0.1): logits -(m - c_k)^2 * 1000."""

    def __init__(self):
        super().__init__()
        self.c = nn.Parameter(torch.arange(10) * 0.1 + 0.05, requires_grad=False)

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return -((m[:, None] - self.c) ** 2) * 1000.0


def _upper_edge_images(per_class=2):
    # images of class s sit at 0.1 s + 0.08, near the upper edge of their interval: class s + 1
    # is 0.02 away, class s - 1 is 0.08 away
    y = torch.arange(10).repeat_interleave(per_class)
    x = (0.1 * y + 0.08).view(-1, 1, 1, 1).expand(-1, 1, 28, 28).clone()
    return x, y


def test_targeted_grid_orientation_on_a_hand_built_case():
    model = _MeanBrightness()
    x, y = _upper_edge_images()
    grid = attacks.targeted_success_grid(model, x, y, 0.05, 0.01, 10, per_class=2, seed=0)
    expected = torch.zeros(10, 10, dtype=torch.float64)
    for s in range(9):
        expected[s, s + 1] = 1.0  # only "one class up" is within eps 0.05
    expected.fill_diagonal_(float("nan"))
    assert torch.equal(grid.isnan(), expected.isnan())
    off = ~torch.eye(10, dtype=torch.bool)
    assert torch.equal(grid[off], expected[off])  # a transposed grid fails here


def test_label_flow_orientation_on_a_hand_built_case():
    model = _MeanBrightness()
    x, _ = _upper_edge_images(per_class=3)
    flow = attacks.label_flow(model, x, torch.full((1, 1, 28, 28), 0.03))
    expected = torch.zeros(10, 10, dtype=torch.long)
    for s in range(9):
        expected[s, s + 1] = 3  # row: clean prediction, column: prediction with delta
    expected[9, 9] = 3  # 0.98 + 0.03 is clipped to 1.0: still class 9
    assert torch.equal(flow, expected)


def test_targeted_sgd_uap_pulls_toward_its_target():
    model = _MeanBrightness()
    x, _ = _upper_edge_images(per_class=3)
    v = attacks.sgd_universal_perturbation(
        model, x, 0.05, epochs=3, batch_size=10, target=9, seed=0
    )
    # every pixel moves up by eps (the mean only rises toward class 9), so each class s <= 8
    # lands at 0.1 s + 0.13: class s + 1
    assert torch.allclose(v, torch.full_like(v, 0.05))


# ------------------------------------------------------------------ bad inputs (holes filled)


@pytest.mark.parametrize(
    ("error", "match", "delta"),
    [
        (ValueError, "^delta must hold finite numbers, got NaN", torch.tensor([[0.1, math.nan]])),
        (ValueError, "^delta must hold finite numbers, got NaN", torch.tensor([[0.1, math.inf]])),
        (TypeError, r"^delta must be a floating-point torch.Tensor, got torch.int64$",
         torch.tensor([[1, 2]])),
        (TypeError, r"^delta must be a floating-point torch.Tensor, got list$", [[0.1, 0.2]]),
        (ValueError, r"^delta must have a batch dimension, got shape \(2,\)$",
         torch.tensor([0.1, 0.2])),
    ],
)
def test_project_perturbation_bad_delta(error, match, delta):
    with pytest.raises(error, match=match):
        attacks.project_perturbation(delta, 0.1)


@pytest.mark.parametrize(
    ("error", "match", "kwargs"),
    [
        (ValueError, "eps must be", {"eps": -0.1}),
        (ValueError, "eps must be", {"eps": float("nan")}),
        (TypeError, "eps must be a real number", {"eps": "0.1"}),
        (TypeError, "eps must be a real number", {"eps": True}),
        (ValueError, "norm must be one of", {"norm": "l1"}),
    ],
)
def test_project_perturbation_bad_arguments(error, match, kwargs):
    args = {"eps": 0.1, "norm": "linf", **kwargs}
    with pytest.raises(error, match=match):
        attacks.project_perturbation(torch.zeros(2, 3), args["eps"], args["norm"])


def _call(name, model, x, y, **kw):
    return {
        "pgd": lambda: attacks.pgd(model, x, y, 0.1, 0.01, 2, **kw),
        "uap": lambda: attacks.universal_perturbation(model, x, 0.1, max_passes=1, **kw),
        "sgd_uap": lambda: attacks.sgd_universal_perturbation(model, x, 0.1, epochs=1, **kw),
        "grid": lambda: attacks.targeted_success_grid(model, x, y, 0.1, 0.01, 1, per_class=1, **kw),
    }[name]()


@pytest.mark.parametrize("name", ["pgd", "uap", "sgd_uap", "grid"])
@pytest.mark.parametrize(
    ("error", "match", "kwargs"),
    [
        (TypeError, "seed must be None, an int or a torch.Generator", {"seed": "0"}),
        (TypeError, "seed must be None, an int or a torch.Generator", {"seed": 1.5}),
        (TypeError, "seed must be None, an int or a torch.Generator", {"seed": True}),
        (ValueError, "seed must be an int >= 0", {"seed": -1}),
        (TypeError, "progress must be True or False", {"progress": "yes"}),
        (TypeError, "unexpected keyword argument 'generator'", {"generator": 0}),
    ],
)
def test_randomness_and_progress_arguments(problem, name, error, match, kwargs):
    model, x, y, _ = problem
    with pytest.raises(error, match=match):
        _call(name, model, x[:40], y[:40], **kwargs)


@pytest.mark.parametrize(
    ("error", "match", "target"),
    [
        (ValueError, "target must be an integer >= 0", -1),
        (TypeError, "target must be an integer", 1.0),
        (ValueError, r"^target must hold labels in \[0, 10\) \(the model has 10 classes\), got "
         r"label 10$", 10),
    ],
)
def test_sgd_uap_bad_target(problem, error, match, target):
    model, x, _, _ = problem
    with pytest.raises(error, match=match):
        attacks.sgd_universal_perturbation(model, x[:8], 0.1, epochs=1, target=target)


@pytest.mark.parametrize(
    ("error", "match", "delta"),
    [
        (ValueError, "^delta must hold finite numbers, got NaN",
         torch.full((1, 1, 28, 28), float("nan"))),
        (TypeError, "^delta must be a floating-point torch.Tensor, got torch.int64$",
         torch.zeros(1, 1, 28, 28, dtype=torch.long)),
        (TypeError, "^delta must be a floating-point torch.Tensor, got NoneType$", None),
        (ValueError, r"^delta must have shape \(1, 1, 28, 28\) or match x",
         torch.zeros(2, 1, 28, 28)),
    ],
)
@pytest.mark.parametrize("fn", [attacks.fooling_rate, attacks.label_flow])
def test_universal_delta_bad(problem, fn, error, match, delta):
    model, x, _, _ = problem
    with pytest.raises(error, match=match):
        fn(model, x[:4], delta)


@pytest.mark.parametrize("fn", ["fgsm", "pgd", "deepfool", "fooling_rate"])
def test_numpy_images_are_refused_with_a_hint(problem, fn):
    model, x, y, _ = problem
    xn = x[:4].numpy()
    call = {
        "fgsm": lambda: attacks.fgsm(model, xn, y[:4], 0.1),
        "pgd": lambda: attacks.pgd(model, xn, y[:4], 0.1, 0.01, 1),
        "deepfool": lambda: attacks.deepfool(model, xn),
        "fooling_rate": lambda: attacks.fooling_rate(model, xn, torch.zeros(1, 1, 28, 28)),
    }
    with pytest.raises(TypeError, match="torch.as_tensor"):
        call[fn]()


# ------------------------------------------------------------------ second implementations


def _tanh_net(seed: int, d: int, k: int, scale: float = 3.0) -> nn.Module:
    """A small tanh network in float64 (d pixels, k classes): curved, so that the number of
    steps, the random start and the restarts all change what an attack returns."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(d, 8), nn.Tanh(), nn.Linear(8, k)).double()
    with torch.no_grad():
        net[1].weight.mul_(scale)
        net[3].weight.mul_(scale)
    return net.eval()


def _pgd_objective(z, t, loss, targeted):
    """The attack's objective for one example's logits z, written out."""
    if loss == "ce":
        ce = torch.logsumexp(z, 0) - z[t]
        return -ce if targeted else ce
    best_other = torch.cat([z[:t], z[t + 1 :]]).max()
    return z[t] - best_other if targeted else best_other - z[t]


def _pgd_reference(model, x, y, eps, alpha, steps, norm, restarts, targeted, loss, seed,
                   early_stop, random_start=True):
    """Madry et al.'s PGD one example and one step at a time, with the documented restarts (a
    success beats a failure, among failures the higher loss wins, fooled examples are not
    attacked again) and success steps. The random starts are drawn as documented, for the whole
    batch at each restart: L-infinity eps * (2 U - 1); L2 eps * U^(1/d) * G / ||G|| with
    G ~ N(0, I) (the Gaussian first, then one radius per image)."""
    g = torch.Generator().manual_seed(seed)
    n, d = len(x), x[0].numel()
    best, best_obj = x.clone(), [-math.inf] * n
    best_ok, best_step = [False] * n, [steps + 1] * n
    for _ in range(restarts):
        if not random_start:
            noise = torch.zeros_like(x)
        elif norm == "linf":
            noise = eps * (2 * torch.rand(x.shape, generator=g).double() - 1)
        else:
            gauss = torch.randn(x.shape, generator=g).double()
            radius = torch.rand(n, generator=g).double() ** (1 / d)
            unit = gauss / gauss.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            noise = eps * radius.view(-1, 1, 1, 1) * unit
        if all(best_ok):
            break
        for i in range(n):
            if best_ok[i]:
                continue
            x0, t = x[i], int(y[i])
            xi, first = (x0 + noise[i]).clamp(0, 1), steps + 1
            for step in range(steps + 1):
                xv = xi.clone().requires_grad_(True)
                z = model(xv[None])[0]
                obj = _pgd_objective(z, t, loss, targeted)
                ok = (int(z.argmax()) == t) if targeted else (int(z.argmax()) != t)
                if ok and first > steps:
                    first = step
                if step == steps or (early_stop and ok):
                    break
                (grad,) = torch.autograd.grad(obj, xv)
                with torch.no_grad():
                    if norm == "linf":
                        xi = xi + alpha * grad.sign()
                        xi = torch.minimum(torch.maximum(xi, x0 - eps), x0 + eps).clamp(0, 1)
                    else:
                        step_dir = grad / grad.norm()
                        delta = xi + alpha * step_dir - x0
                        delta = delta * min(1.0, eps / float(delta.norm()))
                        xi = (x0 + delta).clamp(0, 1)
            obj = float(obj.detach())
            if (ok and not best_ok[i]) or (ok == best_ok[i] and obj > best_obj[i]):
                best[i], best_obj[i], best_ok[i], best_step[i] = xi.detach(), obj, ok, first
    return best, torch.tensor(best_step)


def _tanh_problem():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(40, 2, 1, 2, generator=g).double()  # two channels: d = C H W = 4
    x[:8] = (x[:8] > 0.5).double()  # black-and-white images: the pixel box binds
    model = _tanh_net(5, 4, 3)
    with torch.no_grad():
        pred = model(x).argmax(1)
    return model, x, pred


@pytest.mark.parametrize(
    ("norm", "loss", "targeted", "early_stop", "restarts", "batch_size", "random_start"),
    [
        ("linf", "ce", False, False, 3, None, True),
        ("linf", "margin", True, True, 3, 7, True),
        ("linf", "ce", True, False, 1, 7, True),
        ("linf", "margin", False, True, 1, None, False),
        ("l2", "ce", False, True, 2, 7, True),
        ("l2", "margin", False, False, 3, None, True),
        ("l2", "ce", True, False, 2, 16, True),
        ("l2", "ce", False, False, 1, None, False),
    ],
)
def test_pgd_matches_a_one_example_at_a_time_reference(norm, loss, targeted, early_stop,
                                                       restarts, batch_size, random_start):
    # Multi-step PGD on a curved 4-pixel model, where the step size, the number of steps, the
    # distribution of the random start, early stopping and the restarts all change the result.
    model, x, pred = _tanh_problem()
    y = (pred + 1) % 3 if targeted else pred
    eps = 0.15 if norm == "linf" else 0.3
    out, step = attacks.pgd(model, x, y, eps, eps / 4, 6, norm=norm, random_start=random_start,
                            restarts=restarts, targeted=targeted, loss=loss, seed=5,
                            batch_size=batch_size, early_stop=early_stop,
                            return_success_step=True)
    expected, expected_step = _pgd_reference(model, x, y, eps, eps / 4, 6, norm, restarts,
                                             targeted, loss, 5, early_stop, random_start)
    assert torch.allclose(out, expected, atol=1e-9, rtol=0)
    assert torch.equal(step, expected_step)
    assert 0 < int((step <= 6).sum()) < len(x)  # some fooled, some not: both branches count


def test_pgd_restarts_matter_on_the_reference_problem():
    # The reference comparison above only tests the restarts if they change something here:
    # more examples fooled, and failures replaced by a restart with a higher loss.
    model, x, pred = _tanh_problem()
    one, s1 = attacks.pgd(model, x, pred, 0.3, 0.075, 6, norm="l2", seed=5,
                          return_success_step=True)
    three, s3 = attacks.pgd(model, x, pred, 0.3, 0.075, 6, norm="l2", restarts=3, seed=5,
                            return_success_step=True)
    assert int((s3 <= 6).sum()) > int((s1 <= 6).sum())
    failed = s3 > 6
    assert bool((three[failed] != one[failed]).any())


def test_pgd_a_later_restart_replaces_a_failure_only_with_a_higher_loss():
    # The constant model's loss is the same everywhere and its gradient is zero: no restart is
    # better than the first, so three restarts return the first restart's random start.
    x = torch.full((5, 1, 4, 4), 0.5)
    y = torch.ones(5, dtype=torch.long)  # predicted 1: never fooled
    one = attacks.pgd(_ConstantModel(), x, y, 0.2, 1e-3, 2, restarts=1, seed=0)
    three = attacks.pgd(_ConstantModel(), x, y, 0.2, 1e-3, 2, restarts=3, seed=0)
    assert not torch.equal(one, x)
    assert torch.equal(three, one)


def test_pgd_restarts_stop_once_every_example_is_fooled():
    # eps 0.5 on the linear two-class model moves the margin by 0.5 ||w_1 - w_0||_1 (about 4),
    # far more than any clean margin: the first restart fools everything and is returned.
    model, x, y = _linear_problem()
    one, s1 = attacks.pgd(model, x, y, 0.5, 0.5, 1, seed=0, return_success_step=True)
    four, s4 = attacks.pgd(model, x, y, 0.5, 0.5, 1, restarts=4, seed=0,
                           return_success_step=True)
    with torch.no_grad():
        assert bool((model(one).argmax(1) != y).all())
    assert torch.equal(four, one)
    assert torch.equal(s4, s1)
    assert int(s1.max()) <= 1


@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_eps_zero_reports_the_clean_success_as_step_zero(targeted):
    # At eps = 0 nothing moves: success step 0 where x itself is already a success (misclassified,
    # or classified as the target), steps + 1 elsewhere.
    model, x, y = _linear_problem(3)
    with torch.no_grad():
        pred = (x.flatten(1) @ model.w.T).argmax(1)
    assert 0 < int((pred == y).sum()) < len(y)
    out, step = attacks.pgd(model, x, y, 0.0, 0.1, 5, targeted=targeted, batch_size=4,
                            return_success_step=True)
    success = pred == y if targeted else pred != y
    assert torch.equal(out, x)
    assert step.dtype == torch.int64
    assert torch.equal(step, torch.where(success, 0, 6))


def test_deepfool_max_iter_one_is_one_exact_step_on_a_linear_classifier():
    # One linearisation step reaches an affine classifier's boundary: max_iter=1 must take it.
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    with torch.no_grad():
        lin[1].weight.mul_(0.05)
    x = 0.5 + 0.01 * torch.randn(6, 1, 28, 28)
    delta, iters = attacks.deepfool(lin, x, max_iter=1, overshoot=0.0)
    full, _ = attacks.deepfool(lin, x, overshoot=0.0)
    assert torch.equal(iters, torch.ones(6, dtype=torch.long))
    assert torch.allclose(delta, full, atol=1e-7)
    with torch.no_grad():
        assert bool((lin(x + delta).argmax(1) != lin(x).argmax(1)).all())


def _sgd_uap_reference(model, x, eps, norm, epochs, step_size, batch_size, loss_clip, target,
                       seed):
    """Shafahi et al. 2020, Algorithm 1, one mini-batch at a time with public calls: returns v,
    the history and how many per-image losses the clip cut."""
    g = torch.Generator().manual_seed(seed)
    v = torch.zeros(1, *x.shape[1:], dtype=x.dtype)
    with torch.no_grad():
        clean = model(x).argmax(1)
    history, clipped = [], 0
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(x), generator=g)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            w = v.clone().requires_grad_(True)
            z = model((x[idx] + w).clamp(0, 1))
            if target is None:
                ce = F.cross_entropy(z, clean[idx], reduction="none")
                clipped += int((ce > loss_clip).sum())
                objective = torch.minimum(ce, torch.full_like(ce, loss_clip)).mean()
            else:  # no clip when targeted
                objective = -F.cross_entropy(z, torch.full((len(idx),), target))
            (grad,) = torch.autograd.grad(objective, w)
            size = float(grad.norm())
            direction = grad.sign() if norm == "linf" else grad / size if size > 0 else grad
            v = attacks.project_perturbation((v + step_size * direction).detach(), eps, norm)
        with torch.no_grad():
            fooled = int((model((x + v).clamp(0, 1)).argmax(1) != clean).sum())
        history.append({"step": epoch, "fooling_rate": fooled / len(x),
                        "image_gradients": epoch * len(x)})
    return v, history, clipped


@pytest.mark.parametrize(
    ("norm", "eps", "step_size", "target"),
    [("linf", 0.3, 0.05, None), ("l2", 1.0, 0.15, None), ("linf", 0.3, 0.05, 2)],
)
def test_sgd_universal_perturbation_matches_a_reference(norm, eps, step_size, target):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(30, 1, 3, 3, generator=g).double()
    x[:10] = (x[:10] > 0.5).double()  # pixels at 0 and 1: the clip to the box binds
    model = _tanh_net(0, 9, 4)
    v, history = attacks.sgd_universal_perturbation(
        model, x, eps, norm, 4, step_size=step_size, batch_size=7, loss_clip=1.5,
        target=target, seed=3, return_history=True,
    )
    expected, expected_history, clipped = _sgd_uap_reference(
        model, x, eps, norm, 4, step_size, 7, 1.5, target, 3
    )
    assert torch.allclose(v, expected, atol=1e-9, rtol=0)
    assert history == expected_history
    unclipped = attacks.sgd_universal_perturbation(
        model, x, eps, norm, 4, step_size=step_size, batch_size=7, loss_clip=100.0,
        target=target, seed=3,
    )
    if target is None:  # the clip at 1.5 cut some losses, and that changed v
        assert clipped > 0
        assert not torch.allclose(unclipped, v)
    else:  # the targeted objective has no clip
        assert torch.equal(unclipped, v)


def _two_edge_images():
    # per class s: image A at 0.1 s + 0.08 (class s + 1 is 0.02 away, class s - 1 is 0.08
    # away), image B at 0.1 s + 0.02 (class s - 1 is 0.02 away, class s + 1 is 0.08 away)
    y = torch.arange(10).repeat_interleave(2)
    level = 0.1 * y + torch.tensor([0.08, 0.02]).repeat(10)
    return level.view(-1, 1, 1, 1).expand(-1, 1, 28, 28).clone(), y


def test_targeted_grid_averages_over_the_images_of_a_class():
    # eps 0.05 reaches a class 0.02 away, not one 0.08 away: of the two images of class s, A
    # reaches s + 1 and B reaches s - 1, so both cells are 1/2 (the mean over per_class images)
    x, y = _two_edge_images()
    grid = attacks.targeted_success_grid(_MeanBrightness(), x, y, 0.05, 0.01, 10, per_class=2,
                                         seed=0)
    expected = torch.zeros(10, 10, dtype=torch.float64)
    for s in range(10):
        if s < 9:
            expected[s, s + 1] = 0.5
        if s > 0:
            expected[s, s - 1] = 0.5
    off = ~torch.eye(10, dtype=torch.bool)
    assert torch.equal(grid[off], expected[off])
    assert bool(grid.diagonal().isnan().all())


def test_targeted_grid_passes_early_stop_on():
    # Images at 0.1 s + 0.08, two steps of alpha = eps = 0.1 toward class s + 1: the first lands
    # in it past its centre (mean about 0.1 s + 0.155, the random start's negative half holding
    # some pixels back), the second goes back down 0.1, into class s. Early stopping keeps the
    # first iterate; the last iterate fails (except 8 -> 9, held in class 9 by the box).
    model = _MeanBrightness()
    x, y = _upper_edge_images()
    early = attacks.targeted_success_grid(model, x, y, 0.1, 0.1, 2, per_class=2, seed=0,
                                          early_stop=True)
    last = attacks.targeted_success_grid(model, x, y, 0.1, 0.1, 2, per_class=2, seed=0)
    up = torch.arange(9)
    assert torch.equal(early[up, up + 1], torch.ones(9, dtype=torch.float64))
    assert torch.equal(last[up, up + 1], torch.tensor([0.0] * 8 + [1.0], dtype=torch.float64))


def test_targeted_grid_uses_its_seed():
    # One-pixel images at 0.1 s + 0.08, eps 0.05, one tiny step: class s + 1 is reached iff the
    # random start adds more than about 0.019, so the grid depends on the start and the seed.
    model = _MeanBrightness()
    y = torch.arange(10).repeat_interleave(10)
    x = (0.1 * y + 0.08).view(-1, 1, 1, 1)
    torch.manual_seed(0)
    a = attacks.targeted_success_grid(model, x, y, 0.05, 1e-3, 1, per_class=10, seed=3)
    torch.manual_seed(1)
    b = attacks.targeted_success_grid(model, x, y, 0.05, 1e-3, 1, per_class=10, seed=3)
    c = attacks.targeted_success_grid(model, x, y, 0.05, 1e-3, 1, per_class=10, seed=4)
    off = ~torch.eye(10, dtype=torch.bool)
    assert torch.equal(a[off], b[off])  # the global generator does not matter
    assert not torch.equal(a[off], c[off])


def test_label_flow_refuses_too_few_classes():
    model = _MeanBrightness()
    x, _ = _upper_edge_images(per_class=1)  # the last image is predicted 9
    with pytest.raises(ValueError, match=r"^num_classes=9 is smaller than the model's number"):
        attacks.label_flow(model, x, torch.zeros(1, 1, 28, 28), num_classes=9)


class _Bars:
    """Stands in for tqdm in helpers.attacks: records each bar's arguments, updates and close."""

    def __init__(self):
        self.bars = []

    def __call__(self, **kwargs):
        bar = _Bar(kwargs)
        self.bars.append(bar)
        return bar


class _Bar:
    def __init__(self, kwargs):
        self.kwargs, self.n, self.closed = kwargs, 0, False

    def update(self, k):
        self.n += k

    def close(self):
        self.closed = True


@pytest.mark.parametrize("progress", [True, False, None])
def test_progress_bars_count_the_documented_units(monkeypatch, progress):
    bars = _Bars()
    monkeypatch.setattr(attacks, "tqdm", bars)
    kw = {} if progress is None else {"progress": progress}  # None: the default, off
    # PGD: one unit per gradient step of each chunk of each restart (never fooled: all run)
    x = torch.full((7, 1, 4, 4), 0.5)
    attacks.pgd(_ConstantModel(), x, torch.ones(7, dtype=torch.long), 0.1, 0.01, 4, restarts=2,
                batch_size=3, seed=0, **kw)
    # the universal perturbations: images visited per pass, mini-batches per epoch
    model = _MeanBrightness()
    xu, _ = _upper_edge_images(per_class=3)
    _, history = attacks.universal_perturbation(model, xu, 0.05, max_passes=2, seed=0,
                                                return_history=True, **kw)
    attacks.sgd_universal_perturbation(model, xu, 0.05, epochs=3, batch_size=7, seed=0, **kw)
    attacks.targeted_success_grid(model, xu, torch.arange(10).repeat_interleave(3), 0.05, 0.01,
                                  2, per_class=1, batch_size=None, seed=0, **kw)
    expected = [("PGD steps", 2 * 3 * 4, 2 * 3 * 4),
                ("DeepFool-UAP images", 2 * 30, len(history) * 30),
                ("SGD-UAP batches", 3 * 5, 3 * 5),
                ("PGD steps", 2, 2)]
    assert [(b.kwargs["desc"], b.kwargs["total"], b.n) for b in bars.bars] == expected
    for bar in bars.bars:
        assert bar.kwargs == {"total": bar.kwargs["total"], "desc": bar.kwargs["desc"],
                              "disable": progress is not True, "leave": False}
        assert bar.closed


def test_pgd_early_stop_freezes_a_chunk_fooled_at_the_first_step():
    # alpha = eps = 0.5 on the linear two-class model: one step fools every example, so early
    # stopping returns x + 0.5 sign(w_other - w_y) (clipped to the box) after one step of five
    model, x, _ = _linear_problem()
    with torch.no_grad():
        y = model(x).argmax(1)  # correctly classified at the start
    d = (model.w[1 - y] - model.w[y]).detach().sign().view_as(x)
    out, step = attacks.pgd(model, x, y, 0.5, 0.5, 5, random_start=False, early_stop=True,
                            return_success_step=True)
    assert torch.allclose(out, (x + 0.5 * d).clamp(0, 1), atol=1e-6)
    assert torch.equal(step, torch.ones(len(x), dtype=torch.long))


def test_pgd_l2_ascends_along_a_vanishing_gradient():
    # Gradients of norm about 1e-14: the step g / (||g|| + 1e-12) is short (about 1% of alpha)
    # but still points uphill, along u = (w_other - w_y) / ||w_other - w_y||.
    g = torch.Generator().manual_seed(0)
    w = 1e-14 * torch.randn(2, 4, generator=g, dtype=torch.float64)
    model = _Linear2(w)
    x = torch.full((3, 1, 2, 2), 0.5, dtype=torch.float64)
    y = torch.tensor([0, 1, 0])
    out = attacks.pgd(model, x, y, 1.0, 0.5, 1, norm="l2", random_start=False)
    u = (w[1 - y] - w[y]).view_as(x)
    grad_norm = 0.5 * u.flatten(1).norm(dim=1)  # |dCE/dmargin| = 1/2 at a zero margin
    u = u / u.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    length = 0.5 * grad_norm / (grad_norm + 1e-12)
    assert torch.allclose(out - x, length.view(-1, 1, 1, 1) * u, rtol=1e-6, atol=0)


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_margin_loss_steps_along_the_sign_of_the_margin_gradient(problem, targeted):
    model, x, y, _ = problem
    labels = (y + 4) % N_CLASSES if targeted else y
    xr = x.clone().requires_grad_(True)
    z = model(xr)
    z_t = z.gather(1, labels[:, None]).squeeze(1)
    best_other = z.masked_fill(F.one_hot(labels, N_CLASSES).bool(), -math.inf).max(1).values
    margin = z_t - best_other if targeted else best_other - z_t
    (g,) = torch.autograd.grad(margin.sum(), xr)
    expected = (x + 0.1 * g.sign()).clamp(0, 1)
    ce = attacks.fgsm(model, x, labels, 0.1, targeted=targeted)
    out = attacks.fgsm(model, x, labels, 0.1, targeted=targeted, loss="margin", batch_size=50)
    assert torch.allclose(out, expected, atol=1e-7)
    if not targeted:  # here the two losses step differently (targeted, the softmax saturates)
        assert not torch.allclose(ce, expected, atol=1e-7)


def test_targeted_grid_in_l2():
    # An L2 step of alpha along the uniform direction moves every one of the 784 pixels by
    # alpha / 28, so L2 eps 1.4 and alpha 0.28 reach what L-infinity eps 0.05 reaches.
    x, y = _two_edge_images()
    grid = attacks.targeted_success_grid(_MeanBrightness(), x, y, 1.4, 0.28, 10, per_class=2,
                                         norm="l2", seed=0)
    linf = attacks.targeted_success_grid(_MeanBrightness(), x, y, 0.05, 0.01, 10, per_class=2,
                                         seed=0)
    off = ~torch.eye(10, dtype=torch.bool)
    assert torch.equal(grid[off], linf[off])
    assert float(grid[off].sum()) == 9.0  # the 18 half cells of the L-infinity case


def test_fooling_rate_does_not_depend_on_batch_size(problem):
    model, x, _, _ = problem
    g = torch.Generator().manual_seed(1)
    delta = 0.3 * torch.randn(1, 1, 28, 28, generator=g)
    rate = attacks.fooling_rate(model, x, delta)
    assert 0 < rate < 1
    for batch_size in (None, 1, 7):
        assert attacks.fooling_rate(model, x, delta, batch_size=batch_size) == rate


class _Unfoolable(nn.Module):
    """Two classes, logits (sum(x) / 100, 100): class 1 everywhere in the pixel box. DeepFool
    pushes every pixel up, is clipped at 1, and never reaches the boundary."""

    def forward(self, x):
        s = x.flatten(1).sum(1, keepdim=True) / 100
        return torch.cat([s, torch.full_like(s, 100.0)], 1)


def test_deepfool_runs_max_iter_steps_when_the_boundary_is_out_of_the_box():
    x = torch.full((3, 1, 2, 2), 0.5)
    delta, iters = attacks.deepfool(_Unfoolable(), x, num_classes=2)
    assert torch.equal(iters, torch.full((3,), 50))  # the default max_iter
    assert torch.equal(x + delta, torch.ones_like(x))
    _, iters = attacks.deepfool(_Unfoolable(), x, num_classes=2, max_iter=3, batch_size=2)
    assert torch.equal(iters, torch.full((3,), 3))


def test_universal_perturbation_defaults():
    # the documented defaults: linf, 5 passes, target 0.8, overshoot 0.02, DeepFool 10
    # iterations and 10 classes, batch_size 64 (on this model each of them changes the result)
    model = _tanh_net(0, 4, 10, 1.0)
    x = torch.rand(30, 1, 2, 2, generator=torch.Generator().manual_seed(0)).double()
    v, history = attacks.universal_perturbation(model, x, 0.1, seed=0, return_history=True)
    w, explicit = attacks.universal_perturbation(
        model, x, 0.1, "linf", 5, 0.8, overshoot=0.02, deepfool_max_iter=10, num_classes=10,
        batch_size=64, seed=0, return_history=True,
    )
    assert torch.equal(v, w)
    assert history == explicit
    assert len(history) == 5  # the rate stays below 0.8: every pass runs


def test_sgd_universal_perturbation_defaults_on_a_closed_form():
    # 101 copies of one image, linear two-class model: clean class 0 (logits 0.25 and 0), and
    # along v = t (1, -1, 1, -1) the margin is m = -0.25 + 15.5 t. Defaults: linf, step 0.01, 20
    # epochs of 2 mini-batches (batch_size 100) and the clip at 5: the CE log(1 + e^m) passes 5
    # at t = 0.34 (m = 5.02; at t = 0.33 it is 4.87), where the clipped gradient is zero and v
    # stops, before the 40 steps (t = 0.4) run out.
    w = torch.tensor([[0.5, 0.0, 0.0, 0.0], [4.0, -4.0, 4.0, -4.0]], dtype=torch.float64)
    x = torch.full((101, 1, 2, 2), 0.5, dtype=torch.float64)
    v, history = attacks.sgd_universal_perturbation(_Linear2(w), x, 1.0, seed=0,
                                                    return_history=True)
    expected = 0.34 * torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    assert torch.allclose(v.flatten(), expected, atol=1e-9)
    assert len(history) == 20
    assert history[-1]["image_gradients"] == 20 * 101


def test_targeted_grid_defaults():
    # 10 one-pixel images per class: the default per_class is 10 and num_classes 10
    model = _MeanBrightness()
    y = torch.arange(10).repeat_interleave(10)
    x = (0.1 * y + 0.08).view(-1, 1, 1, 1)
    grid = attacks.targeted_success_grid(model, x, y, 0.05, 1e-3, 1, seed=3)
    explicit = attacks.targeted_success_grid(model, x, y, 0.05, 1e-3, 1, num_classes=10,
                                             per_class=10, norm="linf", seed=3, batch_size=1000,
                                             early_stop=False)
    off = ~torch.eye(10, dtype=torch.bool)
    assert torch.equal(grid[off], explicit[off])
    with pytest.raises(ValueError, match=r"^per_class must be at most"):
        attacks.targeted_success_grid(model, x[1:], y[1:], 0.05, 1e-3, 1, seed=3)


def _two_class_images():
    model, x, y = _linear_problem(4)
    return model, x, y


# the smallest legal value of every bounded argument must be accepted
SMALLEST = {
    "pgd": lambda m, x, y: attacks.pgd(m, x, y, 0.0, 1e-9, 1, restarts=1, batch_size=1),
    "fgsm": lambda m, x, y: attacks.fgsm(m, x, y, 0.0, batch_size=1),
    "deepfool": lambda m, x, y: attacks.deepfool(m, x, num_classes=2, overshoot=0.0, max_iter=1,
                                                 batch_size=1),
    "uap": lambda m, x, y: attacks.universal_perturbation(
        m, x, 0.1, max_passes=1, target_fooling_rate=1.0, overshoot=0.0, deepfool_max_iter=1,
        num_classes=2, batch_size=1),
    "sgd_uap": lambda m, x, y: attacks.sgd_universal_perturbation(
        m, x, 0.1, epochs=1, step_size=1e-9, batch_size=1, loss_clip=1e-9, target=0),
    "grid": lambda m, x, y: attacks.targeted_success_grid(m, x, y, 0.1, 0.1, 1, num_classes=2,
                                                          per_class=1, batch_size=1),
    "label_flow": lambda m, x, y: attacks.label_flow(m, x, torch.zeros(1, 1, 28, 28),
                                                     num_classes=2),
    "fooling_rate": lambda m, x, y: attacks.fooling_rate(m, x, torch.zeros(1, 1, 28, 28),
                                                         batch_size=1),
    "project": lambda m, x, y: attacks.project_perturbation(torch.zeros(2, 3), 0.0),
}


@pytest.mark.parametrize("name", sorted(SMALLEST))
def test_smallest_legal_arguments_are_accepted(name):
    model, x, y = _two_class_images()
    assert 0 < int(y.sum()) < len(y)  # both classes present (the grid needs one of each)
    SMALLEST[name](model, x, y)


def _pgd1(m, x, y, **kw):
    return attacks.pgd(m, x, y, 0.1, 0.01, 1, **kw)


def _uap(m, x, y, **kw):
    return attacks.universal_perturbation(m, x, kw.pop("eps", 0.1), **kw)


def _sgd(m, x, y, **kw):
    return attacks.sgd_universal_perturbation(m, x, kw.pop("eps", 0.1), **kw)


def _grid1(m, x, y, **kw):
    return attacks.targeted_success_grid(m, x, y, 0.1, 0.01, 1, **kw)


_NO = "must be True or False, got 'yes'$"
_BATCH0 = r"^batch_size must be an integer >= 1, got 0$"
_LINF_L2 = r"^norm must be one of \('linf', 'l2'\), got 'l1'$"
_ZERO = torch.zeros(1, 1, 28, 28)

# (call, error, message from its start): every argument of the attacks, named with its bound
ARG_ERRORS = [
    (lambda m, x, y: attacks.fgsm(m, x, y, -0.1), ValueError, r"^eps must be a number >= 0, "),
    (lambda m, x, y: attacks.fgsm(m, x, y, "0.1"), TypeError, r"^eps must be a real number"),
    # fgsm checks its own eps first, before its other arguments (and before pgd sees it)
    (lambda m, x, y: attacks.fgsm(m, x, y, -0.1, targeted="yes"), ValueError,
     r"^eps must be a number >= 0, "),
    (lambda m, x, y: attacks.fgsm(m, x, y, 0.1, targeted="yes"), TypeError, "^targeted " + _NO),
    (lambda m, x, y: attacks.fgsm(m, x, y, 0.1, loss="hinge"), ValueError,
     r"^loss must be one of \('ce', 'margin'\), got 'hinge'$"),
    (lambda m, x, y: attacks.fgsm(m, x, y, 0.1, batch_size=0), ValueError, _BATCH0),
    (lambda m, x, y: attacks.pgd(m, x, y, -1, 0.01, 1), ValueError, r"^eps must be a number >="),
    (lambda m, x, y: attacks.pgd(m, x, y, 0.1, 0, 1), ValueError,
     r"^alpha must be a number > 0, got 0$"),
    (lambda m, x, y: attacks.pgd(m, x, y, 0.1, 0.01, 0), ValueError,
     r"^steps must be an integer >= 1, got 0$"),
    (lambda m, x, y: _pgd1(m, x, y, norm="l1"), ValueError, _LINF_L2),
    (lambda m, x, y: _pgd1(m, x, y, random_start="yes"), TypeError, "^random_start " + _NO),
    (lambda m, x, y: _pgd1(m, x, y, restarts=0), ValueError,
     r"^restarts must be an integer >= 1, got 0$"),
    (lambda m, x, y: _pgd1(m, x, y, targeted="yes"), TypeError, "^targeted " + _NO),
    (lambda m, x, y: _pgd1(m, x, y, loss="hinge"), ValueError, r"^loss must be one of"),
    (lambda m, x, y: _pgd1(m, x, y, batch_size=0), ValueError, _BATCH0),
    (lambda m, x, y: _pgd1(m, x, y, early_stop="yes"), TypeError, "^early_stop " + _NO),
    (lambda m, x, y: _pgd1(m, x, y, return_success_step="yes"), TypeError,
     "^return_success_step " + _NO),
    (lambda m, x, y: _pgd1(m, x, y, progress="yes"), TypeError, "^progress " + _NO),
    (lambda m, x, y: attacks.deepfool(m, x, num_classes=1), ValueError,
     r"^num_classes must be an integer >= 2, got 1$"),
    (lambda m, x, y: attacks.deepfool(m, x, overshoot=-0.1), ValueError,
     r"^overshoot must be a number >= 0, got -0.1$"),
    (lambda m, x, y: attacks.deepfool(m, x, max_iter=0), ValueError,
     r"^max_iter must be an integer >= 1, got 0$"),
    (lambda m, x, y: attacks.deepfool(m, x, batch_size=0), ValueError, _BATCH0),
    (lambda m, x, y: _uap(m, x, y, eps=-0.1), ValueError, r"^eps must be a number >= 0, got -0.1$"),
    (lambda m, x, y: _uap(m, x, y, norm="l1"), ValueError, _LINF_L2),
    (lambda m, x, y: _uap(m, x, y, max_passes=0), ValueError,
     r"^max_passes must be an integer >= 1, got 0$"),
    (lambda m, x, y: _uap(m, x, y, target_fooling_rate=0), ValueError,
     r"^target_fooling_rate must be a number > 0 and <= 1, got 0$"),
    (lambda m, x, y: _uap(m, x, y, overshoot=-1), ValueError,
     r"^overshoot must be a number >= 0, got -1$"),
    (lambda m, x, y: _uap(m, x, y, deepfool_max_iter=0), ValueError,
     r"^deepfool_max_iter must be an integer >= 1, got 0$"),
    (lambda m, x, y: _uap(m, x, y, num_classes=1), ValueError,
     r"^num_classes must be an integer >= 2, got 1$"),
    (lambda m, x, y: _uap(m, x, y, batch_size=0), ValueError, _BATCH0),
    (lambda m, x, y: _uap(m, x, y, return_history="yes"), TypeError, "^return_history " + _NO),
    (lambda m, x, y: _uap(m, x, y, progress="yes"), TypeError, "^progress " + _NO),
    (lambda m, x, y: _uap(m, x, y, seed="0"), TypeError,
     r"^seed must be None, an int or a torch.Generator"),
    (lambda m, x, y: _sgd(m, x, y, eps=-0.1), ValueError, r"^eps must be a number >= 0, got -0.1$"),
    (lambda m, x, y: _sgd(m, x, y, norm="l1"), ValueError, _LINF_L2),
    (lambda m, x, y: _sgd(m, x, y, epochs=0), ValueError,
     r"^epochs must be an integer >= 1, got 0$"),
    (lambda m, x, y: _sgd(m, x, y, step_size=0), ValueError,
     r"^step_size must be a number > 0, got 0$"),
    (lambda m, x, y: _sgd(m, x, y, batch_size=0), ValueError, _BATCH0),
    (lambda m, x, y: _sgd(m, x, y, loss_clip=0), ValueError,
     r"^loss_clip must be a number > 0, got 0$"),
    (lambda m, x, y: _sgd(m, x, y, target=-1), ValueError,
     r"^target must be an integer >= 0, got -1$"),
    (lambda m, x, y: _sgd(m, x, y, return_history="yes"), TypeError, "^return_history " + _NO),
    (lambda m, x, y: _sgd(m, x, y, progress="yes"), TypeError, "^progress " + _NO),
    (lambda m, x, y: _sgd(m, x, y, seed=-1), ValueError, r"^seed must be an int >= 0, got -1$"),
    (lambda m, x, y: _grid1(m, x, y, num_classes=1), ValueError,
     r"^num_classes must be an integer >= 2, got 1$"),
    (lambda m, x, y: _grid1(m, x, y, per_class=0), ValueError,
     r"^per_class must be an integer >= 1, got 0$"),
    (lambda m, x, y: attacks.label_flow(m, x, _ZERO, num_classes=1), ValueError,
     r"^num_classes must be an integer >= 2, got 1$"),
    (lambda m, x, y: attacks.fooling_rate(m, x, _ZERO, batch_size=0), ValueError, _BATCH0),
    (lambda m, x, y: attacks.project_perturbation(torch.zeros(2, 3), -1.0), ValueError,
     r"^eps must be a number >= 0, got -1$"),
    (lambda m, x, y: attacks.project_perturbation(torch.zeros(2, 3), 0.1, "l0"), ValueError,
     r"^norm must be one of \('linf', 'l2'\), got 'l0'$"),
]


@pytest.mark.parametrize(("call", "error", "message"), ARG_ERRORS)
def test_argument_errors_name_the_argument_and_its_bound(problem, call, error, message):
    model, x, y, _ = problem
    with pytest.raises(error, match=message):
        call(model, x[:4], y[:4])


class _NeverClass2(nn.Module):
    """The 4-pixel tanh network with class 2 masked out (logit -inf): no input is class 2."""

    def __init__(self):
        super().__init__()
        self.net = _tanh_net(5, 4, 3)

    def forward(self, x):
        z = self.net(x)
        return z.masked_fill(torch.tensor([False, False, True]), -math.inf)


def test_pgd_toward_an_unreachable_target_reports_never():
    # Toward class 2 the targeted objective -CE is -inf at every iterate: no restart succeeds
    # or improves, and the success step is steps + 1 ("never") for every example.
    _, x, _ = _tanh_problem()
    target = torch.full((len(x),), 2)
    out, step = attacks.pgd(_NeverClass2(), x, target, 0.15, 0.05, 3, restarts=2, targeted=True,
                            seed=0, return_success_step=True)
    assert torch.equal(step, torch.full((len(x),), 4))
    assert float((out - x).abs().max()) <= 0.15 + 1e-12


# ------------------------------------------------------------------ chunking, dtypes, edge cases


class _Sizes(nn.Module):
    """Wraps a model and records the number of images of every forward pass: what the
    ``batch_size`` arguments promise is the size of the chunks the model sees."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.sizes = model, []

    def forward(self, x):
        self.sizes.append(x.shape[0])
        return self.model(x)


def _one_pixel(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 1, 1, generator=torch.Generator().manual_seed(seed))


def test_batch_size_sets_the_chunks_of_pgd_fgsm_and_deepfool():
    x = _one_pixel(5)
    y = _MeanBrightness()(x).argmax(1)
    spy = _Sizes(_MeanBrightness())
    attacks.fgsm(spy, x, y, 0.1, batch_size=2)  # per chunk: the gradient pass, the final check
    assert spy.sizes == [2, 2, 2, 2, 1, 1]
    spy.sizes.clear()
    out, step = attacks.pgd(spy, x, y, 0.0, 0.1, 3, batch_size=2, return_success_step=True)
    assert spy.sizes == [2, 2, 1]  # eps = 0: one prediction per chunk
    assert torch.equal(out, x)
    assert torch.equal(step, torch.full((5,), 4))  # every image classified as its label
    spy.sizes.clear()
    attacks.deepfool(spy, x, num_classes=2, max_iter=2, batch_size=2)
    assert spy.sizes[0] == 2
    assert max(spy.sizes) == 2


def test_pgd_at_eps_zero_reports_each_image_by_its_own_prediction():
    # classes 1 to 5 predicted, labels in the other order: only the middle image is a success
    x = (0.1 * torch.arange(1, 6) + 0.05).view(-1, 1, 1, 1)
    y = torch.tensor([5, 4, 3, 2, 1])
    for batch_size in (None, 2):
        _, step = attacks.pgd(_MeanBrightness(), x, y, 0.0, 0.1, 3, targeted=True,
                              batch_size=batch_size, return_success_step=True)
        assert torch.equal(step, torch.tensor([4, 4, 0, 4, 4]))


def test_fooling_rate_batch_sizes_including_the_default_1000():
    x = _one_pixel(1500)
    delta = torch.full((1, 1, 1, 1), 0.05)
    spy = _Sizes(_MeanBrightness())
    rate = attacks.fooling_rate(spy, x, delta)
    assert spy.sizes == [1000, 500, 1000, 500]  # clean, then perturbed
    # the reference: a class changes iff floor(10 x) changes, the clip at 1 keeping class 9
    expected = ((x * 10).floor().clamp(max=9) != ((x + 0.05) * 10).floor().clamp(max=9))
    assert rate == pytest.approx(float(expected.double().mean()), abs=1e-12)
    for batch_size, sizes in ((7, [7, 7, 7, 7, 5] * 2), (None, [33, 33])):
        spy.sizes.clear()
        assert attacks.fooling_rate(spy, x[:33], delta, batch_size=batch_size) == \
            pytest.approx(float(expected[:33].double().mean()), abs=1e-12)
        assert spy.sizes == sizes


def test_targeted_grid_chunks_pgd_by_its_batch_size_default_1000():
    model = _MeanBrightness()
    y = torch.arange(10).repeat_interleave(12)
    x = (0.1 * y + 0.08).view(-1, 1, 1, 1)
    spy = _Sizes(model)
    # 10 classes x 12 images x 9 targets = 1080 attacked pairs: chunks of 1000 and 80, two
    # forward passes each (the step and the final check), then the prediction of the results
    attacks.targeted_success_grid(spy, x, y, 0.05, 0.01, 1, per_class=12, seed=0)
    assert spy.sizes == [1000, 1000, 80, 80, 1000, 80]
    spy.sizes.clear()
    attacks.targeted_success_grid(spy, x, y, 0.05, 0.01, 1, per_class=1, seed=0, batch_size=7)
    assert spy.sizes == [7, 7] * 12 + [6, 6] + [90]


def test_universal_perturbations_evaluate_in_chunks_and_test_batch_size_images():
    x = _one_pixel(300)
    spy = _Sizes(_MeanBrightness())
    attacks.universal_perturbation(spy, x, 1e-3, max_passes=1, deepfool_max_iter=1,
                                   num_classes=2, seed=0)
    eval_chunks = [attacks._UAP_EVAL_BATCH, 300 - attacks._UAP_EVAL_BATCH]
    assert spy.sizes[:3] == [*eval_chunks, 64]  # the clean predictions, then the default 64
    spy.sizes.clear()
    attacks.sgd_universal_perturbation(spy, x, 1e-3, epochs=1, batch_size=100, seed=0)
    assert spy.sizes == [*eval_chunks, 100, 100, 100]


def test_universal_delta_is_cast_to_the_dtype_of_x_and_names_a_wrong_type(problem):
    model, x, _, _ = problem
    g = torch.Generator().manual_seed(1)
    delta = 0.3 * torch.randn(1, 1, 28, 28, generator=g, dtype=torch.float64)
    assert attacks.fooling_rate(model, x, delta) == attacks.fooling_rate(model, x, delta.float())
    assert torch.equal(attacks.label_flow(model, x, delta),
                       attacks.label_flow(model, x, delta.float()))
    with pytest.raises(TypeError, match=r"^delta must be a floating-point torch.Tensor, got "
                                        r"list$"):
        attacks.fooling_rate(model, x[:4], [[0.0]])


def test_pgd_early_stop_keeps_attacking_the_last_unfooled_example():
    # Two examples: the first is misclassified at the start (frozen there, success step 0), the
    # second is never fooled within eps and takes every step: x + min(k alpha, eps) sign(...)
    model, x, _ = _linear_problem()
    x = x[:2]
    with torch.no_grad():
        pred = model(x).argmax(1)
    y = pred.clone()
    y[0] = 1 - pred[0]
    eps, alpha = 0.01, 0.004
    d = (model.w[1 - y] - model.w[y]).detach().sign().view_as(x)
    with torch.no_grad():
        assert int(model(x[1:] + eps * d[1:]).argmax(1)) == int(y[1])  # not fooled at eps
    out, step = attacks.pgd(model, x, y, eps, alpha, 4, random_start=False, early_stop=True,
                            return_success_step=True)
    assert torch.allclose(out[0], x[0], atol=0)
    assert torch.allclose(out[1], x[1] + eps * d[1], atol=1e-6)
    assert torch.equal(step, torch.tensor([0, 5]))


@pytest.mark.parametrize("scale", [0.0, 1e-13])
def test_pgd_l2_random_start_from_a_near_zero_gaussian_draw(monkeypatch, scale):
    # The direction is G / (||G|| + 1e-12): a (near) zero draw must still give a point of the
    # ball on the side of G (no NaN, no flip), here the start itself (zero gradient).
    def tiny(shape, generator=None, device=None):
        return torch.full(tuple(shape), scale, device=device)

    monkeypatch.setattr(torch, "randn", tiny)
    x = torch.full((4, 1, 1, 1), 0.5)
    out = attacks.pgd(_ConstantModel(), x, torch.ones(4, dtype=torch.long), 0.2, 1e-3, 1,
                      norm="l2", seed=0)
    delta = (out - x).flatten()
    assert bool(torch.isfinite(delta).all())
    assert bool((delta >= 0).all())
    assert float(delta.abs().max()) <= 0.2
    if scale:
        assert bool((delta > 0).all())


@pytest.mark.parametrize("bright", [False, True])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_universal_perturbation_tests_the_clipped_images_on_binary_images(problem, norm, bright):
    # Black-and-white images: x + v leaves [0, 1] wherever v pushes a pixel outward, and the
    # model's prediction on the unclipped image differs; Algorithm 1 tests clip(x + v).
    model, _, _, x_train = problem
    x = (x_train[:24] > 0.5).float()
    if bright:
        x = 1.0 - x
    eps = 0.4 if norm == "linf" else 4.0
    expected, expected_history = _algorithm_1_reference(model, x, eps, norm, 1, 5, 4)
    v, history = attacks.universal_perturbation(model, x, eps, norm=norm, max_passes=1,
                                                target_fooling_rate=1.0, batch_size=8, seed=5,
                                                deepfool_max_iter=4, return_history=True)
    assert torch.allclose(v, expected, atol=1e-5)
    assert history == expected_history


def test_l2_projection_keeps_a_tiny_perturbation():
    # ||delta|| = 1e-13 is inside every ball: the factor min(1, eps / ||delta||) is 1
    delta = torch.full((2, 1, 2, 2), 5e-14, dtype=torch.float64)
    assert torch.equal(attacks.project_perturbation(delta, 0.1, "l2"), delta)


class _ParallelClass(nn.Module):
    """Three classes on one-pixel images p: logits (p, p - 1, 1 - p). Class 1 has the gradient
    of class 0 (w = 0) and can never overtake it; the boundary with class 2 is at p = 0.5."""

    def forward(self, x):
        p = x.flatten(1)
        return torch.cat([p, p - 1.0, 1.0 - p], 1)


def test_deepfool_never_steps_toward_a_class_with_the_same_gradient():
    # From p = 0.7 (class 0) the only reachable boundary is p = 0.5: |f_2 - f_0| / ||w_2|| =
    # 0.4 / 2 = 0.2, one step of -(0.2 + 1e-4), enlarged by 1 + overshoot. Class 1 (w = 0,
    # infinitely far) must not be chosen. (atol 1e-8: the 1e-8 added to ||w|| against a zero
    # division shortens the step by a relative 1e-8.)
    x = torch.full((2, 1, 1, 1), 0.7, dtype=torch.float64)
    delta, iters = attacks.deepfool(_ParallelClass(), x, num_classes=3)
    assert torch.allclose(delta, torch.full_like(x, -1.02 * (0.2 + 1e-4)), atol=1e-8, rtol=0)
    assert torch.equal(iters, torch.ones(2, dtype=torch.long))
