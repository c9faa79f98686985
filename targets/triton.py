"""Triton target: kernels on torch tensors, on a CUDA GPU or in Triton's interpreter.

The rendered module is written into the store (artifacts/KEY/kernel.py) and imported from
there. Importing compiles nothing: Triton compiles each kernel at its first launch, once
per block configuration and argument signature, and keeps the machine code in its own
cache (TRITON_CACHE_DIR, default ~/.triton/cache), where a later process finds it. So
materialize always reports compiled=False: what a first launch compiles happens later,
inside Triton, and is not seen here.

Under TRITON_INTERPRET=1 (set before the first kernel module is imported) the kernels
run in Triton's NumPy interpreter on the CPU. libdevice has no interpreter
implementation, so the generated modules then get NumPy stand-ins of the libdevice
functions they call (see `libdevice` below); the interpreter cannot benchmark either, so
kernels there have one block configuration and no tuning.
"""
from __future__ import annotations

import functools
import types

import numpy as np
import scipy.special as sc
import torch
import triton

from exprforge.codegen import triton as renderer
from exprforge.codegen.lower import Plan, Program, Reduce
from exprforge.engine.evaluate import evaluate

from .kernel import Kernel
from .store import import_source
from .torch_op import torch_dtype

NAME = "triton"
has = renderer.has
OPTIONS = {"contract": False}   # True lets Triton fuse a*b+c into one fma (not bit-exact)
INTERPRETER_CONFIGS = ((1024, 4),)


# The libdevice functions the renderer calls, as NumPy computes them (the interpreter's
# own tl.exp and friends are NumPy's too).
NUMPY_LIBDEVICE = {
    "pow": np.power, "copysign": np.copysign, "cbrt": np.cbrt, "exp": np.exp,
    "exp2": np.exp2, "expm1": np.expm1, "log": np.log, "log2": np.log2,
    "log10": np.log10, "log1p": np.log1p, "sin": np.sin, "cos": np.cos, "tan": np.tan,
    "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "atan2": np.arctan2,
    "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh, "asinh": np.arcsinh,
    "acosh": np.arccosh, "atanh": np.arctanh, "erf": sc.erf, "erfc": sc.erfc,
    "rint": np.rint, "trunc": np.trunc, "hypot": np.hypot, "fmod": np.fmod,
    "ldexp": np.ldexp,
}


def interpreting() -> bool:
    return bool(triton.knobs.runtime.interpret)


def _on_numpy(fn):
    """A libdevice function for the interpreter, whose tensors hold NumPy arrays."""
    import triton.language as tl
    from triton.runtime.interpreter import TensorHandle

    def call(*args):
        first, widest = args[0], max(args, key=lambda a: len(a.shape))
        with np.errstate(all="ignore"):
            data = np.asarray(fn(*(a.handle.data for a in args)), dtype=first.handle.data.dtype)
        shape = list(widest.shape)
        result_type = tl.block_type(first.dtype, shape) if shape else first.dtype
        return tl.tensor(TensorHandle(data, first.dtype), result_type)
    call.__name__ = fn.__name__
    return call


@functools.cache
def _numpy_libdevice():
    return types.SimpleNamespace(**{name: _on_numpy(fn) for name, fn in NUMPY_LIBDEVICE.items()})


def __getattr__(name):
    # decided when a kernel module imports it, as @triton.jit decides what it builds
    if name == "libdevice":
        if interpreting():
            return _numpy_libdevice()
        from triton.language.extra import libdevice
        return libdevice
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def platform_key() -> str:
    if interpreting():
        return f"triton {triton.__version__} interpreter"
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return f"triton {triton.__version__} cuda sm_{major}{minor}"
    return f"triton {triton.__version__} no device"


def source_of(plan: Plan, options: dict) -> str:
    configs = INTERPRETER_CONFIGS if interpreting() else renderer.CONFIGS
    return renderer.render(plan, configs=configs, contract=options["contract"],
                           title=str(plan.expr))


def materialize(plan: Plan, directory, options: dict, key: str, source: str):
    """(runners, compiled?) for `plan`, loaded from `directory` or written into it."""
    if not interpreting() and not torch.cuda.is_available():
        raise RuntimeError("the triton target needs a CUDA GPU, or TRITON_INTERPRET=1 in "
                           "the environment to run kernels in Triton's interpreter on the CPU")
    module = import_source(directory, source, f"exprforge_triton_{key[:24]}")
    runners = {p.name: getattr(module, f"launch_{p.name}") for p in plan.programs
               if not p.constant}
    return runners, False


# --- the kernel --------------------------------------------------------------------------

def _dtype_name(a) -> str:
    return str(a.dtype).removeprefix("torch.")


REDUCTIONS = {  # NumPy's reductions as torch computes them (keepdims; var with ddof=0)
    "rsum": lambda x, dims: torch.sum(x, dim=dims, keepdim=True),
    "rmean": lambda x, dims: torch.mean(x, dim=dims, keepdim=True),
    "rvar": lambda x, dims: torch.var(x, dim=dims, correction=0, keepdim=True),
    "rmax": lambda x, dims: torch.amax(x, dim=dims, keepdim=True),
}


class TritonKernel(Kernel):
    """Arguments become torch tensors (NumPy arrays and scalars are converted); the result
    is a torch tensor on CUDA when there is one, else on the CPU."""

    def convert(self, a, want: str, name: str):
        if not isinstance(a, torch.Tensor):
            array = super().convert(a, want, name)
            if not array.flags.writeable:  # torch warns about read-only memory
                array = array.copy()
            return torch.from_numpy(array).to(device())
        if a.dtype != torch_dtype(want):
            # torch's casting rule is NumPy's same_kind: no float -> int, no int -> bool
            if not torch.can_cast(a.dtype, torch_dtype(want)):
                raise TypeError(f"argument {name} is {want}; cannot use {_dtype_name(a)} data")
            a = a.to(torch_dtype(want))
        return a.to(device())

    def run_program(self, program: Program, arrays, outs):
        shape = torch.broadcast_shapes(*(a.shape for a in arrays))
        for out in outs:
            if out is not None:
                shape = torch.broadcast_shapes(shape, tuple(out.shape))
        inputs = [a.expand(shape).contiguous() for a in arrays]  # one element per output
        results, direct = [], []
        for out, (_, dtype) in zip(outs, program.outputs):
            ok = (isinstance(out, torch.Tensor) and out.dtype == torch_dtype(dtype)
                  and tuple(out.shape) == tuple(shape) and out.is_contiguous()
                  and out.device == inputs[0].device)
            results.append(out if ok else torch.empty(shape, dtype=torch_dtype(dtype),
                                                      device=inputs[0].device))
            direct.append(ok)
        if results[0].numel():  # an empty grid is not a launch Triton accepts
            with np.errstate(all="ignore"):  # the interpreter's NumPy warns where a GPU is silent
                self.runners[program.name](*inputs, *results, results[0].numel())
        return [r if ok else self.deliver(r, out) for r, ok, out in zip(results, direct, outs)]

    def reduce(self, step: Reduce, array):
        return REDUCTIONS[step.node.op](array, tuple(step.node.attr)).to(torch_dtype(step.node.dtype))

    def constant(self, program: Program):
        return torch.as_tensor(evaluate(program.node)).to(device())

    def deliver(self, value, out):
        if out is None:
            return value
        if _dtype_name(out) != _dtype_name(value):
            raise TypeError(f"out has dtype {_dtype_name(out)}; the kernel returns "
                            f"{_dtype_name(value)}")
        if isinstance(out, torch.Tensor):
            out.copy_(value)
        else:  # a NumPy out, as a ufunc takes
            np.copyto(out, value.cpu().numpy())
        return out

    def finish(self, value, out):
        return out if out is not None else value


KERNEL = TritonKernel
