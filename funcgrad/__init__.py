"""funcgrad: composable function transformations (grad, vmap, jit, ...) in plain Python and NumPy.

    import funcgrad as fg
    import funcgrad.numpy as fnp

    df = fg.grad(lambda x: fnp.sum(fnp.tanh(x) ** 2))
"""

from funcgrad import nn, numpy, optim, test_util, tree_util  # noqa: F401  (public submodules)
from funcgrad.ad import grad, hessian, jacfwd, jacrev, jvp, stop_gradient, value_and_grad, vjp
from funcgrad.batching import vmap
from funcgrad.core import ConcretizationError, LeakedTracerError, ShapedArray
from funcgrad.export import backprop_graph, graph_summary, to_dot, to_networkx
from funcgrad.ir import Jaxpr, eval_jaxpr, make_jaxpr
from funcgrad.jit import jit

__version__ = "0.1.0"

__all__ = [
    "grad", "value_and_grad", "jvp", "vjp", "jacfwd", "jacrev", "hessian", "stop_gradient",
    "vmap", "jit", "make_jaxpr", "eval_jaxpr", "Jaxpr", "ShapedArray",
    "ConcretizationError", "LeakedTracerError", "to_networkx", "to_dot", "graph_summary",
    "backprop_graph", "numpy", "tree_util", "nn", "optim", "test_util",
]
