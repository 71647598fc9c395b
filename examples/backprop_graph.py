"""Backprop on the lecture's computation graphs: listings, values and gradients per node, networkx.

1. f(x, y, z) = (x + y) z at x = -2, y = 5, z = -4.
2. Logistic regression f(w, x) = 1 / (1 + exp(-(w0 x0 + w1 x1 + w2))) at
   w = (2, -3, -3), x = (-1, -2), node by node as on the slide, and the
   "skipping to the end" shortcut sigma'(t) = (1 - sigma(t)) sigma(t).
3. The graph of the gradient itself (make_jaxpr of grad): the backward pass
   is more equations in the same IR.

Each graph is printed as a listing (fg.make_jaxpr), then with the forward
value and the gradient d f / d node of every node (fg.backprop_graph), and
exported to networkx.  With --outdir the pictures are saved (.dot always; an
.svg when Graphviz or matplotlib can draw it).

Run:  python examples/backprop_graph.py     (--help for options)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import networkx as nx
import numpy as np

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad import nn


def f_xyz(x, y, z):
    q = x + y
    return q * z


def logistic(w0, x0, w1, x1, w2):
    return 1.0 / (1.0 + fnp.exp(-(w0 * x0 + w1 * x1 + w2)))


def show_networkx(bg) -> nx.DiGraph:
    """Walk the exported graph in topological order: the forward pass, then read grads."""
    G = bg.to_networkx()
    n_ops = sum(a["kind"] == "op" for _, a in G.nodes(data=True))
    print(f"\n  networkx: {G.number_of_nodes()} nodes ({n_ops} ops), {G.number_of_edges()} edges, "
          f"inputs {G.graph['inputs']}, outputs {G.graph['outputs']}")
    order = [n for n in nx.topological_sort(G) if G.nodes[n]["kind"] == "op"]
    print("  evaluation order:", " -> ".join(G.nodes[n]["primitive"] for n in order))
    for n in G.graph["inputs"]:
        a = G.nodes[n]
        print(f"  G.nodes[{n!r}]: label={a['label']!r} value={float(a['value']):.2f} "
              f"grad={float(a['grad']):.2f}")
    return G


def save(bg, outdir: Path | None, stem: str) -> None:
    if outdir is None:
        return
    outdir.mkdir(parents=True, exist_ok=True)
    written = bg.save(outdir / f"{stem}.svg")
    print("  saved:", ", ".join(str(p) for p in written))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--outdir", type=Path, default=None,
                    help="save the pictures (.dot, and .svg when possible) in this folder")
    args = ap.parse_args(argv)
    ok = True

    # ------------------------------------------------------------------ (x + y) z ---
    print("1. f(x, y, z) = (x + y) z  at  x = -2, y = 5, z = -4\n")
    print(fg.make_jaxpr(f_xyz)(-2.0, 5.0, -4.0))
    bg = fg.backprop_graph(f_xyz, -2.0, 5.0, -4.0, names={"d": "q", "e": "f"})
    print()
    print(bg)
    q, z = bg["q"], bg["z"]
    print(f"\n  chain rule: df/dq = z = {float(z.value):.0f};  df/dx = df/dq * dq/dx = "
          f"{float(q.grad):.0f} * 1 = {float(bg['x'].grad):.0f};  df/dz = q = {float(q.value):.0f}")
    expected = fg.grad(f_xyz, argnums=(0, 1, 2))(-2.0, 5.0, -4.0)
    ok &= all(np.allclose(a, b) for a, b in zip(bg.grads, expected))
    ok &= np.allclose([float(g) for g in bg.grads], [-4.0, -4.0, 3.0])
    show_networkx(bg)
    save(bg, args.outdir, "f_xyz")

    # ------------------------------------------------------ logistic regression ---
    print("\n2. Logistic regression  f(w, x) = 1 / (1 + exp(-(w0 x0 + w1 x1 + w2)))"
          "  at  w = (2, -3, -3), x = (-1, -2)\n")
    point = (2.0, -1.0, -3.0, -2.0, -3.0)
    print(fg.make_jaxpr(logistic)(*point))
    bg = fg.backprop_graph(logistic, *point, names={"m": "out"})
    print()
    print(bg)
    grads = fg.grad(logistic, argnums=(0, 1, 2, 3, 4))(*point)
    print("\n  fg.grad gives the same input gradients:", [round(float(g), 2) for g in grads])
    ok &= all(np.allclose(a, b) for a, b in zip(bg.grads, grads))
    ok &= np.allclose(np.round([float(g) for g in grads], 2), [-0.20, 0.39, -0.39, -0.59, 0.20])
    # skipping to the end: the sigmoid gate's local gradient is (1 - sigma) sigma
    t = float(bg["i"].value)                   # w0 x0 + w1 x1 + w2 = 1
    s = nn.sigmoid(t)
    print(f"  sigmoid gate: t = {t:.0f}, sigma(t) = {float(s):.2f}, (1 - sigma) sigma = "
          f"{float((1 - s) * s):.2f} = fg.grad(fg.nn.sigmoid)(t) = {float(fg.grad(nn.sigmoid)(t)):.2f}"
          f" = grad at the sum node {float(bg['i'].grad):.2f}")
    ok &= np.isclose(float(fg.grad(nn.sigmoid)(t)), float(bg["i"].grad))
    show_networkx(bg)
    save(bg, args.outdir, "logistic")

    # --------------------------------------------------------- the graph of grad ---
    print("\n3. The graph of the gradient: make_jaxpr(grad(f)) holds the forward pass and the "
          "backward pass\n")
    grad_graph = fg.make_jaxpr(fg.grad(f_xyz, argnums=(0, 1, 2)))(-2.0, 5.0, -4.0)
    print(grad_graph)
    print("\n  after jit's optimisation passes (fg.jit(...).lower: e.g. the unused forward product is gone):")
    print(fg.jit(fg.grad(f_xyz, argnums=(0, 1, 2))).lower(-2.0, 5.0, -4.0))
    summary = fg.graph_summary(fg.make_jaxpr(fg.grad(logistic))(*point))
    print(f"\n  logistic: forward {fg.graph_summary(fg.make_jaxpr(logistic)(*point))['num_eqns']} "
          f"equations, forward + backward {summary['num_eqns']}")

    print("\nall gradients agree with fg.grad" if ok else "\nMISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
