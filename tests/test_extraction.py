"""Model extraction: the counting API, equation solving, Jacobian augmentation, the substitute
loop, transfer and PRADA."""

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import softmax
from torch import nn

from helpers import extraction, models


def _binary_lr(w, b):
    def predict_proba(x):
        p1 = 1.0 / (1.0 + np.exp(-(np.asarray(x) @ w + b)))
        return np.column_stack([1.0 - p1, p1])
    return predict_proba


@pytest.mark.parametrize("d", [1, 20, 57])
def test_equation_solving_recovers_a_random_binary_lr_with_d_plus_1_queries(d):
    rng = np.random.default_rng(d)
    w, b = rng.normal(size=d), float(rng.normal())
    api = extraction.QueryAPI(_binary_lr(w, b))
    w_hat, b_hat = extraction.extract_logistic_regression(api, d)
    assert api.queries == d + 1
    # the true parameters are the independent reference; float64 round-off is ~1e-15
    np.testing.assert_allclose(w_hat, w, atol=1e-9)
    assert abs(b_hat - b) < 1e-9


def test_equation_solving_multinomial_recovers_weights_up_to_the_class_shift():
    rng = np.random.default_rng(1)
    k, d = 4, 30
    W, b = rng.normal(size=(k, d)), rng.normal(size=k)
    api = extraction.QueryAPI(lambda x: softmax(np.asarray(x) @ W.T + b, axis=1))
    W_hat, b_hat = extraction.extract_logistic_regression(api, d)
    assert api.queries == d + 1
    np.testing.assert_allclose(W_hat, W - W[0], atol=1e-9)
    np.testing.assert_allclose(b_hat, b - b[0], atol=1e-9)
    x = rng.normal(size=(200, d))
    assert ((x @ W_hat.T + b_hat).argmax(1) == (x @ W.T + b).argmax(1)).all()


def test_equation_solving_refuses_rounded_zero_probabilities():
    api = extraction.QueryAPI(_binary_lr(np.array([-30.0, 1.0]), -5.0), output="rounded",
                              decimals=2)
    with pytest.raises(ValueError, match="exactly 0 or 1"):
        extraction.extract_logistic_regression(api, 2)


@pytest.mark.parametrize(("answer", "match"), [
    (lambda x: np.ones((len(x), 1)), "shaped"),                       # one column
    (lambda x: np.full((len(x) + 1, 2), 0.5), r"shaped \(3, K\)"),  # one row too many
])
def test_query_returning_the_wrong_shape_is_an_error(answer, match):
    with pytest.raises(ValueError, match=match):
        extraction.extract_logistic_regression(answer, 2)


def test_query_api_rejects_wrong_shaped_answers_and_bad_settings():
    api = extraction.QueryAPI(lambda x: np.ones(len(x)))
    with pytest.raises(ValueError, match="predict_proba must return"):
        api(np.zeros((3, 2)))
    assert api.queries == 3  # the victim did the work: the rows are counted
    with pytest.raises(TypeError, match="predict_proba must be callable"):
        extraction.QueryAPI("model")
    with pytest.raises(ValueError, match="output must be one of"):
        extraction.QueryAPI(np.ones, output="logits")
    with pytest.raises(ValueError, match="decimals must be given"):
        extraction.QueryAPI(np.ones, output="rounded")
    with pytest.raises(ValueError, match="decimals must be None"):
        extraction.QueryAPI(np.ones, decimals=2)
    with pytest.raises(TypeError, match="query must be callable"):
        extraction.extract_logistic_regression(3, 2)
    with pytest.raises(ValueError, match="n_features"):
        extraction.extract_logistic_regression(api, 0)


def test_query_api_counts_every_row_and_shapes_its_answers():
    p = np.array([[0.123456, 0.876544], [0.7, 0.3]])
    api = extraction.QueryAPI(lambda x: p[: len(x)])
    for m in (1, 2, 2, 1):
        api(np.zeros((m, 5)))
    assert api.queries == 6
    rounded = extraction.QueryAPI(lambda x: p, output="rounded", decimals=2)(np.zeros((2, 5)))
    np.testing.assert_array_equal(rounded, [[0.12, 0.88], [0.7, 0.3]])
    labels = extraction.QueryAPI(lambda x: p, output="labels")(np.zeros((2, 5)))
    np.testing.assert_array_equal(labels, [1, 0])


def test_model_api_gives_softmax_probabilities_and_restores_the_mode():
    torch.manual_seed(0)
    model = models.MnistCNN(width=4).train()
    x = torch.rand(5, 1, 28, 28)
    api = extraction.model_api(model, batch_size=2)
    p = api(x)
    with torch.no_grad():
        expected = torch.softmax(model.eval()(x), 1)
    model.train()
    torch.testing.assert_close(p, expected)
    assert api.queries == 5
    assert model.training
    assert torch.equal(extraction.model_api(model, output="labels")(x), expected.argmax(1))


def test_agreement_and_its_errors():
    assert extraction.agreement([0, 1, 2, 3], [0, 1, 0, 0]) == 0.5
    with pytest.raises(ValueError, match="same length"):
        extraction.agreement([0, 1], [0])


def _linear_model(weight):
    model = nn.Sequential(nn.Flatten(), nn.Linear(weight.shape[1], 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(weight)
    return model


def test_jacobian_augment_steps_lambda_along_the_sign_of_the_gradient():
    # for 2-class softmax p_y = sigmoid(z_y - z_o): grad_x p_y = p_y (1 - p_y)(W_y - W_o),
    # so the step is lam * sign(W_y - W_o), computed here without autograd
    torch.manual_seed(0)
    w = torch.randn(2, 16)
    model = _linear_model(w)
    x = torch.full((3, 1, 4, 4), 0.5)
    labels = torch.tensor([0, 1, 1])
    new = extraction.jacobian_augment(model, x, labels, lam=0.1)
    direction = torch.stack([(w[y] - w[1 - y]).sign() for y in labels]).reshape(x.shape)
    torch.testing.assert_close(new, x + 0.1 * direction)
    assert all(p.grad is None for p in model.parameters())


def test_jacobian_augment_keeps_pixels_in_the_box():
    model = _linear_model(torch.randn(2, 16))
    x = torch.rand(8, 1, 4, 4).round()  # pixels at 0 or 1: a step outside must be clipped
    new = extraction.jacobian_augment(model, x, torch.zeros(8, dtype=torch.long), lam=0.3)
    assert new.min() >= 0
    assert new.max() <= 1
    assert new.shape == x.shape
    with pytest.raises(ValueError, match="lam"):
        extraction.jacobian_augment(model, x, torch.zeros(8, dtype=torch.long), lam=-0.1)


def _tiny_victim():
    torch.manual_seed(1)
    return models.MnistCNN(width=4).eval()


@pytest.mark.parametrize(("strategy", "output"), [("jacobian", "labels"),
                                                  ("noise", "probabilities"),
                                                  ("natural", "labels")])
def test_steal_spends_exactly_the_budgets_and_jacobian_doubles_the_set(strategy, output):
    victim = _tiny_victim()
    x_seed, x_test = torch.rand(10, 1, 28, 28), torch.rand(20, 1, 28, 28)
    y_test = torch.zeros(20, dtype=torch.long)
    api = extraction.model_api(victim, output=output)
    budgets = [10, 20, 40, 50]
    sub, history, xq = extraction.steal(
        api, x_seed, budgets, strategy, victim_labels_test=models.predict(victim, x_test),
        x_test=x_test, y_test=y_test, pool=torch.rand(60, 1, 28, 28), epochs=1, min_steps=1,
        batch_size=16, seed=0, progress=False)
    assert [h["queries"] for h in history] == budgets
    assert api.queries == 50
    assert len(xq) == 50
    assert xq.min() >= 0
    assert xq.max() <= 1
    assert torch.equal(xq[:10], x_seed)
    if strategy == "jacobian":
        # round 2 (20 -> 40) augments every point of the set: a doubling, each new point one
        # lambda-step (Linf distance exactly 0.1 unless clipped) from its parent
        step = (xq[20:40] - xq[:20]).abs().amax(dim=(1, 2, 3))
        assert torch.all(step <= 0.1 + 1e-6)
        assert torch.all(step > 0)
    for h in history:
        assert 0 <= h["fidelity"] <= 1


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"budgets": [0, 10]}, ValueError, "budgets"),
    ({"budgets": [20, 10]}, ValueError, "increasing"),
    ({"budgets": [5, 10]}, ValueError, "len\\(x_seed\\)"),
    ({"strategy": "jacobian", "budgets": [20]}, ValueError, "start at len"),
    ({"strategy": "natural"}, ValueError, "pool must be given"),
    ({"strategy": "greedy"}, ValueError, "strategy must be one of"),
    ({"api": np.ones}, TypeError, "api must be a QueryAPI"),
])
def test_steal_rejects_bad_arguments(kwargs, error, match):
    victim = _tiny_victim()
    args = {"api": extraction.model_api(victim), "budgets": [10, 20], "strategy": "noise"}
    args.update(kwargs)
    x = torch.rand(10, 1, 28, 28)
    with pytest.raises(error, match=match):
        extraction.steal(args["api"], x, args["budgets"], args["strategy"],
                         victim_labels_test=torch.zeros(10, dtype=torch.long), x_test=x,
                         y_test=torch.zeros(10, dtype=torch.long), progress=False)


def test_transfer_success_rate_counts_only_images_the_victim_got_right():
    # a victim that predicts class 0 iff the mean pixel is below 0.5
    victim = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        victim[1].weight.copy_(torch.tensor([[0.0] * 4, [1.0] * 4]))
        victim[1].bias.copy_(torch.tensor([0.0, -2.0]))
    x = torch.tensor([0.1, 0.1, 0.9, 0.9]).reshape(4, 1, 1, 1).expand(4, 1, 2, 2).clone()
    y = torch.tensor([0, 0, 1, 0])                     # the last one is already wrong
    x_adv = x.clone()
    x_adv[0] = 0.9                                     # flips: success
    x_adv[3] = 0.1                                     # would be right now, but was wrong
    assert extraction.transfer_success_rate(victim, x_adv, x, y) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="shape of x"):
        extraction.transfer_success_rate(victim, x_adv[:2], x, y)


def test_prada_min_distances_on_a_hand_computed_stream():
    # class 0: (0,0), (3,4) at distance 5, (3,5) at distance 1 from (3,4); class 1: (10,0)
    x = np.array([[0.0, 0.0], [10.0, 0.0], [3.0, 4.0], [3.0, 5.0]])
    d = extraction.prada_min_distances(x, [0, 1, 0, 0])
    np.testing.assert_allclose(d, [5.0, 1.0])


def test_prada_growing_set_skips_points_closer_than_the_threshold():
    # distances 10 and 2 are admitted (threshold 0, then mean - sd = 6 - 4 = 2 after both);
    # (11.5, 0) is 0.5 from (12, 0), below T = 2, so it is not added to G: the last query
    # (11, 0) is 1 from G = {(0,0), (10,0), (12,0)} (0.5 if (11.5, 0) had been added)
    x = np.array([[0.0, 0.0], [10.0, 0.0], [12.0, 0.0], [11.5, 0.0], [11.0, 0.0]])
    d = extraction.prada_min_distances(x, [0] * 5)
    np.testing.assert_allclose(d, [10.0, 2.0, 0.5, 1.0])


def test_prada_detect_matches_scipy_and_flags_a_bimodal_stream():
    rng = np.random.default_rng(0)
    normal = rng.normal(10, 1, 300)
    alarm, w = extraction.prada_detect(normal, 0.95, min_queries=100, check_every=50)
    assert alarm is None
    assert len(w) == 5
    assert w[2] == pytest.approx(stats.shapiro(normal[:200]).statistic)
    bimodal = np.concatenate([rng.normal(10, 1, 100), np.full(100, 0.5)])
    alarm, _ = extraction.prada_detect(bimodal, 0.95, min_queries=100, check_every=10)
    assert alarm is not None
    assert alarm > 100
    with pytest.raises(ValueError, match="min_queries"):
        extraction.prada_detect(normal[:50], 0.9)
    with pytest.raises(ValueError, match="delta"):
        extraction.prada_detect(normal, 1.5)


def test_steal_trains_the_substitute_that_build_makes():
    victim = _tiny_victim()
    x = torch.rand(10, 1, 28, 28)
    kwargs = {"victim_labels_test": models.predict(victim, x), "x_test": x,
              "y_test": torch.zeros(10, dtype=torch.long), "epochs": 1, "min_steps": 1,
              "progress": False}
    sub, _, _ = extraction.steal(extraction.model_api(victim), x, [10, 20], "noise",
                                 build=lambda: models.MnistCNN(width=3), **kwargs)
    assert sub.features[0].out_channels == 3
    default, _, _ = extraction.steal(extraction.model_api(victim), x, [10], "noise", **kwargs)
    assert default.features[0].out_channels == extraction.SUBSTITUTE_WIDTH
    with pytest.raises(TypeError, match="build must be None or callable"):
        extraction.steal(extraction.model_api(victim), x, [10], "noise", build="cnn", **kwargs)


# ------------------------------------------------------------ argument checks and edge cases
def test_agreement_is_the_share_of_equal_labels():
    assert extraction.agreement([0, 1, 2, 3], [0, 1, 2, 0]) == 0.75   # not symmetric in 1/2
    with pytest.raises(ValueError, match=r"^a and b must have the same length, got 2 and 1"):
        extraction.agreement([0, 1], [0])
    with pytest.raises(ValueError, match=r"^a must hold integers in"):
        extraction.agreement([-1, 1], [0, 1])
    with pytest.raises(ValueError, match=r"^b must hold integers in"):
        extraction.agreement([0, 1], [0, -1])


@pytest.mark.parametrize(("answer", "error", "match"), [
    (lambda x: np.full((len(x), 2), "a"), TypeError, r"^query answers must hold real numbers"),
    (lambda x: np.ones((len(x), 1)),
     ValueError, r"^query must return probabilities shaped \(3, K\) with K >= 2 for 3 inputs"),
    (lambda x: np.full((len(x), 2), 0.75), ValueError,
     r"^query must return probabilities \(rows >= 0 summing to 1\)"),   # rows sum to 1.5
    (lambda x: np.tile([0.6, 0.6], (len(x), 1)), ValueError,
     r"^query must return probabilities \(rows >= 0"),                  # only the sums wrong
    (lambda x: np.tile([0.0, 0.5, 0.5], (len(x), 1)), ValueError,
     r"^query returned probabilities of exactly 0 or 1: the log-odds are undefined"),
    (lambda x: np.tile([1.0, 5e-7], (len(x), 1)), ValueError,
     r"^query returned probabilities of exactly 0 or 1"),               # a 1 without a 0
])
def test_equation_solving_checks_the_answers(answer, error, match):
    with pytest.raises(error, match=match):
        extraction.extract_logistic_regression(answer, 2)


def test_equation_solving_rejects_bad_arguments():
    with pytest.raises(TypeError, match=r"^query must be callable, got int$"):
        extraction.extract_logistic_regression(3, 2)
    with pytest.raises(ValueError, match=r"^n_features must be an integer >= 1"):
        extraction.extract_logistic_regression(np.ones, 0)


def test_jacobian_augment_default_step_and_argument_checks():
    torch.manual_seed(0)
    w = torch.randn(2, 16)
    model = _linear_model(w)
    x = torch.full((2, 1, 4, 4), 0.5)
    labels = torch.tensor([1, 0])
    direction = torch.stack([(w[y] - w[1 - y]).sign() for y in labels]).reshape(x.shape)
    torch.testing.assert_close(extraction.jacobian_augment(model, x, labels), x + 0.1 * direction)
    with pytest.raises(TypeError, match=r"^x must be a torch.Tensor of images"):
        extraction.jacobian_augment(model, x.numpy(), labels)
    with pytest.raises(ValueError, match=r"^labels must have shape \(2,\)"):
        extraction.jacobian_augment(model, x, torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match=r"^lam must be a number >= 0"):
        extraction.jacobian_augment(model, x, labels, lam=-0.1)


def _threshold_victim():
    # predicts class 0 iff the mean pixel is below 0.5
    victim = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        victim[1].weight.copy_(torch.tensor([[0.0] * 4, [1.0] * 4]))
        victim[1].bias.copy_(torch.tensor([0.0, -2.0]))
    return victim


def test_transfer_success_rate_rejects_bad_arguments():
    victim = _threshold_victim()
    x = torch.full((2, 1, 2, 2), 0.1)
    y = torch.tensor([0, 0])
    with pytest.raises(TypeError, match=r"^victim must be a torch.nn.Module"):
        extraction.transfer_success_rate("model", x, x, y)
    with pytest.raises(TypeError, match=r"^x must be a torch.Tensor of images"):
        extraction.transfer_success_rate(victim, x, x.numpy(), y)
    with pytest.raises(TypeError, match=r"^x_adv must be a torch.Tensor of images"):
        extraction.transfer_success_rate(victim, x.numpy(), x, y)
    with pytest.raises(ValueError, match=r"^y must have shape \(2,\)"):
        extraction.transfer_success_rate(victim, x, x, torch.tensor([0, 0, 0]))
    with pytest.raises(ValueError, match=r"^the victim misclassifies every x: the success rate"):
        extraction.transfer_success_rate(victim, x, x, torch.tensor([1, 1]))


def test_prada_accepts_tensors_and_image_arrays_like_flat_arrays():
    rng = np.random.default_rng(0)
    flat = rng.uniform(0, 1, (12, 4))
    labels = rng.integers(0, 2, 12)
    want = extraction.prada_min_distances(flat, labels)
    images = flat.reshape(12, 1, 2, 2)
    np.testing.assert_allclose(extraction.prada_min_distances(images, labels), want)
    np.testing.assert_allclose(extraction.prada_min_distances(images[:, 0], labels), want)
    np.testing.assert_allclose(
        extraction.prada_min_distances(torch.as_tensor(images, dtype=torch.float32), labels),
        want, rtol=1e-6)
    with pytest.raises(ValueError, match=r"^x must be 2-D or 3-D or 4-D"):
        extraction.prada_min_distances(flat[:, 0], labels)
    with pytest.raises(ValueError, match=r"^labels must have 12 labels"):
        extraction.prada_min_distances(flat, labels[:11])


def test_prada_min_distances_are_scale_covariant():
    # the threshold starts at 0 (the first distance of a class is always admitted): scaling the
    # queries by 0.01 scales every distance by 0.01, with the same admissions
    x = np.array([[0.0, 0.0], [10.0, 0.0], [12.0, 0.0], [11.5, 0.0], [11.0, 0.0]])
    d = extraction.prada_min_distances(x, [0] * 5)
    np.testing.assert_allclose(extraction.prada_min_distances(0.01 * x, [0] * 5), 0.01 * d)


def test_prada_threshold_is_mean_minus_sd_and_admits_strictly_larger_distances():
    # admitted so far: 10, 2 -> T = 6 - 4 = 2 (mean + sd would be 10).
    # (14, 0): d = 2 from (12, 0), not > T: not admitted; (15, 0): d = 3 > T, admitted
    # (T becomes max(2, mean(10, 2, 3) - sd) = 2); (15.5, 0): d = 0.5 from (15, 0)
    x = np.array([[0.0, 0.0], [10.0, 0.0], [12.0, 0.0], [14.0, 0.0], [15.0, 0.0],
                  [15.5, 0.0], [13.5, 0.0]])
    d = extraction.prada_min_distances(x, [0] * 7)
    # (13.5, 0) is 1.5 from (12, 0) and (15, 0); it would be 0.5 from (14, 0) had it joined G
    np.testing.assert_allclose(d, [10.0, 2.0, 2.0, 3.0, 0.5, 1.5])


def test_prada_detect_checks_and_alarms_at_the_first_statistic_below_delta():
    rng = np.random.default_rng(1)
    d = np.concatenate([rng.normal(10, 1, 100), np.full(40, 0.5)])
    # defaults: min_queries 100, every 10 distances: n = 100, 110, ..., 140
    alarm, w = extraction.prada_detect(d, 0.9)
    want = np.array([stats.shapiro(d[:n]).statistic for n in range(100, 141, 10)])
    np.testing.assert_allclose(w, want, rtol=1e-12)
    assert alarm == 100 + 10 * int(np.flatnonzero(want < 0.9)[0])
    # delta exactly at the smallest statistic: no check is strictly below it
    assert extraction.prada_detect(d, float(want.min()))[0] is None
    # delta between the 2nd and 3rd smallest: the alarm is the first check below, not the second
    below = np.sort(want)
    delta = float((below[2] + below[3]) / 2)
    assert extraction.prada_detect(d, delta)[0] == 100 + 10 * int(np.flatnonzero(want < delta)[0])


def test_prada_detect_edges_of_its_ranges():
    d = np.random.default_rng(2).normal(10, 1, 100)
    alarm, w = extraction.prada_detect(d, 0.5, min_queries=100, check_every=1)
    assert alarm is None
    assert len(w) == 1                       # exactly min_queries distances: one check
    _, w = extraction.prada_detect(d[:5], 0.5, min_queries=3, check_every=1)
    assert len(w) == 3
    for kwargs, match in (({"distances": d[:, None]}, r"^distances must be 1-D"),
                          ({"distances": -d}, r"^distances must hold values >= 0"),
                          ({"delta": 1.5}, r"^delta must be a number >= 0 and <= 1"),
                          ({"min_queries": 2}, r"^min_queries must be an integer >= 3"),
                          ({"check_every": 0}, r"^check_every must be an integer >= 1"),
                          ({"distances": d[:99]},
                           r"^distances must hold at least min_queries = 100 values, got 99")):
        args = {"distances": d, "delta": 0.5} | kwargs
        with pytest.raises(ValueError, match=match):
            extraction.prada_detect(args.pop("distances"), args.pop("delta"), **args)


# ------------------------------------------------- steal's bookkeeping, with a recording trainer
class _RecordingTrainer:
    """Stands in for models.train_cached: records each call and returns build() untrained
    (seeded by the call's index), so steal's bookkeeping is tested without any training."""

    def __init__(self):
        self.calls = []

    def __call__(self, name, build, x, y, **kwargs):
        torch.manual_seed(100 + len(self.calls))
        model = build().eval()
        self.calls.append({"name": name, "x": x.clone(), "y": y.clone(), "model": model,
                           **kwargs})
        return model


def _small_setup(monkeypatch, n_seed=4, n_test=12):
    trainer = _RecordingTrainer()
    monkeypatch.setattr(models, "train_cached", trainer)
    torch.manual_seed(0)
    victim = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x_seed, x_test = torch.rand(n_seed, 1, 4, 4), torch.rand(n_test, 1, 4, 4)
    kwargs = {"victim_labels_test": models.predict(victim, x_test), "x_test": x_test,
              "y_test": torch.arange(n_test) % 3, "progress": False,
              "build": lambda: nn.Sequential(nn.Flatten(), nn.Linear(16, 3))}
    return trainer, victim, x_seed, kwargs


def _first_draws(seed):
    """The documented seeding: a generator seeded with ``seed``; its first draw is the
    training seed (an int in [0, 2^31 - 1))."""
    gen = torch.Generator().manual_seed(seed)
    return gen, int(torch.randint(0, 2**31 - 1, (1,), generator=gen))


def test_steal_trains_on_the_whole_query_set_with_the_documented_defaults(monkeypatch, capsys):
    trainer, victim, x_seed, kwargs = _small_setup(monkeypatch, n_seed=10)
    del kwargs["progress"], kwargs["build"]
    x28, x_test = torch.rand(10, 1, 28, 28), torch.rand(6, 1, 28, 28)
    victim = models.MnistCNN(width=2).eval()
    kwargs.update(victim_labels_test=models.predict(victim, x_test), x_test=x_test,
                  y_test=torch.zeros(6, dtype=torch.long))
    api = extraction.model_api(victim)
    api(x28[:3])                                    # queries spent before do not count
    sub, history, xq = extraction.steal(api, x28, [10, 20], "noise", **kwargs)
    gen, train_seed = _first_draws(0)               # seed=0 by default
    torch.testing.assert_close(xq[10:], torch.rand((10, 1, 28, 28), generator=gen))
    assert [h["queries"] for h in history] == [10, 20]
    with torch.no_grad():
        answers = torch.softmax(victim(xq), 1)
    for i, call in enumerate(trainer.calls):
        assert call["name"] == "substitute"
        assert (call["epochs"], call["lr"], call["batch_size"], call["min_steps"]) == \
            (4, 1e-3, 64, 150)
        assert call["seed"] == train_seed
        assert call["init"] is (None if i == 0 else trainer.calls[i - 1]["model"])
        assert call["device"] == x28.device
        assert torch.equal(call["x"], xq[:10 * (i + 1)])
        assert call["y"].dtype == torch.float32    # probabilities: distillation targets
        torch.testing.assert_close(call["y"], answers[:10 * (i + 1)])
    assert sub is trainer.calls[-1]["model"]
    assert sub.features[0].out_channels == extraction.SUBSTITUTE_WIDTH   # default build
    err = capsys.readouterr().err
    assert "substitute: noise, probabilities: " in err                   # progress by default
    assert err.endswith("\r")                                            # and left no line


def test_steal_history_grades_each_round_against_the_callers_labels(monkeypatch):
    trainer, victim, x_seed, kwargs = _small_setup(monkeypatch)
    _, history, _ = extraction.steal(extraction.model_api(victim, output="labels"), x_seed,
                                     [4, 8], "noise", seed=3, **kwargs)
    for h, call in zip(history, trainer.calls, strict=True):
        pred = call["model"](kwargs["x_test"]).argmax(1)
        assert h["fidelity"] == pytest.approx(
            (pred == kwargs["victim_labels_test"]).double().mean().item())
        assert h["accuracy"] == pytest.approx((pred == kwargs["y_test"]).double().mean().item())
        assert call["y"].dtype == torch.long                              # label answers


@pytest.mark.parametrize("lam", [None, 0.05])
def test_steal_jacobian_rounds_augment_with_the_latest_substitute(monkeypatch, lam):
    # probability answers: the label of each parent is the victim's argmax; the round from 8
    # to 12 augments 4 of the 8 points, a sorted random subset drawn from the seeded generator
    trainer, victim, x_seed, kwargs = _small_setup(monkeypatch)
    if lam is not None:
        kwargs["lam"] = lam
    _, _, xq = extraction.steal(extraction.model_api(victim), x_seed, [4, 8, 12], "jacobian",
                                seed=5, **kwargs)
    lam = 0.1 if lam is None else lam                       # steal's default step is 0.1
    gen, _ = _first_draws(5)
    with torch.no_grad():
        labels = victim(xq).argmax(1)
    first = extraction.jacobian_augment(trainer.calls[0]["model"], x_seed, labels[:4], lam)
    torch.testing.assert_close(xq[4:8], first)
    pick = torch.randperm(8, generator=gen)[:4].sort().values
    second = extraction.jacobian_augment(trainer.calls[1]["model"], xq[:8][pick], labels[pick],
                                         lam)
    torch.testing.assert_close(xq[8:12], second)


def test_steal_natural_takes_the_pool_in_a_seeded_random_order(monkeypatch):
    trainer, victim, x_seed, kwargs = _small_setup(monkeypatch)
    # three rounds (2, 2 and 5 new images) use up the 9 pool images exactly, in order
    pool = torch.rand(9, 1, 4, 4)
    _, _, xq = extraction.steal(extraction.model_api(victim), x_seed, [4, 6, 8, 13], "natural",
                                pool=pool, seed=2, **kwargs)
    gen, _ = _first_draws(2)
    torch.testing.assert_close(xq[4:], pool[torch.randperm(9, generator=gen)])


def test_steal_seeds_from_torch_when_seed_is_none_and_from_a_generator(monkeypatch):
    trainer, victim, x_seed, kwargs = _small_setup(monkeypatch)
    api = extraction.model_api(victim)
    torch.manual_seed(7)
    _, _, xq = extraction.steal(api, x_seed, [4, 6], "noise", seed=None, **kwargs)
    torch.manual_seed(7)   # seed=None: the generator's seed is one draw of torch's global RNG
    gen, train_seed = _first_draws(int(torch.randint(0, 2**31 - 1, (1,))))
    assert trainer.calls[0]["seed"] == train_seed
    torch.testing.assert_close(xq[4:], torch.rand((2, 1, 4, 4), generator=gen))
    _, _, xq2 = extraction.steal(api, x_seed, [4, 6], "noise",
                                 seed=torch.Generator().manual_seed(11), **kwargs)
    gen, train_seed = _first_draws(11)
    assert trainer.calls[-1]["seed"] == train_seed
    torch.testing.assert_close(xq2[4:], torch.rand((2, 1, 4, 4), generator=gen))


def test_steal_accepts_a_single_budget_of_one_image(monkeypatch):
    trainer, victim, x_seed, kwargs = _small_setup(monkeypatch)
    _, history, xq = extraction.steal(extraction.model_api(victim), x_seed[:1], [1], "noise",
                                      **kwargs)
    assert [h["queries"] for h in history] == [1]
    assert len(trainer.calls) == 1


def test_steal_rejects_bad_arguments_by_name(monkeypatch):
    trainer, victim, x_seed, kwargs = _small_setup(monkeypatch)
    api = extraction.model_api(victim)
    x_test = kwargs["x_test"]
    cases = [
        ({"api": np.ones}, TypeError, r"^api must be a QueryAPI, got function"),
        ({"x_seed": x_seed.numpy()}, TypeError, r"^x_seed must be a torch.Tensor"),
        ({"budgets": [0, 4]}, ValueError, r"^budgets must be an integer >= 1"),
        ({"budgets": [4, 4]}, ValueError, r"^budgets must be increasing"),
        ({"strategy": "natural"}, ValueError,
         r"^pool must be given \(unlabeled natural images\) for strategy='natural'"),
        ({"strategy": "natural", "pool": np.zeros((9, 1, 4, 4))}, TypeError,
         r"^pool must be a torch.Tensor"),
        ({"strategy": "natural", "budgets": [4, 10, 14], "pool": torch.rand(9, 1, 4, 4)},
         ValueError, r"^pool must hold at least 10 images for these budgets, got 9"),
        ({"x_test": x_test.numpy()}, TypeError, r"^x_test must be a torch.Tensor"),
        ({"victim_labels_test": torch.zeros(5, dtype=torch.long)}, ValueError,
         r"^victim_labels_test must have shape \(12,\)"),
        ({"y_test": torch.zeros(5, dtype=torch.long)}, ValueError,
         r"^y_test must have shape \(12,\)"),
        ({"build": "cnn"}, TypeError, r"^build must be None or callable as build\(\) -> "
                                      r"nn.Module, got str"),
    ]
    for change, error, match in cases:
        args = {"api": api, "x_seed": x_seed, "budgets": [4, 8], "strategy": "noise",
                **kwargs} | change
        with pytest.raises(error, match=match):
            extraction.steal(args.pop("api"), args.pop("x_seed"), args.pop("budgets"),
                             args.pop("strategy"), **args)
    assert trainer.calls == []


def test_steal_noise_queries_have_the_seed_images_dtype(monkeypatch):
    trainer, victim, x_seed, kwargs = _small_setup(monkeypatch)
    api = extraction.QueryAPI(lambda x: torch.softmax(victim(x.float()), 1))
    _, _, xq = extraction.steal(api, x_seed.half(), [4, 6], "noise", seed=1, **kwargs)
    assert xq.dtype == torch.float16
    gen, _ = _first_draws(1)
    torch.testing.assert_close(xq[4:], torch.rand((2, 1, 4, 4), generator=gen).half())


def test_query_api_argument_checks_and_tensor_rounding():
    with pytest.raises(TypeError, match=r"^predict_proba must be callable as predict_proba\(x\) "
                                        r"-> \(m, K\) probabilities, got str"):
        extraction.QueryAPI("model")
    with pytest.raises(ValueError, match=r"^decimals must be given \(an int >= 0\) when "
                                         r"output='rounded'"):
        extraction.QueryAPI(np.ones, output="rounded")
    for decimals in (-1, 16):
        with pytest.raises(ValueError, match=r"^decimals must be an integer >= 0 and <= 15, "
                                             rf"got {decimals}"):
            extraction.QueryAPI(np.ones, output="rounded", decimals=decimals)
    p = torch.tensor([[0.123456, 0.876544], [0.75, 0.25]], dtype=torch.float64)
    for decimals, want in ((0, [[0.0, 1.0], [1.0, 0.0]]), (15, p.tolist())):
        api = extraction.QueryAPI(lambda x: p, output="rounded", decimals=decimals)
        torch.testing.assert_close(api(torch.zeros(2, 3)), torch.tensor(want, dtype=torch.float64))
    got = extraction.QueryAPI(lambda x: p, output="rounded", decimals=2)(torch.zeros(2, 3))
    assert isinstance(got, torch.Tensor)
    torch.testing.assert_close(got, torch.tensor([[0.12, 0.88], [0.75, 0.25]],
                                                 dtype=torch.float64))
    api = extraction.QueryAPI(lambda x: p)
    with pytest.raises(ValueError, match=r"^x must be a batch of inputs shaped \(m, \.\.\.\) "
                                         r"with m >= 1, got \(3,\)$"):
        api(np.zeros(3))
    with pytest.raises(ValueError, match=r"^x must be a batch of inputs shaped \(m, \.\.\.\) "
                                         r"with m >= 1, got list$"):
        api([[0.0, 1.0]])
    with pytest.raises(ValueError, match=r"^x must hold at least one input row, got 0$"):
        api(np.zeros((0, 3)))
    assert api.queries == 0


def test_model_api_passes_its_settings_and_checks_the_batch_size():
    torch.manual_seed(0)
    model = models.MnistCNN(width=2).eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        want = torch.softmax(model(x), 1)
    rounded = extraction.model_api(model, output="rounded", decimals=1, batch_size=1)(x)
    torch.testing.assert_close(rounded, torch.round(want, decimals=1))
    with pytest.raises(ValueError, match=r"^batch_size must be an integer >= 1, got 0"):
        extraction.model_api(model, batch_size=0)


def test_query_api_repr_names_its_settings():
    api = extraction.QueryAPI(lambda x: np.full((len(x), 2), 0.5), output="rounded", decimals=2)
    assert repr(api) == "QueryAPI(output='rounded', decimals=2, queries=0)"
    labels = extraction.QueryAPI(lambda x: np.full((len(x), 2), 0.5), output="labels")
    labels(np.zeros((3, 1)))
    assert repr(labels) == "QueryAPI(output='labels', queries=3)"


def test_tensor_answers_are_rounded_by_torch_and_softmax_has_its_dimension():
    # no NumPy round trip for tensors (NumPy would warn, and fail on a GPU tensor) and no
    # implicit softmax dimension (deprecated in torch): both would raise here
    import warnings

    p = torch.tensor([[0.123456, 0.876544]], dtype=torch.float64)
    model = _linear_model(torch.randn(2, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = extraction.QueryAPI(lambda x: p, output="rounded", decimals=2)(torch.zeros(1, 3))
        extraction.jacobian_augment(model, torch.rand(2, 1, 4, 4), torch.tensor([0, 1]))
    torch.testing.assert_close(got, torch.tensor([[0.12, 0.88]], dtype=torch.float64))


def test_steal_without_progress_prints_nothing(monkeypatch, capsys):
    trainer, victim, x_seed, kwargs = _small_setup(monkeypatch)
    extraction.steal(extraction.model_api(victim), x_seed, [4, 6], "noise", **kwargs)
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_labels_follow_the_images_to_their_device():
    # labels given on the CPU for images on the GPU are moved to the images' device
    model = _linear_model(torch.randn(2, 16)).cuda()
    x = torch.rand(2, 1, 4, 4, device="cuda")
    assert extraction.jacobian_augment(model, x, torch.tensor([0, 1])).device == x.device
    victim = _threshold_victim().cuda()
    xs = torch.full((2, 1, 2, 2), 0.1, device="cuda")
    assert extraction.transfer_success_rate(victim, xs, xs, torch.tensor([0, 0])) == 0.0
