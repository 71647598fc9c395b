"""Export of graphs: networkx, DOT, summaries and the backprop picture.

Oracles: the lecture's hand-computed numbers, a plain-NumPy evaluation of the
exported networkx graph in topological order, the printed listing, central
finite differences on every intermediate, and hand-counted FLOPs/bytes.
"""

import re
import sys

import networkx as nx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad import export
from funcgrad.primitives import registry

# ------------------------------------------------------------------ helpers ---


def walk_eval(G, *args):
    """Evaluate an exported graph by visiting its nodes in topological order (plain NumPy)."""
    env = dict(zip(G.graph["inputs"], args))
    for n in nx.topological_sort(G):
        a = G.nodes[n]
        if a["kind"] in ("constant", "literal"):
            env[n] = a["value"]
        elif a["kind"] == "op":
            assert set(G.predecessors(n)) == set(a["inputs"])
            assert list(G.successors(n)) == a["outputs"]
            vals = [env[i] for i in a["inputs"]]     # KeyError if the order were wrong
            env[a["outputs"][0]] = registry[a["primitive"]].impl(*vals, **a["params"])
        else:
            assert n in env, f"value {n} visited before it was computed"
    return [env[o] for o in G.graph["outputs"]]


def listing_decls(jaxpr):
    """From str(jaxpr): (constvar names, invar names, [(out name, type, primitive)], out atoms)."""
    lines = str(jaxpr).splitlines()
    head = re.match(r"\{ lambda (.*); (.*)\. let$", lines[0])
    decl = lambda s: [tuple(d.split(":")) for d in s.split()]  # noqa: E731
    consts, ins = decl(head.group(1)), decl(head.group(2))
    eqns = []
    for line in lines[1:-1]:
        lhs, rhs = line.strip().split(" = ", 1)
        name, typ = lhs.split(":")
        eqns.append((name, typ, re.match(r"[a-z_]+", rhs).group(0)))
    outs = re.match(r"\s*in \((.*)\) }$", lines[-1]).group(1).rstrip(",").split(", ")
    return consts, ins, eqns, outs


def mlp_loss(params, x):
    (W1, b1), (W2, b2) = params
    h = fnp.tanh(x @ W1 + b1)
    return fnp.sum((h @ W2 + b2) ** 2)


RNG = np.random.default_rng(0)
MLP_PARAMS = ((RNG.normal(size=(3, 5)), RNG.normal(size=5)), (RNG.normal(size=(5, 2)), RNG.normal(size=2)))
MLP_X = RNG.normal(size=(4, 3))
CONST = np.array([0.5, -1.5, 2.0])


def _gather_fn(x, idx):
    return fnp.sum(x[idx] * CONST[:2]) + x[1:].mean()


GRAPH_CASES = {
    "mlp": (mlp_loss, (MLP_PARAMS, MLP_X)),
    "grad_mlp": (fg.grad(mlp_loss), (MLP_PARAMS, MLP_X)),
    "vmap": (fg.vmap(lambda v: fnp.dot(v, CONST) * fnp.exp(v)), (RNG.normal(size=(4, 3)),)),
    "square_and_consts": (lambda x: (x * x + CONST, x, 2.0), (RNG.normal(size=3),)),
    "gather": (_gather_fn, (RNG.normal(size=3), np.array([2, 0]))),
    "float32": (lambda x: fnp.tanh(x) * 3 + x.sum(), (RNG.normal(size=(2, 3)).astype(np.float32),)),
    "hessian": (fg.hessian(lambda x: fnp.sum(fnp.sin(x) * x ** 3)), (RNG.normal(size=3),)),
}


# --------------------------------------------------------------- to_networkx ---

@pytest.mark.parametrize("case", sorted(GRAPH_CASES))
def test_topological_walk_matches_eval_jaxpr(case):
    fun, args = GRAPH_CASES[case]
    jaxpr = fg.make_jaxpr(fun)(*args)
    G = export.to_networkx(jaxpr)
    assert isinstance(G, nx.DiGraph) and nx.is_directed_acyclic_graph(G)
    flat = fg.tree_util.tree_leaves(args)
    want = fg.tree_util.tree_leaves(fg.eval_jaxpr(jaxpr, *args))
    got = walk_eval(G, *flat)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
        assert np.asarray(g).dtype == np.asarray(w).dtype
    # and the graph's own numbers agree with just calling the function
    direct = fg.tree_util.tree_leaves(fun(*args))
    for g, w in zip(got, direct):
        np.testing.assert_allclose(g, w, rtol=1e-6)


@pytest.mark.parametrize("case", sorted(GRAPH_CASES))
def test_nodes_match_the_listing(case):
    fun, args = GRAPH_CASES[case]
    jaxpr = fg.make_jaxpr(fun)(*args)
    G = fg.to_networkx(jaxpr)
    consts, ins, eqns, outs = listing_decls(jaxpr)
    assert G.graph["inputs"] == [n for n, _ in ins]
    assert G.graph["constants"] == [n for n, _ in consts]
    assert G.graph["num_eqns"] == len(eqns) == len(jaxpr.eqns)
    for (name, typ), kind in [(d, "constant") for d in consts] + [(d, "input") for d in ins]:
        a = G.nodes[name]
        assert a["kind"] == kind and a["name"] == a["label"] == name
        assert fg.ShapedArray(a["shape"], a["dtype"]).str_short() == typ
    for k, (name, typ, prim) in enumerate(eqns):
        op = G.nodes[f"eqn{k}"]
        assert op["kind"] == "op" and op["primitive"] == prim and op["index"] == k
        assert op["params"] == jaxpr.eqns[k].params
        assert op["outputs"] == [name]
        a = G.nodes[name]
        assert a["kind"] == "intermediate" and a["producer"] == f"eqn{k}"
        assert fg.ShapedArray(a["shape"], a["dtype"]).str_short() == typ
    # outputs: recorded in order, flagged on the nodes, literals included
    assert len(G.graph["outputs"]) == len(outs)
    for nid, text in zip(G.graph["outputs"], outs):
        a = G.nodes[nid]
        assert a["is_output"]
        assert (a["label"] == text) if a["kind"] != "literal" else (repr(a["value"]) == text)
    flagged = {n for n, a in G.nodes(data=True) if a.get("is_output")}
    assert flagged == set(G.graph["outputs"])
    for _, a in G.nodes(data=True):
        assert a["kind"] in ("input", "constant", "literal", "intermediate", "op")
        if a["kind"] != "op":
            assert isinstance(a["shape"], tuple) and isinstance(a["dtype"], np.dtype)
    n_values = len(jaxpr.invars) + len(jaxpr.constvars) + len(jaxpr.eqns) + sum(
        isinstance(x, fg.ir.Literal) for e in jaxpr.eqns for x in e.inputs) + sum(
        isinstance(x, fg.ir.Literal) for x in jaxpr.outvars)
    assert G.number_of_nodes() == n_values + len(jaxpr.eqns)


def test_repeated_operand_is_one_edge_with_both_positions():
    G = fg.to_networkx(fg.make_jaxpr(lambda x: x * x - x)(np.ones(2)))
    assert G.nodes["eqn0"]["inputs"] == ["a", "a"]
    assert G.edges["a", "eqn0"]["argnums"] == (0, 1)
    assert G.nodes["eqn1"]["inputs"] == ["b", "a"]
    assert G.edges["a", "eqn1"]["argnums"] == (1,)
    assert G.edges["eqn0", "b"]["index"] == 0
    assert G.graph["outputs"] == ["c"] and G.nodes["c"]["is_output"]
    assert not G.nodes["a"]["is_output"] and not G.nodes["b"]["is_output"]


def test_constants_literals_and_dtypes():
    x32 = np.ones(3, np.float32)
    G = fg.to_networkx(fg.make_jaxpr(lambda x: x * CONST.astype(np.float32) + 1)(x32))
    consts = G.graph["constants"]
    assert len(consts) == 1 and G.nodes[consts[0]]["kind"] == "constant"
    np.testing.assert_array_equal(G.nodes[consts[0]]["value"], CONST.astype(np.float32))
    lits = [a for _, a in G.nodes(data=True) if a["kind"] == "literal"]
    assert len(lits) == 1 and lits[0]["value"] == 1 and lits[0]["shape"] == ()
    assert G.nodes["b"]["dtype"] == np.float32 and G.nodes["b"]["position"] == 0
    assert G.nodes[G.graph["outputs"][0]]["dtype"] == np.float32


def test_a_numpy_scalar_literal_keeps_its_dtype_in_the_export():
    # the value stays a NumPy scalar: a graph rerun from the export promotes as the original
    x32 = np.ones(2, np.float32)
    G = fg.to_networkx(fg.make_jaxpr(lambda x: x * np.float64(2.0) + 1)(x32))
    lits = {a["label"]: a for _, a in G.nodes(data=True) if a["kind"] == "literal"}
    assert set(lits) == {"2.0:f64[]", "1"}          # labelled as the listing prints them
    assert type(lits["2.0:f64[]"]["value"]) is np.float64 and type(lits["1"]["value"]) is int
    assert (x32 * lits["2.0:f64[]"]["value"]).dtype == np.float64
    assert "2.0:f64[]" in fg.to_dot(fg.make_jaxpr(lambda x: x * np.float64(2.0))(x32))


def test_networkx_analysis_longest_path_and_counts():
    G = fg.to_networkx(fg.make_jaxpr(mlp_loss)(MLP_PARAMS, MLP_X))
    path = nx.dag_longest_path(G)
    ops = [G.nodes[n]["primitive"] for n in path if G.nodes[n]["kind"] == "op"]
    assert ops == ["matmul", "add", "tanh", "matmul", "add", "pow", "reduce_sum"]
    counts = {}
    for _, a in G.nodes(data=True):
        if a["kind"] == "op":
            counts[a["primitive"]] = counts.get(a["primitive"], 0) + 1
    assert counts == {"matmul": 2, "add": 2, "tanh": 1, "pow": 1, "reduce_sum": 1}


def test_rejects_functions_and_junk():
    with pytest.raises(TypeError, match="make_jaxpr"):
        fg.to_networkx(lambda x: x)
    with pytest.raises(TypeError, match="graph"):
        fg.to_dot(3)
    with pytest.raises(TypeError, match="graph"):
        fg.graph_summary("not a graph")


_UNARY = {"sin": fnp.sin, "tanh": fnp.tanh, "neg": lambda x: -x, "exp_tanh": lambda x: fnp.exp(fnp.tanh(x)),
          "sum0": lambda x: fnp.sum(x, axis=0, keepdims=True) + x, "T": lambda x: x.T}
_BINARY = {"add": lambda x, y: x + y, "mul": lambda x, y: x * y, "sub": lambda x, y: x - y,
           "max": fnp.maximum, "matmul": lambda x, y: x @ y / 3,
           "where": lambda x, y: fnp.where(x > y, x, 2.0)}
_program = st.lists(st.tuples(st.sampled_from(sorted(_UNARY) + sorted(_BINARY)),
                              st.integers(0, 10**6), st.integers(0, 10**6)), min_size=1, max_size=12)


@given(_program)
def test_random_programs_walk_equals_eval(prog):
    def fun(x, y):
        pool = [x, y, CONST[:, None] * np.ones((1, 3))]
        for op, i, j in prog:
            a, b = pool[i % len(pool)], pool[j % len(pool)]
            pool.append(_UNARY[op](a) if op in _UNARY else _BINARY[op](a, b))
        return pool[-1], pool[len(pool) // 2]
    args = (RNG.normal(size=(3, 3)), RNG.normal(size=(3, 3)))
    jaxpr = fg.make_jaxpr(fun)(*args)
    got = walk_eval(fg.to_networkx(jaxpr), *args)
    for g, w in zip(got, fg.eval_jaxpr(jaxpr, *args)):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
    text = fg.to_dot(jaxpr)
    nodes, edges = parse_dot(text)
    assert len(nodes) == fg.to_networkx(jaxpr).number_of_nodes()


def _low_recursion_limit():
    depth, f = 0, sys._getframe()
    while f is not None:
        depth, f = depth + 1, f.f_back
    return depth + 60


def test_ten_thousand_equation_chain_exports():
    def chain(x):
        for i in range(10_000):
            x = fnp.sin(x) if i % 2 else x * 1.0001
        return x
    jaxpr = fg.make_jaxpr(chain)(np.ones(3))
    assert len(jaxpr.eqns) == 10_000
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(_low_recursion_limit())    # proves the export code does not recurse
    try:
        G = fg.to_networkx(jaxpr)
        text = fg.to_dot(jaxpr)
        summary = fg.graph_summary(jaxpr)
        order = list(nx.topological_sort(G))
    finally:
        sys.setrecursionlimit(old)
    assert G.number_of_nodes() == 1 + 2 * 10_000 + 5000      # input, eqns, results, literals
    assert len(order) == G.number_of_nodes() and order[0] in ("a", "lit0")
    assert G.graph["outputs"] == [order[-1]]
    assert text.count(" -> ") == G.number_of_edges()
    assert summary["num_eqns"] == 10_000 and summary["op_counts"] == {"mul": 5000, "sin": 5000}
    assert summary["flops"] == 30_000
    assert summary["peak_intermediate_bytes"] == 2 * 3 * 8
    np.testing.assert_allclose(walk_eval(G, np.ones(3))[0], chain(np.ones(3)))


# --------------------------------------------------------------------- DOT ---

_ATTR = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_dot(text):
    lines = text.strip().splitlines()
    assert re.match(r'digraph "[^"]*" \{$', lines[0]) and lines[-1] == "}"
    nodes, edges = {}, []
    for line in lines[1:-1]:
        m = re.match(r'\s*"([^"]+)" -> "([^"]+)"(?: \[(.*)\])?;$', line)
        if m:
            edges.append((m.group(1), m.group(2), dict(_ATTR.findall(m.group(3) or ""))))
            continue
        m = re.match(r'\s*"([^"]+)" \[(.*)\];$', line)
        if m:
            nodes[m.group(1)] = dict(_ATTR.findall(m.group(2)))
            continue
        assert re.match(r'\s*(\w+="[^"]*";|(node|edge) \[.*\];)$', line), line
    for u, v, _ in edges:
        assert u in nodes and v in nodes, (u, v)
    return nodes, edges


def test_dot_structure_matches_the_graph():
    jaxpr = fg.make_jaxpr(lambda x, W: (fnp.einsum("ij,jk->ik", x, W) * x.sum(), x))(
        np.ones((2, 3)), np.ones((3, 3)))
    G = fg.to_networkx(jaxpr)
    nodes, edges = parse_dot(fg.to_dot(jaxpr))
    assert set(nodes) == set(G.nodes)
    assert {(u, v) for u, v, _ in edges} == set(G.edges)
    for n, attrs in nodes.items():
        kind = G.nodes[n]["kind"]
        assert attrs["shape"] == {"op": "box", "literal": "plaintext"}.get(kind, "ellipse")
        assert (attrs.get("peripheries") == "2") == G.nodes[n].get("is_output", False)
    ein = next(n for n in G if G.nodes[n].get("primitive") == "einsum")
    assert nodes[ein]["label"] == "einsum\\nspec='ij,jk->ik'"
    red = next(n for n in G if G.nodes[n].get("primitive") == "reduce_sum")
    assert "axes=(0, 1)" in nodes[red]["label"]
    assert nodes["a"]["label"] == "a: f64[2,3]" and nodes["b"]["label"] == "b: f64[3,3]"
    assert fg.to_dot(jaxpr, rankdir="LR").count('rankdir="LR"') == 1


def test_dot_argument_positions_and_escaping():
    text = fg.to_dot(fg.make_jaxpr(lambda x, y: (x * x) / y - 1)(1.0, 2.0))
    _, edges = parse_dot(text)
    lab = {(u, v): a.get("label") for u, v, a in edges}
    assert lab[("a", "eqn0")] == "0,1"          # mul a a: both positions on one edge
    assert lab[("c", "eqn1")] == "0" and lab[("b", "eqn1")] == "1"   # div: order matters
    assert export._q('say "hi"\\\n') == '"say \\"hi\\"\\\\\\n"'


# ----------------------------------------------------------------- summary ---

def test_summary_of_small_mlp_by_hand():
    s = fg.graph_summary(fg.make_jaxpr(mlp_loss)(MLP_PARAMS, MLP_X))
    # x (4,3) @ W1 (3,5): 2*4*3*5 = 120; +b1, tanh: 20 each; h @ W2 (5,2): 2*4*5*2 = 80;
    # +b2, **2: 8 each; sum over 8 elements: 8
    assert s["num_eqns"] == 7
    assert s["op_counts"] == {"add": 2, "matmul": 2, "pow": 1, "reduce_sum": 1, "tanh": 1}
    assert list(s["op_counts"])[:2] == ["add", "matmul"]
    assert s["flops_by_primitive"] == {"add": 28, "matmul": 200, "pow": 8, "reduce_sum": 8, "tanh": 20}
    assert s["flops"] == 264
    assert s["param_count"] == s["float_param_count"] == 15 + 5 + 10 + 2 + 12
    assert s["num_inputs"] == 5 and s["num_consts"] == 0 and s["const_count"] == 0
    assert s["input_bytes"] == 44 * 8 and s["output_bytes"] == 8
    # live intermediates peak while the bias add runs: x@W1 (20) and its sum (20) elements
    assert s["peak_intermediate_bytes"] == 40 * 8
    assert s["peak_memory_bytes"] == 44 * 8 + 40 * 8
    text = str(s)
    assert "FLOPs (estimate)   264" in text and "matmul" in text and "672 B" in text
    assert isinstance(s, dict)


def test_summary_flop_rules():
    def flops(f, *args):
        return fg.graph_summary(fg.make_jaxpr(f)(*args))["flops"]
    A, B = np.ones((2, 3)), np.ones((3, 4))
    assert flops(lambda a, b: fnp.einsum("ij,jk->ik", a, b), A, B) == 2 * 2 * 3 * 4
    assert flops(lambda a: fnp.einsum("ii->", a), np.ones((3, 3))) == 3   # one index, one operand
    assert flops(lambda a, b: a @ b, np.ones((5, 2, 3)), B) == 2 * 5 * 2 * 3 * 4
    assert flops(lambda a, v: a @ v, A, np.ones(3)) == 2 * 2 * 3
    assert flops(lambda v, w: v @ w, np.ones(3), np.ones(3)) == 2 * 3
    assert flops(lambda a: fnp.max(a, axis=1), A) == 6
    assert flops(lambda a: a.T.reshape(6), A) == 0
    assert flops(lambda a: a.astype(np.float32), A) == 0
    assert export.eqn_flops("scatter", {"mode": "add"}, [(5,), (2,)], (5,)) == 2
    assert export.eqn_flops("scatter", {"mode": "set"}, [(5,), (2,)], (5,)) == 0


def test_summary_liveness_and_int_inputs():
    x = np.ones(10)

    def keep_first(x):
        a = fnp.exp(x)
        return a, fnp.cos(fnp.sin(a))

    def drop_first(x):
        return fnp.cos(fnp.sin(fnp.exp(x)))

    # exp, sin, cos of 10 float64 = 80 bytes each
    assert fg.graph_summary(fg.make_jaxpr(keep_first)(x))["peak_intermediate_bytes"] == 240
    assert fg.graph_summary(fg.make_jaxpr(drop_first)(x))["peak_intermediate_bytes"] == 160
    dead = fg.graph_summary(fg.make_jaxpr(lambda x: (fnp.exp(x), x + 1)[1])(x))
    assert dead["peak_intermediate_bytes"] == 80 and dead["num_eqns"] == 2
    s = fg.graph_summary(fg.make_jaxpr(lambda x, i: x[i] * CONST)(x, np.array([1, 2, 3])))
    assert s["param_count"] == 13 and s["float_param_count"] == 10
    assert s["input_bytes"] == 80 + 3 * np.dtype(np.int64).itemsize + 3 * 8   # inputs + constant
    assert s["num_consts"] == 1 and s["const_count"] == 3


# -------------------------------------------------------- backprop picture ---

def test_backprop_picture_of_the_lecture_example():
    f = lambda x, y, z: (x + y) * z  # noqa: E731
    bg = fg.backprop_graph(f, -2.0, 5.0, -4.0, names={"d": "q", "e": "f"})
    expect = {"x": (-2, -4), "y": (5, -4), "z": (-4, 3), "q": (3, -4), "f": (-12, 1)}
    for label, (value, grad) in expect.items():
        n = bg[label]
        assert n.value == value and n.grad == grad, (label, n)
    assert bg.value == -12 and bg.output is bg["f"] and bg["q"] is bg["d"]
    assert [float(g) for g in bg.grads] == [-4.0, -4.0, 3.0]
    dot = bg.to_dot()
    for text in ["x = -2.00 / grad -4.00", "y = 5.00 / grad -4.00", "z = -4.00 / grad 3.00",
                 "q = 3.00 / grad -4.00", "f = -12.00 / grad 1.00"]:
        assert f'label="{text}"' in dot
    nodes, edges = parse_dot(dot)
    assert {nodes[v]["label"] for u, v, _ in edges if nodes[u]["label"].startswith("q =")} == {"*"}
    G = bg.to_networkx()
    assert G.nodes["d"]["value"] == 3 and G.nodes["d"]["grad"] == -4 and G.nodes["d"]["label"] == "q"
    assert G.nodes["eqn0"]["primitive"] == "add"
    table = str(bg)
    assert re.search(r"^q\s+add x y\s+3\.00\s+-4\.00$", table, re.M)
    assert re.search(r"^f \(out\)\s+mul q z\s+-12\.00\s+1\.00$", table, re.M)


def _logistic(w0, x0, w1, x1, w2):
    return 1.0 / (1.0 + fnp.exp(-(w0 * x0 + w1 * x1 + w2)))


def test_backprop_picture_of_logistic_regression_slide():
    bg = fg.backprop_graph(_logistic, 2.0, -1.0, -3.0, -2.0, -3.0)
    fmt = lambda v: export.format_value(v)  # noqa: E731
    # inputs: value and gradient exactly as on the slide
    slide = {"w0": ("2.00", "-0.20"), "x0": ("-1.00", "0.39"), "w1": ("-3.00", "-0.39"),
             "x1": ("-2.00", "-0.59"), "w2": ("-3.00", "0.20")}
    for label, (v, g) in slide.items():
        assert (fmt(bg[label].value), fmt(bg[label].grad)) == (v, g), label
    # the chain of intermediates: w0*x0, w1*x1, sum, +w2, negate, exp, +1, 1/x
    chain = [(n.value, n.grad) for n in bg if n.kind == "intermediate"]
    assert [(fmt(v), fmt(g)) for v, g in chain] == [
        ("-2.00", "0.20"), ("6.00", "0.20"), ("4.00", "0.20"), ("1.00", "0.20"), ("-1.00", "-0.20"),
        ("0.37", "-0.53"), ("1.37", "-0.53"), ("0.73", "1.00")]
    s = 1 / (1 + np.exp(-1.0))
    np.testing.assert_allclose(bg.value, s)
    np.testing.assert_allclose(bg["w2"].grad, s * (1 - s))           # the sigmoid shortcut
    np.testing.assert_allclose(bg.grads, fg.grad(_logistic, argnums=(0, 1, 2, 3, 4))(
        2.0, -1.0, -3.0, -2.0, -3.0))
    assert "0.73 / grad 1.00" in bg.to_dot()


def test_backprop_picture_with_vector_weights():
    def f(w, x):
        return 1.0 / (1.0 + fnp.exp(-(w[0] * x[0] + w[1] * x[1] + w[2])))
    bg = fg.backprop_graph(f, np.array([2.0, -3.0, -3.0]), np.array([-1.0, -2.0]))
    assert export.format_value(bg["w"].grad) == "[-0.20, -0.39, 0.20]"
    assert export.format_value(bg["x"].grad) == "[0.39, -0.59]"
    assert export.format_value(bg.value) == "0.73"
    assert "w = [2.00, -3.00, -3.00] / grad [-0.20, -0.39, 0.20]" in bg.to_dot()
    dw, dx = fg.grad(f, argnums=(0, 1))(np.array([2.0, -3.0, -3.0]), np.array([-1.0, -2.0]))
    np.testing.assert_allclose(bg.grads[0], dw)
    np.testing.assert_allclose(bg.grads[1], dx)


def _fd_node_grads(jaxpr, flat, eps=1e-6):
    """d out / d (each intermediate), by central differences in a plain-NumPy evaluator."""
    def run(k=None, idx=None, h=0.0):
        env = dict(zip(map(id, jaxpr.constvars), jaxpr.consts))
        env.update(zip(map(id, jaxpr.invars), flat))
        for i, e in enumerate(jaxpr.eqns):
            vals = [x.val if isinstance(x, fg.ir.Literal) else env[id(x)] for x in e.inputs]
            out = np.array(e.primitive.impl(*vals, **e.params), dtype=float)
            if i == k:
                out[idx] += h
            env[id(e.outputs[0])] = out
        return float(env[id(jaxpr.outvars[0])])
    grads = []
    for k, e in enumerate(jaxpr.eqns):
        g = np.zeros(e.outputs[0].aval.shape)
        for idx in np.ndindex(g.shape):
            g[idx] = (run(k, idx, eps) - run(k, idx, -eps)) / (2 * eps)
        grads.append(g)
    return grads


def test_backprop_intermediate_grads_match_finite_differences():
    (W1, b1), (W2, b2) = MLP_PARAMS
    params, x = ((W1[:, :3], b1[:3]), (W2[:3], b2)), MLP_X[:2]
    bg = fg.backprop_graph(lambda p, x: mlp_loss(p, x) / 10, params, x)
    G = bg.to_networkx()
    fd = _fd_node_grads(bg.jaxpr, fg.tree_util.tree_leaves((params, x)))
    for k, g in enumerate(fd):
        nid = G.nodes[f"eqn{k}"]["outputs"][0]
        np.testing.assert_allclose(bg.nodes[nid].grad, g, rtol=1e-5, atol=1e-6)
        assert bg.nodes[nid].grad.shape == bg.nodes[nid].value.shape
    want = fg.grad(lambda p, x: mlp_loss(p, x) / 10, argnums=(0, 1))(params, x)
    for a, b in zip(fg.tree_util.tree_leaves(bg.grads), fg.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, b)
    assert bg["a"].kind == "input" and bg["a"].label == "a"   # nested pytrees keep listing names
    assert bg["x"].kind == "input"


def test_backprop_constants_literals_and_int_inputs():
    def f(x, i):
        return fnp.sum(x[i] * CONST[:2]) * 2.0
    bg = fg.backprop_graph(f, np.array([1.0, 2.0, 3.0]), np.array([2, 0]))
    (const,) = [n for n in bg if n.kind == "constant"]
    np.testing.assert_array_equal(const.value, CONST[:2])
    np.testing.assert_allclose(const.grad, [2 * 3.0, 2 * 1.0])      # d/dc of 2 * sum(x[i] * c)
    assert bg["i"].grad is None and bg["i"].value.dtype.kind == "i"
    np.testing.assert_allclose(bg["x"].grad, [2 * CONST[1], 0, 2 * CONST[0]])
    lit = [n for n in bg if n.kind == "literal"]
    assert lit and all(n.grad is None for n in lit)
    x32 = fg.backprop_graph(lambda x: fnp.sum(fnp.tanh(x)), np.ones(2, np.float32))
    assert x32["x"].grad.dtype == np.float32 and x32.value.dtype == np.float32


def test_backprop_errors():
    with pytest.raises(TypeError, match="scalar"):
        fg.backprop_graph(lambda x: x * 2, np.ones(3))
    with pytest.raises(TypeError, match="scalar"):
        fg.backprop_graph(lambda x: (x, x), 1.0)
    with pytest.raises(KeyError, match="nope"):
        fg.backprop_graph(lambda x: x * 2, 1.0, names={"nope": "q"})
    bg = fg.backprop_graph(lambda x: x * 2, 1.0)
    with pytest.raises(KeyError):
        bg["zz"]
    with pytest.raises(ValueError, match="already labelled"):
        fg.backprop_graph(lambda x, y: x * y + 1, 1.0, 2.0, names={"c": "x"})
    const = fg.backprop_graph(lambda x: 2.0, 1.0)
    assert const.value == 2.0 and const["x"].grad == 0 and "2.00" in str(const).splitlines()[-1]
    swapped = fg.backprop_graph(lambda x, y: x * y + 1, 1.0, 2.0, names={"c": "p", "d": "c"})
    assert swapped["p"].value == 2 and swapped["c"].value == 3 and swapped["c"].is_output


def test_backprop_save(tmp_path, monkeypatch):
    bg = fg.backprop_graph(lambda x, y, z: (x + y) * z, -2.0, 5.0, -4.0, names={"d": "q"})
    written = bg.save(tmp_path / "pic.svg")
    assert written[0] == tmp_path / "pic.dot"
    assert (tmp_path / "pic.dot").read_text() == bg.to_dot()
    if export._dot_program() or export._have_matplotlib():
        assert tmp_path / "pic.svg" in written
        assert (tmp_path / "pic.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    # neither Graphviz nor matplotlib: the .dot only, no error
    monkeypatch.setattr(export, "_dot_program", lambda: None)
    monkeypatch.setattr(export, "_have_matplotlib", lambda: False)
    assert bg.save(tmp_path / "bare") == [tmp_path / "bare.dot"]
    assert not (tmp_path / "bare.svg").exists()


@pytest.mark.skipif(not export._have_matplotlib(), reason="matplotlib not installed")
def test_backprop_save_png_with_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "_dot_program", lambda: None)
    bg = fg.backprop_graph(_logistic, 2.0, -1.0, -3.0, -2.0, -3.0)
    written = bg.save(tmp_path / "lr.png")
    assert written == [tmp_path / "lr.dot", tmp_path / "lr.png"]
    assert (tmp_path / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
