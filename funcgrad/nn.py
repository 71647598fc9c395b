"""Neural-network helpers: activations, losses, MLP initialisation and application.

Everything here is written with :mod:`funcgrad.numpy`, so ``grad``, ``vmap``,
``jit`` and the rest apply to it.  The activations stay finite, and so do their
derivatives of every order, at any finite input (try ``x = +-1000``): each one
only ever exponentiates non-positive numbers.

``init_mlp`` and ``mlp`` work with a list of layers ``{"W": (in, out), "b":
(out,)}``, so ``x @ W + b`` maps a batch of rows ``x`` to the next layer.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

import funcgrad.numpy as fnp
from funcgrad.ad import stop_gradient
from funcgrad.core import (
    ConcretizationError,
    _accepted,
    dtype_of,
    to_concrete,
    unsupported_type_message,
)

__all__ = ["relu", "sigmoid", "tanh", "softplus", "softmax", "log_softmax", "logsumexp",
           "one_hot", "mse", "softmax_cross_entropy", "binary_logistic_loss", "hinge_loss",
           "init_mlp", "mlp"]

Array = Any


# ---------------------------------------------------------------- activations ---

def _numeric_arg(x: Any, where: str) -> Any:
    """Called only once a comparison with ``x`` failed: a numeric list becomes an array
    (as ``funcgrad.numpy`` accepts them), anything non-numeric raises ``TypeError``."""
    if not _accepted(x):
        raise TypeError(unsupported_type_message(where, 0, x)) from None
    return np.asarray(x) if isinstance(x, (list, tuple)) else x


def relu(x: Array) -> Array:
    """``max(x, 0)``; its derivative at exactly 0 is taken as 0, and NaN stays NaN (as in JAX)."""
    try:
        neg = x <= 0
    except TypeError:
        x = _numeric_arg(x, "relu")
        neg = x <= 0
    return fnp.where(neg, 0, x)


def sigmoid(x: Array) -> Array:
    """The logistic function ``1 / (1 + exp(-x))``, accurate in both tails.

    With ``e = exp(-|x|)`` (never overflows) it is ``1 / (1 + e)`` for
    ``x >= 0`` and ``e / (1 + e)`` otherwise; both branches are finite
    everywhere, so ``where`` never multiplies an infinity by a zero cotangent.
    """
    try:
        pos = x >= 0
    except TypeError:
        x = _numeric_arg(x, "sigmoid")
        pos = x >= 0
    e = fnp.exp(fnp.where(pos, -x, x))     # exp(-|x|), differentiable at 0 too
    return fnp.where(pos, 1 / (1 + e), e / (1 + e))


def tanh(x: Array) -> Array:
    """Hyperbolic tangent (the lecture's smooth activation)."""
    return fnp.tanh(x)


def softplus(x: Array) -> Array:
    """``log(1 + exp(x))`` without overflow: ``max(x, 0) + log1p(exp(-|x|))``.

    Written with two clamped branches so that every derivative (including the
    second one at 0, where ``|x|`` has a kink) is exact: ``softplus' = sigmoid``.
    """
    try:
        pos = x >= 0
    except TypeError:
        x = _numeric_arg(x, "softplus")
        pos = x >= 0
    xp = fnp.where(pos, x, 0)
    xn = fnp.where(pos, 0, x)
    return fnp.where(pos, xp + fnp.log1p(fnp.exp(-xp)), fnp.log1p(fnp.exp(xn)))


def _shift(x: Array, axis: Any) -> tuple[Array, Array]:
    """``(x - m, m)``, ``m`` the maximum along ``axis`` (kept; 0 where not finite), held constant.

    Nothing depends on ``m`` mathematically, so treating it as a constant changes no
    derivative; but the shifted values are small, so ``exp(s - logsumexp(s))`` (the softmax,
    the gradient) and ``s - logsumexp(s)`` are accurate to a few ulps even for inputs of
    size 1e3..1e30, where ``x - logsumexp(x)`` would lose the digits of ``|x|``.
    """
    m = fnp.max(x, axis=axis, keepdims=True)
    m = stop_gradient(fnp.where(fnp.isfinite(m), m, 0))
    return x - m, m


def logsumexp(x: Array, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Array:
    """``log(sum(exp(x), axis))``, computed with the maximum subtracted (also for derivatives)."""
    s, m = _shift(x, axis)
    out = fnp.logsumexp(s, axis=axis, keepdims=True) + m
    if keepdims:
        return out
    axes = fnp._axes(x, axis, "logsumexp")
    return fnp.reshape(out, tuple(n for i, n in enumerate(fnp.shape(x)) if i not in axes))


def log_softmax(x: Array, axis: int = -1) -> Array:
    """``x - logsumexp(x)`` along ``axis``: log-probabilities, stable for any logits.

    Computed as ``s - logsumexp(s)`` with ``s = x - max(x)`` (see :func:`_shift`).
    """
    s, _ = _shift(x, axis)
    return s - fnp.logsumexp(s, axis=axis, keepdims=True)


def softmax(x: Array, axis: int = -1) -> Array:
    """``exp(x) / sum(exp(x))`` along ``axis`` (computed as ``exp(log_softmax(x))``)."""
    return fnp.exp(log_softmax(x, axis))


def one_hot(labels: Array, num_classes: int, dtype: Any = np.float64) -> Array:
    """``labels[..., None] == arange(num_classes)`` as ``dtype`` (rows of zeros and one 1)."""
    try:
        n = operator.index(num_classes)
    except TypeError:
        raise TypeError(f"one_hot: num_classes must be an integer, got {num_classes!r} of type "
                        f"{type(num_classes).__name__}; pass int(num_classes)") from None
    if n < 0:
        raise ValueError(f"one_hot: num_classes must be non-negative, got {n}")
    classes = np.arange(n)
    return fnp.astype(fnp.expand_dims(labels, -1) == classes, dtype)


# --------------------------------------------------------------------- losses ---

_REDUCTIONS = ("mean", "sum", "none")


def _reduce(losses: Array, reduction: str, where: str) -> Array:
    if reduction == "mean":
        return fnp.mean(losses)
    if reduction == "sum":
        return fnp.sum(losses)
    if reduction == "none":
        return losses
    raise ValueError(f"{where}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _concrete_or_none(x: Array) -> np.ndarray | None:
    """The value of ``x`` if it is known now (not under jit/vmap), else None."""
    try:
        return np.asarray(to_concrete(x))
    except ConcretizationError:
        return None


def _as_array(x: Array) -> Array:
    return np.asarray(x) if isinstance(x, (list, tuple)) else x


def _int_to_float(a: Array, b: Array) -> tuple[Array, Array]:
    """JAX's promotion for an integer (or bool) operand next to a float one: the float dtype wins,
    so float32 predictions against integer targets stay float32 (NumPy would give float64)."""
    a, b = _as_array(a), _as_array(b)
    ka, kb = dtype_of(a).kind, dtype_of(b).kind
    if ka == "f" and kb in "biu":
        return a, fnp.astype(b, dtype_of(a))
    if kb == "f" and ka in "biu":
        return fnp.astype(a, dtype_of(b)), b
    return a, b


def _labels_like(labels: Array, scores: Array) -> tuple[Array, Array]:
    """``{-1, +1}`` labels in the scores' float dtype (exact), so float32 scores give float32 losses."""
    labels, scores = _as_array(labels), _as_array(scores)
    dt = dtype_of(scores)
    if dt.kind == "f" and dtype_of(labels) != dt:
        labels = fnp.astype(labels, dt)
    return labels, scores


def mse(pred: Array, target: Array, reduction: str = "mean") -> Array:
    """Squared error ``(pred - target) ** 2``, averaged over all entries by default.

    An integer ``target`` takes ``pred``'s float dtype (JAX's promotion), so float32
    predictions give a float32 loss.
    """
    if fnp.shape(pred) != fnp.shape(target):
        raise ValueError(f"mse: pred has shape {fnp.shape(pred)} but target has shape "
                         f"{fnp.shape(target)}; they must match")
    pred, target = _int_to_float(pred, target)
    d = pred - target
    return _reduce(d * d, reduction, "mse")


def softmax_cross_entropy(logits: Array, labels: Array, reduction: str = "mean") -> Array:
    """``-log softmax(logits)[label]`` for integer class labels.

    ``logits`` has shape ``(..., C)`` and ``labels`` shape ``(...)`` with values
    in ``0 .. C-1``.  Out-of-range labels raise ``ValueError`` whenever the
    labels are known (always, except under ``jit``/``vmap`` where they are
    abstract; there an out-of-range label contributes ``logsumexp(logits)``).
    """
    shape = fnp.shape(logits)
    if len(shape) == 0:
        raise ValueError("softmax_cross_entropy: logits must have a class axis (shape (..., C)), "
                         "got a scalar")
    if fnp.shape(labels) != shape[:-1]:
        raise ValueError(f"softmax_cross_entropy: labels have shape {fnp.shape(labels)} but logits "
                         f"have shape {shape}; labels must have shape {shape[:-1]} "
                         "(one integer class per row of logits; for one-hot or probability "
                         "labels pass labels.argmax(-1), or use -(labels * log_softmax(logits))"
                         ".sum(-1))")
    if isinstance(labels, (list, tuple, int)):
        labels = np.asarray(labels)
    dt = dtype_of(labels)
    if dt.kind not in "iu":
        raise TypeError(f"softmax_cross_entropy: labels must be integer class indices, got dtype "
                        f"{dt}; use labels.astype(int) (or pass one-hot targets to your own loss)")
    c = shape[-1]
    known = _concrete_or_none(labels)
    if known is not None and known.size and (known.min() < 0 or known.max() >= c):
        bad = known[(known < 0) | (known >= c)]
        raise ValueError(f"softmax_cross_entropy: labels must be in the range [0, {c - 1}] "
                         f"(logits have {c} classes), got {bad.ravel()[:5].tolist()}")
    logp = log_softmax(logits, axis=-1)
    picked = fnp.sum(fnp.where(fnp.expand_dims(labels, -1) == np.arange(c), logp, 0), axis=-1)
    return _reduce(-picked, reduction, "softmax_cross_entropy")


def _check_pm1(labels: Array, scores: Array, where: str) -> None:
    if fnp.shape(labels) != fnp.shape(scores):
        raise ValueError(f"{where}: scores have shape {fnp.shape(scores)} but labels have shape "
                         f"{fnp.shape(labels)}; they must match")
    known = _concrete_or_none(labels)
    if known is not None and not np.all((known == 1) | (known == -1)):
        bad = np.unique(known[(known != 1) & (known != -1)])
        raise ValueError(f"{where}: labels must be -1 or +1, got {bad[:5].tolist()}; convert "
                         "{0, 1} labels with 2 * y - 1")


def binary_logistic_loss(scores: Array, labels: Array, reduction: str = "mean") -> Array:
    """Logistic loss ``log(1 + exp(-y * s))`` for labels ``y`` in ``{-1, +1}``.

    Labels use the lecture's ``{-1, +1}`` convention (``{0, 1}`` labels raise
    ``ValueError``; map them with ``2 * y - 1``).  Computed as
    ``softplus(-y * s)``, so it is finite for any score.  The labels are converted to
    the scores' float dtype, so float32 scores give a float32 loss (as in JAX).
    """
    _check_pm1(labels, scores, "binary_logistic_loss")
    labels, scores = _labels_like(labels, scores)
    return _reduce(softplus(-labels * scores), reduction, "binary_logistic_loss")


def hinge_loss(scores: Array, labels: Array, reduction: str = "mean") -> Array:
    """Hinge loss ``max(0, 1 - y * s)`` for labels ``y`` in ``{-1, +1}`` (as the SVM)."""
    _check_pm1(labels, scores, "hinge_loss")
    labels, scores = _labels_like(labels, scores)
    return _reduce(relu(1 - labels * scores), reduction, "hinge_loss")


# ------------------------------------------------------------------------ MLP ---

_ACTIVATIONS = {"relu": relu, "sigmoid": sigmoid, "tanh": tanh, "softplus": softplus}
_LAYERS = '[{"W": (in, out) array, "b": (out,) array}, ...]'
_NUMBERS = "numeric NumPy arrays, NumPy scalars or Python numbers"


def _activation(activation: Callable | str, where: str) -> Callable:
    """The activation function for a function or one of the names in ``_ACTIVATIONS``."""
    if callable(activation):
        return activation
    names = ", ".join(map(repr, _ACTIVATIONS))
    if isinstance(activation, str):
        if activation in _ACTIVATIONS:
            return _ACTIVATIONS[activation]
        raise ValueError(f"{where}: unknown activation {activation!r}; use one of {names}, or pass "
                         "a function such as fg.nn.tanh or lambda h: ...")
    raise TypeError(f"{where}: activation must be a function or one of the names {names}, got "
                    f"{activation!r} of type {type(activation).__name__}")


def _is_relu(activation: Callable) -> bool:
    return activation is relu or getattr(activation, "__name__", "") == "relu"


def init_mlp(sizes: Sequence[int], seed: int = 0, activation: Callable | str = relu,
             dtype: Any = np.float64) -> list[dict[str, np.ndarray]]:
    """Random parameters for an MLP with layer widths ``sizes`` (input first, output last).

    Returns ``[{"W": (sizes[i], sizes[i+1]), "b": (sizes[i+1],)}, ...]``.  Weights
    are normal with standard deviation ``sqrt(2 / fan_in)`` (He) when
    ``activation`` is ReLU, else ``sqrt(2 / (fan_in + fan_out))`` (Glorot), so
    activations keep their scale through the layers; biases start at zero.  The
    same ``seed`` always gives the same parameters (``numpy.random.default_rng``).
    ``dtype`` is float64 by default; float32 is allowed.
    """
    try:
        sizes = [operator.index(n) for n in sizes]
    except TypeError:
        raise TypeError(f"init_mlp: sizes must be a sequence of integers, got {sizes!r}") from None
    if len(sizes) < 2:
        raise ValueError(f"init_mlp: sizes needs at least two entries (input and output widths), "
                         f"got {sizes}")
    if any(n <= 0 for n in sizes):
        raise ValueError(f"init_mlp: every layer size must be positive, got {sizes}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"init_mlp: dtype must be a floating-point type, got {dtype}")
    rng = np.random.default_rng(seed)
    he = _is_relu(_activation(activation, "init_mlp"))
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        std = np.sqrt(2.0 / fan_in) if he else np.sqrt(2.0 / (fan_in + fan_out))
        params.append({"W": (rng.standard_normal((fan_in, fan_out)) * std).astype(dtype),
                       "b": np.zeros(fan_out, dtype)})
    return params


def _check_params(params: Any) -> None:
    """``TypeError``/``ValueError`` unless ``params`` is a non-empty list of ``{"W", "b"}`` dicts."""
    if isinstance(params, Mapping) or isinstance(params, (str, bytes)) \
            or not isinstance(params, Sequence):
        hint = "; wrap a single layer in a list: [layer]" if isinstance(params, Mapping) else ""
        raise TypeError(f"mlp: params must be a list of layers {_LAYERS} (as init_mlp returns), "
                        f"got {type(params).__name__}{hint}")
    if len(params) == 0:
        raise ValueError("mlp: params is empty; build it with init_mlp(sizes, seed)")
    for i, layer in enumerate(params):
        if not isinstance(layer, Mapping):
            raise TypeError(f"mlp: layer {i} of params is a {type(layer).__name__}, not a dict; "
                            f"params must be a list of layers {_LAYERS} (as init_mlp returns)")
        for k in ("W", "b"):
            if k not in layer:
                raise ValueError(f"mlp: layer {i} of params has no {k!r} (its keys are "
                                 f"{sorted(map(str, layer))}); params must be a list of layers "
                                 f"{_LAYERS} (as init_mlp returns)")
            if not _accepted(layer[k]):
                raise TypeError(f"mlp: layer {i}: {k} has unsupported type "
                                f"{type(layer[k]).__name__}; W and b must be {_NUMBERS}")


def _layer_error(params: Sequence[dict], i: int, h: Array) -> None:
    """Explain why ``h @ W + b`` failed at layer ``i`` (only called once it has failed)."""
    _check_params(params)
    if i == 0 and not _accepted(h):
        what = type(h).__name__ + (f" of dtype {h.dtype}" if isinstance(h, np.ndarray) else "")
        raise TypeError(f"mlp: x has unsupported type {what}; x must be an array of "
                        f"shape (..., in): {_NUMBERS}")
    hshape = fnp.shape(h)
    wshape, bshape = fnp.shape(params[i]["W"]), fnp.shape(params[i]["b"])
    if len(wshape) != 2:
        raise ValueError(f"mlp: layer {i}: W must be 2-D with shape (in, out), got shape {wshape}")
    if len(hshape) == 0 or hshape[-1] != wshape[0]:
        if i == 0:
            fix = f"x must have shape (..., {wshape[0]})"
        else:
            fix = (f"layer {i - 1} outputs {hshape[-1]} features, so W of layer {i} needs "
                   f"{hshape[-1]} rows")
        what = "x" if i == 0 else "its input"
        raise ValueError(f"mlp: layer {i}: {what} has shape {hshape} but W has shape {wshape}; "
                         f"the input's last axis must equal W's first axis: {fix}")
    try:
        np.broadcast_shapes(hshape[:-1] + wshape[1:], bshape)
    except ValueError:
        raise ValueError(f"mlp: layer {i}: b has shape {bshape} but W has shape {wshape}; b must "
                         f"have shape ({wshape[1]},)") from None


def mlp(params: Sequence[dict], x: Array, activation: Callable | str = relu) -> Array:
    """Apply the MLP: ``h = activation(h @ W + b)`` for every layer but the last.

    ``params`` is a list of layers ``[{"W": (in, out), "b": (out,)}, ...]`` (as
    :func:`init_mlp` returns) and ``activation`` a function or one of ``"relu"``,
    ``"sigmoid"``, ``"tanh"``, ``"softplus"``.  ``x`` has shape ``(..., in)``; the
    result has shape ``(..., out)`` and is the raw output (logits): no activation
    after the last layer.  Malformed params or mismatched widths raise errors naming
    the layer (checked only once an operation has failed, so valid input pays nothing).
    """
    if not callable(activation):
        activation = _activation(activation, "mlp")
    if not (type(params) is list or type(params) is tuple) or not params:
        _check_params(params)
    last = len(params) - 1
    h = x
    for i, layer in enumerate(params):
        try:
            z = h @ layer["W"] + layer["b"]
        except (KeyError, TypeError, ValueError, IndexError):
            _layer_error(params, i, h)
            raise
        h = activation(z) if i < last else z
    return h
