"""Pytrees: round trips for every container kind, tree_map over several trees, deep nesting."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, defaultdict, namedtuple
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad import tree_util as tu

Point = namedtuple("Point", ["x", "y"])
Other = namedtuple("Other", ["x", "y"])


class Box:
    """A user class registered with register_pytree_node (aux data: a label)."""

    def __init__(self, a: Any, b: Any, label: str = "box"):
        self.a, self.b, self.label = a, b, label

    def __eq__(self, other: object) -> bool:
        return (type(other) is Box and self.label == other.label
                and _same(self.a, other.a) and _same(self.b, other.b))


tu.register_pytree_node(Box, lambda box: ((box.a, box.b), box.label),
                        lambda label, children: Box(*children, label=label))


@tu.register_dataclass
@dataclasses.dataclass
class Params:
    w: Any
    b: Any
    name: str = dataclasses.field(default="layer", metadata={"static": True})


def _same(a: Any, b: Any) -> bool:
    """Structural equality that also compares array leaves by value."""
    la, da = tu.tree_flatten(a)
    lb, db = tu.tree_flatten(b)
    return da == db and all(type(x) is type(y) and np.array_equal(x, y) for x, y in zip(la, lb))


# ---------------------------------------------------------------- strategies ---

leaves = st.one_of(st.integers(-5, 5), st.floats(-3, 3, allow_nan=False),
                   st.builds(lambda n: np.arange(float(n)), st.integers(0, 3)))
keys = st.text("abcdefgh", min_size=1, max_size=3)


def _extend(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.tuples(children, children), st.lists(children, max_size=3),
        st.dictionaries(keys, children, max_size=3), st.just(None),
        st.builds(Point, children, children), st.builds(Box, children, children, st.sampled_from("pq")),
        st.builds(Params, children, children, st.sampled_from(["u", "v"])))


trees = st.recursive(leaves, _extend, max_leaves=12)


# --------------------------------------------------------------- round trips ---

@given(trees)
def test_round_trip(tree):
    leaves_, treedef = tu.tree_flatten(tree)
    assert treedef.num_leaves == len(leaves_)
    back = tu.tree_unflatten(treedef, leaves_)
    assert _same(back, tree)
    assert type(back) is type(tree)
    assert tu.tree_structure(back) == treedef
    assert hash(tu.tree_structure(back)) == hash(treedef)
    assert tu.tree_leaves(tree) == leaves_ or all(x is y for x, y in zip(tu.tree_leaves(tree), leaves_))


@given(trees)
def test_plain_fast_path_agrees_with_the_general_flatten(tree):
    """Plain trees take a cached path keyed by their layout; it must give the same
    leaves and structure as the general (building) path, for every tree."""
    leaves_, treedef = tu.tree_flatten(tree)
    gen_leaves, gen_def = tu._flatten_general(tree, None)
    assert treedef == gen_def and len(leaves_) == len(gen_leaves)
    assert all(x is y for x, y in zip(leaves_, gen_leaves))


def test_dict_keys_that_compare_equal_keep_their_own_types():
    x = np.ones(2)
    for d in ({1: x}, {1.0: x}, {True: x}, {"1": x}):
        back = tu.tree_unflatten(*reversed(tu.tree_flatten(d)))
        assert [type(k) for k in back] == [type(k) for k in d]


@given(trees)
def test_tree_map_identity_and_relabel(tree):
    counter = iter(range(10_000))
    numbered = tu.tree_map(lambda _: next(counter), tree)
    assert tu.tree_structure(numbered) == tu.tree_structure(tree)
    assert tu.tree_leaves(numbered) == list(range(len(tu.tree_leaves(tree))))


def test_containers_each():
    a, b, c = np.ones(2), 2.0, 3
    cases = [(a, b), [a, b, c], {"y": a, "x": b}, None, Point(a, b), Box(a, [b, c], "lbl"),
             Params(a, b, "dense"), ((), [], {}), [None, (None,)]]
    for tree in cases:
        leaves_, treedef = tu.tree_flatten(tree)
        assert _same(tu.tree_unflatten(treedef, leaves_), tree)


def test_dict_keys_sorted_like_jax():
    tree = {"b": 1, "a": 2, "c": {"z": 3, "y": 4}}
    leaves_, treedef = tu.tree_flatten(tree)
    assert leaves_ == [2, 1, 4, 3]
    back = tu.tree_unflatten(treedef, ["A", "B", "Y", "Z"])
    assert back == {"a": "A", "b": "B", "c": {"y": "Y", "z": "Z"}}
    assert list(back) == ["a", "b", "c"]          # rebuilt in sorted order, as JAX does
    # insertion order does not matter for the structure
    assert tu.tree_structure({"a": 1, "b": 2}) == tu.tree_structure({"b": 1, "a": 2})
    assert str(treedef) == "PyTreeDef({'a': *, 'b': *, 'c': {'y': *, 'z': *}})"


def test_unsortable_dict_keys_rejected():
    with pytest.raises(TypeError, match="sortable"):
        tu.tree_flatten({1: "x", "a": "y"})


def test_none_is_an_empty_node():
    assert tu.tree_leaves(None) == []
    assert tu.tree_leaves([None, 1, (None, 2)]) == [1, 2]
    assert tu.tree_map(lambda x: x + 1, [None, 1]) == [None, 2]
    assert tu.tree_structure(None) != tu.tree_structure(())
    assert str(tu.tree_structure([None, (1,)])) == "PyTreeDef([None, (*,)])"


def test_structures_distinguish_container_types():
    s = tu.tree_structure
    assert s((1, 2)) != s([1, 2])
    assert s(Point(1, 2)) != s((1, 2))
    assert s(Point(1, 2)) != s(Other(1, 2))
    assert s(Box(1, 2, "p")) != s(Box(1, 2, "q"))              # aux data is part of the structure
    assert s(Params(1, 2, "u")) != s(Params(1, 2, "v"))        # static dataclass field likewise
    assert s({"a": 1}) != s({"b": 1})
    assert s([1, [2]]) != s([1, 2])
    assert tu.treedef_is_leaf(s(1.0)) and not tu.treedef_is_leaf(s([1.0]))


def test_namedtuple_and_registered_classes_rebuild():
    p = tu.tree_map(lambda v: v * 10, Point(1, 2))
    assert type(p) is Point and p == Point(10, 20)
    box = tu.tree_map(lambda v: v + 1, Box(1, (2, 3), "k"))
    assert isinstance(box, Box) and box.label == "k" and box.a == 2 and box.b == (3, 4)
    prm = tu.tree_map(lambda v: -v, Params(np.ones(2), 1.0, "out"))
    assert isinstance(prm, Params) and prm.name == "out" and prm.b == -1.0
    assert tu.tree_leaves(Params(1, 2, "out")) == [1, 2]


def test_register_dataclass_explicit_fields():
    @dataclasses.dataclass
    class Layer:
        w: Any
        act: str

    tu.register_dataclass(Layer, data_fields=["w"], meta_fields=["act"])
    leaves_, treedef = tu.tree_flatten(Layer(np.ones(3), "relu"))
    assert len(leaves_) == 1
    back = tu.tree_unflatten(treedef, [np.zeros(3)])
    assert back.act == "relu" and np.array_equal(back.w, np.zeros(3))


def test_register_twice_rejected():
    class C:
        pass

    tu.register_pytree_node(C, lambda c: ((), None), lambda aux, ch: C())
    with pytest.raises(ValueError, match="already registered"):
        tu.register_pytree_node(C, lambda c: ((), None), lambda aux, ch: C())
    with pytest.raises(ValueError):
        tu.register_pytree_node(list, lambda c: ((), None), lambda aux, ch: [])


def test_registered_node_inside_transformations():
    def loss(box):
        return fnp.sum(box.a * box.b)

    g = fg.grad(loss)(Box(np.array([1.0, 2.0]), np.array([3.0, 4.0]), "t"))
    assert isinstance(g, Box) and g.label == "t"
    np.testing.assert_allclose(g.a, [3.0, 4.0])
    np.testing.assert_allclose(g.b, [1.0, 2.0])


# ------------------------------------------------------------------ tree_map ---

def test_tree_map_several_trees():
    t1 = {"a": [1, 2], "b": (3, None)}
    t2 = {"b": (30, None), "a": [10, 20]}
    t3 = {"a": [100, 200], "b": (300, None)}
    assert tu.tree_map(lambda x, y, z: x + y + z, t1, t2, t3) == {"a": [111, 222], "b": (333, None)}


def test_tree_map_later_trees_may_extend_the_first():
    # as in JAX: a leaf of the first tree faces a whole subtree of the others
    out = tu.tree_map(lambda x, y: (x, y), [1, 2], [(3, 4), {"k": 5}])
    assert out == [(1, (3, 4)), (2, {"k": 5})]


@pytest.mark.parametrize("first, other", [
    ([1, 2], [1, 2, 3]),             # more children
    ([1, 2], (1, 2)),                # tuple vs list
    ([1, [2]], [1, {"a": 2}]),       # dict where the first has a list
    ([1, [2]], [1, 2]),              # leaf where the first has a container
    ({"a": 1}, {"a": 1, "b": 2}),
], ids=["length", "type", "inner_type", "leaf_for_node", "keys"])
def test_tree_map_mismatch(first, other):
    with pytest.raises(ValueError, match="different structures"):
        tu.tree_map(lambda *xs: xs[0], first, other)


def test_tree_map_mismatch_names_both_structures():
    with pytest.raises(ValueError) as info:
        tu.tree_map(lambda x, y: x, {"a": 1}, {"b": 1})
    assert "{'a': *}" in str(info.value) and "{'b': *}" in str(info.value)
    with pytest.raises(ValueError):
        tu.tree_map(lambda x, y: x, [1, None], [1, 2])    # None is a node, not a leaf
    with pytest.raises(ValueError):
        tu.tree_map(lambda x, y: x, Point(1, 2), Other(1, 2))


def test_is_leaf():
    tree = [(1, 2), (3, 4)]
    assert tu.tree_leaves(tree, is_leaf=lambda x: isinstance(x, tuple)) == [(1, 2), (3, 4)]
    out = tu.tree_map(lambda t: sum(t), tree, is_leaf=lambda x: isinstance(x, tuple))
    assert out == [3, 7]


def test_unflatten_wrong_leaf_count():
    treedef = tu.tree_structure([1, (2, 3)])
    with pytest.raises(ValueError, match="needs 3 leaves"):
        tu.tree_unflatten(treedef, [1, 2])


def test_treedef_unflatten_method_and_hash_as_dict_key():
    treedef = tu.tree_structure({"w": 1, "b": (2, 3)})
    assert treedef.unflatten([1, 2, 3]) == {"b": (1, 2), "w": 3}
    cache = {treedef: "hit"}
    assert cache[tu.tree_structure({"b": (0, 0), "w": 0})] == "hit"


# ------------------------------------------------------------ deep nesting ---

DEPTH = 10_000


@pytest.mark.parametrize("wrap", [
    lambda t: [t], lambda t: (t, 1.0), lambda t: {"k": t, "a": 2.0}, lambda t: Point(t, 0.5),
    lambda t: Box(t, 1.0, "d"),
], ids=["list", "tuple", "dict", "namedtuple", "registered"])
def test_deep_nesting(wrap):
    def build() -> Any:
        t: Any = 0.0
        for _ in range(DEPTH):
            t = wrap(t)
        return t

    tree, twin = build(), build()
    leaves_, treedef = tu.tree_flatten(tree)
    assert treedef == tu.tree_structure(twin)
    assert hash(treedef) == hash(tu.tree_structure(twin))
    assert repr(treedef).count("(") + repr(treedef).count("[") + repr(treedef).count("{") >= DEPTH
    back = tu.tree_unflatten(treedef, leaves_)
    assert tu.tree_structure(back) == treedef
    doubled = tu.tree_map(lambda a, b: a + b, tree, twin)
    assert tu.tree_leaves(doubled) == [2 * x for x in leaves_]
    # a different leaf deep down still compares unequal without recursion
    other = tu.tree_structure(tu.tree_unflatten(treedef, leaves_[:-1] + [[0.0, 0.0]]))
    assert other != treedef
    with_none = tu.tree_unflatten(treedef, leaves_[:-1] + [None])
    with pytest.raises(ValueError):            # None is an empty node where twin has a leaf
        tu.tree_map(lambda a, b: a, with_none, twin)
    faced_none = tu.tree_map(lambda a, b: b is None, twin, with_none)   # a leaf may face None
    assert tu.tree_leaves(faced_none)[-1] is True


@pytest.mark.parametrize("make", [
    lambda: (lambda l: (l.append(l), l)[1])([1.0]),
    lambda: (lambda d: (d.__setitem__("b", [d]), d)[1])({"a": 1.0}),
    lambda: (lambda l: (l.append((2.0, {"k": l})), l)[1])([1.0]),
], ids=["list", "dict", "through-a-tuple"])
def test_a_cyclic_tree_raises_instead_of_hanging(make):
    tree = make()
    with pytest.raises(ValueError, match="contains itself"):
        tu.tree_flatten(tree)
    with pytest.raises(ValueError, match="contains itself"):
        fg.jit(lambda t: 1.0)(tree)


def test_shared_subtrees_are_not_cycles():
    a = [1.0, 2.0]
    leaves, d = tu.tree_flatten([a, a, (a, {"x": a})])
    assert leaves == [1.0, 2.0] * 4 and d.num_leaves == 8


# ------------------------------------------------ OrderedDict and defaultdict ---

def test_ordered_dict_is_a_node_keeping_insertion_order():
    od = OrderedDict(b=1.0, a=2.0)
    leaves_, treedef = tu.tree_flatten(od)
    assert leaves_ == [1.0, 2.0]                       # insertion order, not sorted (as JAX)
    assert repr(treedef) == "PyTreeDef(OrderedDict({'b': *, 'a': *}))"
    back = tu.tree_unflatten(treedef, [3.0, 4.0])
    assert type(back) is OrderedDict and list(back.items()) == [("b", 3.0), ("a", 4.0)]
    # the key order is part of the structure; an OrderedDict is not a dict
    assert treedef != tu.tree_structure(OrderedDict(a=2.0, b=1.0))
    assert treedef != tu.tree_structure({"b": 1.0, "a": 2.0})
    assert treedef == tu.tree_structure(OrderedDict(b=np.ones(2), a=0))
    with pytest.raises(ValueError, match="different structures"):
        tu.tree_map(lambda x, y: x, od, OrderedDict(a=1.0, b=2.0))
    with pytest.raises(ValueError, match="different structures"):
        tu.tree_map(lambda x, y: x, {"a": 1.0, "b": 2.0}, OrderedDict(a=1.0, b=2.0))
    assert tu.tree_map(lambda x, y: x + y, od, od) == OrderedDict(b=2.0, a=4.0)


def test_defaultdict_flattens_like_a_dict_and_keeps_its_factory():
    dd = defaultdict(list, {"b": 1.0, "a": 2.0})
    leaves_, treedef = tu.tree_flatten(dd)
    assert leaves_ == [2.0, 1.0]                       # sorted keys, like dict
    assert repr(treedef) == "PyTreeDef(defaultdict(<class 'list'>, {'a': *, 'b': *}))"
    back = tu.tree_unflatten(treedef, [3.0, 4.0])
    assert type(back) is defaultdict and back.default_factory is list
    assert dict(back) == {"a": 3.0, "b": 4.0}
    assert back["missing"] == []
    assert treedef != tu.tree_structure({"a": 1.0, "b": 2.0})
    assert treedef != tu.tree_structure(defaultdict(int, {"a": 1.0, "b": 2.0}))
    nested = {"opt": defaultdict(float, {"m": (1.0, 2.0)}), "od": OrderedDict(z=[3.0], y=None)}
    leaves_, treedef = tu.tree_flatten(nested)
    assert leaves_ == [3.0, 1.0, 2.0]
    assert _same(tu.tree_unflatten(treedef, leaves_), nested)


def test_ordered_dict_numeric_keys_rebuild_with_their_own_type():
    one = tu.tree_unflatten(tu.tree_structure(OrderedDict({1: 0.0})), [5.0])
    one_f = tu.tree_unflatten(tu.tree_structure(OrderedDict({1.0: 0.0})), [5.0])
    assert type(next(iter(one))) is int and type(next(iter(one_f))) is float


@pytest.mark.parametrize("make", [
    lambda w, b: OrderedDict(w=w, b=b),
    lambda w, b: defaultdict(float, {"w": w, "b": b}),
], ids=["OrderedDict", "defaultdict"])
def test_ordered_and_default_dicts_in_transformations(make):
    params = make(np.array([1.0, 2.0]), np.array(3.0))

    def loss(p):
        return fnp.sum(p["w"] * p["b"])

    order = list(params) if isinstance(params, OrderedDict) else sorted(params)  # as rebuilt
    g = fg.grad(loss)(params)
    assert type(g) is type(params) and list(g) == order
    np.testing.assert_allclose(g["w"], [3.0, 3.0])
    np.testing.assert_allclose(g["b"], 3.0)
    if isinstance(params, defaultdict):
        assert g.default_factory is float
    assert float(fg.jit(loss)(params)) == 9.0
    out = fg.jit(lambda p: tu.tree_map(lambda v: v * 2, p))(params)
    assert type(out) is type(params) and list(out) == order
    batch = make(np.ones((4, 2)), np.arange(4.0))
    np.testing.assert_allclose(fg.vmap(loss)(batch), 2 * np.arange(4.0))
    per = fg.vmap(lambda p: tu.tree_map(lambda v: v + 1, p))(batch)
    assert type(per) is type(params) and list(per) == order


# ------------------------------------------------------- PyTreeDef methods ---

def test_treedef_children_and_num_nodes_as_in_jax():
    treedef = tu.tree_structure((1, (2, None), {"a": 3}, []))
    kids = treedef.children()
    assert isinstance(kids, list)
    assert kids == [tu.tree_structure(1), tu.tree_structure((2, None)),
                    tu.tree_structure({"a": 3}), tu.tree_structure([])]
    assert treedef.num_nodes == 8                     # JAX: leaves and None count as nodes
    assert tu.tree_structure(1).children() == [] and tu.tree_structure(1).num_nodes == 1
    assert tu.tree_structure(None).num_nodes == 1
    assert tu.tree_structure(Box(1, [2, 3], "k")).num_nodes == 5


@pytest.mark.parametrize("bad", [3, [1], None, "treedef"], ids=["int", "list", "None", "str"])
def test_tree_unflatten_of_something_that_is_not_a_treedef(bad):
    with pytest.raises(TypeError, match="tree_unflatten: the first argument must be a PyTreeDef"):
        tu.tree_unflatten(bad, [1])


# --------------------------------------------------------- registration checks ---

@pytest.mark.parametrize("args, needle", [
    (("x", lambda o: ((), None), lambda a, c: None), "cls must be a class"),
    ((object, 3, lambda a, c: None), "flatten must be a function"),
    ((object, lambda o: ((), None), 4), "unflatten must be a function"),
    (("x", 3, 4), "cls must be a class"),
], ids=["class", "flatten", "unflatten", "all"])
def test_register_pytree_node_rejects_bad_arguments(args, needle):
    with pytest.raises(TypeError, match=needle):
        tu.register_pytree_node(*args)


@pytest.mark.parametrize("flatten", [
    lambda o: [1.0, 2.0, 3.0],         # not a pair
    lambda o: (3.0, None),             # children not iterable
    lambda o: None,
], ids=["triple", "children-not-iterable", "None"])
def test_flatten_returning_a_non_pair_names_the_class(flatten):
    class Odd:
        pass

    tu.register_pytree_node(Odd, flatten, lambda aux, children: Odd())
    for call in (lambda: tu.tree_leaves(Odd()), lambda: tu.tree_flatten([1.0, {"k": Odd()}]),
                 lambda: fg.jit(lambda o: 1.0)(Odd())):
        with pytest.raises(TypeError, match=r"registered for Odd must return a pair "
                                            r"\(children, aux_data\)"):
            call()


def test_register_dataclass_checks_field_names_at_registration():
    @dataclasses.dataclass
    class Layer:
        w: Any
        act: str = "relu"

    with pytest.raises(ValueError, match=r"data_fields names 'v'.*not an __init__ field of Layer"):
        tu.register_dataclass(Layer, data_fields=["w", "v"], meta_fields=["act"])
    with pytest.raises(ValueError, match=r"meta_fields names 'kind'"):
        tu.register_dataclass(Layer, data_fields=["w"], meta_fields=["act", "kind"])
    with pytest.raises(ValueError, match=r"'act'.*neither data_fields nor meta_fields"):
        tu.register_dataclass(Layer, data_fields=["w"], meta_fields=[])
    with pytest.raises(ValueError, match=r"'w' is listed twice"):
        tu.register_dataclass(Layer, data_fields=["w"], meta_fields=["w", "act"])
    with pytest.raises(TypeError, match=r"data_fields must be a list of field names"):
        tu.register_dataclass(Layer, data_fields="w", meta_fields=["act"])
    tu.register_dataclass(Layer, data_fields=["w"], meta_fields=["act"])   # still registrable


def test_register_dataclass_on_a_plain_class_checks_init_arguments():
    class Plain:
        def __init__(self, w, b, scale=1.0):
            self.w, self.b, self.scale = w, b, scale

    with pytest.raises(TypeError, match="Plain is not a dataclass"):
        tu.register_dataclass(Plain)
    with pytest.raises(ValueError, match=r"'c'.*not an __init__ field of Plain"):
        tu.register_dataclass(Plain, data_fields=["w", "c"], meta_fields=[])
    with pytest.raises(ValueError, match=r"'b'.*neither data_fields nor meta_fields"):
        tu.register_dataclass(Plain, data_fields=["w"], meta_fields=["scale"])
    tu.register_dataclass(Plain, data_fields=["w", "b"], meta_fields=[])   # scale has a default
    back = tu.tree_map(lambda v: v * 2, Plain(1.0, 2.0))
    assert (back.w, back.b) == (2.0, 4.0)


def test_unhashable_aux_data_is_named_at_flatten_time():
    class Meta:
        def __init__(self, x):
            self.x = x
    tu.register_pytree_node(Meta, lambda m: ((m.x,), ["not", "hashable"]), lambda a, c: Meta(*c))
    for call in (lambda: tu.tree_flatten(Meta(1.0)), lambda: fg.jit(lambda m: m.x * 2)(Meta(1.0))):
        with pytest.raises(TypeError, match=r"registered for Meta returned aux data .* unhashable "
                                            r"type list; aux data must be hashable"):
            call()


def test_star_import_of_the_facade_gives_numpy_names_only():
    ns: dict = {}
    exec("from funcgrad.numpy import *", ns)
    assert {"sum", "where", "float32", "pi"} <= set(ns)
    assert not {"Tracer", "bind", "dtype_of", "annotations", "builtins"} & set(ns)
