"""The search core: NSGA-II over DEAP trees whose meaning is an Expr (evolve/primitives),
shared by the approximation search and later searches.

A Problem supplies the primitive set, seed programs and a picklable `evaluate(expr,
refit)` returning an Evaluated (the program, possibly with fitted constants, and its
objectives, all minimized). Each generation: tournament on Pareto rank and crowding,
crossover, one mutation (insert, remove, replace a node, swap inputs, redraw a constant,
or perturb constants by a few units in the last place of the dtype, which keeps the
fitted values and skips refitting), evaluation of the distinct new programs through an
executor, and NSGA-II survival. Every program evaluated is kept in an archive; the
Pareto front is read from it.

Same seed, same result: Python's `random` (which DEAP draws on) is reseeded from
(seed, generation) at the start of each generation, evaluation is a pure function of
the program, and results come back in order whatever the executor. A checkpoint after
each generation holds what is needed to resume, and a resumed run equals an
uninterrupted one.
"""
from __future__ import annotations

import os
import pickle
import random
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from deap import base, gp, tools


from .executors import SerialExecutor, derive_seed, evaluate_unique
from .primitives import from_expr, to_expr


@dataclass(frozen=True)
class Evaluated:
    expr: object                 # the program scored (constants as fitted)
    objectives: tuple            # minimized
    info: dict = field(default_factory=dict)


@dataclass
class SearchConfig:
    population: int = 48
    generations: int = 30
    seed: int = 0
    timeout: float | None = None    # seconds; the best so far is returned when hit
    max_size: int = 40              # tree nodes of a core
    max_depth: int = 14
    cx_prob: float = 0.2
    ulp_steps: int = 4              # constant perturbation: up to this many ULPs
    constant_moves: float = 0.35    # share of mutations that only move constants (0 where
                                    # every program's constants are refitted anyway)


class Fitness(base.Fitness):
    weights = (-1.0, -1.0)


class Individual(gp.PrimitiveTree):
    def __init__(self, content):
        super().__init__(content)
        self.fitness = Fitness()
        self.refit = True   # constants must be fitted (the structure changed)


@dataclass
class SearchResult:
    front: list            # Evaluated, non-dominated, by the second objective (cost)
    archive: dict          # program (Expr) -> Evaluated
    generations: int
    stopped: str           # "generations" | "time_limit"
    seconds: float
    evaluations: int
    history: list          # per generation: best first objective, front size


def search(problem, config: SearchConfig, executor=None, checkpoint: str | None = None,
           resume: bool = False, progress: Callable | None = None) -> SearchResult:
    """Run NSGA-II on `problem`. `checkpoint`: a file written after each generation;
    with resume=True a run continues from it."""
    executor = executor or SerialExecutor()
    began = time.monotonic()
    pset = problem.pset
    state = load_checkpoint(checkpoint) if resume and checkpoint and os.path.exists(checkpoint) \
        else None
    if state is not None:
        if state["seed"] != config.seed:
            raise ValueError(f"checkpoint {checkpoint} is from seed {state['seed']}, "
                             f"not {config.seed}")
        mine = getattr(problem, "fingerprint", None)
        if state.get("problem", mine) != mine:
            raise ValueError(f"checkpoint {checkpoint} is from another problem "
                             f"({state['problem']}), not {mine}")
        archive, history, start = state["archive"], state["history"], state["generation"] + 1
        population = [_individual(from_expr(e.expr, pset), e) for e in state["population"]]
    else:
        archive, history, start = {}, [], 1
        random.seed(derive_seed(config.seed, "init"))
        trees = [from_expr(e, pset) for e in problem.seeds()][:config.population]
        while len(trees) < config.population:
            trees.append(gp.PrimitiveTree(gp.genHalfAndHalf(pset, 1, 3)))
        population = [Individual(t) for t in trees]
        _evaluate(population, problem, pset, executor, archive)
        population = tools.selNSGA2(population, config.population)
        history.append(_summary(population))
    stopped, gen = "generations", start - 1
    for gen in range(start, config.generations + 1):
        if config.timeout is not None and time.monotonic() - began > config.timeout:
            stopped, gen = "time_limit", gen - 1
            break
        random.seed(derive_seed(config.seed, gen))
        offspring = _vary(population, pset, config)
        _evaluate(offspring, problem, pset, executor, archive)
        population = tools.selNSGA2(population + offspring, config.population)
        history.append(_summary(population))
        if checkpoint:
            _save(checkpoint, {"seed": config.seed,
                               "problem": getattr(problem, "fingerprint", None),
                               "generation": gen, "archive": archive,
                               "history": history,
                               "population": [archive[to_expr(i, pset)]
                                              for i in population]})
        if progress:
            progress(gen, config.generations, history[-1])
    front = pareto(archive.values())
    return SearchResult(front, archive, gen, stopped, time.monotonic() - began,
                        len(archive), history)


def pareto(evaluated) -> list:
    """Non-dominated Evaluated items (both objectives minimized), by cost then error."""
    items = sorted(evaluated, key=lambda e: (e.objectives[1], e.objectives[0]))
    front, best = [], np.inf
    for e in items:
        if e.objectives[0] < best:
            front.append(e)
            best = e.objectives[0]
    return front


# --- variation ------------------------------------------------------------------------

def _vary(population, pset, config):
    tools.emo.assignCrowdingDist(population)
    parents = tools.selTournamentDCD(population, len(population) - len(population) % 4)
    parents += random.sample(population, len(population) - len(parents))
    offspring = []
    for pa, pb in zip(parents[::2], parents[1::2]):
        a, b = _clone(pa), _clone(pb)
        if random.random() < config.cx_prob:
            a, b = gp.cxOnePoint(a, b)
            a.refit = b.refit = True
        for child, parent in ((a, pa), (b, pb)):
            _mutate(child, pset, config)
            if len(child) > config.max_size or child.height > config.max_depth:
                _replace(child, parent)  # too big: keep the parent's program
                child.refit = parent.refit
            offspring.append(child)
    return offspring


def _clone(ind):
    c = Individual(list(ind))
    c.refit = ind.refit
    return c


def _mutate(ind, pset, config):
    choice = random.random()
    if choice < config.constant_moves and _constants(ind):
        _perturb_constants(ind, pset, config.ulp_steps)
        return
    ops = [lambda: gp.mutInsert(ind, pset), lambda: gp.mutShrink(ind),
           lambda: gp.mutNodeReplacement(ind, pset), lambda: _swap_inputs(ind),
           lambda: gp.mutEphemeral(ind, "one"),
           lambda: gp.mutUniform(ind, lambda pset, type_: gp.genGrow(pset, 0, 2, type_), pset)]
    random.choice(ops)()
    ind.refit = True


def _replace(ind, tree):
    list.__setitem__(ind, slice(None), list(tree))  # DEAP's own slice assignment wants a start


def _constants(ind):
    return [i for i, node in enumerate(ind) if isinstance(type(node), gp.MetaEphemeral)]


def _perturb_constants(ind, pset, steps):
    """Move one or two constants by a few ULPs of the dtype (the fitted values stay)."""
    dtype = np.dtype(pset.dtype)
    for i in random.sample(_constants(ind), min(2, len(_constants(ind)))):
        node = ind[i]
        value = np.asarray(node.value, dtype)
        k = random.randint(1, steps) * random.choice((-1, 1))
        for _ in range(abs(k)):
            value = np.nextafter(value, dtype.type(np.inf if k > 0 else -np.inf))
        c = object.__new__(type(node))
        c.value = float(value)
        ind[i] = c


def _swap_inputs(ind):
    """Swap the first two operands of a random binary (or ternary) node."""
    slots = [i for i, node in enumerate(ind) if isinstance(node, gp.Primitive) and node.arity >= 2
             and node.args[0] == node.args[1]]
    if not slots:
        return
    i = random.choice(slots)
    first = ind.searchSubtree(i + 1)
    second = ind.searchSubtree(first.stop)
    a, b = ind[first], ind[second]
    list.__setitem__(ind, slice(first.start, second.stop), b + a)


# --- evaluation -----------------------------------------------------------------------

class _Task:
    """What a worker runs: the problem's evaluate on (Expr, refit)."""

    def __init__(self, evaluate):
        self.evaluate = evaluate

    def __call__(self, item):
        expr, refit = item
        return self.evaluate(expr, refit)


def _evaluate(individuals, problem, pset, executor, archive):
    exprs = [to_expr(ind, pset) for ind in individuals]
    keys = [(e, ind.refit) for e, ind in zip(exprs, individuals)]   # hash-consed: equal is same
    todo = [(e, ind.refit) for e, ind in zip(exprs, individuals)]
    results = evaluate_unique(executor, _Task(problem.evaluate), todo, keys,
                              cache=problem.cache)
    for ind, ev in zip(individuals, results):
        archive.setdefault(ev.expr, ev)
        _replace(ind, from_expr(ev.expr, pset))
        ind.fitness.values = tuple(float(v) for v in ev.objectives)
        ind.refit = False


def _individual(tree, ev):
    ind = Individual(tree)
    ind.fitness.values = tuple(float(v) for v in ev.objectives)
    ind.refit = False
    return ind


def _summary(population):
    best = min(ind.fitness.values[0] for ind in population)
    return {"best": best, "front": len(tools.sortNondominated(population, len(population),
                                                               first_front_only=True)[0])}


def _save(path, state):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".checkpoint-")
    with os.fdopen(fd, "wb") as f:
        pickle.dump(state, f)
    os.replace(tmp, path)


def load_checkpoint(path) -> dict:
    """A checkpoint's state (seed, generation, archive, history, population); ValueError
    when the file cannot be read as one."""
    try:
        with open(path, "rb") as f:
            state = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError) as e:
        raise ValueError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or "archive" not in state:
        raise ValueError(f"{path} is not a search checkpoint")
    return state
