"""compile / save / load: one path from an Expr to a Kernel through the store.

compile() lowers the expression for the target, hashes what defines the artifact, and
loads it from the store when present (a hit: nothing compiles) or builds it there. A
corrupt artifact is discarded and rebuilt with a warning.
"""
from __future__ import annotations

import importlib
import time
import warnings
from functools import cache
from pathlib import Path

from exprforge.codegen.lower import lower
from exprforge.engine.evaluate import prepare
from exprforge.engine.expr import Expr
from exprforge.engine.parse import parse
from exprforge.engine.printing import to_text

from . import store

TARGETS = {"numba": "exprforge.targets.numba", "llvm": "exprforge.targets.llvm",
           "triton": "exprforge.targets.triton", "torch": "exprforge.targets.torch_op"}


def target_module(target: str):
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; use one of {', '.join(TARGETS)}")
    return importlib.import_module(TARGETS[target])


def declarations(expr) -> dict:
    """Variable name -> [dtype, axes]: what parse needs to read to_text back."""
    return {v.name: [v.dtype, list(v.axes) if v.axes is not None else None]
            for e in _roots(expr) for v in e.variables()}


def _roots(expr) -> tuple:
    return tuple(expr) if isinstance(expr, tuple) else (expr,)


def spec_of(expr, target: str, dtype, args, options: dict, full=None, scalars=(),
            flat=None) -> dict:
    text = [to_text(e) for e in expr] if isinstance(expr, tuple) else to_text(expr)
    spec = {"text": text, "vars": declarations(expr), "target": target,
            "dtype": dtype, "args": list(args) if args is not None else None,
            "options": options}
    if full is not None:   # only when set: other kernels keep their store keys
        spec["full"] = full
    if scalars:
        spec["scalars"] = list(scalars)
    if flat:
        spec["flat"] = {n: [d, list(a)] for n, (d, a) in sorted(flat.items())}
    return spec


def expr_of(spec: dict):
    """The Expr of a spec (a tuple of them for a kernel of several results)."""
    vars = {n: (d, tuple(a) if a is not None else None) for n, (d, a) in spec["vars"].items()}
    if isinstance(spec["text"], list):
        return tuple(parse(text, vars=vars) for text in spec["text"])
    return parse(spec["text"], vars=vars)


def _as_expr(expr, dtype):
    if isinstance(expr, str):  # undeclared variables: float32, as `exprforge compile` has it
        expr = parse(expr, dtype=dtype or "float32")
    if not isinstance(expr, Expr):
        raise TypeError(f"compile takes an Expr or expression text (or a tuple of them), "
                        f"not {type(expr).__name__}")
    return expr


# approx= -> the dtypes whose calls of exp, exp2, log, log2, erf, tanh and sigmoid become
# the library's programs (evolve/library.json)
APPROX = {False: (), "float32": ("float32",), True: ("float32", "float64")}


def _approx_mode(approx, target: str):
    """approx=None (the default) is "float32" on the CPU targets: those programs were
    checked on every float32 input, all under 1 ULP, and vectorize where the C library is
    called once per element; float64 keeps the C library (0.5 ULP against the programs'
    0.86, and on a sample only). Triton keeps its own library (libdevice)."""
    if approx is None:
        return False if target == "triton" else "float32"
    if not isinstance(approx, str):
        approx = bool(approx)   # 1, 0, numpy booleans: one store key per meaning
    if approx not in APPROX:
        raise ValueError(f"approx must be None, False, True or 'float32', not {approx!r}")
    return approx


def compile_kernel(expr, target: str = "numba", dtype: str | None = None, args=None,
                   full: str | tuple | None = None, scalars: tuple = (),
                   flat: dict | None = None, saved: dict | None = None, **options):
    """A Kernel for `expr` (an Expr or text, or a tuple of them: one kernel returning a
    tuple of arrays) on `target`; see exprforge.compile. `full`, `scalars`, `flat`: see
    lower(). saved: the stored entry being loaded (see load)."""
    if isinstance(expr, (tuple, list)):
        expr = tuple(_as_expr(e, dtype) for e in expr)
        if not expr:
            raise ValueError("compile takes at least one expression")
    else:
        expr = _as_expr(expr, dtype)
    module = target_module(target)
    full = tuple(full) if isinstance(full, list) else full   # as the store's JSON gives it
    approx = _approx_mode(options.pop("approx", None), target)
    unknown = sorted(set(options) - set(module.OPTIONS))
    if unknown:
        raise TypeError(f"target {target} has no option(s) {', '.join(unknown)}; "
                        f"options: {', '.join(('approx',) + tuple(module.OPTIONS))}")
    options = {**module.OPTIONS, **options}
    # recorded as resolved: a torch kernel's backward kernels follow its forward (d erf
    # brings an exp), and a stored kernel loads as it was compiled
    options["approx"] = approx
    program = expr
    if approx:
        from exprforge.evolve.library import with_library_functions
        # after the retyping to `dtype`: what is float32 then gets the programs
        prepared = tuple(prepare(e, dtype) for e in _roots(expr))
        inlined = tuple(with_library_functions(e, APPROX[approx]) for e in prepared)
        if any(a is not b for a, b in zip(inlined, prepared)):
            program = inlined if isinstance(expr, tuple) else inlined[0]
    flat = {n: (d, tuple(a)) for n, (d, a) in flat.items()} if flat else None
    plan = lower(program, dtype, args, has=module.has, full=full, scalars=tuple(scalars),
                 flat=flat,
                 rows=getattr(module, "ROW_REDUCTIONS", False))
    spec = spec_of(expr, target, dtype, args, options, full, tuple(scalars), flat)
    platform = module.platform_key()
    source = _saved_source(module, spec, platform, saved)
    if source is None:   # in the key: a new renderer means a new entry
        source = module.source_of(plan, options)
    key = store.content_key({**spec, "platform": platform, "source": source})
    return _materialize(module, plan, spec, key, source)


@cache
def code_digest() -> str:
    """A digest of what a kernel's rendered source is a function of besides its spec and
    its target's platform key: exprforge's engine, lowering, renderers and targets, the
    library programs, and NumPy's version."""
    import hashlib

    import numpy

    from exprforge import codegen, engine, evolve, targets
    digest = hashlib.sha256(numpy.__version__.encode())
    for package in (engine, codegen, targets, evolve):
        folder = Path(package.__file__).parent
        for path in sorted(folder.glob("*.py")) + sorted(folder.glob("*.json")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def render_stamp(spec: dict, platform: str) -> str:
    """What a saved entry records so that a load can trust its stored source."""
    return store.content_key({**spec, "platform": platform, "code": code_digest()})


def _saved_source(module, spec: dict, platform: str, saved: dict | None) -> str | None:
    """A saved kernel's source read back from its artifact instead of rendered again
    (rendering an LLVM kernel's IR took ~25 of a ~45 ms load): when the entry was saved
    by this same code on this platform, and the stored text is the one its key hashes."""
    stored = getattr(module, "stored_source", None)
    if not saved or stored is None or saved.get("render") != render_stamp(spec, platform):
        return None
    key = saved.get("key")
    source = stored(store.artifact_dir(key), spec["options"]) if isinstance(key, str) else None
    if source is None or \
            store.content_key({**spec, "platform": platform, "source": source}) != key:
        return None
    return source


def _materialize(module, plan, spec, key, source):
    directory = store.artifact_dir(key)
    began = time.perf_counter()
    existed = directory.exists()
    try:
        runners, compiled = module.materialize(plan, directory, spec["options"], key, source)
    except store.CorruptEntry as e:
        warnings.warn(f"exprforge: rebuilding a corrupt kernel store entry ({e})", stacklevel=3)
        store.discard(directory)
        store.record("rebuilt", key)
        runners, compiled = module.materialize(plan, directory, spec["options"], key, source)
        existed = False
    seconds = time.perf_counter() - began
    hit = existed and not compiled
    store.record("hit" if hit else "miss", key, target=spec["target"], compiled=compiled,
                 seconds=round(seconds, 4))
    dtype = _roots(plan.expr)[0].dtype
    return module.KERNEL(plan, spec["target"], dtype, source, spec["options"], runners,
                        key, {"hit": hit, "compiled": compiled, "seconds": seconds,
                              "spec": spec})


def save(kernel, name: str, overwrite: bool = True):
    """Store `kernel` under `name`: `from exprforge.kernels import NAME` loads it."""
    spec = kernel.cache_info.get("spec")
    if spec is None:
        raise TypeError("save takes a Kernel made by exprforge.compile")
    path = store.name_path(name)
    if path.exists() and not overwrite:
        raise FileExistsError(f"a kernel named {name!r} is already stored")
    module = target_module(spec["target"])
    store.save_entry(name, {**spec, "key": kernel.key, "saved": time.time(),
                            "render": render_stamp(spec, module.platform_key())})
    return path


def load(name: str):
    """The stored kernel `name`, from its compiled artifact (rebuilt if that is gone)."""
    entry = store.read_entry(name)
    expr = expr_of(entry)
    return compile_kernel(expr, entry["target"], entry["dtype"], entry["args"],
                          full=entry.get("full"), scalars=tuple(entry.get("scalars", ())),
                          flat=entry.get("flat"), saved=entry,
                          **{"approx": False, **entry["options"]})   # saved before approx's default
