"""torch target: a compiled kernel as a torch custom op (torch.library), with autograd.

The forward op runs the CPU kernel (LLVM by default, or Numba) on CPU tensors and the
Triton kernel on CUDA tensors. Its backward is one more custom op: a kernel of several
results, for each float argument x_i that needs a gradient the Expr g * d(expr)/d(x_i)
(engine.derive.vjp, g the incoming gradient), each term summed over the dimensions its
argument was broadcast on. The gradients share one loop, so the forward values they all
need (an exp, a quotient) are computed once. register_fake gives shapes and dtypes for
tracing (torch.compile, opcheck). The backward op itself has no autograd: no second
derivatives.

Through reductions (sum, mean, var, max over axes) vjp runs reverse mode cut at the
reductions, each elementwise piece differentiated by `derive`, each reduction's
cotangent summed over its axes. The forward op also returns the reductions the
gradients read (`saved_reductions`: a row's mean, a variance and its mean), computed
anyway, and the op's backward kernel reads them instead of computing them again;
`backward_kernel(saved=False)` gives one that recomputes them from the inputs.
Factors that do not change along a sum's axes (parameters broadcast there, the forward's
row values) are multiplied after the sum (engine.derive.hoist_constant_factors), so
sums that differ only by them are one: PolyNorm's gradient loop sums 4 products, not 7.
"""
from __future__ import annotations

from functools import cache, cached_property

import numpy as np

from exprforge.codegen.lower import Plan, Reduce, RowReduce
from exprforge.engine import dtypes as dt
from exprforge.engine.derive import hoist_constant_factors, vjp
from exprforge.engine.expr import F, rebuild, var

from .kernel import Kernel, broadcasts_to, reduced_layout, unit_axes

NAME = "torch"
# parallel: the CPU loops share large calls among torch's intra-op threads. Off by default:
# on this 2-core VM a PolyReLU or PolyNorm step at 4096x256 took 1.9 / 3.0 ms with it
# against 1.5 / 2.4 without (thread hand-offs, torch's own threads spinning); PolyNorm at
# 16384x1024 gained (47 -> 35 ms), PolyReLU did not
OPTIONS = {"cpu": "llvm", "parallel": False}
ROW_REDUCTIONS = True   # both CPU targets run RowReduce loops
GRAD = "grad_out"   # the incoming gradient's variable name in backward programs
SAVED = "saved_"    # saved_0, saved_1, ...: the forward's reductions in backward programs


def saved_reductions(expr) -> tuple:
    """The float reductions of `expr` (of its inputs) that its gradients read, and the
    mean inside each variance (a variance's gradient reads it): what the forward returns
    for the backward."""
    found = []
    for n in expr.toposort():
        if n.spec.group == "reduce" and dt.is_float(n.dtype) and n.variables():
            found.append(n)
            if n.op == "rvar":   # the node the variance's vjp rule builds
                found.append(F.rmean(n.args[0], axis=n.attr))
    return tuple(dict.fromkeys(found))


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


def stored_source(directory, options: dict) -> str | None:
    return _cpu_module(options).stored_source(directory, options_for_cpu(options))


def options_for_cpu(options: dict) -> dict:
    return {**_cpu_module(options).OPTIONS, "parallel": options.get("parallel", False)}


def _torch_threads() -> int:
    """The threads a torch kernel's CPU loops share work among: torch's intra-op
    threads (torch.set_num_threads), at most one per core."""
    import torch

    from .kernel import _workers
    return max(1, min(torch.get_num_threads(), _workers()))


def materialize(plan: Plan, directory, options: dict, key: str, source: str):
    return _cpu_module(options).materialize(plan, directory, options_for_cpu(options), key,
                                            source)


def result_shapes(plan: Plan, shapes: dict) -> list:
    """The shape of each of a plan's results for inputs of the given shapes (no computing)."""
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
            shape = tuple(np.broadcast_shapes(*(known[p] for p, _ in step.params))) \
                if step.params else ()
            ops = step.ops if isinstance(step, RowReduce) else ("",) * len(step.outputs)
            reduced = reduced_layout(shape, step.axes)[0] if any(ops) else shape
            known.update((name, reduced if op else shape)
                         for (name, _), op in zip(step.outputs, ops))
    return [known[name] for name in plan.results]


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
        self.cpu.workers = _torch_threads
        self.op = _op_for(key, self)

    def __call__(self, *tensors, out=None):
        if out is not None:
            raise TypeError("the torch target returns a new tensor; out= is not supported")
        result = self.op(*self._tensors(tensors))
        if self.plan.many:
            return tuple(result)
        return result[0] if self.saved else result

    def with_saved(self, *tensors) -> tuple:
        """The result and the reductions the forward saves for the backward (self.saved,
        in order), from one call; the reductions carry no gradient."""
        if not self.saved:
            raise ValueError("this kernel saves no reductions")
        return tuple(self.op(*self._tensors(tensors)))

    def _tensors(self, tensors) -> list:
        """The arguments as tensors of the parameters' dtypes (NumPy's same_kind)."""
        import torch
        if len(tensors) != len(self.plan.params):
            raise TypeError(f"kernel takes {len(self.plan.params)} argument(s) "
                            f"({', '.join(self.args)}), got {len(tensors)}")
        args = []
        for (name, want), t in zip(self.plan.params, tensors):
            dtype = torch_dtype(want)
            if not isinstance(t, torch.Tensor):
                t = torch.as_tensor(np.asarray(t))
            if t.dtype != dtype:
                if not torch.can_cast(t.dtype, dtype):  # NumPy's same_kind
                    raise TypeError(f"argument {name} is {want}; cannot use "
                                    f"{str(t.dtype).removeprefix('torch.')} data")
                t = t.to(dtype)
            args.append(t)
        return args

    def run_program(self, program, arrays, outs):  # NumPy arrays: the CPU kernel's work
        return self.cpu.run_program(program, arrays, outs)

    @cached_property
    def saved(self) -> tuple:
        """The reductions the op's forward returns after its result (saved_reductions)."""
        return () if self.plan.many else saved_reductions(self.source_expr)

    @cached_property
    def forward_kernel(self):
        """The CPU kernel the op's forward runs: the result, then the saved reductions
        (one kernel: they are computed once, for both)."""
        if not self.saved:
            return self.cpu
        from .build import compile_kernel
        kernel = compile_kernel((self.source_expr, *self.saved), self.options["cpu"], None,
                                self.plan.params, full=self.plan.full,
                                approx=self.options.get("approx", False),
                                parallel=self.options.get("parallel", False))
        kernel.workers = _torch_threads
        return kernel

    def forward_numpy(self, *tensors):
        """The op's forward on NumPy copies of `tensors`: its result (a list of them for
        a kernel of several results, or the result and the saved reductions)."""
        arrays = [t.detach().cpu().numpy() for t in tensors]
        result = self.forward_kernel(*arrays)
        many = self.plan.many or self.saved
        return [np.asarray(r) for r in result] if many else np.asarray(result)

    @property
    def differentiable(self):
        return [i for i, (_, d) in enumerate(self.plan.params) if dt.is_float(d)]

    @cache  # noqa: B019 (one per kernel and set of arguments; kernels live as long as their op)
    def backward_kernel(self, indices: tuple, full: bool = False, flat: tuple | None = None,
                        saved: bool = False):
        """One kernel computing the gradient for each argument in `indices` (grad_out *
        d(expr)/d(arg) when elementwise), on (grad_out, *args): what the gradients share
        (the forward's values, its reductions) is computed once. full: every argument
        broadcasts to grad_out's shape (the result's), so all the gradients' elementwise
        work shares one loop. flat: per argument of the backward (grad_out, then the
        kernel's), its number of dimensions and the axes (negative) on which it has
        length 1 (see unit_axes); each gradient is summed in the kernel where its
        argument has length 1 and it is longer. Without it a gradient may be longer than
        its argument, for the caller to sum (see vjp). saved: the kernel also takes the
        forward's saved reductions (self.saved, after the kernel's arguments) and reads
        them instead of computing them."""
        from .build import compile_kernel
        if self.plan.many:
            raise TypeError("a kernel of several results has no backward here")
        if any(n == GRAD for n, _ in self.plan.params):
            raise ValueError(f"a variable named {GRAD} clashes with the backward's gradient")
        expr = self.source_expr
        g = var(GRAD, expr.dtype)
        names = [self.plan.params[i][0] for i in indices]
        stored = {node: var(f"{SAVED}{k}", node.dtype)
                  for k, node in enumerate(self.saved)} if saved else {}
        if {v.name for v in stored.values()} & {n for n, _ in self.plan.params}:
            raise ValueError(f"a variable named {SAVED}N clashes with the backward's saved values")
        args = ((GRAD, expr.dtype),) + self.plan.params + \
            tuple((v.name, v.dtype) for v in stored.values())
        shapes = dict(zip((n for n, _ in args), flat)) if flat is not None else {}
        flat = {name: axes for name, (_, axes) in shapes.items()}
        ranks = {name: ndim for name, (ndim, _) in shapes.items()}
        found = vjp(expr, g, names, flat)
        gradients = [found[name] if found[name] is not None else g * 0 for name in names]
        gradients = [rebuild(grad, lambda node, _: stored.get(node)) for grad in gradients]
        # what does not change along a sum's axes is multiplied after it: the parameters
        # broadcast there, the forward's row values
        gradients = [hoist_constant_factors(grad, flat, ranks) if shapes else grad
                     for grad in gradients]
        # parameters of length 1 on every axis the backward reduces join its row values,
        # and so do the saved reductions (row values themselves)
        reduced = {a for grad in gradients for n in grad.toposort()
                   if n.spec.group == "reduce" for a in n.attr}
        scalars = tuple(name for name, axes in flat.items()
                        if name != GRAD and reduced and reduced <= set(axes)) if full else ()
        scalars += tuple(v.name for v in stored.values() if v.name not in scalars)
        # arguments of grad_out's shape: their reductions share its loops
        same = tuple(name for name, _ in self.plan.params
                     if GRAD in flat and flat.get(name) == flat[GRAD]) if full else ()
        return compile_kernel(tuple(gradients), "torch", None, args,
                              full=(GRAD, *same) if same else GRAD if full else None,
                              scalars=scalars, flat=shapes if full else None, **self.options)


_OPS: dict = {}


def _op_for(key: str, kernel: TorchKernel):
    """The custom op exprforge::k_KEY, defined once per process. A kernel with saved
    reductions returns them after its result: (Tensor, Tensor, ...)."""
    import torch
    if key in _OPS:
        return _OPS[key]
    names = [f"a{i}" for i in range(len(kernel.plan.params))]
    many, saved = kernel.plan.many, kernel.saved
    exprs = kernel.plan.expr if many else (kernel.plan.expr, *saved)
    returns = "Tensor[]" if many else f"({', '.join(['Tensor'] * len(exprs))})" if saved \
        else "Tensor"
    schema = f"({', '.join('Tensor ' + n for n in names)}) -> {returns}"
    qualname = f"exprforge::k_{key[:20]}"
    out_dtypes = [torch_dtype(e.dtype) for e in exprs]
    several = many or bool(saved)

    def forward(*tensors):
        if tensors and tensors[0].is_cuda:
            result = _cuda_forward(kernel, tensors)
        else:
            result = kernel.forward_numpy(*tensors)
            result = [torch.from_numpy(r if r.flags.c_contiguous and r.flags.writeable
                                       else r.copy()) for r in (result if several else [result])]
            result = result if several else result[0]
        return list(result) if many else tuple(result) if saved else result

    op = torch.library.custom_op(qualname, forward, mutates_args=(), schema=schema)

    @op.register_fake
    def _(*tensors):
        plan = kernel.forward_kernel.plan if saved else kernel.plan
        shapes = result_shapes(plan, {n: t.shape for (n, _), t in
                                      zip(kernel.plan.params, tensors)})
        results = [tensors[0].new_empty(shape, dtype=d) if tensors else
                   torch.empty(shape, dtype=d) for shape, d in zip(shapes, out_dtypes)]
        return results if many else tuple(results) if saved else results[0]

    _OPS[key] = op
    if many:   # a backward's kernel: torch never differentiates it again here
        return op

    def setup_context(ctx, inputs, output):
        stats = tuple(output[1:]) if saved else ()
        if stats:
            ctx.mark_non_differentiable(*stats)
        ctx.save_for_backward(*inputs, *stats)

    def backward(ctx, grad, *_):   # the saved reductions get no gradient
        inputs = ctx.saved_tensors[:len(names)]
        stats = ctx.saved_tensors[len(names):]
        wanted = tuple(i for i in kernel.differentiable if ctx.needs_input_grad[i])
        grads = [None] * len(inputs)
        if wanted:
            full = all(broadcasts_to(t.shape, grad.shape) for t in inputs + stats)
            # the sums over the dimensions an input was stretched on: in the kernel
            flat = unit_axes([grad.shape] + [t.shape for t in inputs + stats])
            backward = kernel.backward_kernel(wanted, full, flat, saved=bool(stats))
            for i, g in zip(wanted, backward(grad, *inputs, *stats)):
                t = inputs[i]
                if g.shape != t.shape:
                    g = g.reshape(t.shape) if g.numel() == t.numel() else \
                        g.expand(torch.broadcast_shapes(g.shape, t.shape)).sum_to_size(t.shape)
                grads[i] = g
        return tuple(grads)

    op.register_autograd(backward, setup_context=setup_context)
    return op


def _cuda_forward(kernel: TorchKernel, tensors):
    """The op's forward on CUDA tensors: a Triton kernel of the same program(s), the
    saved reductions included."""
    from .build import compile_kernel
    exprs = (kernel.source_expr, *kernel.saved) if kernel.saved else kernel.source_expr
    # libdevice unless every library program was asked for ("float32" is the CPU's
    # default, not the GPU's)
    triton_kernel = compile_kernel(exprs, "triton", None, kernel.plan.params,
                                   full=kernel.plan.full,
                                   approx=kernel.options.get("approx") is True)
    return triton_kernel(*tensors)


KERNEL = TorchKernel
