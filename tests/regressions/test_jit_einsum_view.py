"""Shrunk by ``tests/test_fuzz.py::test_large_arrays_under_jit_match_eager``.

``np.einsum`` with one operand returns a *view* for diagonals and transpositions
(``'ii->i'``, ``'ij->ji'``).  jit treated every einsum as a fresh buffer, so a later
elementwise op reused it in place (``np.sin(v, out=v)``) and wrote into the caller's
argument: the input changed, and the next call computed ``sin(sin(x))``.
"""

import numpy as np
import pytest

import funcgrad as fg
import funcgrad.numpy as fnp


def test_shrunk_example() -> None:
    # Program(float64, in=[(1, 1)], ops=[einsum(ii->i)(0,), sin(1,)]) under jit(vmap), B=4096
    x = np.random.default_rng(0).standard_normal((4096, 1, 1))
    saved = x.copy()
    f = fg.jit(fg.vmap(lambda a: fnp.sin(fnp.einsum("ii->i", a))))
    first = f(x)
    np.testing.assert_array_equal(x, saved)
    np.testing.assert_allclose(first, np.sin(saved[:, :, 0]), rtol=1e-15)
    np.testing.assert_allclose(f(x), first, rtol=0)


@pytest.mark.parametrize("spec, shape", [("ii->i", (100, 100)), ("ij->ji", (64, 128)),
                                         ("ij->ij", (64, 128)), ("iij->ij", (8, 8, 600))])
def test_one_operand_einsum_views_are_never_overwritten(spec: str, shape: tuple) -> None:
    x = np.random.default_rng(1).standard_normal(shape)
    saved = x.copy()
    f = fg.jit(lambda a: fnp.exp(fnp.einsum(spec, a)) * 2.0 + 1.0)
    want = np.exp(np.einsum(spec, saved)) * 2.0 + 1.0
    for _ in range(2):
        np.testing.assert_allclose(f(x), want, rtol=1e-15)
        np.testing.assert_array_equal(x, saved)
