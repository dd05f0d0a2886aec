"""The statistical verdict of ``verify`` for quantized files (the ``int8`` preset): many samples, agreement with a
confidence interval, and, for ONNX QDQ files, how well each calibrated range covers the inputs.

What is judged depends on what the inputs can prove (the rationale is in ``edgekit/verify/__init__.py``):

- ``--data DIR`` (real images, preprocessed as the file's metadata says): top-1 agreement (95% lower bound),
  median and 5th-percentile logit cosine against the fp32 PyTorch reference, no NaN/Inf.
- no ``--data``: seeded image-like inputs. Agreement is measured and reported, not judged: a faithful INT8 file
  of a seeded (untrained) network agrees with it on 5-100% of such inputs and one calibrated on constant images can
  look closer; even a trained model sees them as out-of-distribution. Judged: no NaN/Inf, each layer's weights
  within 8-bit rounding of the reference's fold (the weights check), and, when the file was calibrated on
  synthetic inputs (so these inputs are its calibration distribution), that the input's calibrated range keeps at
  least ``min_activation_sqnr_db`` through its quantization.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BadArgument
from .agreement import AgreementStats, AgreementThresholds, agreement
from .tolerances import Tolerance

#: samples used when --samples is not given
DEFAULT_DATA_SAMPLES = 500
DEFAULT_SYNTHETIC_SAMPLES = 100
#: verify's synthetic inputs use the seed --seed + this, so they never repeat 'synthetic' calibration's (seed 0)
SYNTHETIC_SEED_OFFSET = 1
#: samples for the per-activation coverage pass (every tensor of the graph is held in memory)
COVERAGE_SAMPLES = 32


@dataclass(frozen=True)
class StatisticalResult:
    source: str  # what the samples were, in words
    from_data: bool
    stats: AgreementStats
    thresholds: AgreementThresholds
    judged: bool  # do the agreement thresholds decide?
    coverage: tuple  # edgekit.precision.layers.Coverage, worst first (ONNX QDQ files)
    coverage_judged: bool
    reasons: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict:
        return {"source": self.source, "from_data": self.from_data, "stats": self.stats.to_dict(),
                "thresholds": self.thresholds.to_dict(), "agreement_judged": self.judged,
                "coverage": [c.to_dict() for c in self.coverage], "coverage_judged": self.coverage_judged,
                "passed": self.passed, "reasons": list(self.reasons), "notes": list(self.notes)}

    def lines(self) -> list[str]:
        """The report block verify prints."""
        s = self.stats
        mark = "" if self.judged else "  (reported, not judged: see note)"
        out = [f"samples    {self.source}",
               f"agreement  {s.describe()}{mark}",
               f"           largest |logit difference| {s.max_abs_err:.3g}, {s.nonfinite} samples with NaN/Inf"]
        if self.coverage:
            worst = self.coverage[: 5 if not self.passed else 3]
            out.append("activations (quantized vs unquantized, worst first"
                       + ("" if self.coverage_judged else "; reported, not judged") + "):")
            out.extend(f"  {c.describe()}" for c in worst)
        return out


def load_samples(data: Any, geo: Any, meta: Any, samples: int, seed: int) -> tuple[np.ndarray, np.ndarray | None,
                                                                                   str]:
    """``--data``: a seeded subset of ``samples`` images, preprocessed as the file's metadata says (res, mean,
    std), with their labels when they are this model's classes."""
    from ..precision import Preprocess, load_all, pick, resolve_source

    pre = Preprocess(res=geo.chw[1], mean=geo.mean, std=geo.std)
    dataset = resolve_source(data, pre, input_name=meta.input_name if meta else "input")
    x, y = load_all(pick(dataset, samples, seed), pre)
    if y is not None and meta is not None and len(y) and int(y.max()) >= meta.num_classes:
        y = None  # labels of another class list: agreement still holds, accuracy would be meaningless
    return x, y, f"{len(x)} of {len(dataset)} images from {dataset.description}"


def _samples(options: Any, geo: Any, meta: Any) -> tuple[np.ndarray, np.ndarray | None, str, bool]:
    from ..precision.data import synthetic_images

    if options.data is not None:
        x, y, source = load_samples(options.data, geo, meta, options.samples or DEFAULT_DATA_SAMPLES,
                                    options.input_seed)
        return x, y, source, True
    n = options.samples or DEFAULT_SYNTHETIC_SAMPLES
    seed = options.input_seed + SYNTHETIC_SEED_OFFSET
    x = synthetic_images(n, geo.chw, geo.mean, geo.std, seed)
    return x, None, f"{n} seeded image-like inputs (synthetic, seed {seed}; pass --data DIR for real images)", False


def _calibrated_on_synthetic(meta: Any) -> bool:
    quant = (meta.quantization or {}) if meta is not None else {}
    calibration = quant.get("calibration") if isinstance(quant, dict) else None
    return isinstance(calibration, dict) and calibration.get("kind") == "synthetic"


def statistical_check(options: Any, candidate: Any, ref: Any, geo: Any, tol: Tolerance, fmt: Any) -> StatisticalResult:
    """Run reference and candidate on many samples and judge them (see the module docstring)."""
    assert tol.agreement is not None
    if geo.chw[0] != 3:
        raise BadArgument(f"statistical verification needs a 3-channel image input, {candidate.label} takes {geo.chw}")
    meta = candidate.metadata
    x, y, source, from_data = _samples(options, geo, meta)
    ref_logits = np.asarray(ref.runner.run_batched(x, 16), np.float32)
    cand_logits = np.asarray(candidate.run_batched(x, 16), np.float32)
    stats = agreement(ref_logits.reshape(len(x), -1), cand_logits.reshape(len(x), -1), y)
    judged = from_data
    reasons = tol.agreement.check(stats) if judged else (
        [f"{stats.nonfinite} of {stats.n} samples give NaN/Inf logits"] if stats.nonfinite else [])
    coverage: list = []
    coverage_judged = False
    notes: list[str] = []
    if fmt.name == "onnx" and candidate.path is not None and (meta is None or meta.precision == "int8"):
        from ..precision.layers import activation_coverage

        coverage = activation_coverage(candidate.path, x[:COVERAGE_SAMPLES], candidate.inputs[0].name)
        coverage_judged = not from_data and _calibrated_on_synthetic(meta) and tol.min_activation_sqnr_db is not None
        # Judged: the graph input's range (pure data: inputs like the calibration data must fit it). Deeper ranges are
        # reported only: an untrained network amplifies the INT8 noise until its own activations leave ranges that
        # were calibrated on fp32 activations, which says nothing about the calibration.
        bad = [c for c in coverage if c.op_type == "Input" and c.sqnr_db < (tol.min_activation_sqnr_db or 0)]
        if coverage_judged and bad:
            reasons.append(f"the input's calibrated range does not fit inputs like the calibration data "
                           f"({bad[0].describe()}): the file was calibrated on other images (constant ones, another "
                           "normalization)")
    if not judged:
        notes.append("agreement on seeded image-like inputs is reported, not judged: INT8 noise decides near-tied "
                     "classes of untrained networks, and trained ones see these inputs as out-of-distribution; pass "
                     "--data DIR with images like the calibration data for a verdict on agreement")
    return StatisticalResult(source, from_data, stats, tol.agreement, judged, tuple(coverage), coverage_judged,
                             tuple(reasons), tuple(notes))
