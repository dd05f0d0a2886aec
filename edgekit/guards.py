"""Resource guards: refuse a resolution or batch that would swap the machine, with an estimate of what it needs.

The estimate costs nothing: the model is built on PyTorch's ``meta`` device (shapes only, no storage) and one
forward pass propagates shapes, so even an absurd request is sized without allocating it.
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn

from .errors import ResourceLimit
from .registry import get_spec

_BYTES_PER_FLOAT = 4
#: Inference keeps a layer's input and output alive; runtimes add workspace and arena slack on top.
_SLACK = 3.0
#: Refuse when the estimate exceeds this share of the memory available right now.
_SHARE_OF_AVAILABLE = 0.6


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else total physical memory, else None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


@torch.no_grad()
def estimate_inference_bytes(name: str, alpha: float, res: int, batch: int = 1, num_classes: int = 1000) -> int:
    """Rough peak memory of one inference: weights + the largest layer input+output, times runtime slack."""
    spec = get_spec(name)
    with torch.device("meta"):
        model = spec.builder(alpha, num_classes).eval()
        peak = 0

        def hook(_module: nn.Module, inputs: tuple, output: object) -> None:
            nonlocal peak
            size = sum(t.numel() for t in inputs if isinstance(t, torch.Tensor))
            if isinstance(output, torch.Tensor):
                size += output.numel()
            peak = max(peak, size)

        handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
        try:
            model(torch.empty(1, 3, res, res))
        finally:
            for handle in handles:
                handle.remove()
    weights = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    return int((weights + peak * batch) * _BYTES_PER_FLOAT * _SLACK)


def check_memory(name: str, alpha: float, res: int, batch: int = 1, *, what: str = "this run") -> None:
    """Raise ResourceLimit when ``batch`` images at ``res`` would need more memory than the machine can give."""
    available = available_memory_bytes()
    if available is None:
        return
    needed = estimate_inference_bytes(name, alpha, res, batch)
    if needed > _SHARE_OF_AVAILABLE * available:
        gib = 1024**3
        raise ResourceLimit(
            f"{what} would need about {needed / gib:.1f} GiB of memory ({name} alpha {alpha:g}, res {res}, batch {batch}) "
            f"but only {available / gib:.1f} GiB is available; use a smaller --res or --batch"
        )
