"""Module state that edgekit changes for a while and always puts back: per-module training flags.

``model.train(was_training)`` restores one flag for the whole tree; a module tree with mixed flags (a frozen
backbone in eval mode under a training head) would come back changed. Every place that needs eval mode for a
moment uses :func:`eval_mode`, which restores each module's own flag, also when the body raises.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator


@contextlib.contextmanager
def eval_mode(module: Any) -> Iterator[Any]:
    """``module`` in eval mode for the block; every submodule's training flag is restored afterwards."""
    flags = [(m, m.training) for m in module.modules()]
    try:
        module.eval()
        yield module
    finally:
        for sub, training in flags:
            sub.training = training


def flatten_outputs(out: Any) -> list:
    """A model's output (a tensor, or lists/tuples/dicts of them) as a flat list of tensors."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in flatten_outputs(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in flatten_outputs(v)]
    raise TypeError(f"model returned {type(out).__name__}, not tensors")
