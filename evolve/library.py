"""The library of verified approximations shipped with exprforge (evolve/library.json):
for each, the program's IR text and the record of its check (max ULP, inputs checked:
every float32 of the domain, or a random sample of float64s; op count, domain, seed and
the command that found it). `exprforge.kernels`
compiles them on first import; templates may build on them (tanh and sigmoid on exp).
Rebuilt by scripts/build_library.py."""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

LIBRARY_FILE = Path(__file__).with_name("library.json")


@cache
def library() -> dict:
    """name (FUNC_f32, FUNC_f64) -> entry."""
    return json.loads(LIBRARY_FILE.read_text()) if LIBRARY_FILE.exists() else {}


def program(name: str):
    """The entry's program as an Expr of the variable x (float32 or float64)."""
    from exprforge.engine.parse import parse
    entries = library()
    if name not in entries:
        raise LookupError(f"no approximation {name!r} in the library; it has: "
                          f"{', '.join(sorted(entries)) or 'none'}")
    return parse(entries[name]["program"], vars={"x": entries[name].get("dtype", "float32")})


SUFFIX = {"float32": "f32", "float64": "f64"}


def with_library_functions(expr, dtypes=tuple(SUFFIX)):
    """`expr` with every call (of one of `dtypes`) of a function the library has (exp ->
    exp_f32 or exp_f64, ...) replaced by that program, inlined on the call's argument."""
    from exprforge.engine.expr import rebuild, var
    entries = library()

    def visit(node, args):
        name = f"{node.op}_{SUFFIX.get(node.dtype, '')}"
        if node.dtype in dtypes and len(args) == 1 and name in entries \
                and entries[name]["function"] == node.op:
            return program(name).subs({var("x", node.dtype): args[0]})
        return None
    return rebuild(expr, visit)
