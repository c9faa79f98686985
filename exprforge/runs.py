"""Run directories of the searching commands (approx, regress, discover-ode): where one
goes when --out is not given, and the Pareto-front plot each of them draws."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path


def default_run_dir(command: str, label: str) -> Path:
    """A new directory name under the kernel store: runs/COMMAND-LABEL-STAMP-PID."""
    from exprforge.targets.store import cache_dir
    label = re.sub(r"[^\w.-]", "_", label) or "run"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return cache_dir() / "runs" / f"{command}-{label}-{stamp}-{os.getpid()}"


def plot_front(path: Path, x, y, *, xlabel: str, ylabel: str, title: str,
               goal: float | None = None, chosen: int | None = None) -> bool:
    """A Pareto front as a step plot (log y axis) saved to `path` with matplotlib's Agg
    back end; `goal` draws a dashed line, `chosen` marks that point. False when
    matplotlib is missing (nothing written)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.step(x, y, where="post", marker="o")
    ax.set_yscale("log")
    if goal is not None:
        ax.axhline(goal, color="gray", linestyle="--", label="goal")
    if chosen is not None:
        ax.plot([x[chosen]], [y[chosen]], marker="*", markersize=14, color="tab:red",
                linestyle="none", label="chosen")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if goal is not None or chosen is not None:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
