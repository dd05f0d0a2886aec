"""The inputs verify feeds: seeded cases that exercise the whole input range, or the user's own tensors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import BadArgument
from ..guards import read_npz
from .options import DEFAULT_INPUT_SEED


@dataclass(frozen=True)
class InputCase:
    name: str
    array: np.ndarray  # float32 NCHW

    @property
    def batch(self) -> int:
        return int(self.array.shape[0])


def make_inputs(
    chw: tuple[int, int, int],
    mean: Sequence[float],
    std: Sequence[float],
    batches: Sequence[int],
    seed: int = DEFAULT_INPUT_SEED,
) -> list[InputCase]:
    """The default seeded cases (see the module docstring): four kinds at batch 1, one mixed batch per size > 1."""
    c, h, w = chw
    rng = np.random.default_rng(seed)
    mean_arr = np.asarray(mean if len(mean) == c else [0.0] * c, dtype=np.float32).reshape(1, c, 1, 1)
    std_arr = np.asarray(std if len(std) == c else [1.0] * c, dtype=np.float32).reshape(1, c, 1, 1)

    def normalize(pixels: np.ndarray) -> np.ndarray:
        return ((pixels - mean_arr) / std_arr).astype(np.float32)

    def kind(name: str, n: int) -> np.ndarray:
        if name == "normal":
            return rng.standard_normal((n, c, h, w), dtype=np.float32)
        if name == "image":
            return normalize(rng.uniform(0.0, 1.0, (n, c, h, w)).astype(np.float32))
        if name == "gray":
            return normalize(np.full((n, c, h, w), 0.5, dtype=np.float32))
        yy, xx = np.indices((h, w))
        board = ((yy + xx) % 2).astype(np.float32)
        return normalize(np.broadcast_to(board, (n, c, h, w)).copy())

    kinds = ("normal", "image", "gray", "checker")
    cases: list[InputCase] = []
    for batch in batches:
        if batch == 1:
            cases.extend(InputCase(k, kind(k, 1)) for k in kinds)
        else:
            samples = [kind(kinds[i % len(kinds)], 1) for i in range(batch)]
            cases.append(InputCase(f"mixed_b{batch}", np.concatenate(samples, axis=0)))
    return cases


def load_inputs(path: Path, chw: tuple[int, int, int], fixed_batch: int | None) -> list[InputCase]:
    """User tensors from an .npz (one case per array), shape-checked against the model's input."""
    arrays = read_npz(path, f"--inputs {path.name}", BadArgument, "write it with numpy.savez(PATH, name=array, ...)")
    if not arrays:
        raise BadArgument(f"--inputs {path.name} holds no arrays; write it with numpy.savez(PATH, x=array)")
    expected = f"[{fixed_batch if fixed_batch else 'N'}, {chw[0]}, {chw[1]}, {chw[2]}]"
    cases = []
    for key, array in arrays.items():
        if array.dtype.kind not in "fiub":
            raise BadArgument(f"--inputs {path.name}[{key!r}] has dtype {array.dtype}; pass float32 NCHW tensors")
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4 or tuple(array.shape[1:]) != tuple(chw) or array.shape[0] < 1:
            raise BadArgument(
                f"--inputs {path.name}[{key!r}] has shape {list(array.shape)}, but the model takes {expected} (NCHW)"
            )
        if fixed_batch is not None and array.shape[0] != fixed_batch:
            raise BadArgument(
                f"--inputs {path.name}[{key!r}] has batch {array.shape[0]}, but the model's batch is fixed at "
                f"{fixed_batch} {expected}; split it, or re-export with --dynamic-batch"
            )
        array = np.ascontiguousarray(array, dtype=np.float32)
        if not np.isfinite(array).all():
            bad = int(array.size - np.isfinite(array).sum())
            raise BadArgument(
                f"--inputs {path.name}[{key!r}] holds {bad} NaN/Inf values: the inputs are not finite, so no export "
                "can be judged on them; pass finite tensors"
            )
        cases.append(InputCase(str(key), array))
    return cases


