"""helpers.checks: the one vocabulary of argument checks (TypeError for a wrong type, ValueError
for a wrong value, messages naming the parameter and what is allowed)."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import checks

# ---- accepted values come back in canonical form ------------------------------------------


def test_real_accepts_numbers_and_returns_float():
    assert checks.real(3, "eps") == 3.0
    assert type(checks.real(np.float32(0.5), "eps")) is float
    assert checks.real(torch.tensor(0.25), "eps") == 0.25
    assert checks.real(0.0, "eps", low=0.0) == 0.0  # closed bound includes the end
    assert checks.real(1.0, "eps", high=1.0) == 1.0
    assert checks.real(math.inf, "t", finite=False) == math.inf


def test_integer_fraction_boolean_choice_accept():
    assert checks.integer(np.int64(4), "k", low=4, high=4) == 4
    assert type(checks.integer(np.int64(4), "k")) is int
    assert checks.fraction(0.0, "alpha") == 0.0
    assert checks.fraction(1.0, "alpha") == 1.0
    assert checks.boolean(np.bool_(True), "flag") is True
    assert checks.choice("sgd", "optimizer", ("adam", "sgd")) == "sgd"


def test_array_converts_array_likes():
    np.testing.assert_array_equal(checks.array([1, 2], "x"), np.array([1.0, 2.0]))
    assert checks.array([1, 2], "x").dtype == np.float64
    assert checks.array(pd.Series([1, 2]), "x", dtype="int").dtype == np.int64
    np.testing.assert_array_equal(checks.array(torch.tensor([0.5]), "x"), [0.5])
    assert checks.array([], "x", allow_empty=True).shape == (0,)
    assert checks.array([[1.0]], "x", ndim=(1, 2)).shape == (1, 1)
    np.testing.assert_array_equal(checks.labels([0, 2, 1], "y", n=3, num_classes=3), [0, 2, 1])


def test_same_length_returns_the_length():
    assert checks.same_length("a", [1, 2], "b", (3, 4)) == 2


def test_numpy_rng_conventions():
    a = checks.numpy_rng(5).random(3)
    b = np.random.default_rng(5).random(3)
    np.testing.assert_array_equal(a, b)
    gen = np.random.default_rng(1)
    assert checks.numpy_rng(gen) is gen
    np.random.seed(3)  # noqa: NPY002 - None draws from the seeded global state
    first = checks.numpy_rng(None).random()
    np.random.seed(3)  # noqa: NPY002
    assert checks.numpy_rng(None).random() == first


def test_torch_generator_conventions():
    assert checks.torch_generator(None) is None
    gen = torch.Generator().manual_seed(2)
    assert checks.torch_generator(gen) is gen
    made = checks.torch_generator(7)
    assert torch.equal(torch.rand(3, generator=made),
                       torch.rand(3, generator=torch.Generator().manual_seed(7)))


def test_images_and_torch_labels_keep_the_tensor():
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    assert checks.images(x, "x") is x
    y = checks.torch_labels(torch.tensor([1, 0], dtype=torch.int32), "y", n=2, num_classes=2)
    assert y.dtype == torch.long
    assert y.tolist() == [1, 0]
    assert checks.images(torch.empty(0, 1, 4, 4), "x", allow_empty=True).shape[0] == 0


def test_module_same_device_and_frame_accept():
    model = torch.nn.Linear(2, 2)
    assert checks.module(model) is model
    checks.same_device(model, torch.zeros(1))
    df = pd.DataFrame({"a": [1]})
    assert checks.frame(df, "df", ["a"]) is df


# ---- bad inputs: the type decides the exception, the message names the parameter ---------

BAD = [
    (checks.real, ("x", "eps"), {}, TypeError, "eps must be a real number, got str"),
    (checks.real, (True, "eps"), {}, TypeError, "eps must be a real number, got bool"),
    (checks.real, (None, "eps"), {}, TypeError, "eps must be a real number"),
    (checks.real, (math.nan, "eps"), {}, ValueError, "eps must be a finite number"),
    (checks.real, (math.inf, "eps"), {}, ValueError, "eps must be a finite number"),
    (checks.real, (-0.1, "eps"), {"low": 0.0}, ValueError, "eps must be a number >= 0, got -0.1"),
    (checks.real, (0.0, "lr"), {"low": 0.0, "low_open": True}, ValueError,
     "lr must be a number > 0"),
    (checks.real, (2.0, "p"), {"high": 1.0}, ValueError, "p must be a number <= 1"),
    (checks.real, (1.0, "p"), {"high": 1.0, "high_open": True}, ValueError,
     "p must be a number < 1"),
    (checks.real, (torch.ones(2), "eps"), {}, TypeError, "eps must be a real number"),
    (checks.fraction, (1.5, "alpha"), {}, ValueError, "alpha must be a number >= 0 and <= 1"),
    (checks.fraction, (0.0, "alpha"), {"open_low": True}, ValueError, "alpha must be a number > 0"),
    (checks.fraction, (1.0, "alpha"), {"open_high": True}, ValueError, "alpha must be a number"),
    (checks.integer, (3.0, "k"), {}, TypeError, "k must be an integer, got float"),
    (checks.integer, (False, "k"), {}, TypeError, "k must be an integer, got bool"),
    (checks.integer, ("3", "k"), {}, TypeError, "k must be an integer"),
    (checks.integer, (0, "k"), {"low": 1}, ValueError, "k must be an integer >= 1, got 0"),
    (checks.integer, (11, "k"), {"high": 10}, ValueError, "k must be an integer <= 10, got 11"),
    (checks.boolean, (1, "flag"), {}, TypeError, "flag must be True or False, got 1"),
    (checks.boolean, ("True", "flag"), {}, TypeError, "flag must be True or False"),
    (checks.choice, ("rmsprop", "opt", ("adam", "sgd")), {}, ValueError,
     r"opt must be one of \('adam', 'sgd'\), got 'rmsprop'"),
    (checks.choice, ([1], "opt", ("adam",)), {}, ValueError, "opt must be one of"),
    (checks.array, ("abc", "x"), {}, TypeError, "x must be an array-like, got str"),
    (checks.array, (3.0, "x"), {}, TypeError, "x must be an array-like"),
    (checks.array, (None, "x"), {}, TypeError, "x must be an array-like"),
    (checks.array, ([], "x"), {}, ValueError, r"x must not be empty, got shape \(0,\)"),
    (checks.array, ([[1.0]], "x"), {"ndim": 1}, ValueError, r"x must be 1-D, got shape \(1, 1\)"),
    (checks.array, ([1.0], "x"), {"ndim": (2, 3)}, ValueError, "x must be 2-D or 3-D"),
    (checks.array, ([1.0, math.nan], "x"), {}, ValueError, "x must hold finite numbers"),
    (checks.array, ([1.0, math.inf], "x"), {}, ValueError, "x must hold finite numbers"),
    (checks.array, (["a", "b"], "x"), {}, TypeError, "x must hold real numbers"),
    (checks.array, ([0.5], "x"), {"dtype": "int"}, TypeError, "x must hold integers"),
    (checks.array, ([1, 0], "x"), {"dtype": "bool"}, TypeError, "x must hold booleans"),
    (checks.array, ([1.0], "x"), {"dtype": "complex"}, ValueError, "dtype must be one of"),
    (checks.array, ([-1.0], "x"), {"low": 0}, ValueError, "x must hold values >= 0"),
    (checks.array, ([2.0], "x"), {"high": 1}, ValueError, "x must hold values <= 1"),
    (checks.labels, ([0, 1], "y"), {"n": 3}, ValueError, "y must have 3 labels"),
    (checks.labels, ([0, 3], "y"), {"num_classes": 3}, ValueError,
     r"y must hold integers in \[0, 3\)"),
    (checks.labels, ([-1, 0], "y"), {}, ValueError, r"y must hold integers in \[0, num_classes\)"),
    (checks.labels, ([0.5], "y"), {}, TypeError, "y must hold integers"),
    (checks.same_length, ("a", [1], "b", [1, 2]), {}, ValueError,
     "a and b must have the same length, got 1 and 2"),
    (checks.numpy_rng, (1.5,), {}, TypeError, "seed must be None, an int or a numpy.random.Gen"),
    (checks.numpy_rng, (True,), {}, TypeError, "seed must be None, an int"),
    (checks.numpy_rng, (-1,), {}, ValueError, "seed must be an int >= 0, got -1"),
    (checks.numpy_rng, (torch.Generator(),), {}, TypeError, "seed must be None, an int"),
    (checks.torch_generator, ("0",), {}, TypeError, "seed must be None, an int or a torch.Gen"),
    (checks.torch_generator, (-2,), {}, ValueError, "seed must be an int >= 0, got -2"),
    (checks.torch_generator, (np.random.default_rng(0),), {}, TypeError, "seed must be None"),
    (checks.module, ("net",), {}, TypeError, "model must be a torch.nn.Module, got str"),
    (checks.images, (np.zeros((1, 1, 2, 2)), "x"), {}, TypeError, "convert with torch.as_tensor"),
    (checks.images, (torch.zeros(1, 1, 2, 2, dtype=torch.uint8), "x"), {}, TypeError,
     "x must be a floating-point tensor"),
    (checks.images, (torch.zeros(1, 2, 2), "x"), {}, ValueError,
     r"x must have shape \(N, C, H, W\)"),
    (checks.images, (torch.zeros(0, 1, 2, 2), "x"), {}, ValueError, "with N >= 1"),
    (checks.images, (torch.zeros(1, 3, 2, 2), "x"), {"channels": 1}, ValueError,
     r"x must have 1 channel\(s\)"),
    (checks.images, (torch.full((1, 1, 2, 2), math.nan), "x"), {}, ValueError, "NaN or infinite"),
    (checks.images, (torch.full((1, 1, 2, 2), 1.01), "x"), {}, ValueError,
     r"pixel values in \[0, 1\], got values in \[1.01, 1.01\]"),
    (checks.images, (torch.full((1, 1, 2, 2), -0.01), "x"), {}, ValueError, "pixel values in"),
    (checks.torch_labels, ([0, 1], "y"), {}, TypeError, "y must be a torch.Tensor"),
    (checks.torch_labels, (torch.zeros(2), "y"), {}, TypeError, "integer tensor of class labels"),
    (checks.torch_labels, (torch.zeros(2, dtype=torch.bool), "y"), {}, TypeError, "integer"),
    (checks.torch_labels, (torch.zeros(2, 1, dtype=torch.long), "y"), {}, ValueError,
     r"y must have shape \(N,\)"),
    (checks.torch_labels, (torch.zeros(2, dtype=torch.long), "y"), {"n": 3}, ValueError,
     r"y must have shape \(3,\)"),
    (checks.torch_labels, (torch.tensor([0, 10]), "y"), {"num_classes": 10}, ValueError,
     r"y must hold labels in \[0, 10\)"),
    (checks.torch_labels, (torch.tensor([-1]), "y"), {}, ValueError, "y must hold labels in"),
    (checks.frame, ([1], "df"), {}, TypeError, "df must be a pandas DataFrame, got list"),
    (checks.frame, (pd.DataFrame({"a": [1]}), "df", ["a", "b"]), {}, ValueError,
     r"missing \['b'\]"),
]


@pytest.mark.parametrize(("check", "args", "kwargs", "error", "match"), BAD,
                         ids=[f"{c.__name__}-{i}" for i, (c, *_) in enumerate(BAD)])
def test_bad_inputs_raise_the_documented_error(check, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        check(*args, **kwargs)


def test_every_public_check_is_tested():
    tested = {check.__name__ for check, *_ in BAD}
    assert set(checks.__all__) - {"same_device"} <= tested


def test_same_device_names_both_devices():
    model = torch.nn.Linear(2, 2, device="meta")  # a second device without a GPU
    with pytest.raises(ValueError, match="x is on cpu but the model's parameters are on meta"):
        checks.same_device(model, torch.zeros(1))
    checks.same_device(torch.nn.ReLU(), torch.zeros(1, device="meta"))  # no parameters: fine
