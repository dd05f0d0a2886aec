"""What ``verify`` returns: per-output statistics, per-case verdicts, checks, where it breaks, and the report."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ToleranceExceeded
from .tolerances import ILL_CONDITIONED, Tolerance


@dataclass(frozen=True)
class OutputStats:
    """Errors of one output of one case; ``passed``/``reasons`` are the verdict on it."""

    output: str
    shape: tuple[int, ...]
    ref_peak: float
    max_abs_err: float
    mean_abs_err: float
    p999_abs_err: float
    max_rel_err: float
    peak_rel_err: float
    #: max over samples of max|c - r| / allowed error: <= 1 passes; how much of the tolerance is used.
    tolerance_used: float
    cosine: float
    top1: float | None
    top5: float | None
    passed: bool
    reasons: tuple[str, ...] = ()
    #: how far PyTorch's own rounding variants of the reference (Conv-BN folded, channels-last) move this output
    #: (max over samples, of the peak):
    #: the reference's sensitivity to fp32 rounding. None when not measured (no eager reference, no BN).
    ref_noise: float | None = None

    @property
    def ill_conditioned(self) -> bool:
        """ref_noise above ILL_CONDITIONED: judged at the widened bound, but it proves little (verify's docstring)."""
        return self.ref_noise is not None and self.ref_noise > ILL_CONDITIONED

    def to_dict(self) -> dict:
        return {**asdict(self), "ill_conditioned": self.ill_conditioned}


@dataclass(frozen=True)
class CaseResult:
    name: str
    batch: int
    outputs: tuple[OutputStats, ...]
    passed: bool
    error: str | None = None  # the candidate or reference failed to run on this input

    def to_dict(self) -> dict:
        return {"name": self.name, "batch": self.batch, "passed": self.passed, "error": self.error,
                "outputs": [o.to_dict() for o in self.outputs]}


@dataclass(frozen=True)
class Check:
    """A consistency check of the file against its metadata and the reference model."""

    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LayerError:
    module: str
    module_type: str
    rel_err: float  # max|c - r| / max|r| of this layer's output (or weights, for method "weights")
    max_abs_err: float
    diverged: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Divergence:
    """Where candidate and reference part ways. ``module`` is None when every compared layer agrees."""

    method: str  # "activations" (ONNX) or "weights" (TorchScript, pt2)
    module: str | None
    module_type: str | None
    rel_err: float | None
    last_agreeing: str | None
    layers_compared: int
    layers_unmapped: int
    detail: str
    layers: tuple[LayerError, ...] = ()

    def to_dict(self) -> dict:
        data = asdict(self)
        data["layers"] = [layer.to_dict() for layer in self.layers]
        return data


@dataclass(frozen=True)
class VerifyReport:
    path: str
    format: str
    candidate: str
    reference: str
    provider: str
    active_providers: tuple[str, ...]
    tolerance: Tolerance
    passed: bool
    cases: tuple[CaseResult, ...]
    checks: tuple[Check, ...]
    divergence: Divergence | None
    metadata: dict | None
    notes: tuple[str, ...]
    timings_s: dict[str, float] = field(default_factory=dict)
    runtime: str = ""
    #: the statistical verdict (int8 preset): edgekit.verify.statistical.StatisticalResult
    statistical: Any = None

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "format": self.format,
            "runtime": self.runtime,
            "passed": self.passed,
            "candidate": self.candidate,
            "reference": self.reference,
            "provider": self.provider,
            "active_providers": list(self.active_providers),
            "tolerance": self.tolerance.to_dict(),
            "summary": self.summary(),
            "cases": [c.to_dict() for c in self.cases],
            "checks": [c.to_dict() for c in self.checks],
            "divergence": self.divergence.to_dict() if self.divergence else None,
            "metadata": self.metadata,
            "notes": list(self.notes),
            "timings_s": dict(self.timings_s),
            "statistical": self.statistical.to_dict() if self.statistical is not None else None,
        }

    @property
    def worst(self) -> tuple[CaseResult, OutputStats] | None:
        """The output that used most of its tolerance (ill-conditioned ones, judged at a widened bound, aside)."""
        pairs = [(c, o) for c in self.cases for o in c.outputs]
        judged = [p for p in pairs if not p[1].ill_conditioned] or pairs
        return max(judged, key=lambda p: p[1].tolerance_used) if judged else None

    def summary(self) -> str:
        """One line: the verdict and its main reason."""
        if self.statistical is not None and self.passed:
            s = self.statistical.stats
            if self.statistical.judged:
                return (f"PASS: top-1 agreement {s.top1_agree:.4f} (95% CI {s.top1_agree_lo:.4f}-{s.top1_agree_hi:.4f})"
                        f" on {s.n} images, cosine median {s.cosine_median:.4f}: within {self.tolerance.name} "
                        "thresholds; checks passed")
            return (f"PASS: weights within {self.tolerance.name} rounding, no NaN/Inf on {s.n} seeded inputs; "
                    f"agreement ({s.top1_agree:.2f}) not judged without --data DIR")
        if self.passed:
            worst = self.worst
            used = f"; worst case {worst[0].name} uses {100 * worst[1].tolerance_used:.1f}% of the tolerance" if worst else ""
            ill = [c.name for c in self.cases if any(o.ill_conditioned for o in c.outputs)]
            if ill:
                used += f" ({', '.join(ill)}: the reference is ill-conditioned there, which proves little)"
            return f"PASS: {len(self.cases)} input cases within {self.tolerance.name} tolerances{used}"
        reasons: list[str] = []
        for check in self.checks:
            if not check.passed:
                reasons.append(f"{check.name}: {check.detail}")
        if self.statistical is not None:
            reasons.extend(self.statistical.reasons)
        for case in self.cases:
            if case.error:
                reasons.append(f"case {case.name} (batch {case.batch}): {case.error}")
            for out in case.outputs:
                if not out.passed:
                    reasons.append(f"case {case.name} (batch {case.batch}) {out.output}: {'; '.join(out.reasons)}")
        text = f"FAIL: {reasons[0]}" if reasons else "FAIL"
        if len(reasons) > 1:
            text += f" (+{len(reasons) - 1} more)"
        if self.divergence is not None and self.divergence.module is not None:
            text += f"; first diverging layer: {self.divergence.module} ({self.divergence.module_type})"
        worst = [c for c in (self.statistical.coverage if self.statistical is not None else ()) if not c.folded]
        if worst and not self.statistical.passed:
            text += "; worst quantized activations: " + ", ".join(f"{c.module} ({c.sqnr_db:.1f} dB)" for c in worst[:3])
        return text

    def to_text(self) -> str:
        return self.to_table()

    def to_table(self) -> str:
        from ..report import table

        lines = [
            f"candidate  {self.candidate}",
            f"reference  {self.reference}",
            f"tolerance  {self.tolerance.describe()}",
            "",
        ]
        if self.statistical is not None:
            lines.extend([*self.statistical.lines(), ""])
        rows = []
        for case in self.cases:
            if case.error and not case.outputs:
                rows.append([case.name, case.batch, "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "ERROR"])
            for out in case.outputs:
                rows.append([
                    case.name if len(case.outputs) == 1 else f"{case.name}:{out.output}",
                    case.batch,
                    _fmt(out.max_abs_err), _fmt(out.mean_abs_err), _fmt(out.p999_abs_err),
                    _fmt(out.max_rel_err), _fmt(out.peak_rel_err),
                    "-" if out.ref_noise is None else _fmt(out.ref_noise),
                    "-" if not math.isfinite(out.cosine) else f"{out.cosine:.7f}",
                    "-" if out.top1 is None else f"{out.top1:.2f}",
                    "-" if out.top5 is None else f"{out.top5:.2f}",
                    _fmt_used(out.tolerance_used),
                    ("ok" if out.passed else "FAIL") + (" (ill-cond.)" if out.ill_conditioned else ""),
                ])
        if rows:
            lines.append(table(
                rows,
                ["case", "batch", "max_abs", "mean_abs", "p99.9_abs", "max_rel", "peak_rel", "ref_noise", "cosine",
                 "top1", "top5", "tol_used", "verdict"],
                align="lrrrrrrrrrrrl",
            ))
        for case in self.cases:
            if case.error:
                lines.append(f"  {case.name}: {case.error}")
        if self.checks:
            if rows:
                lines.append("")
            for check in self.checks:
                lines.append(f"{'ok  ' if check.passed else 'FAIL'}  {check.name}: {check.detail}")
        if self.divergence is not None:
            lines.append("")
            lines.append(f"where it breaks ({self.divergence.method}): {self.divergence.detail}")
        for note in self.notes:
            lines.append(f"note: {note}")
        lines.append("")
        lines.append(self.summary())
        return "\n".join(lines)

    def raise_if_failed(self) -> "VerifyReport":
        """Raise :class:`ToleranceExceeded` (exit code 1) with the one-line summary when the verdict is FAIL."""
        if not self.passed:
            raise ToleranceExceeded(f"verification of {Path(self.path).name} failed: {self.summary()[6:]}")
        return self


def _fmt_used(used: float) -> str:
    if not math.isfinite(used):
        return "inf"
    return f"{100 * used:.1f}%" if used < 10 else f"{used:.3g}x"


def _fmt(value: float) -> str:
    if value is None or not math.isfinite(value):
        return "inf" if value is not None and math.isinf(value) else "nan"
    return f"{value:.2e}"


