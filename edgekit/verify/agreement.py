"""The statistical verdict: how often a reduced-precision model decides as its fp32 reference does, with a
confidence interval, over many samples.

An INT8 file is not bit-faithful to its reference; "the same numbers" has to become "the same decisions, nearly the
same logits". Over N samples (real images with ``--data``, else seeded image-like inputs):

- **top-1 agreement**: the share of samples whose arg-max is the reference's, with a Wilson score interval (95 %).
  The verdict uses the interval's LOWER bound, so a small N cannot pass by luck: 100 of 100 agreeing gives a lower
  bound of 0.963, 20 of 20 only 0.839.
- **top-5 overlap**: the mean of ``|top5(ref) & top5(cand)| / 5`` (informative: with few classes the low-ranked
  logits of a confident model are noise, and their order flips under any quantization).
- **cosine** of each sample's logit vector with the reference's: the median and the 5th percentile (the bad tail),
  and the **SQNR** of all logits in dB. These see a model that still picks the right class by a shrinking margin.
- **accuracy** of both, when the samples are labelled (informative: the drop is what users care about, and it is
  bounded by the disagreement).

Runtime-independent: everything is computed from logits, so any runner (ONNX Runtime, ExecuTorch, OpenVINO) is
judged the same way. The thresholds (:class:`AgreementThresholds`) live with the tolerance presets.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import BadArgument

CONFIDENCE = 0.95
#: two-sided standard normal quantile for CONFIDENCE (scipy.stats.norm.ppf(0.975)); numpy has no inverse erf
_Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (well-behaved at 0 and 1, unlike the normal interval)."""
    if n <= 0:
        raise BadArgument("a confidence interval needs at least one sample")
    if not 0 <= successes <= n:
        raise BadArgument(f"successes must be in 0..{n}, got {successes}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


@dataclass(frozen=True)
class AgreementStats:
    n: int
    top1_agree: float
    top1_agree_lo: float  # Wilson lower bound at CONFIDENCE
    top1_agree_hi: float
    top1_disagreements: int
    top5_overlap: float | None  # None with fewer than 6 classes (top-5 would be nearly everything)
    cosine_median: float
    cosine_p05: float
    cosine_min: float
    sqnr_db: float
    max_abs_err: float
    nonfinite: int  # samples whose candidate logits hold NaN/Inf
    ref_accuracy: float | None = None
    cand_accuracy: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        text = (f"top-1 agreement {self.top1_agree:.4f} [{self.top1_agree_lo:.4f}, {self.top1_agree_hi:.4f}] "
                f"({self.top1_disagreements} of {self.n} differ)")
        if self.top5_overlap is not None:
            text += f", top-5 overlap {self.top5_overlap:.3f}"
        text += f", cosine median {self.cosine_median:.5f} p5 {self.cosine_p05:.5f}, SQNR {self.sqnr_db:.1f} dB"
        if self.ref_accuracy is not None and self.cand_accuracy is not None:
            text += (f"; accuracy {100 * self.ref_accuracy:.2f}% -> {100 * self.cand_accuracy:.2f}% "
                     f"({100 * (self.cand_accuracy - self.ref_accuracy):+.2f} points)")
        return text


def agreement(ref: np.ndarray, cand: np.ndarray, labels: np.ndarray | None = None) -> AgreementStats:
    """Compare [N, classes] logits of a candidate with its reference's (first dimension: samples)."""
    ref = np.asarray(ref, np.float64).reshape(len(ref), -1)
    cand = np.asarray(cand, np.float64).reshape(len(cand), -1)
    if ref.shape != cand.shape or len(ref) == 0:
        raise BadArgument(f"reference logits {list(ref.shape)} and candidate logits {list(cand.shape)} must have the "
                          "same, non-empty shape")
    n, k = ref.shape
    finite = np.isfinite(cand).all(axis=1)
    c = np.where(np.isfinite(cand), cand, 0.0)
    ref_top = ref.argmax(1)
    cand_top = np.where(finite, c.argmax(1), -1)
    agree = int((ref_top == cand_top).sum())
    lo, hi = wilson_interval(agree, n)
    top5 = None
    if k > 5:
        r5 = np.argsort(-ref, axis=1)[:, :5]
        c5 = np.argsort(-c, axis=1)[:, :5]
        top5 = float(np.mean([len(set(a) & set(b)) / 5 for a, b in zip(r5, c5)]))
    from .stats import cosines_per_sample

    cos = np.where(finite, cosines_per_sample(ref, c), -1.0)
    noise = float(((ref - c) ** 2).sum())
    sqnr = math.inf if noise == 0 else 10 * math.log10(max(float((ref ** 2).sum()), 1e-300) / noise)
    stats = dict(n=n, top1_agree=agree / n, top1_agree_lo=lo, top1_agree_hi=hi, top1_disagreements=n - agree,
                 top5_overlap=top5, cosine_median=float(np.median(cos)), cosine_p05=float(np.percentile(cos, 5)),
                 cosine_min=float(cos.min()), sqnr_db=sqnr, max_abs_err=float(np.abs(ref - c).max()),
                 nonfinite=int((~finite).sum()))
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != n:
            raise BadArgument(f"{len(labels)} labels for {n} samples; pass one label per sample")
        stats.update(ref_accuracy=float((ref_top == labels).mean()), cand_accuracy=float((cand_top == labels).mean()))
    return AgreementStats(**stats)


@dataclass(frozen=True)
class AgreementThresholds:
    """Pass/fail of a statistical verdict; the numbers and their reasons are in ``tolerances.py``."""

    min_top1_agree_lo: float  # Wilson lower bound of top-1 agreement
    min_cosine_median: float
    min_cosine_p05: float

    def check(self, s: AgreementStats) -> list[str]:
        reasons = []
        if s.nonfinite:
            reasons.append(f"{s.nonfinite} of {s.n} samples give NaN/Inf logits")
        if s.top1_agree_lo < self.min_top1_agree_lo:
            reasons.append(f"top-1 agreement {s.top1_agree:.4f} ({s.top1_disagreements} of {s.n} differ; 95% lower "
                           f"bound {s.top1_agree_lo:.4f}) < {self.min_top1_agree_lo:g}")
        if s.cosine_median < self.min_cosine_median:
            reasons.append(f"median logit cosine {s.cosine_median:.5f} < {self.min_cosine_median:g}")
        if s.cosine_p05 < self.min_cosine_p05:
            reasons.append(f"5th-percentile logit cosine {s.cosine_p05:.5f} < {self.min_cosine_p05:g}")
        return reasons

    def describe(self) -> str:
        return (f"top-1 agreement 95% lower bound >= {self.min_top1_agree_lo:g}, logit cosine median >= "
                f"{self.min_cosine_median:g} and 5th percentile >= {self.min_cosine_p05:g}, no NaN/Inf")

    def to_dict(self) -> dict:
        return asdict(self)
