"""Export of graphs: networkx, Graphviz DOT, summaries, and the backprop picture."""

from __future__ import annotations

from typing import Any

__all__ = ["to_networkx", "to_dot", "graph_summary", "backprop_graph"]


def to_networkx(graph: Any) -> Any:
    raise NotImplementedError


def to_dot(graph: Any) -> str:
    raise NotImplementedError


def graph_summary(graph: Any) -> dict:
    raise NotImplementedError


def backprop_graph(fun: Any, *args: Any) -> Any:
    raise NotImplementedError
