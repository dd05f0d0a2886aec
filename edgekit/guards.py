"""Resource guards: refuse a resolution, batch or input that would swap the machine, with an estimate of its size.

One guard for every command that builds inputs or models (export, verify, bench, eval, quantize, sweep). The model
estimate costs nothing: the model is built on PyTorch's ``meta`` device (shapes only, no storage) and one forward
pass propagates shapes, so even an absurd request is sized without allocating it.
"""

from __future__ import annotations

import os

from typing import Sequence

from .errors import ResourceLimit

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


def estimate_inference_bytes(name: str, alpha: float, res: int, batch: int = 1, num_classes: int = 1000) -> int:
    """Rough peak memory of one inference: weights + the largest layer input+output, times runtime slack."""
    import torch
    import torch.nn as nn

    from .registry import get_spec

    spec = get_spec(name)
    with torch.device("meta"), torch.no_grad():
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


def check_bytes(needed: float, what: str, fix: str) -> None:
    """Raise ResourceLimit when ``needed`` bytes exceed the share of memory edgekit allows itself."""
    available = available_memory_bytes()
    if available is None:
        return
    if needed > _SHARE_OF_AVAILABLE * available:
        gib = 1024**3
        raise ResourceLimit(
            f"{what} would need about {needed / gib:.1f} GiB of memory but only {available / gib:.1f} GiB is "
            f"available; {fix}"
        )


def check_memory(name: str, alpha: float, res: int, batch: int = 1, *, what: str = "this run",
                 num_classes: int = 1000) -> None:
    """Raise ResourceLimit when ``batch`` images at ``res`` would need more memory than the machine can give."""
    if available_memory_bytes() is None:
        return
    needed = estimate_inference_bytes(name, alpha, res, batch, num_classes)
    check_bytes(needed, f"{what} ({name} alpha {alpha:g}, res {res}, batch {batch})", "use a smaller --res or --batch")


def check_tensor_bytes(shapes: Sequence[Sequence[int]], itemsize: int, what: str, fix: str) -> None:
    """Guard for inputs synthesised from a file's declared shape (which may be absurd or hostile)."""
    total = 0.0
    for shape in shapes:
        count = 1.0
        for dim in shape:
            count *= float(dim)
        total += count * itemsize
    check_bytes(total * _SLACK, what, fix)


#: An .npz with more arrays than this is not an input set.
MAX_NPZ_ARRAYS = 256


def check_npz(data: object, what: str) -> None:
    """Read each array's header (not its data) of an open ``numpy.load`` .npz: too many arrays, or more bytes than
    memory allows, are refused before anything is decompressed (an .npz is a zip: a few KB can inflate to GBs)."""
    import numpy as np

    from .errors import BadArgument

    names = list(data.files)  # type: ignore[attr-defined]
    if len(names) > MAX_NPZ_ARRAYS:
        raise BadArgument(f"{what}: it holds {len(names)} arrays; pass at most {MAX_NPZ_ARRAYS}")
    fmt = np.lib.format
    shapes = []
    for name in names:
        with data.zip.open(f"{name}.npy") as fh:  # type: ignore[attr-defined]
            version = fmt.read_magic(fh)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _order, _dtype = read(fh)
        shapes.append(tuple(shape))
    # 8 bytes an element: the largest dtype accepted, and the float64 copies comparisons make
    check_tensor_bytes(shapes, 8, what, "pass fewer or smaller arrays")


def read_npz(path: object, what: str, cls: type, hint: str) -> dict:
    """All arrays of an .npz (no pickles), size-checked from the headers before anything is decompressed;
    ``cls`` (an EdgekitError subclass) with ``hint`` for a file that is not a readable .npz."""
    import numpy as np

    from .errors import BadArgument, first_line

    try:
        with np.load(path, allow_pickle=False) as data:
            check_npz(data, what)
            return {k: data[k] for k in data.files}
    except BadArgument:
        raise
    except FileNotFoundError:
        raise cls(f"{what}: {str(path)!r} does not exist; {hint}") from None
    except Exception as exc:  # noqa: BLE001 - zipfile.BadZipFile, ValueError (pickled objects), OSError ...
        raise cls(f"{what}: not a readable .npz ({first_line(exc, 80)}); {hint}") from None
