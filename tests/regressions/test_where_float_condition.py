"""Shrunk by ``tests/test_fuzz.py`` (once ``where`` with a float condition was drawn).

``fnp.where(a, a * b, b)`` with a float ``a`` (NumPy takes any truthy condition): the
condition operand has no derivative term, and the generic elementwise rules called it
anyway, so ``jvp`` and ``grad`` crashed with ``'NoneType' object is not callable``.
"""

import numpy as np

import funcgrad as fg
import funcgrad.numpy as fnp


def program(a):
    # Program(float64, in=[(1,)], ops=[where-truthy(0, 0), sin(1,)])
    return fnp.sin(fnp.where(a, a * a, a))


def test_shrunk_example_jvp_and_grad() -> None:
    x = np.array([0.12573022])
    want = np.cos(x * x) * 2 * x                 # x != 0: the first branch, sin(x^2)
    np.testing.assert_allclose(fg.jvp(program, (x,), (np.ones(1),))[1], want, rtol=1e-14)
    np.testing.assert_allclose(fg.grad(lambda a: fnp.sum(program(a)))(x), want, rtol=1e-14)


def test_zero_condition_takes_the_second_branch() -> None:
    x = np.array([0.0, 2.0])
    g = fg.grad(lambda a: fnp.sum(program(a)))(x)
    np.testing.assert_allclose(g, [np.cos(0.0), np.cos(4.0) * 4.0], rtol=1e-14)
    np.testing.assert_allclose(fg.vmap(fg.grad(lambda a: program(a[None])[0]))(x), g, rtol=1e-14)
