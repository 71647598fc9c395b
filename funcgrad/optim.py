"""Optax-style pure optimisers over pytrees: sgd, momentum, adam.

An optimiser is a pair of pure functions (a :class:`GradientTransformation`)::

    opt = fg.optim.adam(1e-3)
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    params = fg.optim.apply_updates(params, updates)

``updates`` are the deltas to *add* to the parameters (they already carry the
minus sign of gradient descent), as in optax.  Nothing is mutated, and states
are pytrees (namedtuples), so a whole training step can go under ``fg.jit``.

The learning rate may be a number or a schedule: a function of the step
count (0 for the first update) returning the step size, e.g. the lecture's
diminishing step size ``lambda t: 0.1 / (1 + t)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

import funcgrad.numpy as fnp
from funcgrad.core import Tracer, dtype_of
from funcgrad.tree_util import tree_flatten, tree_map, tree_unflatten

__all__ = ["GradientTransformation", "SgdState", "MomentumState", "AdamState", "sgd", "momentum",
           "adam", "apply_updates"]

PyTree = Any
Schedule = float | Callable[[Any], Any]


class GradientTransformation(NamedTuple):
    """An optimiser: ``init(params) -> state``, ``update(grads, state, params=None) -> (updates, state)``."""

    init: Callable[[PyTree], Any]
    update: Callable[..., tuple[PyTree, Any]]


class SgdState(NamedTuple):
    count: Any          # number of updates done so far (int32 array)


class MomentumState(NamedTuple):
    count: Any
    velocity: PyTree    # the running sum v, same structure as params


class AdamState(NamedTuple):
    count: Any
    mu: PyTree          # first-moment estimate m
    nu: PyTree          # second-moment estimate v


def _check_same(a: PyTree, b: PyTree, what_a: str, what_b: str, where: str) -> None:
    """``ValueError`` showing both structures when two pytrees do not line up."""
    leaves_a, ta = tree_flatten(a)
    leaves_b, tb = tree_flatten(b)
    if ta != tb:
        raise ValueError(f"{where}: {what_a} and {what_b} have different pytree structures:\n"
                         f"  {what_a}: {ta}\n  {what_b}: {tb}")
    for i, (x, y) in enumerate(zip(leaves_a, leaves_b)):
        if fnp.shape(x) != fnp.shape(y):
            raise ValueError(f"{where}: leaf {i} of {what_a} has shape {fnp.shape(x)} but the same "
                             f"leaf of {what_b} has shape {fnp.shape(y)} (structure {ta})")


_REAL = "a real number (Python or NumPy scalar, or a 0-d array)"


def _hyper(value: Any, name: str, where: str, schedule: bool = False) -> float | None:
    """Check a hyperparameter when the optimiser is built: a real scalar (or, if ``schedule``,
    a function of the step count).  Returns its value, or None if it is not known now
    (a schedule, or a 0-d tracer when the optimiser is built inside a transformation)."""
    if schedule and callable(value):
        return None
    want = _REAL + (" or a schedule lr(count) -> step size" if schedule else "")
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: {name} must be {want}, got the bool {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
    elif isinstance(value, (np.ndarray, Tracer)) and dtype_of(value).kind in "iuf":
        if fnp.shape(value) != ():
            raise ValueError(f"{where}: {name} must be a scalar (one value for every parameter), "
                             f"got an array of shape {fnp.shape(value)}")
        v = float(value) if isinstance(value, np.ndarray) else None
    else:
        what = type(value).__name__
        if isinstance(value, (np.ndarray, np.generic)):
            what += f" of dtype {value.dtype}"
        raise TypeError(f"{where}: {name} must be {want}, got {value!r:.40} of type {what}")
    if v is not None and not np.isfinite(v):
        raise ValueError(f"{where}: {name} must be finite, got {v}")
    return v


def _check_range(v: float | None, name: str, where: str, lo: float, hi: float,
                 hi_open: bool) -> None:
    if v is not None and not (lo <= v < hi if hi_open else lo <= v <= hi):
        raise ValueError(f"{where}: {name} must be in [{lo}, {hi}{')' if hi_open else ']'}, got {v}")


_MADE_BY = {SgdState: "sgd", MomentumState: "momentum", AdamState: "adam"}   # state -> its maker


def _bad_state(state: Any, grads: Any, cls: type, where: str) -> TypeError:
    """The ``TypeError`` for an ``update`` given something else than its own init's state."""
    opt = where.split(".")[0]
    got = "None" if state is None else type(state).__name__
    if type(state) in _MADE_BY:
        got += f" (made by {_MADE_BY[type(state)]}(...).init; each optimiser needs its own state)"
    elif isinstance(state, tuple) and len(state) == len(cls._fields):
        got += f" (a plain tuple: rebuild it with {cls.__name__}(*state))"
    hint = ""
    if type(grads) in _MADE_BY:
        hint = "; grads and state look swapped: the order is update(grads, state, params)"
    return TypeError(f"{where}: state must be the {cls.__name__} created by this optimiser's "
                     f"init (state = {opt}(...).init(params)), got {got}{hint}")


def _scaled(step: Any, fn: Callable, lr: Schedule, where: str, *trees: PyTree) -> PyTree:
    """``tree_map(fn, *trees)``; if that fails, blame a bad schedule value when there is one."""
    try:
        return tree_map(fn, *trees)
    except (TypeError, ValueError):
        if callable(lr):
            _hyper(step, "the schedule's value lr(count)", where)
        raise


def _lr_at(lr: Schedule, count: Any) -> Any:
    return lr(count) if callable(lr) else lr


def _scale(step: Any, g: Any) -> Any:
    """``-step * g`` in ``g``'s dtype (a float64 schedule value must not upcast float32)."""
    if isinstance(step, (int, float)):
        return -step * g
    return fnp.astype(-step, dtype_of(g)) * g


def _zeros(params: PyTree) -> PyTree:
    return tree_map(lambda p: np.zeros(fnp.shape(p), dtype_of(p)), params)


def _count0() -> np.ndarray:
    return np.zeros((), np.int32)


def sgd(lr: Schedule) -> GradientTransformation:
    """Plain gradient descent: ``update = -lr * g``."""
    _hyper(lr, "lr", "sgd", schedule=True)

    def init(params: PyTree) -> SgdState:
        return SgdState(_count0())

    def update(grads: PyTree, state: SgdState, params: PyTree = None) -> tuple[PyTree, SgdState]:
        if not isinstance(state, SgdState):
            raise _bad_state(state, grads, SgdState, "sgd.update")
        if params is not None:
            _check_same(params, grads, "params", "grads", "sgd.update")
        step = _lr_at(lr, state.count)
        return (_scaled(step, lambda g: _scale(step, g), lr, "sgd.update", grads),
                SgdState(state.count + 1))

    return GradientTransformation(init, update)


def momentum(lr: Schedule, beta: float = 0.9) -> GradientTransformation:
    """Heavy-ball momentum: ``v <- beta * v + g``, ``update = -lr * v``.

    This is optax's ``sgd(lr, momentum=beta)`` (the velocity accumulates raw
    gradients; the learning rate is applied afterwards).  ``beta`` is in ``[0, 1]``.
    """
    _hyper(lr, "lr", "momentum", schedule=True)
    _check_range(_hyper(beta, "beta", "momentum"), "beta", "momentum", 0, 1, hi_open=False)

    def init(params: PyTree) -> MomentumState:
        return MomentumState(_count0(), _zeros(params))

    def update(grads: PyTree, state: MomentumState,
               params: PyTree = None) -> tuple[PyTree, MomentumState]:
        if not isinstance(state, MomentumState):
            raise _bad_state(state, grads, MomentumState, "momentum.update")
        _check_same(state.velocity, grads, "optimizer state (built from params)", "grads",
                    "momentum.update")
        v = tree_map(lambda v, g: beta * v + g, state.velocity, grads)
        step = _lr_at(lr, state.count)
        return (_scaled(step, lambda v: _scale(step, v), lr, "momentum.update", v),
                MomentumState(state.count + 1, v))

    return GradientTransformation(init, update)


def adam(lr: Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> GradientTransformation:
    """Adam (Kingma and Ba), with bias correction, as in optax.

    ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g**2``, ``t <- t + 1``,
    ``update = -lr * (m / (1 - b1**t)) / (sqrt(v / (1 - b2**t)) + eps)``.
    ``b1`` and ``b2`` are in ``[0, 1)`` and ``eps >= 0``.
    """
    _hyper(lr, "lr", "adam", schedule=True)
    _check_range(_hyper(b1, "b1", "adam"), "b1", "adam", 0, 1, hi_open=True)
    _check_range(_hyper(b2, "b2", "adam"), "b2", "adam", 0, 1, hi_open=True)
    _check_range(_hyper(eps, "eps", "adam"), "eps", "adam", 0, np.inf, hi_open=True)

    def init(params: PyTree) -> AdamState:
        return AdamState(_count0(), _zeros(params), _zeros(params))

    def update(grads: PyTree, state: AdamState, params: PyTree = None) -> tuple[PyTree, AdamState]:
        if not isinstance(state, AdamState):
            raise _bad_state(state, grads, AdamState, "adam.update")
        _check_same(state.mu, grads, "optimizer state (built from params)", "grads", "adam.update")
        mu = tree_map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, grads)
        nu = tree_map(lambda v, g: b2 * v + (1 - b2) * (g * g), state.nu, grads)
        t = state.count + 1
        tf = fnp.astype(t, np.float64)
        c1 = 1 - fnp.power(b1, tf)              # bias corrections, float64 scalars
        c2 = 1 - fnp.power(b2, tf)
        step = _lr_at(lr, state.count)

        def delta(m: Any, v: Any) -> Any:
            dt = dtype_of(m)
            mhat = m / fnp.astype(c1, dt)
            vhat = v / fnp.astype(c2, dt)
            return _scale(step, mhat / (fnp.sqrt(vhat) + eps))
        return _scaled(step, delta, lr, "adam.update", mu, nu), AdamState(t, mu, nu)

    return GradientTransformation(init, update)


def apply_updates(params: PyTree, updates: PyTree) -> PyTree:
    """``params + updates`` leaf by leaf, keeping each parameter's dtype."""
    _check_same(params, updates, "params", "updates", "apply_updates")
    leaves, tree = tree_flatten(params)
    ups = tree_flatten(updates)[0]
    return tree_unflatten(tree, [fnp.astype(p + u, dtype_of(p)) for p, u in zip(leaves, ups)])
