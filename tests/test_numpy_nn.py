"""Tests of helpers.numpy_nn: gradients, the loss, optimisers, training and input checks."""

import time

import numpy as np
import pytest
import torch

from helpers import numpy_nn as nn

# --------------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------------


def _layer_numeric_check(layer, x, eps=1e-6):
    """Backward of one layer vs centred differences of the scalar sum(out * r), in float64."""
    rng = np.random.default_rng(123)
    out = layer.forward(x)
    r = rng.normal(size=out.shape)
    grad_x = layer.backward(r.copy())
    analytic = [grad_x] + [g.copy() for g in layer.grads()]
    targets = [x] + layer.params()
    worst = 0.0
    for arr, g in zip(targets, analytic, strict=True):
        num = np.empty_like(arr)
        flat, nflat = arr.reshape(-1), num.reshape(-1)
        for i in range(flat.size):
            orig = flat[i]
            flat[i] = orig + eps
            lp = float(np.sum(layer.forward(x) * r))
            flat[i] = orig - eps
            lm = float(np.sum(layer.forward(x) * r))
            flat[i] = orig
            nflat[i] = (lp - lm) / (2 * eps)
        err = np.linalg.norm(g - num) / max(np.linalg.norm(g) + np.linalg.norm(num), 1e-30)
        worst = max(worst, err)
    return worst


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "make",
    [
        lambda rng: nn.Dense(
            int(rng.integers(1, 7)), int(rng.integers(1, 7)), seed=rng, dtype=np.float64
        ),
        lambda rng: nn.ReLU(),
        lambda rng: nn.Sigmoid(),
        lambda rng: nn.Tanh(),
    ],
    ids=["dense", "relu", "sigmoid", "tanh"],
)
def test_each_layer_backward_matches_finite_differences(make, seed):
    rng = np.random.default_rng(seed)
    layer = make(rng)
    d = layer.in_features if isinstance(layer, nn.Dense) else int(rng.integers(1, 7))
    x = rng.normal(size=(int(rng.integers(1, 6)), d))
    # keep ReLU inputs away from the kink so that finite differences are valid
    x = np.where(np.abs(x) < 1e-3, 0.5, x)
    assert _layer_numeric_check(layer, x) < 1e-7


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_check_whole_network_random_shapes(activation, seed):
    rng = np.random.default_rng(seed)
    sizes = [int(s) for s in rng.integers(2, 7, size=int(rng.integers(3, 5)))]
    net = nn.mlp(sizes, activation=activation, seed=seed)
    for p in net.params():
        # non-zero biases: with zero biases a sample whose hidden units are all dead sits
        # exactly on the next ReLU's kink, where finite differences are meaningless
        p += rng.normal(scale=0.1, size=p.shape).astype(p.dtype)
    n = int(rng.integers(3, 9))
    x = rng.normal(size=(n, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], size=n)
    err = nn.gradient_check(net, x, y)
    assert err < 1e-7
    errors = nn.gradient_errors(net, x, y)
    assert list(errors) == net.param_names()
    assert max(errors.values()) == err


def test_gradient_check_mixed_layers_and_leaves_net_unchanged():
    rng = np.random.default_rng(5)
    net = nn.Sequential(
        [
            nn.Dense(4, 6, seed=rng),
            nn.Tanh(),
            nn.Dense(6, 5, init="xavier", seed=rng),
            nn.Sigmoid(),
            nn.Dense(5, 5, seed=rng),
            nn.ReLU(),
            nn.Dense(5, 3, seed=rng),
        ]
    )
    before = [p.copy() for p in net.params()]
    x = rng.normal(size=(7, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=7)
    assert nn.gradient_check(net, x, y) < 1e-7
    assert net.dtype == np.float32
    for a, b in zip(before, net.params(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_gradient_check_detects_a_wrong_backward(monkeypatch):
    rng = np.random.default_rng(0)
    net = nn.mlp([4, 5, 3], activation="sigmoid", seed=0)
    x = rng.normal(size=(6, 4))
    y = rng.integers(0, 3, size=6)
    # forget the sigmoid derivative: the classic bug
    monkeypatch.setattr(nn.Sigmoid, "backward", lambda self, g: g)
    assert nn.gradient_check(net, x, y) > 1e-2


def test_backprop_matches_torch_autograd():
    rng = np.random.default_rng(0)
    net = nn.mlp([6, 8, 7, 4], activation="relu", seed=3, dtype=np.float64)
    x = rng.normal(size=(9, 6))
    y = rng.integers(0, 4, size=9)
    loss_fn = nn.SoftmaxCrossEntropy()
    loss = loss_fn.forward(net.forward(x), y)
    net.backward(loss_fn.backward())
    tparams = [torch.tensor(p, requires_grad=True) for p in net.params()]
    h = torch.tensor(x)
    for i in range(0, len(tparams), 2):
        h = h @ tparams[i] + tparams[i + 1]
        if i < len(tparams) - 2:
            h = torch.relu(h)
    tloss = torch.nn.functional.cross_entropy(h, torch.tensor(y))
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    for g, tp in zip(net.grads(), tparams, strict=True):
        np.testing.assert_allclose(g, tp.grad.numpy(), rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_stable_for_huge_logits(dtype):
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]], dtype=dtype)
    y = np.array([1, 0])
    loss_fn = nn.SoftmaxCrossEntropy()
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        loss = loss_fn.forward(logits, y)
        grad = loss_fn.backward()
    # row 0: lse = 1e4, loss 1e4; row 1: lse = 1e4 + log 2, loss 1e4 + log 2
    assert loss == pytest.approx((1e4 + 1e4 + np.log(2)) / 2, rel=1e-6)
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad, np.array([[1, -1, 0], [-1, 0.5, 0.5]]) / 2, atol=1e-6)


def test_softmax_cross_entropy_matches_naive_formula_and_gradient_is_p_minus_y():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 4))
    y = rng.integers(0, 4, size=5)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    loss_fn = nn.SoftmaxCrossEntropy()
    assert loss_fn.forward(z, y) == pytest.approx(-np.mean(np.log(p[np.arange(5), y])))
    onehot = np.eye(4)[y]
    np.testing.assert_allclose(loss_fn.backward(), (p - onehot) / 5, atol=1e-12)
    np.testing.assert_allclose(loss_fn.probabilities(), p, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def test_tiny_network_overfits_64_samples():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 10)).astype(np.float32)
    y = rng.integers(0, 4, size=64)  # random labels: only memorisation can fit them
    net = nn.mlp([10, 64, 4], seed=0)
    hist = nn.fit(net, x, y, epochs=300, batch_size=16, optimizer=nn.Adam(1e-2), progress=False)
    assert nn.accuracy(net, x, y) == 1.0
    assert hist[-1]["train_loss"] < 0.05


@pytest.mark.parametrize(
    "optimizer",
    [lambda: nn.SGD(0.5), lambda: nn.SGD(0.1, momentum=0.9), lambda: nn.Adam(1e-2)],
    ids=["sgd", "momentum", "adam"],
)
def test_loss_decreases_over_one_epoch(optimizer):
    x, y = nn.make_spirals(512, noise=0.1, seed=0)
    net = nn.mlp([2, 32, 32, 2], seed=0)
    loss_fn = nn.SoftmaxCrossEntropy()
    before = loss_fn.forward(net.forward(x), y)
    nn.fit(net, x, y, epochs=1, batch_size=16, optimizer=optimizer(), progress=False)
    after = loss_fn.forward(net.forward(x), y)
    assert after < before


def test_fit_history_validation_and_reproducibility():
    x, y = nn.make_spirals(300, seed=1)
    runs = []
    for _ in range(2):
        net = nn.mlp([2, 16, 2], seed=4)
        hist = nn.fit(
            net,
            x[:200],
            y[:200],
            epochs=3,
            batch_size=32,
            x_val=x[200:],
            y_val=y[200:],
            seed=7,
            progress=False,
            lr_schedule=lambda e: 1e-2 / (e + 1),
        )
        runs.append((hist, net.params()))
    hist = runs[0][0]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert [h["lr"] for h in hist] == pytest.approx([1e-2, 5e-3, 1e-2 / 3])
    for h in hist:
        assert set(h) == {
            "epoch",
            "lr",
            "train_loss",
            "train_acc",
            "val_loss",
            "val_acc",
            "seconds",
        }
        assert 0 <= h["train_acc"] <= 1
        assert 0 <= h["val_acc"] <= 1
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        np.testing.assert_array_equal(a, b)
    no_val = nn.fit(nn.mlp([2, 4, 2]), x, y, epochs=1, progress=False)
    assert np.isnan(no_val[0]["val_acc"])


def test_fit_stops_on_divergence():
    x, y = nn.make_spirals(256, seed=0)
    net = nn.mlp([2, 64, 64, 2], seed=0)
    hist = nn.fit(net, x * 100, y, epochs=5, batch_size=8, optimizer=nn.SGD(1e3), progress=False)
    assert len(hist) == 1  # stopped in the first epoch
    assert not np.isfinite(hist[0]["train_loss"])


def test_training_float32_keeps_float32():
    x, y = nn.make_spirals(64, seed=0)
    net = nn.mlp([2, 8, 2], seed=0)
    nn.fit(net, x.astype(np.float64), y, epochs=2, optimizer=nn.Adam(1e-2), progress=False)
    assert all(p.dtype == np.float32 for p in net.params())
    assert net.predict_proba(x).dtype == np.float32


# --------------------------------------------------------------------------------------------
# Optimisers (against torch.optim on the same gradients)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (lambda: nn.SGD(0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
        (
            lambda: nn.SGD(0.1, momentum=0.9, weight_decay=0.01),
            lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        ),
        (lambda: nn.Adam(1e-2, weight_decay=0.01), lambda p: torch.optim.Adam(p, lr=1e-2)),
    ],
    ids=["sgd", "momentum_l2", "adam_l2"],
)
def test_optimisers_match_torch(ours, theirs):
    rng = np.random.default_rng(0)
    params = [rng.normal(size=(3, 4)), rng.normal(size=4)]
    opt = ours()
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    topt = theirs(tparams)
    wd = opt.weight_decay
    for _ in range(5):
        grads = [rng.normal(size=p.shape) for p in params]
        opt.step(params, grads)
        for tp, g in zip(tparams, grads, strict=True):
            # our L2 applies to matrices only; emulate it for torch
            tp.grad = torch.tensor(g + (wd * tp.detach().numpy() if tp.ndim >= 2 else 0))
        topt.step()
    for p, tp in zip(params, tparams, strict=True):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Inference, construction, toy data
# --------------------------------------------------------------------------------------------


def test_predict_proba_and_predict():
    rng = np.random.default_rng(0)
    net = nn.mlp([5, 7, 3], seed=0)
    x = rng.normal(size=(23, 5)).astype(np.float32)
    p = net.predict_proba(x, batch_size=4)
    assert p.shape == (23, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(p, net.predict_proba(x, batch_size=100), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(net.predict(x), p.argmax(axis=1))
    assert net.predict(x).dtype == np.int64


def test_initialisations_have_the_documented_scale():
    he = nn.Dense(1000, 500, init="he", seed=0)
    assert he.W.std() == pytest.approx(np.sqrt(2 / 1000), rel=0.02)
    xa = nn.Dense(1000, 500, init="xavier", seed=0)
    a = np.sqrt(6 / 1500)
    assert np.abs(xa.W).max() <= a
    assert xa.W.std() == pytest.approx(a / np.sqrt(3), rel=0.02)
    assert not he.b.any()


def test_layer_gradient_norms_vanish_with_sigmoid():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 20)).astype(np.float32)
    y = rng.integers(0, 5, size=64)
    sig = nn.layer_gradient_norms(nn.mlp([20] + [32] * 8 + [5], "sigmoid", seed=0), x, y)
    relu = nn.layer_gradient_norms(nn.mlp([20] + [32] * 8 + [5], "relu", seed=0), x, y)
    assert len(sig) == len(relu) == 9
    assert sig[0] < 1e-2 * sig[-1]  # the sigmoid stack's first layer barely learns
    assert relu[0] > 0.1 * relu[-1]


def test_make_spirals():
    x, y = nn.make_spirals(301, n_classes=3, seed=0)
    assert x.shape == (301, 2)
    assert x.dtype == np.float32
    assert y.dtype == np.int64
    assert sorted(np.bincount(y).tolist()) == [100, 100, 101]
    x2, _ = nn.make_spirals(301, n_classes=3, seed=0)
    np.testing.assert_array_equal(x, x2)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def _net_and_data():
    rng = np.random.default_rng(0)
    return (
        nn.mlp([4, 5, 3], seed=0),
        rng.normal(size=(6, 4)).astype(np.float32),
        rng.integers(0, 3, size=6),
    )


def test_shape_mismatch_between_layers():
    with pytest.raises(
        ValueError, match=r"layers\[0\] outputs 5 features but layers\[2\] expects 6"
    ):
        nn.Sequential([nn.Dense(4, 5), nn.ReLU(), nn.Dense(6, 2)])
    with pytest.raises(ValueError, match="Dense expects x of shape"):
        nn.Dense(4, 5).forward(np.zeros((2, 3), dtype=np.float32))


@pytest.mark.parametrize("call", ["forward", "fit", "gradient_check", "predict", "accuracy"])
def test_x_with_wrong_number_of_features(call):
    net, x, y = _net_and_data()
    bad = np.zeros((6, 5), dtype=np.float32)
    with pytest.raises(ValueError, match="features but the network expects 4"):
        {
            "forward": lambda: net.forward(bad),
            "fit": lambda: nn.fit(net, bad, y, progress=False),
            "gradient_check": lambda: nn.gradient_check(net, bad, y),
            "predict": lambda: net.predict(bad),
            "accuracy": lambda: nn.accuracy(net, bad, y),
        }[call]()


def test_x_and_y_length_mismatch():
    net, x, y = _net_and_data()
    with pytest.raises(ValueError, match=r"y must have 6 labels \(one per example\), got 5"):
        nn.fit(net, x, y[:5], progress=False)
    with pytest.raises(ValueError, match="y must have 6 labels"):
        nn.gradient_check(net, x, y[:5])
    with pytest.raises(ValueError, match="y must have 6 labels"):
        nn.SoftmaxCrossEntropy().forward(np.zeros((6, 3)), y[:5])


@pytest.mark.parametrize(
    ("labels", "error", "match"),
    [
        (np.array([0, 1, 2, 0, 1, 1.0]), TypeError, "y must hold integers"),
        (np.array([0, 1, 2, 0, 1, 3]), ValueError, r"integers in \[0, 3\)"),
        (np.array([0, 1, 2, 0, 1, -1]), ValueError, r"integers in \[0, 3\)"),
        (np.zeros((6, 1), dtype=np.int64), ValueError, "must be 1-D"),
        ("012011", TypeError, "y must be an array-like"),
        (None, TypeError, "y must be an array-like"),
    ],
)
def test_bad_labels(labels, error, match):
    net, x, _ = _net_and_data()
    with pytest.raises(error, match=match):
        nn.fit(net, x, labels, progress=False)
    with pytest.raises(error, match=match):
        nn.SoftmaxCrossEntropy().forward(np.zeros((6, 3)), labels)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs(value):
    net, x, y = _net_and_data()
    x = x.copy()
    x[2, 1] = value
    with pytest.raises(ValueError, match="x contains NaN or infinite values"):
        nn.fit(net, x, y, progress=False)
    with pytest.raises(ValueError, match="NaN or infinite"):
        net.forward(x)
    with pytest.raises(ValueError, match="NaN or infinite"):
        nn.gradient_check(net, x, y)
    clean = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    with pytest.raises(ValueError, match="x_val contains NaN"):
        nn.fit(net, clean, y, x_val=x, y_val=y, progress=False)


@pytest.mark.parametrize("lr", [0, -1e-3])
@pytest.mark.parametrize(
    "make",
    [lambda lr: nn.SGD(lr), lambda lr: nn.SGD(lr, momentum=0.9), lambda lr: nn.Adam(lr)],
    ids=["sgd", "momentum", "adam"],
)
def test_learning_rate_must_be_positive(make, lr):
    with pytest.raises(ValueError, match="lr must be > 0"):
        make(lr)


def test_learning_rate_schedule_must_be_positive():
    net, x, y = _net_and_data()
    with pytest.raises(ValueError, match=r"lr_schedule\(0\) must be > 0"):
        nn.fit(net, x, y, lr_schedule=lambda e: 0.0, progress=False)


@pytest.mark.parametrize(
    ("batch_size", "error"),
    [(0, ValueError), (-3, ValueError), (1.5, TypeError), (True, TypeError)],
)
def test_batch_size_must_be_a_positive_int(batch_size, error):
    net, x, y = _net_and_data()
    with pytest.raises(error, match="batch_size must be"):
        nn.fit(net, x, y, batch_size=batch_size, progress=False)
    with pytest.raises(error, match="batch_size must be"):
        net.predict(x, batch_size=batch_size)


def test_other_bad_arguments():
    net, x, y = _net_and_data()
    with pytest.raises(ValueError, match="momentum must be in"):
        nn.SGD(0.1, momentum=1.0)
    with pytest.raises(ValueError, match="betas must be in"):
        nn.Adam(betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        nn.Adam(weight_decay=-1)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        nn.fit(net, x, y, epochs=0, progress=False)
    with pytest.raises(ValueError, match="init must be"):
        nn.Dense(3, 4, init="normal")
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        nn.Dense(3, 4, dtype=np.int32)
    with pytest.raises(ValueError, match="x_val and y_val must be given together"):
        nn.fit(net, x, y, x_val=x, progress=False)
    with pytest.raises(TypeError, match="optimizer must be SGD or Adam"):
        nn.fit(net, x, y, optimizer="adam", progress=False)
    with pytest.raises(ValueError, match="eps must be in"):
        nn.gradient_check(net, x, y, eps=0)
    with pytest.raises(ValueError, match="activation must be one of"):
        nn.mlp([2, 3], activation="gelu")
    with pytest.raises(TypeError, match=r"layers\[1\] must be a Layer"):
        nn.Sequential([nn.Dense(2, 3), "relu"])
    with pytest.raises(RuntimeError, match="backward called before forward"):
        nn.ReLU().backward(np.zeros((2, 2)))
    layer = nn.Tanh()
    layer.forward(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="grad_out must have the output's shape"):
        layer.backward(np.zeros((3, 2)))
    opt = nn.SGD(0.1)
    opt.step([np.zeros(2)], [np.zeros(2)])
    with pytest.raises(ValueError, match="optimiser was used with different parameters"):
        opt.step([np.zeros(3)], [np.zeros(3)])


# ---------------------------------------------------------------- training-loop bookkeeping


def _naive_ce(logits, y):
    """Mean softmax cross-entropy written directly from the definition, in float64."""
    z = np.asarray(logits, dtype=np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return float(-np.log(p[np.arange(len(y)), y]).mean())


def test_fit_visits_the_data_in_the_seeded_shuffled_order(monkeypatch):
    # feature 0 of each row is its index, so the rows a batch holds can be read back
    n, batch = 10, 4
    x = np.column_stack([np.arange(n), np.zeros(n)]).astype(np.float32)
    y = np.arange(n) % 2
    net = nn.mlp([2, 3, 2], seed=0)
    seen = []
    original = nn.Sequential._forward

    def spy(self, xb):
        seen.append(xb[:, 0].astype(int).tolist())
        return original(self, xb)

    monkeypatch.setattr(nn.Sequential, "_forward", spy)
    nn.fit(net, x, y, epochs=2, batch_size=batch, optimizer=nn.SGD(1e-3), seed=7, progress=False)
    gen = np.random.default_rng(7)  # the reference: one generator, a fresh permutation per epoch
    expected = []
    for _ in range(2):
        order = gen.permutation(n).tolist()
        expected += [order[s : s + batch] for s in range(0, n, batch)]
    assert seen == expected


def test_fit_weights_the_epoch_loss_by_batch_size():
    # With a negligible learning rate the weights do not move, so the epoch's training loss must
    # equal the full-data mean loss; batches of 4, 4 and 2 averaged unweighted would not.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 3)).astype(np.float32)
    y = rng.integers(0, 3, size=10)
    net = nn.mlp([3, 4, 3], seed=0, dtype=np.float64)
    for p in net.params():  # random biases: no exact ties between logits
        p += rng.normal(scale=0.1, size=p.shape)
    logits = net.forward(x)
    hist = nn.fit(
        net, x, y, epochs=1, batch_size=4, optimizer=nn.SGD(1e-12), seed=0, progress=False
    )
    assert hist[0]["train_loss"] == pytest.approx(_naive_ce(logits, y), rel=1e-9)
    assert hist[0]["train_acc"] == pytest.approx(float(np.mean(logits.argmax(1) == y)))
    per_batch = [_naive_ce(logits[s : s + 4], y[s : s + 4]) for s in (0, 4, 8)]
    assert abs(np.mean(per_batch) - _naive_ce(logits, y)) > 1e-6  # the test can tell them apart


def test_fit_validation_metrics_come_from_the_validation_set():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 5)).astype(np.float32)
    x_val = rng.normal(size=(15, 5)).astype(np.float32)
    y, y_val = rng.integers(0, 3, size=40), rng.integers(0, 3, size=15)
    net = nn.mlp([5, 6, 3], seed=0, dtype=np.float64)
    hist = nn.fit(
        net,
        x,
        y,
        epochs=2,
        batch_size=8,
        optimizer=nn.Adam(1e-2),
        x_val=x_val,
        y_val=y_val,
        seed=0,
        progress=False,
    )
    logits_val = net.forward(x_val)  # the trained network, after the last epoch
    assert hist[-1]["val_loss"] == pytest.approx(_naive_ce(logits_val, y_val), rel=1e-9)
    assert hist[-1]["val_acc"] == pytest.approx(float(np.mean(logits_val.argmax(1) == y_val)))
    assert hist[-1]["val_loss"] != pytest.approx(_naive_ce(net.forward(x), y), rel=1e-3)


def test_dead_relu_fraction_hand_built():
    # 2 hidden units: unit 0 has weight +1 (alive on positive inputs), unit 1 weight -1 and bias
    # -10 (never positive on inputs in [-1, 1]): half of the units are dead
    net = nn.Sequential([nn.Dense(1, 2), nn.ReLU(), nn.Dense(2, 2)])
    net.layers[0].W[:] = [[1.0, -1.0]]
    net.layers[0].b[:] = [0.0, -10.0]
    x = np.linspace(-1, 1, 9).reshape(-1, 1)
    assert nn.dead_relu_fraction(net, x) == 0.5
    assert nn.dead_relu_fraction(nn.Sequential([nn.Dense(1, 2)]), x) == 0.0


@pytest.mark.parametrize(
    ("error", "match", "args"),
    [
        (TypeError, "net must be a Sequential", ("net", np.zeros((2, 4)))),
        (ValueError, "features but the network expects 4", (None, np.zeros((2, 3)))),
        (ValueError, "x contains NaN", (None, np.full((2, 4), np.nan))),
        (ValueError, "x must be 2-D", (None, np.zeros(4))),
        (TypeError, "x must be an array-like", (None, "abc")),
    ],
)
def test_dead_relu_fraction_bad_inputs(error, match, args):
    net = nn.mlp([4, 5, 3], seed=0)
    with pytest.raises(error, match=match):
        nn.dead_relu_fraction(net if args[0] is None else args[0], args[1])


@pytest.mark.parametrize(
    ("error", "match", "seed"),
    [
        (TypeError, "seed must be None, an int or a numpy.random.Generator", "0"),
        (TypeError, "seed must be None, an int or a numpy.random.Generator", 1.5),
        (ValueError, "seed must be an int >= 0", -3),
    ],
)
@pytest.mark.parametrize("call", ["Dense", "mlp", "fit", "make_spirals"])
def test_bad_seeds(call, error, match, seed):
    x, y = np.zeros((4, 2), dtype=np.float32), np.array([0, 1, 0, 1])
    fns = {
        "Dense": lambda: nn.Dense(2, 2, seed=seed),
        "mlp": lambda: nn.mlp([2, 2], seed=seed),
        "fit": lambda: nn.fit(nn.mlp([2, 2]), x, y, seed=seed, progress=False),
        "make_spirals": lambda: nn.make_spirals(10, seed=seed),
    }
    with pytest.raises(error, match=match):
        fns[call]()


def test_array_likes_are_accepted():
    net = nn.mlp([2, 3, 2], seed=0)
    x, y = [[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]], [0, 1, 0]
    assert nn.accuracy(net, x, y) == nn.accuracy(net, np.array(x), np.array(y))


# -------------------------------------------- mutation testing (make mutation MODULES=numpy_nn)
# Each test below fails on single-token bugs that mutmut planted and the tests above missed: a
# wrong bound or parameter name in a check, a dropped dtype conversion, a global instead of a
# row-wise max, a wrong default. Error messages are matched from the start (^) so that a
# message naming the wrong parameter fails.


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: nn.Dense(0, 3), ValueError, r"^in_features must be an integer >= 1, got 0$"),
        (lambda: nn.Dense(3, 0), ValueError, r"^out_features must be an integer >= 1, got 0$"),
        (lambda: nn.mlp([2, 0]), ValueError, r"^sizes\[i\] must be an integer >= 1, got 0$"),
        (lambda: nn.mlp([3]), ValueError,
         r"^sizes must list at least input and output widths, got \[3\]$"),
        (lambda: nn.Sequential([]), ValueError, r"^layers must contain at least one layer$"),
        (lambda: nn.Sequential([nn.ReLU()]), ValueError,
         r"^layers must contain at least one Dense layer$"),
        (lambda: nn.Sequential([nn.Dense(2, 3), "relu"]), TypeError,
         r"^layers\[1\] must be a Layer, got str$"),
        (lambda: nn.Sequential([nn.Dense(2, 2), nn.Dense(2, 2, dtype=np.float64)]), TypeError,
         r"^all Dense layers must share one dtype, got \['float32', 'float64'\]$"),
        (lambda: nn.SGD("a"), TypeError, r"^lr must be a real number, got str$"),
        (lambda: nn.SGD(0.1, weight_decay="a"), TypeError,
         r"^weight_decay must be a real number, got str$"),
        (lambda: nn.SGD(0.1, momentum="a"), TypeError, r"^momentum must be a real number"),
        (lambda: nn.Adam(betas=0.9), TypeError,
         r"^betas must be a pair \(beta1, beta2\), got 0\.9$"),
        (lambda: nn.Adam(betas=("a", 0.9)), TypeError, r"^betas\[i\] must be a real number"),
        (lambda: nn.Adam(betas=(1.0, 0.5)), ValueError, r"^betas must be in \[0, 1\)"),
        (lambda: nn.Adam(eps="a"), TypeError, r"^eps must be a real number"),
        (lambda: nn.Adam(eps=0), ValueError, r"^eps must be > 0, got 0\.0$"),
        (lambda: nn.make_spirals(0), ValueError, r"^n_samples must be an integer >= 1, got 0$"),
        (lambda: nn.make_spirals(10, n_classes=1), ValueError,
         r"^n_classes must be an integer >= 2, got 1$"),
        (lambda: nn.make_spirals(noise="a"), TypeError, r"^noise must be a real number"),
        (lambda: nn.make_spirals(turns="a"), TypeError, r"^turns must be a real number"),
        (lambda: nn.make_spirals(noise=-1), ValueError, r"^noise must be >= 0, got -1\.0$"),
        (lambda: nn.make_spirals(turns=0), ValueError, r"^turns must be > 0, got 0\.0$"),
        (lambda: nn.Sequential([nn.Dense(2, 2)]).astype(np.int32), TypeError,
         r"^dtype must be float32 or float64, got int32$"),
    ],
)
def test_constructor_errors_name_the_parameter(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_boundary_values_are_accepted():
    # the smallest legal values (a bound off by one rejects them)
    assert nn.Dense(3, 1).W.shape == (3, 1)
    assert nn.mlp([1, 3, 2]).in_features == 1
    assert nn.Adam(betas=(0.0, 0.0)).beta1 == 0.0
    assert nn.make_spirals(1)[0].shape == (1, 2)
    assert nn.make_spirals(10, noise=0)[0].shape == (10, 2)
    assert nn.make_spirals(10, turns=0.5)[0].shape == (10, 2)
    xs, ys = nn.make_spirals(4, seed=0)
    assert len(nn.fit(nn.mlp([2, 3, 2]), xs, ys, epochs=1, batch_size=1, progress=False)) == 1
    net, x, _ = _net_and_data()
    np.testing.assert_allclose(net.predict_proba(x, batch_size=1), net.predict_proba(x), rtol=1e-6)


def _call_errors():
    net, x, y = _net_and_data()
    bad_x = np.zeros((6, 5), dtype=np.float32)
    opt = nn.SGD(0.1)
    return [
        (lambda: nn.fit("net", x, y, progress=False), TypeError,
         r"^net must be a Sequential, got str$"),
        (lambda: nn.accuracy("net", x, y), TypeError, r"^net must be a Sequential, got str$"),
        (lambda: nn.gradient_check("net", x, y), TypeError,
         r"^net must be a Sequential, got str$"),
        (lambda: nn.dead_relu_fraction("net", x), TypeError,
         r"^net must be a Sequential, got str$"),
        (lambda: nn.fit(net, x, y, x_val=x, progress=False), ValueError,
         r"^x_val and y_val must be given together$"),
        (lambda: nn.fit(net, x, y, x_val=bad_x, y_val=y, progress=False), ValueError,
         r"^x_val has 5 features but the network expects 4$"),
        (lambda: nn.fit(net, x, y, x_val=x, y_val=y[:5], progress=False), ValueError,
         r"^y_val must have 6 labels \(one per example\), got 5$"),
        (lambda: nn.fit(net, x, y, x_val=x, y_val=y + 1, progress=False), ValueError,
         r"^y_val must hold integers in \[0, 3\)"),
        (lambda: nn.fit(net, x, y, optimizer="adam", progress=False), TypeError,
         r"^optimizer must be SGD or Adam, got str$"),
        (lambda: nn.fit(net, x, y, lr_schedule=0.1, progress=False), TypeError,
         r"^lr_schedule must be a callable epoch -> learning rate$"),
        (lambda: nn.fit(net, x, y, lr_schedule=lambda e: "a", progress=False), TypeError,
         r"^lr_schedule\(epoch\) must be a real number"),
        (lambda: nn.accuracy(net, x, y[:5]), ValueError, r"^y must have 6 labels"),
        (lambda: nn.accuracy(net, x, y + 1), ValueError, r"^y must hold integers in \[0, 3\)"),
        (lambda: nn.gradient_check(net, x, y, eps="a"), TypeError,
         r"^eps must be a real number"),
        (lambda: nn.gradient_check(net, x, y, eps=1), ValueError,
         r"^eps must be in \(0, 1\), got 1\.0$"),
        (lambda: net.forward(np.ones((2, 4), dtype=bool)), TypeError,
         r"^x must hold real numbers, got dtype bool$"),
        (lambda: opt.step([np.zeros(2)], []), ValueError,
         r"^got 1 params but 0 grads; they must match$"),
        (lambda: opt.step([np.zeros(2)], [np.zeros(3)]), ValueError,
         r"^params\[0\] has shape \(2,\) but grads\[0\] has \(3,\)$"),
    ]


@pytest.mark.parametrize("case", range(len(_call_errors())))
def test_call_errors_name_the_parameter(case):
    call, error, match = _call_errors()[case]
    with pytest.raises(error, match=match):
        call()


def test_optimiser_reuse_message_is_exact():
    opt = nn.SGD(0.1)
    opt.step([np.zeros(2)], [np.zeros(2)])
    with pytest.raises(ValueError, match=r"^this optimiser was used with different parameters "
                                         r"before$"):
        opt.step([np.zeros(3)], [np.zeros(3)])


@pytest.mark.parametrize("make", [lambda: nn.Dense(2, 3), nn.ReLU, nn.Sigmoid, nn.Tanh],
                         ids=["dense", "relu", "sigmoid", "tanh"])
def test_backward_before_forward_names_the_layer(make):
    layer = make()  # built inside the test, so that mutation testing sees __init__ run here
    name = type(layer).__name__
    with pytest.raises(RuntimeError, match=rf"^{name}\.backward called before forward$"):
        layer.backward(np.zeros((1, 3)))


def test_backward_before_forward_after_astype():
    net = nn.mlp([2, 3, 2], seed=0, dtype=np.float64)
    net.forward(np.zeros((1, 2)))
    copy32 = net.astype(np.float32)  # a fresh copy has no cached activations
    with pytest.raises(RuntimeError, match=r"^Dense\.backward called before forward$"):
        copy32.layers[0].backward(np.zeros((1, 3), dtype=np.float32))


def test_loss_before_forward_and_bad_logits():
    loss_fn = nn.SoftmaxCrossEntropy()
    with pytest.raises(RuntimeError,
                       match=r"^SoftmaxCrossEntropy\.backward called before forward$"):
        loss_fn.backward()
    with pytest.raises(RuntimeError,
                       match=r"^SoftmaxCrossEntropy\.probabilities called before forward$"):
        loss_fn.probabilities()
    with pytest.raises(ValueError, match=r"^logits must be a 2-D array \(N, n_classes\), got "
                                         r"None$"):
        loss_fn.forward([[0.0, 1.0]], [0])
    with pytest.raises(ValueError, match=r"^logits must be a 2-D array \(N, n_classes\), got "
                                         r"\(2,\)$"):
        loss_fn.forward(np.zeros(2), [0])


def test_shape_errors_report_the_shape_received():
    dense = nn.Dense(2, 3)
    with pytest.raises(ValueError, match=r"^Dense expects x of shape \(N, 2\), got \(4, 3\)$"):
        dense.forward(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"^Dense expects x of shape \(N, 2\), got None$"):
        dense.forward([[1.0, 2.0]])
    tanh = nn.Tanh()
    tanh.forward(np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"^grad_out must have the output's shape \(2, 2\), got "
                                         r"\(3, 2\)$"):
        tanh.backward(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"^grad_out must have the output's shape \(2, 2\), got "
                                         r"None$"):
        tanh.backward([[0.0, 0.0], [0.0, 0.0]])


def test_layers_compute_in_their_dtype():
    dense = nn.Dense(3, 2, seed=0)  # float32
    x64 = np.random.default_rng(0).normal(size=(5, 3))
    out = dense.forward(x64)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x64.astype(np.float32) @ dense.W + dense.b)
    relu = nn.ReLU()
    relu.forward(np.ones((2, 2), dtype=np.float32))
    assert relu.backward(np.ones((2, 2), dtype=np.float32)).dtype == np.float32
    net64 = nn.mlp([2, 3, 2], seed=0, dtype=np.float64)
    net32 = net64.astype(np.float32)
    assert net32.dtype == np.float32
    assert all(p.dtype == np.float32 for p in net32.params())
    assert net64.dtype == np.float64  # the copy, not the original, was converted


def test_entry_points_cast_inputs_to_the_network_dtype_first():
    # a network whose first layer is not Dense: tanh in float64 then rounded differs in the last
    # bits from tanh in float32, so only a cast before the first layer gives identical outputs
    rng = np.random.default_rng(0)
    net = nn.Sequential([nn.Tanh(), nn.Dense(3, 2, seed=0)])
    x64 = rng.normal(size=(200, 3))
    x32 = x64.astype(np.float32)
    np.testing.assert_array_equal(net.forward(x64), net.forward(x32))
    np.testing.assert_array_equal(net.predict_proba(x64), net.predict_proba(x32))
    y = rng.integers(0, 2, size=200)
    assert nn.layer_gradient_norms(net, x64, y) == nn.layer_gradient_norms(net, x32, y)


def test_fit_checks_finiteness_after_the_cast_to_float32():
    # 1e39 is finite in float64 but overflows float32: the network would train on inf
    net, x, y = _net_and_data()
    big = x.astype(np.float64)
    big[0, 0] = 1e39
    with np.errstate(over="ignore"), pytest.raises(ValueError, match=r"^x contains NaN or "
                                                                     r"infinite values$"):
        nn.fit(net, big, y, progress=False)
    with np.errstate(over="ignore"), pytest.raises(ValueError, match=r"^x_val contains NaN or "
                                                                     r"infinite values$"):
        nn.fit(net, x, y, x_val=big, y_val=y, progress=False)


def test_softmax_subtracts_the_row_maximum():
    # rows on very different scales: subtracting one global maximum underflows row 1 to 0/0
    logits = np.array([[1000.0, 0.0], [0.0, 1.0]])
    loss_fn = nn.SoftmaxCrossEntropy()
    with np.errstate(all="ignore"):
        loss = loss_fn.forward(logits, np.array([0, 1]))
    assert loss == pytest.approx(np.log1p(np.exp(-1.0)) / 2, rel=1e-12)
    net = nn.Sequential([nn.Dense(1, 2, dtype=np.float64)])
    net.layers[0].W[:] = [[1000.0, -1.0]]
    net.layers[0].b[:] = [0.0, 1.0]
    with np.errstate(all="ignore"):
        p = net.predict_proba(np.array([[1.0], [0.0]]))
    e = np.e
    np.testing.assert_allclose(p, [[1.0, 0.0], [1 / (1 + e), e / (1 + e)]], rtol=1e-12)


def test_reprs_and_sizes():
    net = nn.mlp([2, 3, 2], seed=0)
    assert repr(net) == ("Sequential(\n  Dense(2, 3, init='he'),\n  ReLU(),\n"
                         "  Dense(3, 2, init='he')\n)")
    assert repr(nn.Dense(3, 4, init="xavier")) == "Dense(3, 4, init='xavier')"
    assert net.n_params() == 2 * 3 + 3 + 3 * 2 + 2
    assert repr(nn.SGD()) == "SGD(lr=0.1, momentum=0.0, weight_decay=0.0)"
    assert repr(nn.Adam()) == "Adam(lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.0)"


def test_mlp_pairs_the_initialisation_with_the_activation():
    assert [la.init for la in nn.mlp([2, 3, 2]).layers[::2]] == ["he", "he"]
    assert [la.init for la in nn.mlp([2, 3, 2], "tanh").layers[::2]] == ["xavier", "xavier"]
    assert [la.init for la in nn.mlp([2, 3, 2], "sigmoid").layers[::2]] == ["xavier", "xavier"]
    assert nn.mlp([2, 3, 2], init="xavier").layers[0].init == "xavier"


def test_copy_is_deep():
    net = nn.mlp([2, 3, 2], seed=0)
    twin = net.copy()
    twin.params()[0] += 1.0
    assert not np.array_equal(twin.params()[0], net.params()[0])


def test_fit_defaults_are_the_documented_ones(capsys):
    x, y = nn.make_spirals(300, seed=0)
    a, b = nn.mlp([2, 8, 2], seed=0), nn.mlp([2, 8, 2], seed=0)
    nn.fit(a, x, y, epochs=1, progress=False)
    nn.fit(b, x, y, epochs=1, batch_size=128, optimizer=nn.Adam(1e-3), seed=0, progress=False)
    for p, q in zip(a.params(), b.params(), strict=True):
        np.testing.assert_array_equal(p, q)
    assert capsys.readouterr().err == ""  # progress=False draws nothing
    nn.fit(a, x[:10], y[:10], epochs=2, batch_size=4, optimizer=nn.SGD(1e-3), desc="train")
    err = capsys.readouterr().err  # the default progress=True draws a bar of 2 x 3 batches
    assert "train:" in err
    assert "/6 " in err
    nn.fit(a, x[:10], y[:10], epochs=1, batch_size=4, optimizer=nn.SGD(1e-3))
    assert "fit:" in capsys.readouterr().err


def test_make_spirals_geometry_and_defaults():
    # noise 0: each point is r (cos phi, sin phi) with r = t in [0.05, 1] and
    # phi = 2 pi (turns t + k / K), so the angle is known from the radius and the class
    x, y = nn.make_spirals(900, n_classes=3, noise=0.0, turns=1.5, seed=0)
    r = np.hypot(x[:, 0], x[:, 1])
    assert r.min() >= 0.05 - 1e-6
    assert r.max() <= 1 + 1e-6
    assert r.min() < 0.1
    assert r.max() > 0.95
    phi = 2 * np.pi * (1.5 * r + y / 3)
    np.testing.assert_allclose(np.cos(phi) * r, x[:, 0], atol=1e-5)
    np.testing.assert_allclose(np.sin(phi) * r, x[:, 1], atol=1e-5)
    # the same seed draws the same t and permutation, so the difference is the noise alone,
    # N(0, (0.1 * noise)^2) per coordinate; 4000 draws: the sample std has a relative standard
    # error of 1/sqrt(2 * 4000) = 1.1%, the tolerance is 5.5 of them
    a, _ = nn.make_spirals(2000, noise=0.0, seed=3)
    b, _ = nn.make_spirals(2000, noise=0.3, seed=3)
    d = (b - a).astype(np.float64)
    assert d.std() == pytest.approx(0.03, rel=0.06)
    assert abs(d.mean()) < 5 * 0.03 / np.sqrt(d.size)
    default = nn.make_spirals()
    explicit = nn.make_spirals(600, n_classes=2, noise=0.2, turns=1.5, seed=0)
    for u, v in zip(default, explicit, strict=True):
        np.testing.assert_array_equal(u, v)


def test_gradient_errors_is_the_norm_wise_relative_error(monkeypatch):
    # if backprop returned exactly twice the true gradient g, every array's error would be
    # |2g - g| / (|2g| + |g|) = 1/3, whatever the size of g (small inputs make some g tiny)
    rng = np.random.default_rng(0)
    net = nn.mlp([3, 4, 2], activation="tanh", seed=0)
    x = 0.01 * rng.normal(size=(5, 3))
    y = rng.integers(0, 2, size=5)
    original = nn.SoftmaxCrossEntropy.backward
    monkeypatch.setattr(nn.SoftmaxCrossEntropy, "backward", lambda self: 2 * original(self))
    errors = nn.gradient_errors(net, x, y)
    assert min(np.linalg.norm(g) for g in net.astype(np.float64).params()) < 1
    assert list(errors.values()) == pytest.approx([1 / 3] * 4, rel=1e-5)


def test_dead_relu_fraction_one_of_three():
    net = nn.Sequential([nn.Dense(1, 3), nn.ReLU(), nn.Dense(3, 2)])
    net.layers[0].W[:] = [[1.0, -1.0, 2.0]]
    net.layers[0].b[:] = [0.0, -10.0, 0.0]
    assert nn.dead_relu_fraction(net, np.linspace(-1, 1, 9).reshape(-1, 1)) == pytest.approx(1 / 3)


def test_fit_validation_in_several_batches_and_epoch_times():
    # 4100 validation rows: _evaluate works in batches of 4096, so the last batch must be added
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 2)).astype(np.float32), rng.integers(0, 2, size=20)
    x_val, y_val = rng.normal(size=(4100, 2)), rng.integers(0, 2, size=4100)
    net = nn.mlp([2, 3, 2], seed=0, dtype=np.float64)
    before = time.perf_counter()
    hist = nn.fit(net, x, y, epochs=2, batch_size=8, optimizer=nn.SGD(0.1), x_val=x_val,
                  y_val=y_val, progress=False)
    around = time.perf_counter() - before  # training time is part of the time around the call
    logits = net.forward(x_val)
    assert hist[-1]["val_loss"] == pytest.approx(_naive_ce(logits, y_val), rel=1e-9)
    assert hist[-1]["val_acc"] == pytest.approx(float(np.mean(logits.argmax(1) == y_val)))
    # cumulative training seconds: non-negative and non-decreasing
    assert 0 <= hist[0]["seconds"] <= hist[1]["seconds"] <= around


def test_divergence_is_silent():
    import warnings

    x, y = nn.make_spirals(256, seed=0)
    net = nn.mlp([2, 64, 64, 2], seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # overflow in the diverging loss must not warn
        hist = nn.fit(net, x * 100, y, epochs=2, batch_size=8, optimizer=nn.SGD(1e3),
                      progress=False)
    assert not np.isfinite(hist[0]["train_loss"])


# --------------------------------------------------------------------------------------------
# Defaults and bookkeeping (mutation testing, issue 17)
# --------------------------------------------------------------------------------------------


def _spy_batches(monkeypatch, net):
    """Record the number of rows of every batch that goes through ``net._forward``."""
    rows = []
    forward = net._forward

    def spy(x):
        rows.append(x.shape[0])
        return forward(x)

    monkeypatch.setattr(net, "_forward", spy)
    return rows


def test_inference_default_and_given_batch_sizes(monkeypatch):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4100, 2)), rng.integers(0, 2, size=4100)
    net = nn.mlp([2, 3, 2], seed=0)
    rows = _spy_batches(monkeypatch, net)
    for call in (lambda: net.predict_proba(x), lambda: net.predict(x),
                 lambda: nn.accuracy(net, x, y)):
        rows.clear()
        call()
        assert rows == [4096, 4]  # the documented default batch_size=4096
    for call in (lambda: net.predict_proba(x[:5], batch_size=2),
                 lambda: net.predict(x[:5], 2), lambda: nn.accuracy(net, x[:5], y[:5], 2)):
        rows.clear()
        call()
        assert rows == [2, 2, 1]


def test_fit_validation_default_batch_size(monkeypatch):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2, 2)), np.array([0, 1])
    x_val, y_val = rng.normal(size=(4100, 2)), rng.integers(0, 2, size=4100)
    net = nn.mlp([2, 3, 2], seed=0)
    rows = _spy_batches(monkeypatch, net)
    nn.fit(net, x, y, epochs=1, batch_size=2, x_val=x_val, y_val=y_val, progress=False)
    assert rows == [2, 4096, 4]  # one training batch, then validation in batches of 4096


def test_fit_default_epochs_and_progress_bar(monkeypatch):
    bars = []

    class FakeBar:
        def __init__(self, **kwargs):
            bars.append(kwargs)

        def update(self, n):
            pass

        def set_postfix(self, **kwargs):
            pass

        def close(self):
            pass

    monkeypatch.setattr(nn, "tqdm", FakeBar)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(5, 2)), np.array([0, 1, 0, 1, 1])
    hist = nn.fit(nn.mlp([2, 3, 2], seed=0), x, y, batch_size=2, progress=False)
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5]  # default epochs=5
    # 5 epochs of ceil(5 / 2) = 3 batches; the bar is removed when done (leave=False)
    assert bars == [{"total": 15, "desc": "fit", "disable": True, "leave": False}]


def test_mlp_default_seed_is_zero_with_he_initialisation():
    net = nn.mlp([2, 3, 2])
    gen = np.random.default_rng(0)  # the default seed=0, drawn layer after layer
    w0 = gen.standard_normal((2, 3)) * np.sqrt(2.0 / 2)
    w1 = gen.standard_normal((3, 2)) * np.sqrt(2.0 / 3)
    np.testing.assert_array_equal(net.layers[0].W, w0.astype(np.float32))
    np.testing.assert_array_equal(net.layers[2].W, w1.astype(np.float32))


def test_custom_layer_backward_before_forward_is_a_runtime_error():
    class Custom(nn.Layer):  # a user layer that never sets _out
        def backward(self, grad_out):
            self._check_grad(grad_out)
            return grad_out

    with pytest.raises(RuntimeError, match=r"^Custom\.backward called before forward$"):
        Custom().backward(np.zeros((1, 1)))


def test_gradient_errors_runs_in_float64_even_before_the_first_dense():
    # the first layer is an activation: a float32 input must be converted to float64 before it
    rng = np.random.default_rng(3)
    net = nn.Sequential([nn.Tanh(), nn.Dense(3, 2, seed=0)])
    x32, y = rng.normal(size=(6, 3)).astype(np.float32), rng.integers(0, 2, size=6)
    assert nn.gradient_errors(net, x32, y) == nn.gradient_errors(net, x32.astype(np.float64), y)


def test_layer_gradient_norms_converts_the_input_to_the_network_dtype():
    # float64 network whose first layer is an activation, float32 input: the tanh must be
    # computed in float64; reference written out by hand in float64
    rng = np.random.default_rng(4)
    net = nn.Sequential([nn.Tanh(), nn.Dense(3, 2, seed=0, dtype=np.float64)])
    x32, y = rng.normal(size=(7, 3)).astype(np.float32), rng.integers(0, 2, size=7)
    a = np.tanh(x32.astype(np.float64))
    z = a @ net.layers[1].W + net.layers[1].b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    g = (p - np.eye(2)[y]) / len(y)
    expected = np.sqrt(np.sum((a.T @ g) ** 2))
    assert nn.layer_gradient_norms(net, x32, y) == [pytest.approx(expected, rel=1e-12)]


def test_dead_relu_fraction_sees_the_input_in_the_network_dtype():
    # a float32 network with a ReLU first: 1e-50 and 1e-60 are 0 in float32, so unit 0 is dead
    assert np.float32(1e-50) == 0
    assert np.float32(1e-60) == 0
    net = nn.Sequential([nn.ReLU(), nn.Dense(2, 2, seed=0)])
    x = np.array([[1e-50, 1.0], [1e-60, 2.0]])
    assert nn.dead_relu_fraction(net, x) == 0.5


def test_make_spirals_matches_a_complex_number_reference():
    n, k, noise, turns, seed = 50, 3, 0.7, 1.25, 5
    x, y = nn.make_spirals(n, n_classes=k, noise=noise, turns=turns, seed=seed)
    gen = np.random.default_rng(seed)  # same draws, in order: radii, noise, shuffle
    labels = np.array([i % k for i in range(n)])
    t = gen.uniform(0.05, 1.0, size=n)
    points = t * np.exp(2j * np.pi * (turns * t + labels / k))
    e = gen.normal(scale=0.1 * noise, size=(n, 2))
    ref = np.column_stack([points.real, points.imag]) + e
    perm = gen.permutation(n)
    np.testing.assert_allclose(x, ref[perm], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(y, labels[perm])


@pytest.mark.parametrize(
    ("y", "message"),
    [([0, 1], r"^y must have 3 labels \(one per example\), got 2$"),
     ([0, 1, 2], r"^y must hold integers in \[0, 2\), got values in \[0, 2\]$")],
    ids=["length", "class"],
)
def test_gradient_errors_checks_y_against_x_and_the_classes_before_eps(y, message):
    net = nn.mlp([2, 2], seed=0)
    with pytest.raises(ValueError, match=message):
        nn.gradient_errors(net, np.zeros((3, 2)), y, eps=2.0)
