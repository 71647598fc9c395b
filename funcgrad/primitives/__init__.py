"""funcgrad's primitive set.  Each primitive is declared once, in one of:

- :mod:`.elementwise` -- arithmetic, transcendental functions, comparisons, select, convert;
- :mod:`.reduce` -- sum, max, min, prod, argmax, argmin, logsumexp;
- :mod:`.shape` -- reshape, transpose, broadcast_to, concatenate;
- :mod:`.linalg` -- matmul, einsum;
- :mod:`.indexing` -- gather, scatter.

``registry`` maps each name to its :class:`~funcgrad.core.Primitive`.
"""

from funcgrad.primitives import _base, elementwise, indexing, linalg, reduce, shape  # noqa: F401
from funcgrad.primitives._base import registry

_base.ew, _base.red, _base.sh = elementwise, reduce, shape
_base.make_numpy_terms()

__all__ = ["registry"]
