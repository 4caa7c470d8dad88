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
              "y_test": torch.zeros(10, dtype=torch.long), "epochs": 1, "progress": False}
    sub, _, _ = extraction.steal(extraction.model_api(victim), x, [10, 20], "noise",
                                 build=lambda: models.MnistCNN(width=3), **kwargs)
    assert sub.features[0].out_channels == 3
    default, _, _ = extraction.steal(extraction.model_api(victim), x, [10], "noise", **kwargs)
    assert default.features[0].out_channels == extraction.SUBSTITUTE_WIDTH
    with pytest.raises(TypeError, match="build must be None or callable"):
        extraction.steal(extraction.model_api(victim), x, [10], "noise", build="cnn", **kwargs)
