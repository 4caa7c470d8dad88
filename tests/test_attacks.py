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
        nn.Conv2d(1, 6, 5, stride=2), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 8, 3, stride=2), nn.ReLU(), nn.Flatten(),
        nn.Dropout(0.2), nn.Linear(8 * 5 * 5, N_CLASSES),
    )


def _synthetic(n: int, generator: torch.Generator, prototypes: torch.Tensor):
    y = torch.randint(0, N_CLASSES, (n,), generator=generator)
    noise = 0.1 * torch.randn(n, 1, 28, 28, generator=generator)
    x = (prototypes[y] + noise).clamp(0.0, 1.0)
    return x, y


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The toy tensors are tiny: one thread avoids OpenMP spinning on a busy shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
    return ({k: v.detach().clone() for k, v in model.state_dict().items()},
            [p.requires_grad for p in model.parameters()])


def _assert_model_untouched(model, snap):
    state, flags = snap
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), f"{k} changed"
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters()), "gradient left on a parameter"


FOOL_MIN = {("linf", 0.1): 0.05, ("linf", 0.3): 0.3, ("l2", 2.0): 0.2}

ATTACKS = {
    "fgsm": lambda m, x, y: attacks.fgsm(m, x, y, 0.1),
    "pgd_linf": lambda m, x, y: attacks.pgd(m, x, y, 0.1, 0.02, 5, generator=0),
    "pgd_l2": lambda m, x, y: attacks.pgd(m, x, y, 1.5, 0.3, 5, norm="l2", generator=0),
    "pgd_margin_targeted": lambda m, x, y: attacks.pgd(m, x, (y + 1) % 10, 0.1, 0.02, 5,
                                                       targeted=True, loss="margin", generator=0),
    "pgd_restarts": lambda m, x, y: attacks.pgd(m, x, y, 0.05, 0.01, 3, restarts=3, generator=0),
    "deepfool": lambda m, x, y: attacks.deepfool(m, x, max_iter=3)[0],
    "uap": lambda m, x, y: attacks.universal_perturbation(m, x, 0.1, max_passes=1, generator=0,
                                                          deepfool_max_iter=3),
    "sgd_uap": lambda m, x, y: attacks.sgd_universal_perturbation(m, x, 0.1, epochs=1, generator=0),
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
        with pytest.raises(ValueError, match="labels must be in"):
            attacks.pgd(model, x[:4], torch.tensor([0, 1, 2, 10]), 0.1, 0.01, 2)
        assert all(m.training for m in model.modules())
    finally:
        model.eval()


def test_attack_in_train_mode_equals_attack_in_eval_mode(problem):
    """The attack runs the model in eval mode, so dropout does not make it random."""
    model, x, y, _ = problem
    a = attacks.pgd(model.eval(), x[:20], y[:20], 0.1, 0.02, 5, generator=3)
    model.train()
    try:
        b = attacks.pgd(model, x[:20], y[:20], 0.1, 0.02, 5, generator=3)
    finally:
        model.eval()
    assert torch.equal(a, b)


# ------------------------------------------------------------------ eps ball and pixel box


@pytest.mark.parametrize("eps", [0.0, 0.03, 0.1, 0.3])
def test_fgsm_ball_box_and_reference(problem, eps):
    model, x, y, _ = problem
    x_adv = attacks.fgsm(model, x, y, eps)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert float(_linf(x_adv, x).max()) <= eps + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    xr = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(xr), y, reduction="sum")
    (g,) = torch.autograd.grad(loss, xr)
    expected = (x + eps * g.sign()).clamp(0, 1)
    assert torch.allclose(x_adv, expected, atol=1e-7)


@pytest.mark.parametrize("norm,eps,alpha", [("linf", 0.1, 0.02), ("linf", 0.3, 0.05),
                                             ("l2", 1.0, 0.25), ("l2", 3.0, 0.5)])
@pytest.mark.parametrize("random_start", [True, False])
@pytest.mark.parametrize("loss", ["ce", "margin"])
@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_stays_in_ball_and_box(problem, norm, eps, alpha, random_start, loss, targeted):
    model, x, y, _ = problem
    labels = (y + 3) % N_CLASSES if targeted else y
    x_adv = attacks.pgd(model, x[:64], labels[:64], eps, alpha, 6, norm=norm,
                        random_start=random_start, loss=loss, targeted=targeted, generator=1)
    dist = _linf(x_adv, x[:64]) if norm == "linf" else _l2(x_adv, x[:64])
    assert float(dist.max()) <= eps + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert x_adv.shape == (64, 1, 28, 28) and x_adv.dtype == torch.float32


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_start_is_inside_the_ball(problem, norm):
    """steps=1 with a tiny alpha: the result is (almost) the random start itself."""
    model, x, y, _ = problem
    eps = 0.2 if norm == "linf" else 2.0
    x_adv = attacks.pgd(model, x[:50], y[:50], eps, 1e-6, 1, norm=norm, generator=0)
    dist = _linf(x_adv, x[:50]) if norm == "linf" else _l2(x_adv, x[:50])
    assert float(dist.max()) <= eps + 1e-6
    assert float(dist.min()) > 0.0  # it did move


def test_eps_zero_returns_the_input(problem):
    model, x, y, _ = problem
    for out in (attacks.fgsm(model, x, y, 0.0),
                attacks.pgd(model, x, y, 0.0, 0.01, 3),
                attacks.pgd(model, x, y, 0, 0.01, 3, norm="l2", targeted=True, restarts=2),
                attacks.universal_perturbation(model, x, 0.0) + x,
                attacks.sgd_universal_perturbation(model, x, 0.0) + x):
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
    a = attacks.pgd(model, x, y, 0.1, 0.02, 4, restarts=2, generator=7)
    b = attacks.pgd(model, x, y, 0.1, 0.02, 4, restarts=2, generator=7)
    c = attacks.pgd(model, x, y, 0.1, 0.02, 4, restarts=2, generator=torch.Generator().manual_seed(7))
    d = attacks.pgd(model, x, y, 0.1, 0.02, 4, restarts=2, generator=8)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(a, d)
    torch.manual_seed(5)
    e = attacks.pgd(model, x, y, 0.1, 0.02, 4)
    torch.manual_seed(5)
    f = attacks.pgd(model, x, y, 0.1, 0.02, 4)
    assert torch.equal(e, f)  # generator=None: torch's global generator


def test_pgd_result_does_not_depend_on_batch_size(problem):
    model, x, y, _ = problem
    a = attacks.pgd(model, x[:50], y[:50], 0.1, 0.02, 4, restarts=2, generator=2)
    b = attacks.pgd(model, x[:50], y[:50], 0.1, 0.02, 4, restarts=2, generator=2, batch_size=7)
    assert torch.allclose(a, b, atol=1e-6)


def test_universal_perturbation_is_deterministic(problem):
    model, _, _, x_train = problem
    a = attacks.universal_perturbation(model, x_train[:60], 0.1, max_passes=2, generator=4,
                                       deepfool_max_iter=3)
    b = attacks.universal_perturbation(model, x_train[:60], 0.1, max_passes=2, generator=4,
                                       deepfool_max_iter=3)
    assert torch.equal(a, b)


# ------------------------------------------------------------------ attacks work


def test_attacks_lower_accuracy_and_pgd_beats_fgsm(problem):
    model, x, y, _ = problem
    clean = _accuracy(model, x, y)
    fgsm_acc = _accuracy(model, attacks.fgsm(model, x, y, 0.15), y)
    pgd_acc = _accuracy(model, attacks.pgd(model, x, y, 0.15, 0.02, 20, generator=0), y)
    assert fgsm_acc < clean
    assert pgd_acc <= fgsm_acc
    assert pgd_acc < 0.2


def test_pgd_accuracy_decreases_with_eps(problem):
    model, x, y, _ = problem
    accs = [_accuracy(model, attacks.pgd(model, x, y, e, max(e, 0.01) / 4, 10, generator=0), y)
            for e in (0.0, 0.03, 0.06, 0.1)]
    assert accs == sorted(accs, reverse=True)
    assert accs[0] > accs[-1] + 0.5


def test_restarts_keep_every_success_of_the_first_restart(problem):
    """The first restart uses the same random start as restarts=1; later restarts only replace
    an example by a successful one or, among failures, by one with a higher loss."""
    model, x, y, _ = problem
    eps, alpha, steps = 0.06, 0.01, 5
    one = attacks.pgd(model, x, y, eps, alpha, steps, restarts=1, generator=11)
    many = attacks.pgd(model, x, y, eps, alpha, steps, restarts=4, generator=11)
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
    last, step_last = attacks.pgd(*args, generator=0, return_success_step=True)
    early, step_early = attacks.pgd(*args, generator=0, early_stop=True, return_success_step=True)
    with torch.no_grad():
        ok_last, ok_early = model(last).argmax(1) != y, model(early).argmax(1) != y
    assert bool((ok_early | ~ok_last).all())
    assert torch.equal(ok_early, step_early <= 8)  # early stop returns the first fooling iterate
    assert torch.equal(step_last, step_early)  # same trajectory up to the first success
    assert int(step_early.min()) >= 0 and int(step_early.max()) <= 9


@pytest.mark.parametrize("loss", ["ce", "margin"])
@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_targeted_attacks_move_toward_the_target(problem, loss, attack):
    model, x, y, _ = problem
    target = (y + 1 + torch.arange(len(y)) % 9) % N_CLASSES
    if attack == "fgsm":
        x_adv = attacks.fgsm(model, x, target, 0.1, targeted=True, loss=loss)
    else:
        x_adv = attacks.pgd(model, x, target, 0.2, 0.02, 20, targeted=True, loss=loss, generator=0)
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
    m64.load_state_dict({k: v.double() if v.is_floating_point() else v
                         for k, v in model.state_dict().items()})
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
    assert attacks.pgd(m, xc, yc, 0.1, 0.02, 3, generator=0).device.type == "cuda"
    assert attacks.deepfool(m, xc)[0].device.type == "cuda"
    assert attacks.universal_perturbation(m, xc, 0.1, max_passes=1, generator=0).device.type == "cuda"
    assert attacks.sgd_universal_perturbation(m, xc, 0.1, epochs=1, generator=0).device.type == "cuda"


# ------------------------------------------------------------------ DeepFool


def test_deepfool_is_exact_on_a_linear_classifier():
    """For an affine classifier one DeepFool step reaches the closest decision boundary:
    ||r|| = (1 + overshoot) * (min_k |f_k - f_k0| / ||w_k - w_k0|| + 1e-4)."""
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    with torch.no_grad():
        lin[1].weight.mul_(0.05)
    x = 0.5 + 0.01 * torch.randn(12, 1, 28, 28)  # far from the pixel box: no clipping
    overshoot = 0.02
    delta, iters = attacks.deepfool(lin, x, overshoot=overshoot)
    W, b = lin[1].weight.detach(), lin[1].bias.detach()
    f = x.flatten(1) @ W.T + b
    k0 = f.argmax(1)
    for i in range(len(x)):
        others = [k for k in range(10) if k != int(k0[i])]
        dist = torch.stack([(f[i, k] - f[i, k0[i]]).abs() / (W[k] - W[k0[i]]).norm() for k in others])
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
    assert float((x + delta).min()) >= 0.0 and float((x + delta).max()) <= 1.0
    assert iters.dtype == torch.int64 and iters.shape == (len(x),)
    assert int(iters.min()) >= 1 and int(iters.max()) <= 50
    # DeepFool's perturbations are much smaller than PGD's at a budget that fools the same images.
    pgd_adv = attacks.pgd(model, x, model(x).argmax(1), 3.0, 0.3, 20, norm="l2", generator=0)
    assert float(delta[flipped].flatten(1).norm(dim=1).median()) < float(_l2(pgd_adv, x).median())
    batched, iters_b = attacks.deepfool(model, x, max_iter=50, batch_size=17)
    assert torch.allclose(batched, delta, atol=1e-5) and torch.equal(iters_b, iters)


def test_deepfool_respects_max_iter(problem):
    model, x, _, _ = problem
    _, iters = attacks.deepfool(model, x, max_iter=1)
    assert int(iters.max()) <= 1


# ------------------------------------------------------------------ universal perturbations


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("linf", 0.3), ("l2", 2.0)])
def test_universal_perturbation_shape_ball_and_effect(problem, norm, eps):
    model, x_test, _, x_train = problem
    v, history = attacks.universal_perturbation(model, x_train[:100], eps, norm=norm,
                                                max_passes=2, generator=0, return_history=True,
                                                deepfool_max_iter=5)
    assert v.shape == (1, 1, 28, 28) and v.dtype == torch.float32
    size = float(v.abs().max()) if norm == "linf" else float(v.norm())
    assert size <= eps + 1e-6
    assert 1 <= len(history) <= 2
    assert history[-1] == pytest.approx(attacks.fooling_rate(model, x_train[:100], v))
    assert size > 0.5 * eps  # it grew to the budget
    assert attacks.fooling_rate(model, x_test, v) > FOOL_MIN[(norm, eps)]


def test_universal_perturbation_stops_at_the_target_rate(problem):
    model, _, _, x_train = problem
    _, history = attacks.universal_perturbation(model, x_train[:100], 0.3, max_passes=6,
                                                target_fooling_rate=0.1, generator=0,
                                                return_history=True, deepfool_max_iter=5)
    assert history[-1] >= 0.1
    assert all(h < 0.1 for h in history[:-1])


def test_universal_perturbation_sequential_batch_size_one(problem):
    model, _, _, x_train = problem
    v = attacks.universal_perturbation(model, x_train[:20], 0.2, max_passes=1, batch_size=1,
                                       generator=0, deepfool_max_iter=5)
    assert float(v.abs().max()) <= 0.2 + 1e-6
    assert float(v.abs().max()) > 0.0


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("linf", 0.3), ("l2", 2.0)])
def test_sgd_universal_perturbation_shape_ball_and_effect(problem, norm, eps):
    model, x_test, _, x_train = problem
    v, history = attacks.sgd_universal_perturbation(model, x_train[:100], eps, norm=norm,
                                                    epochs=5, batch_size=20, step_size=eps / 10,
                                                    generator=0, return_history=True)
    assert v.shape == (1, 1, 28, 28) and v.dtype == torch.float32
    size = float(v.abs().max()) if norm == "linf" else float(v.norm())
    assert size <= eps + 1e-6
    assert size > 0.5 * eps  # it grew to the budget
    assert len(history) == 5
    assert history[-1] == pytest.approx(attacks.fooling_rate(model, x_train[:100], v))
    assert attacks.fooling_rate(model, x_test, v) > FOOL_MIN[(norm, eps)]


def test_sgd_universal_perturbation_beats_random_noise_and_is_deterministic(problem):
    model, x_test, _, x_train = problem
    a = attacks.sgd_universal_perturbation(model, x_train[:100], 0.2, epochs=5, batch_size=20,
                                           generator=3)
    b = attacks.sgd_universal_perturbation(model, x_train[:100], 0.2, epochs=5, batch_size=20,
                                           generator=3)
    assert torch.equal(a, b)
    g = torch.Generator().manual_seed(0)
    noise = 0.2 * (torch.randint(0, 2, (1, 1, 28, 28), generator=g).float() * 2 - 1)
    assert attacks.fooling_rate(model, x_test, a) > attacks.fooling_rate(model, x_test, noise) + 0.05


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
    grid = attacks.targeted_success_grid(model, x, y, 0.2, 0.02, 15, per_class=3, generator=0)
    assert grid.shape == (10, 10)
    assert bool(torch.isnan(grid.diagonal()).all())
    off = grid[~torch.eye(10, dtype=torch.bool)]
    assert bool(((off >= 0) & (off <= 1)).all())
    assert float(off.mean()) > 0.5
    with pytest.raises(ValueError, match="per_class"):
        attacks.targeted_success_grid(model, x, y, 0.2, 0.02, 1, per_class=1000)


# ------------------------------------------------------------------ bad arguments


def _bad_calls(model, x, y):
    x4 = x[:4]
    y4 = y[:4]
    return [
        ("eps", lambda: attacks.fgsm(model, x4, y4, -0.1)),
        ("eps", lambda: attacks.pgd(model, x4, y4, -1, 0.01, 2)),
        ("eps", lambda: attacks.pgd(model, x4, y4, float("nan"), 0.01, 2)),
        ("eps", lambda: attacks.pgd(model, x4, y4, "0.1", 0.01, 2)),
        ("alpha", lambda: attacks.pgd(model, x4, y4, 0.1, 0.0, 2)),
        ("alpha", lambda: attacks.pgd(model, x4, y4, 0.1, -0.01, 2)),
        ("steps", lambda: attacks.pgd(model, x4, y4, 0.1, 0.01, 0)),
        ("steps", lambda: attacks.pgd(model, x4, y4, 0.1, 0.01, 2.5)),
        ("norm", lambda: attacks.pgd(model, x4, y4, 0.1, 0.01, 2, norm="l1")),
        ("norm", lambda: attacks.universal_perturbation(model, x4, 0.1, norm="inf")),
        ("loss", lambda: attacks.pgd(model, x4, y4, 0.1, 0.01, 2, loss="hinge")),
        ("restarts", lambda: attacks.pgd(model, x4, y4, 0.1, 0.01, 2, restarts=0)),
        ("restarts", lambda: attacks.pgd(model, x4, y4, 0.1, 0.01, 2, restarts=2, random_start=False)),
        ("targeted", lambda: attacks.pgd(model, x4, y4, 0.1, 0.01, 2, targeted="yes")),
        ("generator", lambda: attacks.pgd(model, x4, y4, 0.1, 0.01, 2, generator="seed")),
        ("batch_size", lambda: attacks.pgd(model, x4, y4, 0.1, 0.01, 2, batch_size=0)),
        ("labels must be in", lambda: attacks.fgsm(model, x4, torch.tensor([0, 1, 2, 10]), 0.1)),
        ("labels must be in", lambda: attacks.pgd(model, x4, torch.tensor([0, 1, 2, 10]), 0.0, 0.1, 1)),
        ("negative label", lambda: attacks.pgd(model, x4, torch.tensor([0, -1, 2, 3]), 0.1, 0.01, 2)),
        ("integer", lambda: attacks.fgsm(model, x4, y4.float(), 0.1)),
        (r"y must have shape \(4,\)", lambda: attacks.fgsm(model, x4, y[:3], 0.1)),
        (r"y must have shape", lambda: attacks.fgsm(model, x4, y4[:, None], 0.1)),
        (r"\[0, 1\]", lambda: attacks.fgsm(model, x4 * 2.0, y4, 0.1)),
        (r"\[0, 1\]", lambda: attacks.pgd(model, x4 - 0.5, y4, 0.1, 0.01, 2)),
        ("NaN", lambda: attacks.fgsm(model, x4.masked_fill(x4 > 0.5, float("nan")), y4, 0.1)),
        ("shape", lambda: attacks.fgsm(model, x4[:, 0], y4, 0.1)),
        ("shape", lambda: attacks.deepfool(model, x4.flatten(1))),
        ("shape", lambda: attacks.pgd(model, x4[:0], y4[:0], 0.1, 0.01, 2)),
        ("floating-point", lambda: attacks.fgsm(model, (x4 * 255).to(torch.uint8), y4, 0.1)),
        ("nn.Module", lambda: attacks.fgsm(lambda t: t, x4, y4, 0.1)),
        ("num_classes", lambda: attacks.deepfool(model, x4, num_classes=1)),
        ("num_classes", lambda: attacks.deepfool(model, x4, num_classes=11)),
        ("overshoot", lambda: attacks.deepfool(model, x4, overshoot=-0.1)),
        ("max_iter", lambda: attacks.deepfool(model, x4, max_iter=0)),
        ("max_passes", lambda: attacks.universal_perturbation(model, x4, 0.1, max_passes=0)),
        ("target_fooling_rate", lambda: attacks.universal_perturbation(model, x4, 0.1, target_fooling_rate=0)),
        ("target_fooling_rate", lambda: attacks.universal_perturbation(model, x4, 0.1, target_fooling_rate=1.5)),
        ("eps", lambda: attacks.universal_perturbation(model, x4, -0.1)),
        ("eps", lambda: attacks.sgd_universal_perturbation(model, x4, -0.1)),
        ("norm", lambda: attacks.sgd_universal_perturbation(model, x4, 0.1, norm="l1")),
        ("epochs", lambda: attacks.sgd_universal_perturbation(model, x4, 0.1, epochs=0)),
        ("step_size", lambda: attacks.sgd_universal_perturbation(model, x4, 0.1, step_size=0)),
        ("batch_size", lambda: attacks.sgd_universal_perturbation(model, x4, 0.1, batch_size=0)),
        ("loss_clip", lambda: attacks.sgd_universal_perturbation(model, x4, 0.1, loss_clip=-1)),
        (r"\[0, 1\]", lambda: attacks.sgd_universal_perturbation(model, x4 + 1.0, 0.1)),
        ("delta", lambda: attacks.fooling_rate(model, x4, torch.zeros(1, 1, 14, 14))),
        ("delta", lambda: attacks.fooling_rate(model, x4, torch.zeros(3, 1, 28, 28))),
        ("norm", lambda: attacks.project_perturbation(torch.zeros(2, 3), 0.1, "l0")),
    ]


def test_bad_arguments_raise_clear_errors(problem):
    model, x, y, _ = problem
    snap = _snapshot(model)
    for pattern, call in _bad_calls(model, x, y):
        with pytest.raises((ValueError, TypeError), match=pattern):
            call()
    _assert_model_untouched(model, snap)
