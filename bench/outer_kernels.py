"""How fast NumPy can write the per-example weight gradients of issue 4's workload.

    python bench/outer_kernels.py [--repeats N]

The per-example gradient of a dense 784 -> 128 layer, for a batch of 64 float32
examples, is 64 outer products (64 x 784 x 128, 25.7 MB).  This times the ways NumPy
can compute them, and filling the same array, on one BLAS thread: the floor under
``vmap(grad)`` in ``bench/run.py``'s ``per_example`` workload.  Each kernel's result is
checked against ``einsum``'s first; the times are minimums of ``--repeats`` (30) timings.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import timeit  # noqa: E402

import numpy as np  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=30)
    repeats = ap.parse_args().repeats
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 784)).astype(np.float32)
    d = rng.standard_normal((64, 128)).astype(np.float32)
    out = np.empty((64, 784, 128), np.float32)

    def per_matrix_dot():
        for k in range(64):
            np.dot(x[k, :, None], d[k, None, :], out=out[k])
        return out

    cases = {
        "einsum('ni,nj->nij')": lambda: np.einsum("ni,nj->nij", x, d),
        "one np.dot per matrix": per_matrix_dot,
        "broadcast multiply": lambda: np.multiply(x[:, :, None], d[:, None, :], out=out),
        "np.matmul of (64,784,1) @ (64,1,128)": lambda: np.matmul(x[:, :, None], d[:, None, :]),
        "fill the result (memory floor)": lambda: out.fill(1.0),   # returns None
    }
    want = np.einsum("ni,nj->nij", x, d)
    for name, fn in cases.items():
        got = fn()
        if got is not None:                       # the fill computes nothing to compare
            np.testing.assert_array_equal(got, want, err_msg=name)
        t = min(timeit.repeat(fn, number=1, repeat=repeats))
        print(f"{name:40s} {t * 1e3:7.3f} ms")


if __name__ == "__main__":
    main()
