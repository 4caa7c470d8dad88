"""A feed-forward neural network from scratch in NumPy (HW1).

Everything a multi-layer perceptron needs, written with NumPy only (no ML framework):

* layers with ``forward`` and ``backward`` that cache what the backward pass needs:
  :class:`Dense` (He or Xavier initialisation), :class:`ReLU`, :class:`Sigmoid`, :class:`Tanh`;
* a numerically stable softmax cross-entropy loss, :class:`SoftmaxCrossEntropy`;
* a :class:`Sequential` container (``forward``, ``backward``, ``params``, ``grads``,
  ``predict``, ``predict_proba``);
* optimisers :class:`SGD` (plain or with momentum) and :class:`Adam`, both with optional L2
  weight decay;
* :func:`fit`, a mini-batch training loop with a ``tqdm.auto`` progress bar;
* :func:`gradient_check`, centred finite differences in float64.

Notation. A mini-batch is a matrix :math:`X \\in \\mathbb{R}^{N \\times d}` (one example per
row). A dense layer computes :math:`Z = X W + b` with :math:`W \\in \\mathbb{R}^{d \\times m}`.
For a scalar loss :math:`L`, backpropagation (Rumelhart, Hinton & Williams, 1986, "Learning
representations by back-propagating errors", Nature 323) applies the chain rule layer by layer
from the output back to the input, each layer turning :math:`\\partial L / \\partial
\\text{output}` into :math:`\\partial L / \\partial \\text{input}` and the gradients of its own
parameters, using the activations cached during the forward pass.

Training runs in float32 (fast matrix products); :func:`gradient_check` copies the network to
float64 so that finite differences are accurate.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from helpers import checks

__all__ = [
    "SGD",
    "Adam",
    "Dense",
    "Layer",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "SoftmaxCrossEntropy",
    "Tanh",
    "accuracy",
    "dead_relu_fraction",
    "fit",
    "gradient_check",
    "gradient_errors",
    "layer_gradient_norms",
    "make_spirals",
    "mlp",
]

_FLOAT_DTYPES = (np.float32, np.float64)


# ----------------------------------------------------------------------------------------------
# Input validation
# ----------------------------------------------------------------------------------------------


def _float_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt.type not in _FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _features(x, name: str = "x", dtype=None) -> np.ndarray:
    """``x`` as a 2-D finite real array (any array-like; no copy when it already is one)."""
    x = checks.array(x, name, ndim=2, dtype="any")
    # (mutation testing, equivalent: kind is one letter and "X" is none of numpy's kind letters
    # b i u f c m M O S U V, so "XXfiuXX" admits the same dtypes as "fiu")
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if dtype is not None:
        x = np.asarray(x, dtype=dtype)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _labels(y, n: int, n_classes: int, name: str = "y") -> np.ndarray:
    """``y`` as 1-D int64 labels, one per sample, in ``[0, n_classes)``."""
    return checks.labels(y, name, n=n, num_classes=n_classes)


# ----------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------


class Layer:
    """Base class: a differentiable map with ``forward(x)`` and ``backward(grad_out)``.

    ``forward`` caches what ``backward`` needs; ``backward`` receives
    :math:`\\partial L/\\partial \\text{out}` and returns :math:`\\partial L/\\partial x`,
    storing the gradients of the layer's parameters (same order as :meth:`params`).
    """

    def forward(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def params(self) -> list[np.ndarray]:
        """The layer's trainable arrays (updated in place by the optimisers)."""
        return []

    def grads(self) -> list[np.ndarray]:
        """Gradients of the loss w.r.t. :meth:`params`, filled by the last ``backward``."""
        return []

    def _astype(self, dtype: np.dtype) -> None:
        """Convert parameters to ``dtype`` in place (used by :meth:`Sequential.astype`)."""

    def _check_grad(self, grad_out: np.ndarray, name: str = "grad_out") -> None:
        out = getattr(self, "_out", None)
        if out is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        if not isinstance(grad_out, np.ndarray) or grad_out.shape != out.shape:
            shape = getattr(grad_out, "shape", None)
            raise ValueError(f"{name} must have the output's shape {out.shape}, got {shape}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Dense(Layer):
    """Fully connected layer :math:`Z = X W + b`.

    Backward pass, with :math:`G = \\partial L/\\partial Z \\in \\mathbb{R}^{N\\times m}`:

    .. math::
        \\frac{\\partial L}{\\partial W} = X^\\top G, \\qquad
        \\frac{\\partial L}{\\partial b} = \\mathbf{1}^\\top G, \\qquad
        \\frac{\\partial L}{\\partial X} = G W^\\top .

    Initialisation (biases start at zero):

    * ``"he"`` (He, Zhang, Ren & Sun, 2015, "Delving deep into rectifiers", ICCV):
      :math:`W_{ij} \\sim \\mathcal{N}(0, 2/d)`, which keeps the activation variance constant
      through ReLU layers;
    * ``"xavier"`` (Glorot & Bengio, 2010, "Understanding the difficulty of training deep
      feedforward neural networks", AISTATS): :math:`W_{ij} \\sim \\mathcal{U}(-a, a)` with
      :math:`a = \\sqrt{6/(d+m)}`, meant for tanh/sigmoid.

    Parameters
    ----------
    in_features, out_features : int >= 1
    init : "he" or "xavier"
    seed : None, int or numpy Generator
        Source of the initial weights (:func:`helpers.checks.numpy_rng`).
    dtype : float32 (default, training) or float64 (gradient checks).
    """

    def __init__(self, in_features: int, out_features: int, init: str = "he", seed=None,
                 dtype=np.float32):
        self.in_features = checks.integer(in_features, "in_features", low=1)
        self.out_features = checks.integer(out_features, "out_features", low=1)
        if init not in ("he", "xavier"):
            raise ValueError(f"init must be 'he' or 'xavier', got {init!r}")
        self.init = init
        dt = _float_dtype(dtype)
        gen = checks.numpy_rng(seed)
        d, m = self.in_features, self.out_features
        if init == "he":
            w = gen.standard_normal((d, m)) * math.sqrt(2.0 / d)
        else:
            a = math.sqrt(6.0 / (d + m))
            w = gen.uniform(-a, a, size=(d, m))
        self.W = np.ascontiguousarray(w, dtype=dt)
        self.b = np.zeros(m, dtype=dt)
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b)
        # mutation testing: _x is read only in backward, after _check_grad has seen forward's _out
        self._x: np.ndarray | None = None  # pragma: no mutate
        self._out: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """:math:`Z = XW + b` for ``x`` of shape ``(N, in_features)``; caches ``x``."""
        if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[1] != self.in_features:
            shape = getattr(x, "shape", None)
            raise ValueError(
                f"Dense expects x of shape (N, {self.in_features}), got {shape}"
            )
        if x.dtype != self.W.dtype:
            x = x.astype(self.W.dtype)
        self._x = x
        out = x @ self.W
        out += self.b
        self._out = out
        return out

    def backward(self, grad_out: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Fill ``dW = X^T G`` and ``db = sum_n G_n``; return ``G W^T`` (or None if not needed)."""
        self._check_grad(grad_out)
        np.matmul(self._x.T, grad_out, out=self.dW)
        np.sum(grad_out, axis=0, out=self.db)
        if not need_input_grad:
            return None
        return grad_out @ self.W.T

    def params(self) -> list[np.ndarray]:
        return [self.W, self.b]

    def grads(self) -> list[np.ndarray]:
        return [self.dW, self.db]

    def _astype(self, dtype: np.dtype) -> None:
        self.W = self.W.astype(dtype)
        self.b = self.b.astype(dtype)
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b)
        self._x = self._out = None

    def __repr__(self) -> str:
        return f"Dense({self.in_features}, {self.out_features}, init={self.init!r})"


class ReLU(Layer):
    """Rectified linear unit :math:`a = \\max(z, 0)`; backward :math:`\\partial L/\\partial z =
    \\partial L/\\partial a \\cdot \\mathbb{1}[z > 0]` (the subgradient 0 is used at :math:`z=0`).

    Nair & Hinton (2010), "Rectified linear units improve restricted Boltzmann machines", ICML.
    """

    def __init__(self):
        self._out: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._out = np.maximum(x, 0)
        return self._out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        self._check_grad(grad_out)
        # (mutation testing, equivalent: copy=True/None or left out only copy the fresh array that
        # np.where just made in grad_out's dtype, which nobody else holds: same values)
        return np.where(self._out > 0, grad_out, 0).astype(grad_out.dtype, copy=False)


class Sigmoid(Layer):
    """Logistic sigmoid :math:`\\sigma(z) = 1/(1+e^{-z})`; backward uses
    :math:`\\sigma'(z) = \\sigma(z)(1-\\sigma(z))` from the cached output.

    Computed as :math:`\\tfrac12(1+\\tanh(z/2))`, which never overflows. Its derivative is at
    most 1/4, so gradients shrink geometrically through deep sigmoid stacks (the vanishing
    gradient problem, Glorot & Bengio, 2010).
    """

    def __init__(self):
        self._out: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        out = np.tanh(x * 0.5)
        out += 1.0
        out *= 0.5
        self._out = out
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        self._check_grad(grad_out)
        s = self._out
        return grad_out * (s * (1.0 - s))


class Tanh(Layer):
    """Hyperbolic tangent :math:`a = \\tanh z`; backward :math:`\\partial L/\\partial z =
    \\partial L/\\partial a \\cdot (1 - a^2)`."""

    def __init__(self):
        self._out: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._out = np.tanh(x)
        return self._out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        self._check_grad(grad_out)
        t = self._out
        return grad_out * (1.0 - t * t)


# ----------------------------------------------------------------------------------------------
# Loss
# ----------------------------------------------------------------------------------------------


class SoftmaxCrossEntropy:
    """Mean softmax cross-entropy of logits :math:`Z \\in \\mathbb{R}^{N\\times K}` and labels
    :math:`y \\in \\{0..K-1\\}^N`:

    .. math::
        L = \\frac1N \\sum_n \\Big(\\log \\sum_k e^{Z_{nk}} - Z_{n y_n}\\Big), \\qquad
        \\frac{\\partial L}{\\partial Z} = \\frac1N (P - Y),

    with :math:`P = \\mathrm{softmax}(Z)` row-wise and :math:`Y` the one-hot labels. The
    log-sum-exp is computed after subtracting the row maximum :math:`m_n`,
    :math:`\\log\\sum_k e^{Z_{nk}} = m_n + \\log\\sum_k e^{Z_{nk}-m_n}`, so that no exponential
    overflows (all exponents are <= 0 and at least one equals 0).
    """

    def __init__(self):
        self._p: np.ndarray | None = None
        # mutation testing: _y is read only in backward, after the _p check has seen forward
        self._y: np.ndarray | None = None  # pragma: no mutate

    def forward(self, logits: np.ndarray, y: np.ndarray) -> float:
        """Return the mean loss; caches the probabilities and labels for :meth:`backward`."""
        if not isinstance(logits, np.ndarray) or logits.ndim != 2:
            raise ValueError(
                f"logits must be a 2-D array (N, n_classes), got {getattr(logits, 'shape', None)}"
            )
        y = _labels(y, logits.shape[0], logits.shape[1])
        n = logits.shape[0]
        z = logits - logits.max(axis=1, keepdims=True)
        rows = np.arange(n)
        picked = z[rows, y]
        np.exp(z, out=z)
        s = z.sum(axis=1, keepdims=True)
        z /= s
        self._p, self._y = z, y
        return float(np.mean(np.log(s[:, 0]) - picked))

    def backward(self) -> np.ndarray:
        """:math:`\\partial L/\\partial Z = (P - Y)/N` for the last :meth:`forward`."""
        if self._p is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward called before forward")
        g = self._p.copy()
        n = g.shape[0]
        g[np.arange(n), self._y] -= 1.0
        g /= n
        return g

    def probabilities(self) -> np.ndarray:
        """Softmax probabilities computed by the last :meth:`forward`."""
        if self._p is None:
            raise RuntimeError("SoftmaxCrossEntropy.probabilities called before forward")
        return self._p


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


# ----------------------------------------------------------------------------------------------
# Network
# ----------------------------------------------------------------------------------------------


class Sequential:
    """A feed-forward network: layers applied in order, backpropagated in reverse.

    ``forward(x)`` returns the logits; ``backward(grad)`` takes :math:`\\partial L/\\partial
    \\text{logits}` and fills every layer's gradients (the chain rule,
    :math:`\\partial L/\\partial a_{l-1} = (\\partial a_l/\\partial a_{l-1})^\\top
    \\partial L/\\partial a_l`, each factor computed from the forward pass's cached values).

    Consecutive :class:`Dense` layers must agree (``out_features`` of one equals
    ``in_features`` of the next); a mismatch raises ``ValueError`` at construction.
    """

    def __init__(self, layers: Sequence[Layer]):
        layers = list(layers)
        if not layers:
            raise ValueError("layers must contain at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}] must be a Layer, got {type(layer).__name__}")
        dense = [(i, la) for i, la in enumerate(layers) if isinstance(la, Dense)]
        if not dense:
            raise ValueError("layers must contain at least one Dense layer")
        # (mutation testing, equivalent: strict=None or left out is strict=False; dense[1:] is one
        # shorter on purpose, pairing neighbours)
        for (i, a), (j, b) in zip(dense, dense[1:], strict=False):
            if a.out_features != b.in_features:
                raise ValueError(
                    f"shape mismatch: layers[{i}] outputs {a.out_features} features but "
                    f"layers[{j}] expects {b.in_features}"
                )
        dtypes = {la.W.dtype for _, la in dense}
        if len(dtypes) != 1:
            raise TypeError(f"all Dense layers must share one dtype, got "
                            f"{sorted(map(str, dtypes))}")
        self.layers = layers
        self._first_dense = dense[0][0]

    # -- shapes ---------------------------------------------------------------------------------
    @property
    def in_features(self) -> int:
        return self.layers[self._first_dense].in_features

    @property
    def n_classes(self) -> int:
        return [la for la in self.layers if isinstance(la, Dense)][-1].out_features

    @property
    def dtype(self) -> np.dtype:
        return self.layers[self._first_dense].W.dtype

    # -- passes ---------------------------------------------------------------------------------
    def _forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Logits for ``x`` of shape ``(N, in_features)``; caches activations for backward."""
        x = _features(x)
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"x has {x.shape[1]} features but the network expects {self.in_features}"
            )
        return self._forward(np.asarray(x, dtype=self.dtype))

    def backward(self, grad: np.ndarray) -> None:
        """Backpropagate :math:`\\partial L/\\partial \\text{logits}` through every layer."""
        first = self._first_dense
        for i in range(len(self.layers) - 1, first - 1, -1):
            layer = self.layers[i]
            if i == first:
                # The input gradient of the first Dense layer is never needed: skip a matmul.
                # (mutation testing: True/None only compute that unused matmul; same gradients)
                layer.backward(grad, need_input_grad=False)  # pragma: no mutate
            else:
                grad = layer.backward(grad)

    def params(self) -> list[np.ndarray]:
        """All trainable arrays, in layer order (``W``, ``b`` for each Dense)."""
        return [p for layer in self.layers for p in layer.params()]

    def grads(self) -> list[np.ndarray]:
        """Gradients matching :meth:`params`, from the last :meth:`backward`."""
        return [g for layer in self.layers for g in layer.grads()]

    def param_names(self) -> list[str]:
        """Names like ``"0.W"``, ``"0.b"`` (layer index, parameter) matching :meth:`params`."""
        names = []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Dense):
                names += [f"{i}.W", f"{i}.b"]
        return names

    def n_params(self) -> int:
        return int(sum(p.size for p in self.params()))

    # -- inference ------------------------------------------------------------------------------
    def predict_proba(self, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Softmax class probabilities, shape ``(N, n_classes)``, computed in batches."""
        batch_size = checks.integer(batch_size, "batch_size", low=1)
        x = _features(x)
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"x has {x.shape[1]} features but the network expects {self.in_features}"
            )
        out = np.empty((x.shape[0], self.n_classes), dtype=self.dtype)
        for s in range(0, x.shape[0], batch_size):
            xb = np.asarray(x[s:s + batch_size], dtype=self.dtype)
            out[s:s + batch_size] = _softmax(self._forward(xb))
        return out

    def predict(self, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Predicted class labels :math:`\\arg\\max_k p_k(x)` as int64, shape ``(N,)``."""
        return self.predict_proba(x, batch_size).argmax(axis=1).astype(np.int64)

    # -- copies ---------------------------------------------------------------------------------
    def astype(self, dtype) -> Sequential:
        """A deep copy of the network with parameters in ``dtype`` (float32 or float64)."""
        dt = _float_dtype(dtype)
        net = copy.deepcopy(self)
        for layer in net.layers:
            layer._astype(dt)
        return net

    def copy(self) -> Sequential:
        return copy.deepcopy(self)

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(la) for la in self.layers)
        return f"Sequential(\n  {inner}\n)"


_ACTIVATIONS: dict[str, type[Layer]] = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}


def mlp(sizes: Sequence[int], activation: str = "relu", init: str | None = None, seed=0,
        dtype=np.float32) -> Sequential:
    """Build ``Dense -> act -> ... -> Dense`` with widths ``sizes`` (input first, classes last).

    ``init`` defaults to ``"he"`` for ReLU and ``"xavier"`` for sigmoid/tanh (the pairing each
    scheme was derived for). ``seed`` (int, None or Generator) makes the weights reproducible.
    Example: ``mlp([784, 256, 128, 10])`` is the MNIST network of the notebook.
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least input and output widths, got {sizes}")
    for s in sizes:
        checks.integer(s, "sizes[i]", low=1)
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    if init is None:
        init = "he" if activation == "relu" else "xavier"
    gen = checks.numpy_rng(seed)
    layers: list[Layer] = []
    # (mutation testing, equivalent: strict=False/None or left out, since sizes[:-1] and sizes[1:]
    # have the same length by construction)
    for i, (d, m) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(Dense(d, m, init=init, seed=gen, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(_ACTIVATIONS[activation]())
    return Sequential(layers)


# ----------------------------------------------------------------------------------------------
# Optimisers
# ----------------------------------------------------------------------------------------------


class _Optimizer:
    """Common part: learning rate and L2 weight decay.

    With weight decay :math:`\\lambda`, the gradient of :math:`L + \\tfrac{\\lambda}{2}
    \\lVert W\\rVert^2` is used, i.e. :math:`g \\leftarrow g + \\lambda W`, for weight matrices
    only (arrays with ``ndim >= 2``); biases are not decayed.
    """

    def __init__(self, lr: float, weight_decay: float):
        lr = checks.real(lr, "lr")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        weight_decay = checks.real(weight_decay, "weight_decay")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.lr = lr
        self.weight_decay = weight_decay
        self.t = 0
        self._state: list[dict[str, np.ndarray]] | None = None

    def _grad(self, p: np.ndarray, g: np.ndarray) -> np.ndarray:
        if self.weight_decay and p.ndim >= 2:
            return g + self.weight_decay * p
        return g

    def _init_state(self, params, grads) -> None:
        if len(params) != len(grads):
            raise ValueError(f"got {len(params)} params but {len(grads)} grads; they must match")
        # (mutation testing, equivalent: strict=False/None or left out, since the lengths were
        # compared just above)
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            if p.shape != g.shape:
                raise ValueError(f"params[{i}] has shape {p.shape} but grads[{i}] has {g.shape}")
        if self._state is None:
            self._state = [self._new_state(p) for p in params]
        # (mutation testing, equivalent: strict=False/None or left out in the zip below: any() runs
        # only when len(self._state) == len(params), and _shapes is always as long as _state, both
        # being set from the same params)
        elif len(self._state) != len(params) or any(
            s_shape != p.shape for s_shape, p in zip(self._shapes, params, strict=True)
        ):
            raise ValueError("this optimiser was used with different parameters before")
        self._shapes = [p.shape for p in params]

    def _new_state(self, p: np.ndarray) -> dict[str, np.ndarray]:
        return {}

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        """Update every array in ``params`` in place from ``grads``."""
        self._init_state(params, grads)
        self.t += 1
        # (mutation testing, equivalent: strict=False/None or left out, since _init_state has just
        # made params, grads and _state the same length, or raised)
        for p, g, s in zip(params, grads, self._state, strict=True):
            self._update(p, self._grad(p, g), s)

    def _update(self, p, g, s) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class SGD(_Optimizer):
    """Stochastic gradient descent, optionally with (heavy-ball) momentum.

    Plain: :math:`\\theta \\leftarrow \\theta - \\eta g`. With momentum :math:`\\mu`
    (Polyak, 1964; Sutskever et al., 2013): :math:`v \\leftarrow \\mu v + g`,
    :math:`\\theta \\leftarrow \\theta - \\eta v` (the PyTorch convention).
    """

    def __init__(self, lr: float = 0.1, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)
        momentum = checks.real(momentum, "momentum")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum

    def _new_state(self, p):
        # (mutation testing, equivalent: "or True" only adds a zero velocity that _update never
        # reads while momentum is 0; it reads s["v"] only when self.momentum is set)
        return {"v": np.zeros_like(p)} if self.momentum else {}

    def _update(self, p, g, s) -> None:
        if self.momentum:
            v = s["v"]
            v *= self.momentum
            v += g
            g = v
        p -= self.lr * g

    def __repr__(self) -> str:
        return f"SGD(lr={self.lr}, momentum={self.momentum}, weight_decay={self.weight_decay})"


class Adam(_Optimizer):
    """Adam (Kingma & Ba, 2015, "Adam: a method for stochastic optimization", ICLR).

    .. math::
        m \\leftarrow \\beta_1 m + (1-\\beta_1) g, \\quad
        v \\leftarrow \\beta_2 v + (1-\\beta_2) g^2, \\quad
        \\theta \\leftarrow \\theta - \\eta\\,
        \\frac{m/(1-\\beta_1^t)}{\\sqrt{v/(1-\\beta_2^t)} + \\epsilon}.

    Weight decay is L2 regularisation added to the gradient (as ``torch.optim.Adam``), not
    decoupled (AdamW).
    """

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        b1, b2 = (checks.real(b, "betas[i]") for b in betas)
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        eps = checks.real(eps, "eps")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.beta1, self.beta2, self.eps = b1, b2, eps

    def _new_state(self, p):
        return {"m": np.zeros_like(p), "v": np.zeros_like(p), "buf": np.empty_like(p)}

    def _update(self, p, g, s) -> None:
        m, v, buf = s["m"], s["v"], s["buf"]
        b1, b2 = self.beta1, self.beta2
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        np.multiply(g, g, out=buf)
        buf *= 1.0 - b2
        v += buf
        bc1 = 1.0 - b1 ** self.t
        bc2 = 1.0 - b2 ** self.t
        # theta -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps), computed in the scratch buffer
        np.sqrt(v, out=buf)
        buf *= 1.0 / math.sqrt(bc2)
        buf += self.eps
        np.divide(m, buf, out=buf)
        buf *= self.lr / bc1
        p -= buf

    def __repr__(self) -> str:
        return (f"Adam(lr={self.lr}, betas=({self.beta1}, {self.beta2}), eps={self.eps}, "
                f"weight_decay={self.weight_decay})")


# ----------------------------------------------------------------------------------------------
# Training and evaluation
# ----------------------------------------------------------------------------------------------


def accuracy(net: Sequential, x: np.ndarray, y: np.ndarray, batch_size: int = 4096) -> float:
    """Fraction of samples whose predicted class equals the label."""
    if not isinstance(net, Sequential):
        raise TypeError(f"net must be a Sequential, got {type(net).__name__}")
    x = _features(x)
    y = _labels(y, x.shape[0], net.n_classes)
    return float(np.mean(net.predict(x, batch_size) == y))


def _evaluate(net: Sequential, x: np.ndarray, y: np.ndarray, batch_size: int = 4096):
    """(mean loss, accuracy) over validated arrays, in batches."""
    loss_fn = SoftmaxCrossEntropy()
    total, correct = 0.0, 0
    for s in range(0, x.shape[0], batch_size):
        # (mutation testing, equivalent: dtype=None or left out, since fit, the only caller, has
        # already converted x_val to net.dtype)
        xb = np.asarray(x[s:s + batch_size], dtype=net.dtype)
        yb = y[s:s + batch_size]
        logits = net._forward(xb)
        total += loss_fn.forward(logits, yb) * len(yb)
        correct += int((logits.argmax(axis=1) == yb).sum())
    return total / x.shape[0], correct / x.shape[0]


def fit(net: Sequential, x: np.ndarray, y: np.ndarray, *, epochs: int = 5,
        batch_size: int = 128, optimizer: _Optimizer | None = None,
        x_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
        lr_schedule: Callable[[int], float] | None = None, seed=0, progress: bool = True,
        desc: str | None = None) -> list[dict[str, float]]:
    """Train ``net`` in place by mini-batch gradient descent on the softmax cross-entropy.

    Each epoch shuffles the training set (``seed``), then for each mini-batch
    :math:`B` runs forward, :math:`L_B = \\frac{1}{|B|}\\sum_{n\\in B} \\ell_n`, backward and
    one optimiser step (:math:`\\theta \\leftarrow \\theta - \\eta \\nabla_\\theta L_B` for
    plain SGD). Training stops early if the loss becomes NaN or infinite (divergence); the
    last history entry then has a non-finite ``train_loss`` (over the batches seen so far).

    Parameters
    ----------
    net : Sequential, trained in place.
    x, y : training inputs ``(N, in_features)`` (finite) and integer labels ``(N,)``.
    epochs, batch_size : ints >= 1 (the last batch of an epoch may be smaller).
    optimizer : :class:`SGD` or :class:`Adam`; default ``Adam(lr=1e-3)``.
    x_val, y_val : optional validation set, evaluated after each epoch.
    lr_schedule : optional ``epoch -> learning rate`` (epoch counted from 0), applied at the
        start of each epoch; every value must be > 0.
    seed : int, None or Generator for the shuffling.
    progress : show a ``tqdm.auto`` bar (on stderr).

    Returns
    -------
    list of dicts, one per epoch: ``epoch`` (1-based), ``lr``, ``train_loss`` (mean over the
    epoch's batches), ``train_acc`` (accuracy on the batches as they were trained, the usual
    running estimate), ``val_loss`` and ``val_acc`` (NaN without a validation set), and
    ``seconds`` (cumulative training time, evaluation excluded).
    """
    if not isinstance(net, Sequential):
        raise TypeError(f"net must be a Sequential, got {type(net).__name__}")
    epochs = checks.integer(epochs, "epochs", low=1)
    batch_size = checks.integer(batch_size, "batch_size", low=1)
    # (mutation testing, equivalent: leaving out the name "x" gives _features' default, "x")
    x = _features(x, "x", dtype=net.dtype)
    if x.shape[1] != net.in_features:
        raise ValueError(f"x has {x.shape[1]} features but the network expects {net.in_features}")
    y = _labels(y, x.shape[0], net.n_classes)
    if (x_val is None) != (y_val is None):
        raise ValueError("x_val and y_val must be given together")
    if x_val is not None:
        x_val = _features(x_val, "x_val", dtype=net.dtype)
        if x_val.shape[1] != net.in_features:
            raise ValueError(
                f"x_val has {x_val.shape[1]} features but the network expects {net.in_features}"
            )
        y_val = _labels(y_val, x_val.shape[0], net.n_classes, "y_val")
    if optimizer is None:
        optimizer = Adam(lr=1e-3)
    if not isinstance(optimizer, _Optimizer):
        raise TypeError(f"optimizer must be SGD or Adam, got {type(optimizer).__name__}")
    if lr_schedule is not None and not callable(lr_schedule):
        raise TypeError("lr_schedule must be a callable epoch -> learning rate")
    gen = checks.numpy_rng(seed)
    n = x.shape[0]
    n_batches = -(-n // batch_size)
    params, grads = net.params(), net.grads()
    loss_fn = SoftmaxCrossEntropy()
    history: list[dict[str, float]] = []
    elapsed = 0.0
    bar = tqdm(total=epochs * n_batches, desc=desc or "fit", disable=not progress, leave=False)
    try:
        for epoch in range(epochs):
            if lr_schedule is not None:
                lr = checks.real(lr_schedule(epoch), "lr_schedule(epoch)")
                if lr <= 0:
                    raise ValueError(f"lr_schedule({epoch}) must be > 0, got {lr}")
                optimizer.lr = lr
            start = time.perf_counter()
            order = gen.permutation(n)
            loss_sum, correct, seen, diverged = 0.0, 0, 0, False
            with np.errstate(over="ignore", invalid="ignore"):
                for s in range(0, n, batch_size):
                    idx = order[s:s + batch_size]
                    xb, yb = x[idx], y[idx]
                    logits = net._forward(xb)
                    loss = loss_fn.forward(logits, yb)
                    net.backward(loss_fn.backward())
                    optimizer.step(params, grads)
                    loss_sum += loss * len(idx)
                    seen += len(idx)
                    correct += int((logits.argmax(axis=1) == yb).sum())
                    bar.update(1)  # pragma: no mutate (display only)
                    if not math.isfinite(loss):
                        diverged = True
                        break
            elapsed += time.perf_counter() - start
            record = {
                "epoch": epoch + 1,
                "lr": optimizer.lr,
                "train_loss": loss_sum / seen,
                "train_acc": correct / seen,
                # (mutation testing, equivalent here and below: float("NAN") is nan too)
                "val_loss": float("nan"),
                "val_acc": float("nan"),
                "seconds": elapsed,
            }
            if x_val is not None and not diverged:
                # pragma below: it only silences warnings of a non-finite validation loss
                with np.errstate(over="ignore", invalid="ignore"):  # pragma: no mutate
                    record["val_loss"], record["val_acc"] = _evaluate(net, x_val, y_val)
            history.append(record)
            # pragma below: display only (the bar is drawn with leave=False)
            bar.set_postfix(loss=f"{record['train_loss']:.4f}", refresh=False)  # pragma: no mutate
            if diverged:
                break
    finally:
        bar.close()
    return history


# ----------------------------------------------------------------------------------------------
# Gradient checking and diagnostics
# ----------------------------------------------------------------------------------------------


def _loss_and_grads(net: Sequential, x: np.ndarray, y: np.ndarray) -> float:
    loss_fn = SoftmaxCrossEntropy()
    loss = loss_fn.forward(net._forward(x), y)
    net.backward(loss_fn.backward())
    return loss


def _validate_net_xy(net, x, y):
    if not isinstance(net, Sequential):
        raise TypeError(f"net must be a Sequential, got {type(net).__name__}")
    x = _features(x)
    if x.shape[1] != net.in_features:
        raise ValueError(f"x has {x.shape[1]} features but the network expects {net.in_features}")
    y = _labels(y, x.shape[0], net.n_classes)
    return x, y


def gradient_errors(net: Sequential, x: np.ndarray, y: np.ndarray,
                    eps: float = 1e-6) -> dict[str, float]:
    """Relative error of backprop against centred finite differences, per parameter array.

    The network is copied to float64 (``net`` itself is not modified). For every scalar
    parameter :math:`\\theta_i`,

    .. math::
        \\hat g_i = \\frac{L(\\theta + \\epsilon e_i) - L(\\theta - \\epsilon e_i)}{2\\epsilon}
        \\quad (\\text{error } O(\\epsilon^2)),

    and for each parameter array the relative error is
    :math:`\\lVert g - \\hat g\\rVert_2 / \\max(\\lVert g\\rVert_2 + \\lVert \\hat g\\rVert_2,
    10^{-30})` (a norm-wise ratio, robust to individual near-zero entries; it is 0 when both
    are exactly zero). :math:`L` is the mean softmax cross-entropy of ``net(x)`` and ``y``.
    Cost: two forward passes per parameter, so use a small network.

    Returns a dict ``{"<layer>.W": err, "<layer>.b": err, ...}`` (see
    :meth:`Sequential.param_names`).
    """
    x, y = _validate_net_xy(net, x, y)
    eps = checks.real(eps, "eps")
    if not 0 < eps < 1:
        raise ValueError(f"eps must be in (0, 1), got {eps}")
    # (mutation testing, equivalent: np.dtype(None) is float64, so net.astype(None) is the same
    # float64 copy)
    net64 = net.astype(np.float64)
    x64 = np.asarray(x, dtype=np.float64)
    _loss_and_grads(net64, x64, y)
    analytic = [g.copy() for g in net64.grads()]
    loss_fn = SoftmaxCrossEntropy()
    errors = {}
    # (mutation testing, equivalent: strict=False/None or left out, since param_names, params and
    # grads all list W and b of each Dense layer, in layer order)
    for name, p, g in zip(net64.param_names(), net64.params(), analytic, strict=True):
        numeric = np.empty_like(p)
        # (mutation testing, equivalent: NumPy takes any negative size, -2 as well as -1, as the one
        # unknown dimension; checked with NumPy 2.4)
        flat, nflat = p.reshape(-1), numeric.reshape(-1)
        for i in range(flat.size):
            orig = flat[i]
            flat[i] = orig + eps
            lp = loss_fn.forward(net64._forward(x64), y)
            flat[i] = orig - eps
            lm = loss_fn.forward(net64._forward(x64), y)
            flat[i] = orig
            nflat[i] = (lp - lm) / (2.0 * eps)
        denom = max(np.linalg.norm(g) + np.linalg.norm(numeric), 1e-30)
        errors[name] = float(np.linalg.norm(g - numeric) / denom)
    return errors


def gradient_check(net: Sequential, x: np.ndarray, y: np.ndarray, eps: float = 1e-6) -> float:
    """Maximum over all parameter arrays of :func:`gradient_errors` (float64, centred
    differences). Values around 1e-9 or below mean backprop is correct; a bug typically gives
    errors of order 1e-2 to 1."""
    return max(gradient_errors(net, x, y, eps).values())


def layer_gradient_norms(net: Sequential, x: np.ndarray, y: np.ndarray) -> list[float]:
    """Frobenius norm :math:`\\lVert \\partial L/\\partial W_l \\rVert_F` for each Dense layer
    (input layer first), for the mean softmax cross-entropy on ``(x, y)``.

    Used to show vanishing gradients: with sigmoid activations each layer multiplies the
    backpropagated signal by :math:`\\sigma' \\le 1/4`, so the norms shrink towards the input
    (Glorot & Bengio, 2010). ``net``'s gradients are overwritten, its weights are not.
    """
    x, y = _validate_net_xy(net, x, y)
    _loss_and_grads(net, np.asarray(x, dtype=net.dtype), y)
    return [float(np.linalg.norm(la.dW)) for la in net.layers if isinstance(la, Dense)]


def dead_relu_fraction(net: Sequential, x: np.ndarray) -> float:
    """Share of the hidden ReLU units that are *dead* on ``x``: output 0 for every input,
    :math:`\\max_n \\max(z_{nj}, 0) = 0`. A dead unit passes no gradient (its mask
    :math:`[z > 0]` is 0 everywhere), so gradient descent can no longer revive it (Maas, Hannun
    & Ng, 2013, "Rectifier nonlinearities improve neural network acoustic models", ICML).
    Returns 0.0 for a network without ReLU layers."""
    if not isinstance(net, Sequential):
        raise TypeError(f"net must be a Sequential, got {type(net).__name__}")
    x = _features(x)
    if x.shape[1] != net.in_features:
        raise ValueError(f"x has {x.shape[1]} features but the network expects {net.in_features}")
    net._forward(np.asarray(x, dtype=net.dtype))
    alive = [(la._out > 0).any(axis=0) for la in net.layers if isinstance(la, ReLU)]
    units = sum(a.size for a in alive)
    return float(sum((~a).sum() for a in alive) / units) if units else 0.0


# ----------------------------------------------------------------------------------------------
# Toy data
# ----------------------------------------------------------------------------------------------


def make_spirals(n_samples: int = 600, n_classes: int = 2, noise: float = 0.2,
                 turns: float = 1.5, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved 2-D spirals, a classic problem no linear classifier can solve.

    Class :math:`k` has points :math:`r(\\cos\\phi, \\sin\\phi)` with
    :math:`r = t`, :math:`\\phi = 2\\pi(\\text{turns}\\cdot t + k/K)`, :math:`t \\sim U(0.05, 1)`,
    plus Gaussian noise of standard deviation ``noise * 0.1``. Returns ``x`` float32
    ``(n_samples, 2)`` and ``y`` int64 ``(n_samples,)`` with classes as balanced as possible.
    """
    n_samples = checks.integer(n_samples, "n_samples", low=1)
    n_classes = checks.integer(n_classes, "n_classes", low=2)
    noise = checks.real(noise, "noise")
    turns = checks.real(turns, "turns")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if turns <= 0:
        raise ValueError(f"turns must be > 0, got {turns}")
    gen = checks.numpy_rng(seed)
    y = np.arange(n_samples) % n_classes
    # (mutation testing, equivalent: 1.0 is the default high of Generator.uniform)
    t = gen.uniform(0.05, 1.0, size=n_samples)
    phi = 2 * np.pi * (turns * t + y / n_classes)
    x = np.stack([t * np.cos(phi), t * np.sin(phi)], axis=1)
    x += gen.normal(scale=0.1 * noise, size=x.shape)
    perm = gen.permutation(n_samples)
    return x[perm].astype(np.float32), y[perm].astype(np.int64)
