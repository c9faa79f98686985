"""The training loop the paper reproductions share: Adam with a cosine schedule over
minibatches shuffled from a seeded generator."""
from __future__ import annotations

import math
import time

import torch


def minibatch_adam(net, x, y, loss_fn, lr: float, batch: int, epochs: int, seed: int) -> dict:
    """Train `net` in place on (x, y); returns the number of steps and the seconds taken."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * math.ceil(len(x) / batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    began = time.perf_counter()
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            loss = loss_fn(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    return {"steps": steps, "seconds": round(time.perf_counter() - began, 2)}
