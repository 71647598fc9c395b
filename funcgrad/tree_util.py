"""Pytrees: nested containers of arrays that every transformation accepts.

Containers: tuple, list, dict (flattened in sorted key order, as in JAX),
``collections.OrderedDict`` (insertion order), ``collections.defaultdict``
(sorted keys, like dict), ``None`` (an empty node), namedtuples, and classes
registered with :func:`register_pytree_node` or :func:`register_dataclass`.
Anything else is a leaf.  Flattening is iterative, so deeply nested trees do not hit Python's
recursion limit.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

__all__ = ["PyTreeDef", "tree_flatten", "tree_unflatten", "tree_map", "tree_leaves",
           "tree_structure", "register_pytree_node", "register_dataclass", "treedef_is_leaf"]

_registry: dict[type, tuple[Callable, Callable]] = {}


def register_pytree_node(cls: type, flatten: Callable[[Any], tuple[Iterable, Any]],
                         unflatten: Callable[[Any, Iterable], Any]) -> None:
    """Teach funcgrad to see inside ``cls``.

    ``flatten(obj) -> (children, aux_data)`` and ``unflatten(aux_data, children) -> obj``;
    ``aux_data`` must be hashable (it becomes part of jit's cache key).
    """
    if not isinstance(cls, type):
        raise TypeError(f"register_pytree_node: cls must be a class, got {cls!r} of type "
                        f"{type(cls).__name__}")
    for name, fn, sig in (("flatten", flatten, "obj -> (children, aux_data)"),
                          ("unflatten", unflatten, "(aux_data, children) -> obj")):
        if not callable(fn):
            raise TypeError(f"register_pytree_node({cls.__name__}): {name} must be a function "
                            f"{sig}, got {fn!r} of type {type(fn).__name__}")
    if cls in _registry or cls in (tuple, list, dict, type(None)):
        raise ValueError(f"{cls.__name__} is already registered as a pytree node")
    _registry[cls] = (flatten, unflatten)


def register_dataclass(cls: type, data_fields: Iterable[str] | None = None,
                       meta_fields: Iterable[str] | None = None) -> type:
    """Register a dataclass as a pytree (usable as a decorator), as ``jax.tree_util.register_dataclass``.

    ``data_fields`` are children (arrays); ``meta_fields`` are static and go into
    the tree structure (so they must be hashable).  Without either, every field is
    data except those declared with ``field(metadata={"static": True})``.  Given
    explicitly, together they must name every ``__init__`` field of a dataclass
    (or, for another class, the fields must be ``__init__`` arguments).
    """
    if not isinstance(cls, type):
        raise TypeError(f"register_dataclass: expected a class, got {cls!r} of type "
                        f"{type(cls).__name__}")
    if data_fields is None and meta_fields is None:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"register_dataclass: {cls.__name__} is not a dataclass; apply "
                            "@dataclasses.dataclass first (below @register_dataclass), or give "
                            "data_fields and meta_fields")
        fields = dataclasses.fields(cls)
        data = [f.name for f in fields if not f.metadata.get("static", False)]
        meta = [f.name for f in fields if f.metadata.get("static", False)]
    else:
        for what, names in (("data_fields", data_fields), ("meta_fields", meta_fields)):
            if isinstance(names, str):
                raise TypeError(f"register_dataclass({cls.__name__}): {what} must be a list of "
                                f"field names, got the string {names!r}")
        data, meta = list(data_fields or ()), list(meta_fields or ())
        _check_fields(cls, data, meta)

    def flatten(obj: Any) -> tuple[list, tuple]:
        return [getattr(obj, n) for n in data], tuple(getattr(obj, n) for n in meta)

    def unflatten(aux: tuple, children: Iterable) -> Any:
        return cls(**dict(zip(data, children)), **dict(zip(meta, aux)))

    register_pytree_node(cls, flatten, unflatten)
    return cls


def _check_fields(cls: type, data: list, meta: list) -> None:
    """Explicit ``data``/``meta`` field names must rebuild ``cls``: each one an ``__init__``
    argument, no name twice, and (for a dataclass, as in JAX) every init field listed."""
    where = f"register_dataclass({cls.__name__})"
    seen: set = set()
    for n in data + meta:
        if not isinstance(n, str):
            raise TypeError(f"{where}: field names must be strings, got {n!r}")
        if n in seen:
            raise ValueError(f"{where}: field {n!r} is listed twice (data_fields and meta_fields "
                             "must not overlap)")
        seen.add(n)
    if dataclasses.is_dataclass(cls):
        init = [f.name for f in dataclasses.fields(cls) if f.init]
        required = init          # a field left out would be reset to its default on rebuild
    else:
        try:
            params = list(inspect.signature(cls).parameters.values())
        except (TypeError, ValueError):
            return
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return
        init = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        required = [p.name for p in params if p.default is p.empty
                    and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for n in data + meta:
        if n not in init:
            kind = "data_fields" if n in data else "meta_fields"
            raise ValueError(f"{where}: {kind} names {n!r}, which is not an __init__ field of "
                             f"{cls.__name__} (its fields: {', '.join(init) or 'none'})")
    missing = [n for n in required if n not in seen]
    if missing:
        raise ValueError(f"{where}: field(s) {', '.join(map(repr, missing))} of "
                         f"{cls.__name__}.__init__ are in neither data_fields nor meta_fields; "
                         "list every field (as data or meta) so that unflattening rebuilds it")


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _sorted_keys(x: dict) -> list:
    try:
        return sorted(x)
    except TypeError:
        raise TypeError("dict keys in a pytree must be sortable (JAX sorts them); "
                        f"got keys {list(x)!r}") from None


def _flatten_defaultdict(x: defaultdict) -> tuple[list, tuple]:
    keys = _sorted_keys(x)
    return [x[k] for k in keys], (x.default_factory, tuple(keys))


# As in JAX: an OrderedDict keeps its key order (part of its structure); a defaultdict
# flattens like a dict and is rebuilt with the same default_factory.
_registry[OrderedDict] = (lambda x: (list(x.values()), tuple(x)),
                          lambda keys, children: OrderedDict(zip(keys, children)))
_registry[defaultdict] = (_flatten_defaultdict,
                          lambda aux, children: defaultdict(aux[0], zip(aux[1], children)))


def _mapping_keys(node_type: Any, aux: Any) -> tuple | None:
    """The keys of a dict-like node (in child order), ``None`` for other nodes."""
    if node_type is dict or node_type is OrderedDict:
        return aux
    if node_type is defaultdict:
        return aux[1]
    return None


def _child_keys(node_type: Any, aux: Any, n: int) -> Iterable:
    """How a node's ``n`` children are named: their keys for dict-likes, else 0..n-1."""
    keys = _mapping_keys(node_type, aux)
    return range(n) if keys is None else keys


_LEAF_TYPES = frozenset([np.ndarray, float, int, bool, complex, np.float64, np.float32])


def _node(x: Any) -> tuple[Any, Any, list] | None:
    """(node type, aux data, children) for a container, ``None`` for a leaf."""
    t = type(x)
    if t in _LEAF_TYPES:          # the common leaves first
        return None
    if t is tuple or t is list:
        return t, None, list(x)
    if t is dict:
        keys = _sorted_keys(x)
        return dict, tuple(keys), [x[k] for k in keys]
    if x is None:
        return None, None, []
    if t in _registry:
        out = _registry[t][0](x)
        try:
            children, aux = out
            return t, aux, list(children)
        except (TypeError, ValueError):
            raise TypeError(_bad_flatten_message(t, out)) from None
    if _is_namedtuple(x):
        return t, None, list(x)
    return None


def _bad_flatten_message(t: type, out: Any) -> str:
    r = repr(out)
    r = r if len(r) <= 60 else r[:57] + "..."
    return (f"the flatten function registered for {t.__name__} must return a pair "
            f"(children, aux_data) with children iterable; it returned {r} of type "
            f"{type(out).__name__}")


class PyTreeDef:
    """The structure of a pytree: its containers, without the leaves."""

    __slots__ = ("node_type", "aux", "_children", "num_leaves", "num_nodes", "_hash",
                 "_build_fn", "_interned")

    def __init__(self, node_type: Any, aux: Any, children: tuple):
        self.node_type = node_type   # "leaf", None (for None), or a container type
        self.aux = aux
        self._children = children
        if node_type == "leaf":
            self.num_leaves = self.num_nodes = 1
        else:
            self.num_leaves = sum(c.num_leaves for c in children)
            self.num_nodes = 1 + sum(c.num_nodes for c in children)   # leaves count, as in JAX
        self._hash: int | None = None
        self._build_fn: Any = None     # compiled rebuild function, made on first unflatten
        self._interned = False

    def __eq__(self, other: object) -> bool:
        # iterative, so structures nested thousands deep compare without RecursionError
        if self is other:
            return True
        if not isinstance(other, PyTreeDef):
            return False
        stack = [(self, other)]
        while stack:
            a, b = stack.pop()
            if a is b:
                continue
            if (a.node_type != b.node_type or a.num_leaves != b.num_leaves
                    or len(a._children) != len(b._children) or a.aux != b.aux
                    or (a._hash is not None and b._hash is not None and a._hash != b._hash)):
                return False
            stack.extend(zip(a._children, b._children))
        return True

    def __hash__(self) -> int:
        if self._hash is None:   # post-order over the nodes not hashed yet (no recursion)
            stack = [self]
            while stack:
                d = stack[-1]
                pending = [c for c in d._children if c._hash is None]
                if pending:
                    stack.extend(pending)
                    continue
                stack.pop()
                d._hash = hash((d.node_type, d.aux, tuple(c._hash for c in d._children)))
        return self._hash

    def __repr__(self) -> str:
        return f"PyTreeDef({_describe(self)})"

    def unflatten(self, leaves: Iterable) -> Any:
        return tree_unflatten(self, leaves)

    def children(self) -> list[PyTreeDef]:
        """The child structures, as in JAX."""
        return list(self._children)


LEAF = PyTreeDef("leaf", None, ())

# Structures are interned: flattening the same structure twice gives the same PyTreeDef
# object, so comparing structures is usually an identity check and the compiled rebuild
# function (see unflattener) is made once per structure, not once per call.
_INTERNED: dict[tuple, PyTreeDef] = {}
_INTERN_LIMIT = 100_000


def _intern(node_type: Any, aux: Any, children: tuple) -> PyTreeDef:
    keys = _mapping_keys(node_type, aux)
    key = (node_type, aux, tuple(map(id, children)),
           None if keys is None else tuple(map(type, keys)))   # {1: x} is not {1.0: x}
    try:
        d = _INTERNED.get(key)
    except TypeError:                     # unhashable aux data: jit could not key on it
        name = getattr(node_type, "__name__", str(node_type))
        raise TypeError(f"the flatten function registered for {name} returned aux data "
                        f"{repr(aux)[:40]} of unhashable type {type(aux).__name__}; aux data "
                        "must be hashable (it is part of the structure, and of jit's cache "
                        "key): use a tuple instead of a list, or a frozenset") from None
    if d is None:
        d = PyTreeDef(node_type, aux, children)
        if len(_INTERNED) < _INTERN_LIMIT and all(c is LEAF or c._interned for c in children):
            d._interned = True
            _INTERNED[key] = d
    return d


def _describe(d: PyTreeDef) -> str:
    """``*`` for leaves, containers as Python writes them; iterative (deep trees are fine)."""
    out: list[str] = []
    stack: list = [d]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        t = item.node_type
        if isinstance(t, str):   # "leaf"
            out.append("*")
            continue
        if t is None:
            out.append("None")
            continue
        if t is tuple:
            opening, closing = "(", ("," if len(item._children) == 1 else "") + ")"
        elif t is list:
            opening, closing = "[", "]"
        elif t is dict:
            opening, closing = "{", "}"
        elif t is OrderedDict:
            opening, closing = "OrderedDict({", "})"
        elif t is defaultdict:
            opening, closing = f"defaultdict({item.aux[0]!r}, {{", "})"
        else:
            opening, closing = f"{t.__name__}(", ")"
        keys = _mapping_keys(t, item.aux)
        parts: list = [opening]
        for k, c in enumerate(item._children):
            if k:
                parts.append(", ")
            if keys is not None:
                parts.append(f"{keys[k]!r}: ")
            parts.append(c)
        parts.append(closing)
        stack.extend(reversed(parts))
    return "".join(out)


class _Close:
    """Stack marker: the children of a container have been flattened; build its node."""

    __slots__ = ("node_type", "aux", "n", "obj")

    def __init__(self, node_type: Any, aux: Any, n: int, obj: Any):
        # obj: the container, kept alive (so its id stays its own) while it is open
        self.node_type, self.aux, self.n, self.obj = node_type, aux, n, obj


def tree_flatten(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> tuple[list, PyTreeDef]:
    """Leaves (left to right, dict keys sorted) and the tree's structure.

    Iterative (an explicit stack), so deeply nested trees are fine; plain arrays
    and numbers are recognised by type before any container test.
    """
    if is_leaf is None:
        if _node(tree) is None:
            return [tree], LEAF      # the common case of a single array
        fast = _flatten_plain(tree)
        if fast is not None:
            return fast
    return _flatten_general(tree, is_leaf)


# Structures of plain trees (tuples, lists, dicts with string keys, None), keyed by a
# pre-order token sequence: a repeated structure costs one dict lookup, not a rebuild.
_PLAIN: dict[tuple, PyTreeDef] = {}
_PLAIN_MAX_TOKENS = 100_000


def _flatten_plain(tree: Any) -> tuple[list, PyTreeDef] | None:
    """``tree_flatten`` for trees of tuples, lists, str-keyed dicts and None; ``None`` when
    the tree holds anything else (registered nodes, namedtuples), for the general path."""
    leaves: list = []
    key: list = []
    stack: list = [tree]
    leaf_types = _LEAF_TYPES
    while stack:
        x = stack.pop()
        t = type(x)
        if t in leaf_types:
            leaves.append(x)
            key.append(0)
        elif t is tuple or t is list:
            if len(key) > _PLAIN_MAX_TOKENS:
                return None            # huge (or cyclic) trees: the general path checks
            key.append(t)
            key.append(len(x))
            stack.extend(x[::-1])
        elif t is dict:
            if len(key) > _PLAIN_MAX_TOKENS:
                return None
            ks = list(x)
            if not all(type(k) is str for k in ks):
                return None
            ks.sort()
            key.append(dict)
            key.append(tuple(ks))
            stack.extend([x[k] for k in reversed(ks)])
        elif x is None:
            key.append(None)
        elif t in _registry or _is_namedtuple(x):
            return None
        else:
            leaves.append(x)     # any other object is a leaf (tracers, NumPy scalars, ...)
            key.append(0)
    k = tuple(key)
    d = _PLAIN.get(k)
    if d is None:
        d = _flatten_general(tree, None)[1]
        if len(_PLAIN) < _INTERN_LIMIT:
            _PLAIN[k] = d
    return leaves, d


def _flatten_general(tree: Any, is_leaf: Callable[[Any], bool] | None) -> tuple[list, PyTreeDef]:
    leaves: list = []
    built: list = []
    stack: list = [tree]
    open_ids: set = set()          # containers being flattened: meeting one again is a cycle
    leaf_types = _LEAF_TYPES
    while stack:
        x = stack.pop()
        t = type(x)
        if t is _Close:
            open_ids.discard(id(x.obj))
            n = x.n
            if n:
                children = tuple(built[-n:])
                del built[-n:]
            else:
                children = ()
            built.append(_intern(x.node_type, x.aux, children))
            continue
        if t in leaf_types and is_leaf is None:
            leaves.append(x)
            built.append(LEAF)
            continue
        node = None if (is_leaf is not None and is_leaf(x)) else _node(x)
        if node is None:
            leaves.append(x)
            built.append(LEAF)
            continue
        node_type, aux, children = node
        if id(x) in open_ids:
            raise ValueError(f"tree_flatten: the tree contains itself (a {type(x).__name__} "
                             "inside itself); pytrees must be finite, acyclic nests of "
                             "containers")
        if children:
            open_ids.add(id(x))
        stack.append(_Close(node_type, aux, len(children), x))
        stack.extend(reversed(children))
    return leaves, built[0]


def tree_unflatten(treedef: PyTreeDef, leaves: Iterable) -> Any:
    """Rebuild a pytree of structure ``treedef`` from ``leaves``."""
    try:
        n = treedef.num_leaves
    except AttributeError:
        raise TypeError(f"tree_unflatten: the first argument must be a PyTreeDef (from "
                        f"tree_flatten or tree_structure), got {type(treedef).__name__}; the "
                        "call is tree_unflatten(treedef, leaves)") from None
    leaves = leaves if isinstance(leaves, list) else list(leaves)
    if len(leaves) != n:
        raise ValueError(f"tree_unflatten: structure {treedef} needs {treedef.num_leaves} leaves, "
                         f"got {len(leaves)}")
    return unflattener(treedef)(leaves)


def unflattener(treedef: PyTreeDef) -> Callable[[list], Any]:
    """The (cached, compiled) function rebuilding ``treedef`` from a list of its leaves."""
    fn = treedef._build_fn
    if fn is None:
        fn = treedef._build_fn = _compile_builder(treedef)
    return fn


def _compile_builder(treedef: PyTreeDef) -> Any:
    """A function ``leaves -> tree`` for ``treedef``: one compiled expression for trees of
    tuples, lists, dicts and None (rebuilt on every call of a transformation, so it is worth
    compiling); the generic iterative rebuild otherwise."""
    counter = iter(range(treedef.num_leaves))
    stack: list = [(treedef, False)]
    built: list[str] = []
    nodes = 0
    while stack:                 # iterative post-order
        d, done = stack.pop()
        if d.node_type == "leaf":
            built.append(f"o[{next(counter)}]")
            continue
        nodes += 1
        if d.node_type not in (tuple, list, dict, None) or nodes > 200:   # big or unusual trees
            return lambda leaves: _unflatten_generic(treedef, leaves)
        if not done:
            stack.append((d, True))
            stack.extend((c, False) for c in reversed(d._children))
            continue
        n = len(d._children)
        kids = built[len(built) - n:] if n else []
        del built[len(built) - n:]
        if d.node_type is None:
            built.append("None")
        elif d.node_type is tuple:
            built.append("(" + "".join(k + ", " for k in kids) + ")")
        elif d.node_type is list:
            built.append("[" + ", ".join(kids) + "]")
        else:
            built.append("{" + ", ".join(f"{k!r}: {v}" for k, v in zip(d.aux, kids)) + "}")
    src = built[0]
    if any(not isinstance(k, (str, int)) for k in _dict_keys(treedef)):
        return lambda leaves: _unflatten_generic(treedef, leaves)
    return eval(compile(f"lambda o: {src}", "<pytree builder>", "eval"))  # noqa: S307


def _dict_keys(treedef: PyTreeDef) -> list:
    keys: list = []
    stack = [treedef]
    while stack:
        d = stack.pop()
        if d.node_type is dict:
            keys.extend(d.aux)
        stack.extend(d._children)
    return keys


def _unflatten_generic(treedef: PyTreeDef, leaves: list) -> Any:
    it = iter(leaves)
    # iterative: post-order over the treedef
    stack: list = [(treedef, False)]
    out: list = []
    while stack:
        d, done = stack.pop()
        if d.node_type == "leaf":
            out.append(next(it))
            continue
        if not done:
            stack.append((d, True))
            for c in reversed(d._children):
                stack.append((c, False))
            continue
        n = len(d._children)
        children = out[len(out) - n:] if n else []
        del out[len(out) - n:]
        out.append(_build(d, children))
    return out[0]


def _build(d: PyTreeDef, children: list) -> Any:
    t = d.node_type
    if t is None:
        return None
    if t is tuple:
        return tuple(children)
    if t is list:
        return list(children)
    if t is dict:
        return dict(zip(d.aux, children))
    if t in _registry:
        return _registry[t][1](d.aux, children)
    return t(*children)   # namedtuple


def tree_leaves(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> list:
    return tree_flatten(tree, is_leaf)[0]


def tree_structure(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> PyTreeDef:
    return tree_flatten(tree, is_leaf)[1]


def treedef_is_leaf(treedef: PyTreeDef) -> bool:
    return treedef.node_type == "leaf"


def _flatten_up_to(treedef: PyTreeDef, tree: Any, is_leaf: Callable[[Any], bool] | None,
                   where: str) -> list:
    """The subtrees of ``tree`` at the leaves of ``treedef`` (which must be a prefix of it)."""
    out: list = []
    stack: list = [(treedef, tree)]
    while stack:
        d, x = stack.pop()
        if d.node_type == "leaf":
            out.append(x)
            continue
        node = None if (is_leaf is not None and is_leaf(x)) else _node(x)
        if (node is None or node[0] is not d.node_type or len(node[2]) != len(d._children)
                or node[1] != d.aux):
            raise ValueError(f"{where}: pytrees have different structures: {treedef} and "
                             f"{tree_structure(tree, is_leaf)} (every further tree must have the "
                             "first one's structure, or extend it at its leaves)")
        stack.extend(reversed(list(zip(d._children, node[2]))))
    return out


def tree_map(f: Callable, tree: Any, *rest: Any, is_leaf: Callable[[Any], bool] | None = None) -> Any:
    """Apply ``f`` leaf-wise over one or more pytrees.

    As in JAX, ``tree`` fixes the structure: each tree in ``rest`` must have the
    same structure or extend it (a leaf of ``tree`` may face a whole subtree,
    which is passed to ``f`` as it is).
    """
    leaves, treedef = tree_flatten(tree, is_leaf)
    others = [_flatten_up_to(treedef, r, is_leaf, "tree_map") for r in rest]
    return tree_unflatten(treedef, [f(*xs) for xs in zip(leaves, *others)])
