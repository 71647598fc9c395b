"""Export of graphs: networkx, Graphviz DOT, summaries, and the backprop picture.

A graph (:class:`~funcgrad.ir.Jaxpr`) is drawn as a bipartite data-flow graph:
one node per *value* (an input, a captured constant, an inline literal, or an
equation's result) and one node per *equation* ("op" node).  Edges go from the
values an equation reads to its op node and from the op node to the values it
writes, so any topological order of the nodes is a valid evaluation order.

Value nodes are named exactly as in ``str(jaxpr)`` (``a``, ``b``, ...), op nodes
``eqn0``, ``eqn1``, ... (the equation's position), literal nodes ``lit0``,
``lit1``, ... (one per occurrence, as in the listing).  Everything here is a
plain loop over the equations: no recursion, so graphs of any length export.
"""

from __future__ import annotations

import functools
import inspect
import math
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from funcgrad.core import ShapedArray, bind
from funcgrad.ir import (
    Jaxpr,
    Literal,
    Var,
    _check_leaf,
    _fmt_atom,
    _fmt_param,
    _names,
    make_jaxpr,
)
from funcgrad.tree_util import tree_flatten, tree_unflatten

__all__ = ["to_networkx", "to_dot", "graph_summary", "backprop_graph"]

VALUE_KINDS = ("input", "constant", "literal", "intermediate")


# ------------------------------------------------------------ graph building ---

def _check_graph(graph: Any, where: str) -> Jaxpr:
    if isinstance(graph, Jaxpr):
        return graph
    if callable(graph):
        raise TypeError(f"{where} takes a graph, not a function: build one first with "
                        f"fg.make_jaxpr(f)(*example_args) and pass that")
    raise TypeError(f"{where} takes a graph (the result of fg.make_jaxpr(f)(*args)), "
                    f"got {type(graph).__name__}")




def _value_attrs(kind: str, name: str, aval: Any) -> dict:
    return {"kind": kind, "name": name, "label": name, "shape": tuple(aval.shape),
            "dtype": aval.dtype, "is_output": False}


def _build(jaxpr: Jaxpr) -> tuple[dict[str, dict], list[tuple[str, str, dict]], dict]:
    """Nodes (id -> attributes, in evaluation order), edges and graph attributes of ``jaxpr``.

    Value names are assigned in the same order as ``str(jaxpr)`` assigns them,
    so node ids match the printed listing.
    """
    name = _names()
    nodes: dict[str, dict] = {}
    edges: list[tuple[str, str, dict]] = []
    var_id: dict[int, str] = {}
    n_lit = 0

    def add_literal(lit: Literal) -> str:
        nonlocal n_lit
        nid = f"lit{n_lit}"
        n_lit += 1
        # named as the listing prints it (2.0:f64[] for a NumPy scalar); the value keeps
        # its type, so a graph run from the export promotes as the original did
        attrs = _value_attrs("literal", _fmt_atom(lit, str), lit.aval)
        attrs["value"] = lit.val
        nodes[nid] = attrs
        return nid

    def add_var(v: Var, kind: str) -> str:
        nid = name(v)
        var_id[id(v)] = nid
        nodes[nid] = _value_attrs(kind, nid, v.aval)
        return nid

    for k, (v, c) in enumerate(zip(jaxpr.constvars, jaxpr.consts)):
        nid = add_var(v, "constant")
        nodes[nid]["value"] = c
        nodes[nid]["position"] = k
    for k, v in enumerate(jaxpr.invars):
        nodes[add_var(v, "input")]["position"] = k

    for i, e in enumerate(jaxpr.eqns):
        in_ids = []
        for a in e.inputs:
            if isinstance(a, Literal):
                in_ids.append(add_literal(a))
            else:
                nid = var_id.get(id(a))
                if nid is None:
                    raise ValueError(f"malformed graph: equation {i} ({e.primitive.name}) reads a "
                                     "value that no input, constant or earlier equation defines")
                in_ids.append(nid)
        op = f"eqn{i}"
        nodes[op] = {"kind": "op", "primitive": e.primitive.name, "params": dict(e.params),
                     "label": e.primitive.name, "index": i, "inputs": in_ids, "outputs": []}
        out_ids = [add_var(v, "intermediate") for v in e.outputs]
        nodes[op]["outputs"] = out_ids
        for o in out_ids:
            nodes[o]["producer"] = op
        positions: dict[str, list[int]] = {}
        for p, nid in enumerate(in_ids):
            positions.setdefault(nid, []).append(p)
        for nid, ps in positions.items():
            edges.append((nid, op, {"argnums": tuple(ps)}))
        for p, nid in enumerate(out_ids):
            edges.append((op, nid, {"index": p}))

    outputs = []
    for a in jaxpr.outvars:
        if isinstance(a, Literal):
            nid = add_literal(a)
        else:
            nid = var_id.get(id(a))
            if nid is None:
                raise ValueError("malformed graph: an output is a value nothing defines")
        nodes[nid]["is_output"] = True
        outputs.append(nid)
    gattrs = {"inputs": [var_id[id(v)] for v in jaxpr.invars],
              "constants": [var_id[id(v)] for v in jaxpr.constvars],
              "outputs": outputs, "num_eqns": len(jaxpr.eqns)}
    return nodes, edges, gattrs


def to_networkx(graph: Jaxpr) -> Any:
    """The graph as a ``networkx.DiGraph`` of value nodes and op nodes.

    Node attributes: every node has ``kind`` -- ``"input"``, ``"constant"``,
    ``"literal"``, ``"intermediate"`` (an equation's result) or ``"op"``.  Value
    nodes carry ``shape``, ``dtype``, ``name``/``label`` (the listing's name, or
    the literal's repr), ``is_output``; inputs and constants ``position``;
    constants and literals their ``value``; intermediates the op node that
    makes them (``producer``).  Op nodes carry ``primitive`` (its name),
    ``params``, ``index`` (the equation's position) and the ordered ``inputs``
    and ``outputs`` node ids.

    A ``DiGraph`` (not a multigraph) is used: when an equation reads the same
    value twice, as in ``mul a a``, there is one edge whose ``argnums``
    attribute lists every argument position, ``(0, 1)``; the op node's
    ``inputs`` list gives the exact call order.  Edges from an op to its
    results carry ``index``.  ``G.graph`` holds ``inputs``, ``constants`` and
    ``outputs`` (node ids, in order; an output may repeat) and ``num_eqns``.
    """
    import networkx as nx
    jaxpr = _check_graph(graph, "to_networkx")
    nodes, edges, gattrs = _build(jaxpr)
    G = nx.DiGraph(**gattrs)
    G.add_nodes_from(nodes.items())
    G.add_edges_from(edges)
    return G


# --------------------------------------------------------------------- DOT ---

def _q(s: Any) -> str:
    """A DOT double-quoted string (``\\n`` in ``s`` becomes a line break)."""
    s = str(s).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + s.replace("\n", "\\n") + '"'


def _dot_attrs(attrs: dict) -> str:
    return ", ".join(f"{k}={_q(v)}" for k, v in attrs.items())


def _dot_text(name: str, graph_attrs: dict, nodes: Sequence[tuple[str, dict]],
              edges: Sequence[tuple[str, str, dict]]) -> str:
    lines = [f"digraph {_q(name)} {{"]
    lines += [f"  {k}={_q(v)};" for k, v in graph_attrs.items()]
    lines.append('  node [fontname="Helvetica", fontsize="11"];')
    lines.append('  edge [fontname="Helvetica", fontsize="9"];')
    lines += [f"  {_q(n)} [{_dot_attrs(a)}];" for n, a in nodes]
    lines += [f"  {_q(u)} -> {_q(v)}" + (f" [{_dot_attrs(a)}]" if a else "") + ";" for u, v, a in edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


_COMMUTATIVE = {"add", "mul", "max", "min", "eq", "ne", "and", "or"}
_FILL = {"input": "#d5e8d4", "constant": "#fff2cc", "intermediate": "#ffffff", "op": "#dae8fc"}
_OUTPUT_STYLE = {"color": "#b85450", "penwidth": "2.5", "peripheries": "2", "fillcolor": "#f8cecc"}


def _short(s: str, n: int = 48) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


def _op_label(a: dict) -> str:
    params = [_short(_fmt_param(k, v)) for k, v in sorted(a["params"].items())]
    return "\n".join([a["primitive"]] + params)


def _edge_dot_attrs(nodes: dict, u: str, v: str, a: dict) -> dict:
    """Label a value -> op edge with the argument position(s) when they matter."""
    if "argnums" not in a:
        return {}
    op = nodes[v]
    ps = a["argnums"]
    if len(ps) > 1 or (len(op["inputs"]) > 1 and op["primitive"] not in _COMMUTATIVE):
        return {"label": ",".join(map(str, ps))}
    return {}


@functools.lru_cache(maxsize=1024)
def _type_str(dtype: np.dtype, shape: tuple) -> str:
    return ShapedArray(shape, dtype).str_short()


def _aval_str(a: dict) -> str:
    return _type_str(a["dtype"], a["shape"])


def to_dot(graph: Jaxpr, *, rankdir: str = "TB", name: str = "jaxpr") -> str:
    """The graph as Graphviz DOT text (render it with ``dot -Tsvg``; nothing needed to produce it).

    Values are ellipses labelled ``name: dtype[shape]`` (inputs green,
    constants yellow, literals as plain text), equations are boxes with the
    primitive and its parameters, edges follow the data flow (labelled with
    the argument position where order matters), outputs are drawn red with a
    double outline.
    """
    jaxpr = _check_graph(graph, "to_dot")
    nodes, edges, _ = _build(jaxpr)
    dnodes = []
    for nid, a in nodes.items():
        kind = a["kind"]
        if kind == "op":
            attrs = {"label": _op_label(a), "shape": "box", "style": "rounded,filled",
                     "fillcolor": _FILL["op"]}
        elif kind == "literal":
            attrs = {"label": a["label"], "shape": "plaintext"}
        else:
            attrs = {"label": f"{a['name']}: {_aval_str(a)}", "shape": "ellipse", "style": "filled",
                     "fillcolor": _FILL[kind]}
        if a.get("is_output"):
            attrs.update(_OUTPUT_STYLE)
            attrs["style"] = "filled"
        dnodes.append((nid, attrs))
    dedges = [(u, v, _edge_dot_attrs(nodes, u, v, a)) for u, v, a in edges]
    return _dot_text(name, {"rankdir": rankdir}, dnodes, dedges)


# ----------------------------------------------------------------- summary ---

_DATA_MOVEMENT = {"reshape", "transpose", "broadcast_to", "concatenate", "gather", "convert",
                  "stop_gradient"}
_REDUCTIONS = {"reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "argmax", "argmin",
               "logsumexp"}


def _size(shape: Sequence[int]) -> int:
    return math.prod(int(n) for n in shape)


def _matmul_flops(a: tuple, b: tuple) -> int:
    sa = (1,) + a if len(a) == 1 else a
    sb = b + (1,) if len(b) == 1 else b
    batch = _size(np.broadcast_shapes(sa[:-2], sb[:-2]))
    return 2 * batch * sa[-2] * sa[-1] * sb[-1]


def _einsum_flops(spec: str, shapes: Sequence[tuple]) -> int:
    ins = spec.split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for sub, shape in zip(ins, shapes):
        for c, n in zip(sub, shape):
            sizes[c] = max(sizes.get(c, 1), int(n))
    return max(len(shapes), 1) * _size(sizes.values())


def eqn_flops(primitive: str, params: dict, in_shapes: Sequence[tuple], out_shape: tuple) -> int:
    """Estimated floating-point operations of one equation.

    Elementwise ops (and unknown primitives): one per output element;
    reductions: one per input element; ``matmul``: ``2*m*k*n*batch``;
    ``einsum``: the naive loop cost ``n_operands * prod(index sizes)`` (so
    ``2*m*k*n`` for a matrix product); data movement (reshape, transpose,
    broadcast_to, concatenate, gather, convert, stop_gradient, scatter-set): 0;
    scatter-add/multiply: one per updated element.
    """
    if primitive in _DATA_MOVEMENT:
        return 0
    if primitive in _REDUCTIONS:
        return _size(in_shapes[0])
    if primitive == "matmul":
        return _matmul_flops(tuple(in_shapes[0]), tuple(in_shapes[1]))
    if primitive == "einsum":
        return _einsum_flops(params["spec"], in_shapes)
    if primitive == "scatter":
        return 0 if params.get("mode") == "set" else _size(in_shapes[1])
    return _size(out_shape)


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


class GraphSummary(dict):
    """The dict returned by :func:`graph_summary`; ``str()`` gives a readable table."""

    def __str__(self) -> str:
        s = self
        lines = [
            f"equations          {s['num_eqns']:,}",
            f"inputs             {s['num_inputs']} arrays, {s['param_count']:,} elements "
            f"({s['float_param_count']:,} float)",
            f"constants          {s['num_consts']} arrays, {s['const_count']:,} elements",
            f"FLOPs (estimate)   {s['flops']:,}",
            f"peak live memory   {_fmt_bytes(s['peak_memory_bytes'])} "
            f"(inputs+constants {_fmt_bytes(s['input_bytes'])}, "
            f"intermediates {_fmt_bytes(s['peak_intermediate_bytes'])})",
        ]
        if s["op_counts"]:
            w = max([len("primitive")] + [len(p) for p in s["op_counts"]])
            lines.append(f"{'primitive':<{w}}  {'count':>6}  {'FLOPs':>14}")
            for p, c in s["op_counts"].items():
                lines.append(f"{p:<{w}}  {c:>6}  {s['flops_by_primitive'][p]:>14,}")
        return "\n".join(lines)


def graph_summary(graph: Jaxpr) -> GraphSummary:
    """Counts and cost estimates of a graph, as a dict (``str()`` of it is a table).

    Keys: ``num_eqns``; ``op_counts`` (primitive -> count, most frequent
    first); ``flops`` and ``flops_by_primitive`` (estimates, see
    :func:`eqn_flops`); ``num_inputs``, ``param_count`` (total elements of the
    inputs) and ``float_param_count`` (of the floating-point inputs only);
    ``num_consts`` and ``const_count``; ``input_bytes`` (inputs + constants),
    ``output_bytes``; ``peak_intermediate_bytes`` and ``peak_memory_bytes``.

    The memory estimate is a liveness analysis over the equation order: inputs
    and constants are held by the caller for the whole run; an equation's
    result is live from the equation that makes it to its last use (to the end
    if it is an output); while an equation runs, its operands and its result
    are live together.  Literals are inline scalars and cost nothing.
    """
    jaxpr = _check_graph(graph, "graph_summary")
    nbytes = lambda v: _size(v.aval.shape) * v.aval.dtype.itemsize  # noqa: E731
    counts: Counter = Counter()
    flops: Counter = Counter()
    last_use: dict[int, int] = {}
    n = len(jaxpr.eqns)
    for i, e in enumerate(jaxpr.eqns):
        p = e.primitive.name
        counts[p] += 1
        flops[p] += eqn_flops(p, e.params, [a.aval.shape for a in e.inputs], e.outputs[0].aval.shape)
        for a in e.inputs:
            if isinstance(a, Var):
                last_use[id(a)] = i
    for a in jaxpr.outvars:
        if isinstance(a, Var):
            last_use[id(a)] = n
    base = sum(nbytes(v) for v in jaxpr.invars) + sum(nbytes(v) for v in jaxpr.constvars)
    dies_at: dict[int, int] = {}   # equation index -> bytes freed after it
    live = peak = 0
    for i, e in enumerate(jaxpr.eqns):
        for v in e.outputs:
            live += nbytes(v)
            end = last_use.get(id(v), i)
            dies_at[end] = dies_at.get(end, 0) + nbytes(v)
        peak = max(peak, live)
        live -= dies_at.pop(i, 0)
    order = sorted(counts, key=lambda p: (-counts[p], p))
    return GraphSummary(
        num_eqns=n,
        op_counts={p: counts[p] for p in order},
        flops=sum(flops.values()),
        flops_by_primitive={p: flops[p] for p in order},
        num_inputs=len(jaxpr.invars),
        param_count=sum(_size(v.aval.shape) for v in jaxpr.invars),
        float_param_count=sum(_size(v.aval.shape) for v in jaxpr.invars if v.aval.dtype.kind in "fc"),
        num_consts=len(jaxpr.constvars),
        const_count=sum(_size(v.aval.shape) for v in jaxpr.constvars),
        input_bytes=base,
        output_bytes=sum(nbytes(a) for a in jaxpr.outvars if isinstance(a, Var)),
        peak_intermediate_bytes=peak,
        peak_memory_bytes=base + peak,
    )


# ---------------------------------------------------------- backprop picture ---

_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/", "neg": "-x", "pow": "**", "matmul": "@"}


def _fmt_num(x: Any, precision: int) -> str:
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, complex):
        return f"{x:.{precision}f}"
    s = f"{float(x):.{precision}f}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s


def format_value(x: Any, precision: int = 2) -> str:
    """A short text for a value on the picture: ``3.00`` or ``[-0.20, -0.39, 0.20]``."""
    if x is None:
        return "-"
    a = np.asarray(x)
    if a.ndim == 0:
        return _fmt_num(a.item(), precision)
    with np.printoptions(precision=precision, floatmode="fixed", suppress=True, threshold=6,
                         edgeitems=2, linewidth=10**6):
        s = np.array2string(a, separator=", ")
    s = " ".join(s.replace("-0." + "0" * precision, " 0." + "0" * precision).split())
    return s.replace("[ ", "[")


class BackpropNode:
    """One value of the picture: its forward ``value`` and its ``grad`` (d output / d value)."""

    __slots__ = ("name", "label", "kind", "value", "grad", "producer", "is_output")

    def __init__(self, name: str, label: str, kind: str, value: Any, grad: Any,
                 producer: str | None, is_output: bool):
        self.name, self.label, self.kind = name, label, kind
        self.value, self.grad, self.producer, self.is_output = value, grad, producer, is_output

    def __repr__(self) -> str:
        return (f"BackpropNode({self.label!r}, value={format_value(self.value)}, "
                f"grad={format_value(self.grad)})")


class BackpropGraph:
    """The computation graph of a scalar function at concrete inputs, with values and gradients.

    ``nodes`` maps each value's id (its name in ``str(jaxpr)``, or ``litN``) to a
    :class:`BackpropNode`; ``bg[key]`` looks one up by its display label
    (or, failing that, its id).  ``value`` is the output, ``grads`` the gradient for each
    argument (shaped like the arguments, as ``fg.grad`` with every argnum).
    """

    def __init__(self, jaxpr: Jaxpr, nodes: dict[str, dict], edges: list, gattrs: dict,
                 values: dict[str, Any], grads: dict[str, Any], labels: dict[str, str],
                 in_tree: Any):
        self.jaxpr = jaxpr
        self._nodes, self._edges, self._gattrs = nodes, edges, gattrs
        self.nodes: dict[str, BackpropNode] = {}
        for nid, a in nodes.items():
            if a["kind"] == "op":
                continue
            self.nodes[nid] = BackpropNode(nid, labels[nid], a["kind"], values[nid], grads.get(nid),
                                           a.get("producer"), a["is_output"])
        self.output = self.nodes[gattrs["outputs"][0]]
        self.value = self.output.value
        self.grads = tree_unflatten(in_tree, [grads[i] for i in gattrs["inputs"]])
        self.precision = 2

    def __getitem__(self, key: str) -> BackpropNode:
        """The node whose display label is ``key``, else the one whose id is ``key``."""
        hits = [n for n in self.nodes.values() if n.label == key and n.kind != "literal"]
        if hits:
            return hits[0]
        if key in self.nodes:
            return self.nodes[key]
        raise KeyError(f"no node labelled {key!r} (labels: "
                       f"{', '.join(n.label for n in self.nodes.values() if n.kind != 'literal')})")

    def __iter__(self):
        return iter(self.nodes.values())

    def _label(self, n: BackpropNode, precision: int) -> str:
        if n.kind == "literal":
            return format_value(n.value, precision)
        text = f"{n.label} = {format_value(n.value, precision)}"
        if n.grad is not None:
            text += f" / grad {format_value(n.grad, precision)}"
        return text

    def _op_text(self, a: dict) -> str:
        sym = _SYMBOL.get(a["primitive"])
        if sym is not None and not a["params"]:
            return sym
        return _op_label(a)

    def to_dot(self, precision: int | None = None, rankdir: str = "LR") -> str:
        """DOT text: value boxes labelled ``q = 3.00 / grad -4.00``, ops as circles."""
        p = self.precision if precision is None else precision
        dnodes = []
        for nid, a in self._nodes.items():
            if a["kind"] == "op":
                text = self._op_text(a)
                dnodes.append((nid, {"label": text, "shape": "circle" if len(text) <= 4 else "box",
                                     "style": "filled", "fillcolor": _FILL["op"]}))
                continue
            n = self.nodes[nid]
            if n.kind == "literal":
                dnodes.append((nid, {"label": self._label(n, p), "shape": "plaintext"}))
                continue
            attrs = {"label": self._label(n, p), "shape": "box", "style": "rounded,filled",
                     "fillcolor": _FILL[n.kind]}
            if n.is_output:
                attrs.update(_OUTPUT_STYLE)
            dnodes.append((nid, attrs))
        dedges = [(u, v, _edge_dot_attrs(self._nodes, u, v, a)) for u, v, a in self._edges]
        return _dot_text("backprop", {"rankdir": rankdir}, dnodes, dedges)

    def to_networkx(self) -> Any:
        """``to_networkx(jaxpr)`` with ``value`` and ``grad`` on every value node.

        ``label`` is the display label (``name`` stays the listing's name);
        literals have ``grad`` None.
        """
        import networkx as nx
        G = nx.DiGraph(**self._gattrs)
        G.add_nodes_from((nid, dict(a)) for nid, a in self._nodes.items())
        G.add_edges_from(self._edges)
        for nid, n in self.nodes.items():
            G.nodes[nid].update(value=n.value, grad=n.grad, label=n.label)
        return G

    def __str__(self) -> str:
        p = self.precision
        rows = [("node", "op", "value", "grad")]
        for n in self.nodes.values():
            if n.kind == "literal" and not n.is_output:
                continue
            if n.producer is not None:
                a = self._nodes[n.producer]
                ins = [self.nodes[i].label if self.nodes[i].kind != "literal"
                       else format_value(self.nodes[i].value, p) for i in a["inputs"]]
                op = " ".join([a["primitive"]] + ins)
            else:
                op = n.kind
            rows.append((n.label + (" (out)" if n.is_output else ""), op,
                         format_value(n.value, p), format_value(n.grad, p)))
        w = [max(len(r[k]) for r in rows) for k in range(4)]
        return "\n".join(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:>{w[2]}}  {r[3]:>{w[3]}}".rstrip()
                         for r in rows)

    __repr__ = __str__

    def save(self, path: str | Path, formats: Sequence[str] | None = None) -> list[Path]:
        """Write the picture; returns the files written.

        ``<stem>.dot`` is always written.  Images (``svg``/``png``; by default
        the suffix of ``path``, else ``svg``) are rendered with the Graphviz
        ``dot`` program if it is installed, else with matplotlib if that is,
        else skipped without error.
        """
        path = Path(path)
        suffix = path.suffix.lower().lstrip(".")
        base = path.with_suffix("") if suffix in ("dot", "svg", "png", "pdf") else path
        if formats is None:
            formats = (suffix,) if suffix in ("svg", "png", "pdf") else ("svg",)
        dot_path = base.with_name(base.name + ".dot")
        text = self.to_dot()
        dot_path.write_text(text)
        written = [dot_path]
        for fmt in formats:
            out = base.with_name(f"{base.name}.{fmt}")
            if _render_with_dot(dot_path, out, fmt) or _render_with_matplotlib(self, out):
                written.append(out)
        return written


def _dot_program() -> str | None:
    return shutil.which("dot")


def _render_with_dot(dot_path: Path, out: Path, fmt: str) -> bool:
    exe = _dot_program()
    if exe is None:
        return False
    try:
        subprocess.run([exe, f"-T{fmt}", str(dot_path), "-o", str(out)], check=True,
                       capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.exists()


def _have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _columns(G: Any) -> dict:
    """Column of each node: its depth from the sources, with sources pulled next to their users."""
    import networkx as nx
    order = list(nx.topological_sort(G))
    col: dict = {}
    for n in order:
        col[n] = max((col[p] + 1 for p in G.predecessors(n)), default=0)
    for n in reversed(order):
        succ = [col[s] for s in G.successors(n)]
        if G.in_degree(n) == 0 and succ:
            col[n] = min(succ) - 1
    return col


def _render_with_matplotlib(bg: BackpropGraph, out: Path) -> bool:
    """A layered left-to-right drawing without Graphviz."""
    if not _have_matplotlib():
        return False
    from matplotlib.figure import Figure
    G = bg.to_networkx()
    col = _columns(G)
    layers: dict[int, list] = {}
    for n in G.nodes:
        layers.setdefault(col[n], []).append(n)
    pos = {n: (x, (len(ns) - 1) / 2 - y) for x, ns in layers.items() for y, n in enumerate(ns)}
    width, height = max(layers) + 1, max(len(ns) for ns in layers.values())
    fig = Figure(figsize=(max(4.0, 1.5 * width), max(2.0, 0.9 * height + 0.6)))
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_xlim(-0.6, width - 0.4)
    ax.set_ylim(-height / 2, height / 2)
    texts = {}
    for nid, a in G.nodes(data=True):
        if a["kind"] == "op":
            text, fc, box = bg._op_text(a), _FILL["op"], "circle"
        else:
            n = bg.nodes[nid]
            text = bg._label(n, bg.precision).replace(" / ", "\n")
            fc = _OUTPUT_STYLE["fillcolor"] if n.is_output else _FILL.get(n.kind, "#ffffff")
            box = "round"
        texts[nid] = ax.text(*pos[nid], text, ha="center", va="center", fontsize=8, zorder=3,
                             bbox={"boxstyle": box, "fc": fc, "ec": "0.3"})
    fig.canvas.draw()     # lay the text boxes out so arrows can be clipped at them
    for u, v in G.edges:
        ax.annotate("", xy=pos[v], xytext=pos[u], zorder=4,
                    arrowprops={"arrowstyle": "-|>", "color": "0.35", "shrinkA": 1, "shrinkB": 1,
                                "patchA": texts[u].get_bbox_patch(),
                                "patchB": texts[v].get_bbox_patch()})
    fig.savefig(out, bbox_inches="tight")
    return out.exists()


def _input_labels(fun: Callable, args: tuple) -> list[str | None]:
    """Display names of the flat inputs from ``fun``'s parameter names (None if unknown)."""
    try:
        params = list(inspect.signature(fun).parameters.values())
    except (TypeError, ValueError):
        params = []
    labels: list[str | None] = []
    for i, arg in enumerate(args):
        leaves, _ = tree_flatten(arg)
        p = params[i] if i < len(params) else None
        if p is None or p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            labels += [None] * len(leaves)
        elif len(leaves) == 1 and leaves[0] is arg:
            labels.append(p.name)
        elif isinstance(arg, (list, tuple)) and len(arg) == len(leaves):
            labels += [f"{p.name}[{k}]" for k in range(len(leaves))]
        elif isinstance(arg, dict) and len(arg) == len(leaves):
            labels += [f"{p.name}[{k!r}]" for k in sorted(arg)]
        else:
            labels += [None] * len(leaves)
    return labels


def backprop_graph(fun: Callable, *args: Any, names: dict[str, str] | None = None) -> BackpropGraph:
    """The backprop picture of scalar ``fun`` at ``args``: every node's value and gradient.

    The graph is ``make_jaxpr(fun)(*args)``.  The forward pass evaluates it
    equation by equation, keeping every value.  The backward pass is reverse
    mode over the same equations: each intermediate ``v`` is evaluated as
    ``v + delta_v`` with ``delta_v = 0``, and ``fg.vjp`` of that function with
    respect to the inputs, constants and deltas gives ``d output / d v`` for
    every value at once.

    Inputs are labelled with ``fun``'s parameter names (``x``, ``w[0]``),
    other values with their names in the listing; ``names`` renames any of
    them (``{"d": "q"}``).
    """
    from funcgrad.ad import vjp
    jaxpr = make_jaxpr(fun)(*args)
    if (len(jaxpr.outvars) != 1 or jaxpr.outvars[0].aval.shape != ()
            or jaxpr.outvars[0].aval.dtype.kind != "f"):
        outs = ", ".join(a.aval.str_short() for a in jaxpr.outvars)
        raise TypeError(f"backprop_graph requires fun to return a real scalar (a 0-d floating-point "
                        f"value), but it returned ({outs}); reduce it (e.g. with fnp.sum) first")
    flat, in_tree = tree_flatten(args)
    flat = [_check_leaf(x, "backprop_graph", i) for i, x in enumerate(flat)]
    nodes, edges, gattrs = _build(jaxpr)

    # forward pass: every value of the graph
    ops = [a for a in nodes.values() if a["kind"] == "op"]
    values: dict[str, Any] = {}
    for nid, a in nodes.items():
        if a["kind"] in ("constant", "literal"):
            values[nid] = np.asarray(a["value"])
    for nid, x in zip(gattrs["inputs"], flat):
        values[nid] = np.asarray(x)
    for e, a in zip(jaxpr.eqns, ops):
        out = bind(e.primitive, *[values[i] if nodes[i]["kind"] != "literal" else nodes[i]["value"]
                                  for i in a["inputs"]], **e.params)
        values[a["outputs"][0]] = np.asarray(out)

    # backward pass: reverse mode over the same equations, one zero delta per float intermediate
    delta_ids = [a["outputs"][0] for a in ops if values[a["outputs"][0]].dtype.kind == "f"]
    delta_pos = {nid: k for k, nid in enumerate(delta_ids)}
    out_id = gattrs["outputs"][0]

    def perturbed(ins: list, consts: list, deltas: list) -> Any:
        env = dict(zip(gattrs["inputs"], ins))
        env.update(zip(gattrs["constants"], consts))
        for e, a in zip(jaxpr.eqns, ops):
            r = bind(e.primitive, *[env[i] if nodes[i]["kind"] != "literal" else nodes[i]["value"]
                                    for i in a["inputs"]], **e.params)
            o = a["outputs"][0]
            k = delta_pos.get(o)
            env[o] = r if k is None else r + deltas[k]
        return env[out_id] if nodes[out_id]["kind"] != "literal" else nodes[out_id]["value"]

    deltas = [np.zeros_like(values[i]) for i in delta_ids]
    consts = list(jaxpr.consts)
    _, vjp_fn = vjp(perturbed, list(flat), consts, deltas)
    g_in, g_const, g_delta = vjp_fn(np.ones((), values[out_id].dtype))
    grads: dict[str, Any] = {}

    def keep(nid: str, g: Any) -> None:
        grads[nid] = np.asarray(g) if values[nid].dtype.kind in "fc" else None

    for nid, g in zip(gattrs["inputs"], g_in):
        keep(nid, g)
    for nid, g in zip(gattrs["constants"], g_const):
        keep(nid, g)
    for nid, g in zip(delta_ids, g_delta):
        keep(nid, g)
    if nodes[out_id]["kind"] == "literal":
        grads[out_id] = np.ones((), values[out_id].dtype)

    # display labels
    labels = {nid: a["label"] for nid, a in nodes.items() if a["kind"] != "op"}
    taken = set(labels.values())
    for nid, lab in zip(gattrs["inputs"], _input_labels(fun, args)):
        if lab is not None and (lab == nid or lab not in taken):
            taken.add(lab)
            labels[nid] = lab
    for old, new in (names or {}).items():
        hits = [nid for nid, lab in labels.items() if old in (nid, lab) and nodes[nid]["kind"] != "literal"]
        if not hits:
            known = ", ".join(lab for n, lab in labels.items() if nodes[n]["kind"] != "literal")
            raise KeyError(f"backprop_graph: names refers to {old!r}, which is not a node "
                           f"(nodes: {known})")
        clash = [nid for nid, lab in labels.items() if lab == new and nid != hits[0]
                 and nodes[nid]["kind"] != "literal"]
        if clash:
            raise ValueError(f"backprop_graph: cannot name {old!r} {new!r}: node {clash[0]!r} "
                             f"is already labelled {new!r}; rename that one too or pick another name")
        labels[hits[0]] = new
    return BackpropGraph(jaxpr, nodes, edges, gattrs, values, grads, labels, in_tree)
