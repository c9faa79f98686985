"""torch target: a compiled kernel as a torch custom op (torch.library), with autograd.

The forward op runs the CPU kernel (LLVM by default, or Numba) on CPU tensors and the
Triton kernel on CUDA tensors. Its backward is made of more custom ops: for each float
argument x_i, the Expr  g * d(expr)/d(x_i)  (derivative from engine/derive.py, g the
incoming gradient) compiled to its own kernel, then summed over broadcast dimensions.
register_fake gives shapes and dtypes for tracing (torch.compile, opcheck).

A program with reductions (sum, mean, var, max over axes) gets its backward from
engine.derive.vjp instead: reverse mode cut at the reductions, each elementwise piece
differentiated by `derive`, each reduction's cotangent summed over its axes. The backward
kernels recompute the forward's reductions (nothing is saved but the inputs).
"""
from __future__ import annotations

from functools import cache

import numpy as np

from exprforge.codegen.lower import Plan, Reduce
from exprforge.engine import dtypes as dt
from exprforge.engine.derive import derive, vjp
from exprforge.engine.expr import var

from .kernel import Kernel

NAME = "torch"
OPTIONS = {"cpu": "llvm"}
GRAD = "grad_out"   # the incoming gradient's variable name in backward programs


def _cpu_module(options):
    from .build import target_module
    if options["cpu"] not in ("llvm", "numba"):
        raise ValueError("torch target option cpu= must be 'llvm' or 'numba'")
    return target_module(options["cpu"])


def has(op: str) -> bool:
    from exprforge.codegen import llvm, numba
    return llvm.has(op) and numba.has(op)


def platform_key() -> str:
    import torch
    return f"torch {torch.__version__}"


def source_of(plan: Plan, options: dict) -> str:
    return _cpu_module(options).source_of(plan, options_for_cpu(options))


def options_for_cpu(options: dict) -> dict:
    return dict(_cpu_module(options).OPTIONS)


def materialize(plan: Plan, directory, options: dict, key: str, source: str):
    return _cpu_module(options).materialize(plan, directory, options_for_cpu(options), key,
                                            source)


def result_shape(plan: Plan, shapes: dict) -> tuple:
    """The shape a plan's result has for inputs of the given shapes (no computing)."""
    known = {"v_" + n: tuple(s) for n, s in shapes.items()}
    for step in plan.steps:
        if isinstance(step, Reduce):
            shape = list(known[step.arg])
            for axis in step.node.attr:
                if -axis > len(shape):
                    raise ValueError(f"reduction over axis {axis} of a {len(shape)}-d input")
                shape[axis] = 1
            known[step.name] = tuple(shape)
        else:
            known[step.name] = tuple(np.broadcast_shapes(*(known[p] for p, _ in step.params))) \
                if step.params else ()
    return known[plan.steps[-1].name]


def torch_dtype(name: str):
    """The torch dtype of an IR dtype (torch spells all five the same way)."""
    import torch
    return getattr(torch, name)


class TorchKernel(Kernel):
    """Callable on tensors; differentiable in its float arguments."""

    def __init__(self, plan, target, dtype, source, options, runners, key="", cache_info=None):
        super().__init__(plan, target, dtype, source, options, runners, key, cache_info)
        cpu_class = _cpu_module(options).KERNEL
        self.cpu = cpu_class(plan, options["cpu"], dtype, source, options_for_cpu(options),
                             runners, key, cache_info)
        self.op = _op_for(key, self)

    def __call__(self, *tensors, out=None):
        import torch
        if out is not None:
            raise TypeError("the torch target returns a new tensor; out= is not supported")
        if len(tensors) != len(self.plan.params):
            raise TypeError(f"kernel takes {len(self.plan.params)} argument(s) "
                            f"({', '.join(self.args)}), got {len(tensors)}")
        args = []
        for (name, want), t in zip(self.plan.params, tensors):
            if not isinstance(t, torch.Tensor):
                t = torch.as_tensor(np.asarray(t))
            if t.dtype != torch_dtype(want):
                if not torch.can_cast(t.dtype, torch_dtype(want)):  # NumPy's same_kind
                    raise TypeError(f"argument {name} is {want}; cannot use "
                                    f"{str(t.dtype).removeprefix('torch.')} data")
                t = t.to(torch_dtype(want))
            args.append(t)
        return self.op(*args)

    def run_program(self, program, arrays, out):  # NumPy arrays: the CPU kernel's work
        return self.cpu.run_program(program, arrays, out)

    def forward_numpy(self, *tensors):
        arrays = [t.detach().cpu().numpy() for t in tensors]
        return np.asarray(self.cpu(*arrays))

    @property
    def differentiable(self):
        return [i for i, (_, d) in enumerate(self.plan.params) if dt.is_float(d)]

    @cache  # noqa: B019 (one per kernel and argument; kernels live as long as their op)
    def backward_kernel(self, index: int):
        """Kernel of the gradient for argument `index` (grad_out * d(expr)/d(arg) when
        elementwise), on (grad_out, *args)."""
        from .build import compile_kernel
        name, dtype = self.plan.params[index]
        if any(n == GRAD for n, _ in self.plan.params):
            raise ValueError(f"a variable named {GRAD} clashes with the backward's gradient")
        expr = self.source_expr
        g = var(GRAD, expr.dtype)
        if not any(isinstance(s, Reduce) for s in self.plan.steps):
            gradient = g * derive(expr, name)
        else:
            gradient = self._vjp(g).get(name)
            if gradient is None:
                gradient = g * 0
        args = ((GRAD, expr.dtype),) + self.plan.params
        return compile_kernel(gradient, "torch", None, args, **self.options)

    @cache  # noqa: B019
    def _vjp(self, g):
        names = [self.plan.params[i][0] for i in self.differentiable]
        return vjp(self.source_expr, g, names)


_OPS: dict = {}


def _op_for(key: str, kernel: TorchKernel):
    """The custom op exprforge::k_KEY, defined once per process."""
    import torch
    if key in _OPS:
        return _OPS[key]
    names = [f"a{i}" for i in range(len(kernel.plan.params))]
    schema = f"({', '.join('Tensor ' + n for n in names)}) -> Tensor"
    qualname = f"exprforge::k_{key[:20]}"
    out_dtype = torch_dtype(kernel.plan.expr.dtype)

    def forward(*tensors):
        if tensors and tensors[0].is_cuda:
            return _cuda_forward(kernel, tensors)
        result = kernel.forward_numpy(*tensors)
        if not (result.flags.c_contiguous and result.flags.writeable):
            result = result.copy()
        return torch.from_numpy(result)

    op = torch.library.custom_op(qualname, forward, mutates_args=(), schema=schema)

    @op.register_fake
    def _(*tensors):
        shape = result_shape(kernel.plan, {n: t.shape for (n, _), t in
                                           zip(kernel.plan.params, tensors)})
        return tensors[0].new_empty(shape, dtype=out_dtype) if tensors else \
            torch.empty(shape, dtype=out_dtype)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def backward(ctx, grad):
        inputs = ctx.saved_tensors
        grads = []
        for i, t in enumerate(inputs):
            if i not in kernel.differentiable or not ctx.needs_input_grad[i]:
                grads.append(None)
                continue
            g = kernel.backward_kernel(i)(grad, *inputs)
            if g.shape != t.shape:  # broadcast: sum over the dimensions t was stretched on
                g = g.expand(torch.broadcast_shapes(g.shape, t.shape)).sum_to_size(t.shape)
            grads.append(g)
        return tuple(grads)

    op.register_autograd(backward, setup_context=setup_context)
    _OPS[key] = op
    return op


def _cuda_forward(kernel: TorchKernel, tensors):
    from .build import compile_kernel
    triton_kernel = compile_kernel(kernel.plan.expr, "triton", None, kernel.plan.params)
    return triton_kernel(*tensors)


KERNEL = TorchKernel
