"""Cost models over the DAG: a shared subexpression is paid for once, which is what a
kernel that computes each SSA value once pays.

- ops:    number of operations (leaves and named constants are free)
- cycles: the op table's per-op cycle costs (see engine/ops.py COST_SOURCE)
"""
from __future__ import annotations

from exprforge.engine.expr import Expr

MODELS = ("ops", "cycles")


def node_cost(node: Expr, model: str) -> float:
    o = node.spec
    if o.group in ("leaf", "const"):
        return 0.0
    if node.op == "cast" and node.args[0].dtype == node.dtype:
        return 0.0
    return 1.0 if model == "ops" else float(o.cost)


def cost(expr: Expr, model: str = "cycles", dag: bool = True) -> float:
    """Cost of `expr`; with dag=False every shared subexpression is paid again (a tree)."""
    if model not in MODELS:
        raise ValueError(f"unknown cost model {model!r}; use one of {', '.join(MODELS)}")
    if dag:
        return sum(node_cost(n, model) for n in expr.toposort())
    total = {}
    for n in expr.toposort():
        total[n] = node_cost(n, model) + sum(total[a] for a in n.args)
    return total[expr]
