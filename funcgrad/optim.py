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
from funcgrad.core import dtype_of
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

    def init(params: PyTree) -> SgdState:
        return SgdState(_count0())

    def update(grads: PyTree, state: SgdState, params: PyTree = None) -> tuple[PyTree, SgdState]:
        if params is not None:
            _check_same(params, grads, "params", "grads", "sgd.update")
        step = _lr_at(lr, state.count)
        return tree_map(lambda g: _scale(step, g), grads), SgdState(state.count + 1)

    return GradientTransformation(init, update)


def momentum(lr: Schedule, beta: float = 0.9) -> GradientTransformation:
    """Heavy-ball momentum: ``v <- beta * v + g``, ``update = -lr * v``.

    This is optax's ``sgd(lr, momentum=beta)`` (the velocity accumulates raw
    gradients; the learning rate is applied afterwards).
    """

    def init(params: PyTree) -> MomentumState:
        return MomentumState(_count0(), _zeros(params))

    def update(grads: PyTree, state: MomentumState,
               params: PyTree = None) -> tuple[PyTree, MomentumState]:
        _check_same(state.velocity, grads, "optimizer state (built from params)", "grads",
                    "momentum.update")
        v = tree_map(lambda v, g: beta * v + g, state.velocity, grads)
        step = _lr_at(lr, state.count)
        return tree_map(lambda v: _scale(step, v), v), MomentumState(state.count + 1, v)

    return GradientTransformation(init, update)


def adam(lr: Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> GradientTransformation:
    """Adam (Kingma and Ba), with bias correction, as in optax.

    ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g**2``, ``t <- t + 1``,
    ``update = -lr * (m / (1 - b1**t)) / (sqrt(v / (1 - b2**t)) + eps)``.
    """

    def init(params: PyTree) -> AdamState:
        return AdamState(_count0(), _zeros(params), _zeros(params))

    def update(grads: PyTree, state: AdamState, params: PyTree = None) -> tuple[PyTree, AdamState]:
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
        return tree_map(delta, mu, nu), AdamState(t, mu, nu)

    return GradientTransformation(init, update)


def apply_updates(params: PyTree, updates: PyTree) -> PyTree:
    """``params + updates`` leaf by leaf, keeping each parameter's dtype."""
    _check_same(params, updates, "params", "updates", "apply_updates")
    leaves, tree = tree_flatten(params)
    ups = tree_flatten(updates)[0]
    return tree_unflatten(tree, [fnp.astype(p + u, dtype_of(p)) for p, u in zip(leaves, ups)])
