"""Comparing outputs: the statistics and the verdict of one output, relative to each sample's peak."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .results import OutputStats
from .tolerances import REFERENCE_NOISE_FACTOR, Tolerance


@dataclass
class _Bounds:
    """Per-sample limits: allowed max error, top-1 near-tie margin, cosine floor (widened by the fold noise)."""

    allowed: np.ndarray
    ties: np.ndarray
    cos_floor: np.ndarray
    ref_noise: float | None = None


def _fold_noise(bounds: _Bounds, r: np.ndarray, folded: np.ndarray, peaks: np.ndarray) -> None:
    """Widen the bounds to REFERENCE_NOISE_FACTOR x how far PyTorch's own rounding variants move the reference."""
    batch = r.shape[0]
    f = np.asarray(folded, dtype=np.float64).reshape(batch, -1)
    noise = np.abs(f - r).max(axis=1) if r.size else np.zeros(batch)
    with np.errstate(divide="ignore", invalid="ignore"):
        noise_rel = np.where(peaks > 0, noise / peaks, 0.0)
        fold_cos = np.sum(r * f, axis=1) / (np.linalg.norm(r, axis=1) * np.linalg.norm(f, axis=1))
    bounds.ref_noise = float(noise_rel.max()) if noise_rel.size else 0.0
    bounds.allowed = np.maximum(bounds.allowed, REFERENCE_NOISE_FACTOR * noise)
    bounds.ties = np.maximum(bounds.ties, 2 * REFERENCE_NOISE_FACTOR * noise)
    fold_cos = np.nan_to_num(fold_cos, nan=1.0)
    bounds.cos_floor = np.minimum(bounds.cos_floor, 1 - REFERENCE_NOISE_FACTOR**2 * (1 - fold_cos))


def cosines_per_sample(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Cosine similarity of each sample's flattened outputs (1.0 when both are all-zero, -1 for NaN)."""
    dots = np.sum(r * c, axis=1)
    norms = np.linalg.norm(r, axis=1) * np.linalg.norm(c, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cosines = np.where(norms > 0, dots / norms, np.where(np.linalg.norm(r - c, axis=1) == 0, 1.0, 0.0))
    return np.nan_to_num(cosines, nan=-1.0)


def _top_k(r: np.ndarray, c: np.ndarray, ties: np.ndarray, reasons: list[str]) -> tuple[float, float]:
    """Top-1 agreement (flips between near-tied classes excepted: rounding, not a fault) and top-5 overlap."""
    batch = r.shape[0]
    ref_top = np.argmax(r, axis=1)
    cand_top = np.argmax(c, axis=1)
    idx = np.arange(batch)
    margin = r[idx, ref_top] - r[idx, cand_top]
    agree = (ref_top == cand_top) | (margin <= ties)
    if not agree.all():
        b = int(np.argmin(agree))
        reasons.append(
            f"top-1 class differs on {int((~agree).sum())} of {batch} samples "
            f"(sample {b}: reference {int(ref_top[b])}, candidate {int(cand_top[b])})"
        )
    k = min(5, r.shape[1])
    ref5 = np.argsort(-r, axis=1)[:, :k]
    cand5 = np.argsort(-c, axis=1)[:, :k]
    return float(agree.mean()), float(np.mean([len(set(a) & set(b_)) / k for a, b_ in zip(ref5, cand5)]))


def compare_output(name: str, ref: np.ndarray, cand: np.ndarray, tol: Tolerance,
                   folded: np.ndarray | None = None) -> OutputStats:
    """Statistics and verdict for one output (first dimension = batch).

    ``folded``: the same output computed by PyTorch's own Conv-BN fold of the reference. How far it moves from
    ``ref`` is the reference's sensitivity to rounding; where that exceeds the fixed tolerance the bounds widen to
    ``REFERENCE_NOISE_FACTOR`` times it; beyond ``ILL_CONDITIONED`` it proves little (``OutputStats.ill_conditioned``).
    """
    ref = np.asarray(ref, dtype=np.float64)
    cand = np.asarray(cand, dtype=np.float64)
    if ref.shape != cand.shape:
        nan = float("nan")
        return OutputStats(name, tuple(cand.shape), nan, nan, nan, nan, nan, nan, math.inf, nan, None, None, False,
                           (f"shape {list(cand.shape)} differs from the reference's {list(ref.shape)}",))
    reasons: list[str] = []
    batch = ref.shape[0] if ref.ndim else 1
    r = ref.reshape(batch, -1)
    c = cand.reshape(batch, -1)
    finite_ref = np.isfinite(r)
    bad = finite_ref & ~np.isfinite(c)
    if bad.any():
        reasons.append(f"{int(bad.sum())} NaN/Inf values where the reference is finite")
    diff = np.abs(np.where(finite_ref & np.isfinite(c), c - r, 0.0))
    diff[bad] = np.inf
    peaks = np.max(np.abs(np.where(finite_ref, r, 0.0)), axis=1) if r.size else np.zeros(batch)
    max_per_sample = diff.max(axis=1) if r.size else np.zeros(batch)
    bounds = _Bounds(np.array([tol.allowed(float(p)) for p in peaks]), np.array([tol.tie(float(p)) for p in peaks]),
                     np.full(batch, tol.min_cosine))
    if folded is not None and np.shape(folded) == ref.shape and np.isfinite(folded).all() and finite_ref.all():
        _fold_noise(bounds, r, folded, peaks)
    with np.errstate(divide="ignore", invalid="ignore"):
        used = np.where(bounds.allowed > 0, max_per_sample / bounds.allowed, np.where(max_per_sample > 0, np.inf, 0.0))
        peak_rel = np.where(peaks > 0, max_per_sample / peaks, np.where(max_per_sample > 0, np.inf, 0.0))
        rel = diff / np.maximum(np.abs(r), np.finfo(np.float32).tiny)
    tolerance_used = float(used.max()) if used.size else 0.0
    if tolerance_used > 1.0:
        b = int(np.argmax(used))
        allowed = bounds.allowed[b]
        how = (f"= {tol.atol:g} + {tol.rtol:g} * peak {peaks[b]:.3g}" if allowed <= tol.allowed(float(peaks[b]))
               else f"{REFERENCE_NOISE_FACTOR:g}x the reference's own rounding noise")
        reasons.append(f"max abs error {max_per_sample[b]:.3g} exceeds {allowed:.3g} ({how}; {peak_rel[b]:.2e} of "
                       "the peak)")
    cosines = cosines_per_sample(r, c)
    if (cosines < bounds.cos_floor).any():
        b = int(np.argmax(bounds.cos_floor - cosines))
        reasons.append(f"cosine similarity {cosines[b]:.6f} < {bounds.cos_floor[b]:.6g}")
    top1 = top5 = None
    if ref.ndim == 2 and ref.shape[1] >= 2 and np.isfinite(c).all() and np.isfinite(r).all():
        top1, top5 = _top_k(r, c, bounds.ties, reasons)
    finite_diff = diff[np.isfinite(diff)]
    return OutputStats(
        output=name, shape=tuple(int(s) for s in cand.shape), ref_peak=float(peaks.max()) if peaks.size else 0.0,
        max_abs_err=float(diff.max()) if diff.size else 0.0, mean_abs_err=float(diff.mean()) if diff.size else 0.0,
        p999_abs_err=float(np.percentile(finite_diff, 99.9)) if finite_diff.size else 0.0,
        max_rel_err=float(rel.max()) if rel.size else 0.0, peak_rel_err=float(peak_rel.max()) if peak_rel.size else 0.0,
        tolerance_used=tolerance_used, cosine=float(cosines.min()) if cosines.size else 1.0, top1=top1, top5=top5,
        passed=not reasons, reasons=tuple(reasons), ref_noise=bounds.ref_noise,
    )


def compare_outputs(
    names: Sequence[str], ref: Sequence[np.ndarray], cand: Sequence[np.ndarray], tol: Tolerance,
    folded: Sequence[np.ndarray] | None = None,
) -> tuple[OutputStats, ...]:
    """Compare output lists position by position; a different number of outputs is itself a failure."""
    folds: Sequence[np.ndarray | None] = folded if folded is not None and len(folded) == len(ref) else [None] * len(ref)
    stats = [compare_output(n, r, c, tol, f) for n, r, c, f in zip(names, ref, cand, folds)]
    if len(ref) != len(cand):
        nan = float("nan")
        stats.append(OutputStats("(outputs)", (), nan, nan, nan, nan, nan, nan, math.inf, nan, None, None, False,
                                 (f"candidate has {len(cand)} outputs, the reference {len(ref)}",)))
    return tuple(stats)


