"""Numerical equivalence of an exported model against the PyTorch model it came from.

``edgekit verify model.onnx`` reads edgekit's metadata from the file, rebuilds the *unfused* eager PyTorch model
with the same weights (or seed), feeds both the same seeded inputs and compares every output. A file without
metadata needs ``--model/--alpha[/--res/--weights]``, or ``--against OTHER_FILE`` to compare two exports (ONNX,
TorchScript and torch.export ``.pt2`` in any pairing).

Inputs
------
By default, at batch 1: ``normal`` (standard normal), ``image`` (uniform [0, 1] pixels, then the model's
``(x - mean) / std``), ``gray`` (a constant mid-gray image: every spatial position identical) and ``checker`` (a
black/white checkerboard: the extreme pixel values, full-frequency content). When the batch dimension is symbolic,
also one ``mixed`` batch of 3 different samples, which catches graphs that baked the example batch size into a
reshape. ``--inputs FILE.npz`` replaces them with your own tensors (one case per array).

Statistics, per output and case
-------------------------------
``max_abs_err``, ``mean_abs_err``, ``p99.9_abs_err``; ``max_rel_err`` (elementwise ``|c - r| / |r|``, as Polygraphy
prints it: informative, but unbounded for logits that cross zero); ``peak_rel_err`` (``max |c - r|`` divided by the
sample's largest ``|r|``: the error relative to the output's dynamic range); ``cosine`` (the smallest per-sample
cosine similarity); for classifier logits ``top1`` (share of samples whose argmax agrees) and ``top5`` (mean overlap
of the top-5 sets). ``--json`` prints all of it.

Verdict and default tolerances
------------------------------
A case passes when, for every sample ``b`` of every output,

* ``max |c_b - r_b| <= atol + rtol * max |r_b|`` (the tolerance is relative to the sample's *peak* magnitude, not to
  each element: logits pass through zero, so an elementwise relative bound either fails faithful exports or has to
  be so loose that it passes broken ones);
* the cosine similarity of ``c_b`` and ``r_b`` is at least ``min_cosine``;
* the top-1 class agrees, unless the reference's two best logits are closer than the allowed error (a near-tie
  that any faithful rounding may flip);
* the candidate's output has the reference's shape and no NaN/Inf where the reference is finite.

Presets (``--tolerance``; ``--atol`` / ``--rtol`` override a preset's numbers):

========  =======  =======  ==========  ==================================================================
preset    atol     rtol     min_cosine  for
========  =======  =======  ==========  ==================================================================
fp32      1e-5     1e-4     0.99999     fp32 exports on any fp32 runtime (the default)
fp16      1e-3     1e-2     0.999       half-precision exports or runtimes that compute in fp16/TF32
========  =======  =======  ==========  ==================================================================

Why these fp32 numbers: a faithful export differs from the eager reference only by rounding. Folding each BN into
its convolution changes the order of fp32 operations, and ONNX Runtime's kernels (Winograd/im2col, fused
activations, different reduction orders) round differently from PyTorch's. Measured on seeded weights (non-trivial
BN statistics), fused exports through ONNX Runtime CPU land at 4e-6 to 3e-5 of the logits' peak magnitude, with
the deepest networks (EfficientNet-B7 depth) at the top of that range; the worst case per model is in the README.
``rtol = 1e-4`` leaves a 3-10x margin above the worst faithful export. The faults the test suite injects sit far
above it: three weights of one layer moved by 0.3 of that layer's standard deviation move the logits by 1e-3 to
2e-1 of their peak, a BN folded with wrong statistics, swapped RGB/BGR channels or a wrong normalization by more
than 1e-2. ``atol = 1e-5`` only matters for outputs whose peak is near zero. ``min_cosine`` is implied by ``rtol``
in fp32 (cosine error grows with the square of the relative error) and guards the fp16 preset and loosened runs.
Tolerances are absolute numbers on *logits*: softmax probabilities would hide errors in the tail classes.

Ill-conditioned references
--------------------------
Some networks amplify rounding: a deep residual stack whose activations grow layer after layer turns a 1e-7 change
in one convolution into a visible change of the logits. No export can match such a reference more closely than the
reference matches itself. So when a case misses the fixed bound, ``verify`` also runs the reference with every
Conv-BN pair folded by PyTorch's own ``fuse_conv_bn_eval`` (the best a fused export can do) and measures how far
that moves each output (``ref_noise``, of the peak). Where ``REFERENCE_NOISE_FACTOR`` (4) times that exceeds the
fixed bound, the bound widens to it (and the cosine and top-1 tie bounds with it): a faithful export lands within a
few times the reference's own fold noise, since both are the same rounding amplified by the same network (measured:
ONNX Runtime's error is 1.0-1.9x the fold noise on every registered model). Where the fold alone moves an output by
more than ``ILL_CONDITIONED`` (1e-2) of its peak, nothing can be certified: the case fails and says that the
reference, not the export, is the problem. Well-conditioned models (trained weights, the seeded models of the zoo)
never reach the widening.

A file whose metadata disagrees with the file itself (input shape vs ``res``, output size vs ``num_classes``,
mean/std vs the model's, input/output names, weight shapes vs the model at ``alpha``) fails too: the metadata is
what a deployment reads to preprocess images, so a lie there is a broken export even when the numbers agree.

Where it breaks
---------------
When outputs disagree and the reference is the eager model, ``verify`` localises the first diverging layer. For an
ONNX candidate it maps every Conv/Gemm node to the PyTorch module it came from: by its weight initializer's name
(the dynamo exporter names initializers after the parameters, e.g. ``features.3.conv.1.0.weight``, and that
survives onnxsim), else by the module scopes the exporter records in node ``metadata_props``
(``pkg.torch.onnx.name_scopes``; onnxsim drops these), else by position when the layer counts and weight shapes
agree. Those node outputs are added as extra graph outputs and compared with forward-hook outputs of the same
modules in PyTorch's execution order. A convolution followed by BatchNorm in the unfused model is compared at the
BatchNorm's output, since that is what the folded convolution computes. The first layer whose error exceeds ``rtol``
of its peak is named, together with whether its weights match the reference's Conv-BN fold (weights differ: the
layer itself is wrong; weights match: what reaches it differs, e.g. channel order or normalization inside the
graph when it is the first layer). TorchScript (frozen graphs have no modules left) and ``.pt2`` candidates are
localised by comparing their convolution / linear weights with the reference's fold, layer by layer.
"""

from __future__ import annotations

import ast
import importlib.metadata
import math
import os
import re
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from .errors import BadArgument, BadModelFile, EdgekitError, ProviderUnavailable, ToleranceExceeded
from .metadata import TORCHSCRIPT_EXTRA_FILE, Metadata
from .weights import resolve_weights_path

PROVIDERS = ("cpu", "cuda")
DEFAULT_INPUT_SEED = 0
#: Batch of the extra case run when the batch dimension is symbolic: > 1, and not a power of two, so a graph that
#: baked the example batch (1) or a "typical" one (2, 4, 8) into a reshape is caught.
DYNAMIC_BATCH_CASE = 3
MAX_BATCH = 1024
#: Where the reference itself is sensitive to rounding (see "Ill-conditioned references" above), a faithful export
#: may differ from it by this multiple of how far PyTorch's own Conv-BN fold moves it ...
REFERENCE_NOISE_FACTOR = 4.0
#: ... up to this fraction of the output's peak; beyond it the reference cannot certify anything and the case fails.
ILL_CONDITIONED = 1e-2
_ORT_PROVIDER = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


# ----------------------------------------------------------------------------------------------------------------
# Tolerances and options
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tolerance:
    """Pass/fail thresholds; see the module docstring for the meaning and the rationale of the presets."""

    name: str
    atol: float
    rtol: float
    min_cosine: float
    #: top-1 may flip only between classes the reference separates by less than 2 * (tie_atol + tie_rtol * peak):
    #: rounding noise of the preset's precision. Kept apart from atol/rtol so that loosening those (a quantized
    #: or fp16 runtime) never lets a real change of the predicted class pass.
    tie_atol: float = 1e-5
    tie_rtol: float = 1e-4

    def allowed(self, peak: float) -> float:
        """The largest absolute error allowed for a sample whose largest reference magnitude is ``peak``."""
        return self.atol + self.rtol * peak

    def tie(self, peak: float) -> float:
        """Reference top-1 margins at or below this are near-ties: a flip there is rounding, not a fault."""
        return 2 * (self.tie_atol + self.tie_rtol * peak)

    def describe(self) -> str:
        return (
            f"{self.name}: max|c - r| <= {self.atol:g} + {self.rtol:g} * max|r| per sample, "
            f"cosine >= {self.min_cosine:g}, top-1 agrees (near-ties excepted)"
        )

    def to_dict(self) -> dict:
        return asdict(self)


TOLERANCE_PRESETS: dict[str, Tolerance] = {
    "fp32": Tolerance("fp32", atol=1e-5, rtol=1e-4, min_cosine=0.99999, tie_atol=1e-5, tie_rtol=1e-4),
    "fp16": Tolerance("fp16", atol=1e-3, rtol=1e-2, min_cosine=0.999, tie_atol=1e-3, tie_rtol=1e-2),
}


def _parse_number(value: object, what: str, example: str) -> float:
    number = math.nan
    if not isinstance(value, bool):
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            pass
    if not math.isfinite(number):
        raise BadArgument(f"{what} must be a finite number, got {value!r}; pass e.g. {example}")
    return number


def _check_nonneg_float(value: object, what: str) -> float:
    number = _parse_number(value, what, f"{what} 1e-4")
    if number < 0:
        raise BadArgument(f"{what} must be >= 0, got {value!r}")
    return number


def _check_batch(value: object) -> int:
    if isinstance(value, bool):
        raise BadArgument(f"--batch must be a positive whole number, got {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadArgument(f"--batch must be a positive whole number, got {value!r}") from None
    if not math.isfinite(number) or number != int(number) or number < 1:
        raise BadArgument(f"--batch must be a positive whole number (1, 3, 8, ...), got {value!r}")
    if number > MAX_BATCH:
        raise BadArgument(f"--batch {int(number)} is larger than the maximum {MAX_BATCH}; a few samples are enough")
    return int(number)


@dataclass(frozen=True)
class VerifyOptions:
    """What to compare against and how strictly; validated once, here (strings from the CLI are accepted).

    ``against``: another exported file as the reference instead of the eager model. ``model``/``alpha``/``res``/
    ``weights``/``num_classes``/``seed``: describe the eager reference; needed for a file without edgekit metadata,
    and override the metadata when given. ``weights``: ``"seed:N"``, ``"imagenet"`` or a state_dict path.
    ``batches``: batch sizes of the generated inputs (default: 1, plus 3 when the batch dimension is symbolic).
    ``inputs``: an ``.npz`` of your own input tensors instead. ``tolerance``: a preset name; ``atol``/``rtol``
    override its numbers. ``localize``: on failure, find the first diverging layer.
    """

    against: Path | None = None
    model: str | None = None
    alpha: float | None = None
    res: int | None = None
    weights: str | None = None
    num_classes: int | None = None
    seed: int | None = None
    batches: tuple[int, ...] | None = None
    inputs: Path | None = None
    input_seed: int = DEFAULT_INPUT_SEED
    provider: str = "cpu"
    tolerance: str = "fp32"
    atol: float | None = None
    rtol: float | None = None
    localize: bool = True

    def __post_init__(self) -> None:
        from .models import check_alpha, check_num_classes, check_res, get_spec
        from .weights import check_seed

        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        if self.against is not None:
            put("against", _check_model_path(self.against, "--against file"))
        spec = get_spec(self.model) if self.model is not None else None
        if spec is not None:
            put("model", spec.name)
        if self.alpha is not None:
            put("alpha", check_alpha(self.alpha))
        if self.res is not None:
            if spec is not None:
                put("res", check_res(spec, self.res))
            else:
                number = _parse_number(self.res, "resolution", "--res 224")
                if number != int(number) or number < 1:
                    raise BadArgument(f"resolution must be a positive whole number of pixels, got {self.res!r}")
                put("res", int(number))
        if self.num_classes is not None:
            put("num_classes", check_num_classes(self.num_classes))
        if self.seed is not None:
            put("seed", check_seed(self.seed))
        if self.weights is not None:
            _parse_weights(str(self.weights))  # raises on a malformed value
            put("weights", str(self.weights))
        if self.batches is not None:
            batches = (self.batches,) if isinstance(self.batches, (int, str)) else tuple(self.batches)
            if not batches:
                raise BadArgument("--batch needs at least one batch size")
            put("batches", tuple(dict.fromkeys(_check_batch(b) for b in batches)))
        if self.inputs is not None:
            path = Path(self.inputs)
            if not path.is_file():
                what = "is a directory" if path.is_dir() else "does not exist"
                raise BadArgument(f"--inputs file {str(path)!r} {what}; pass an .npz written by numpy.savez")
            if self.batches is not None:
                raise BadArgument("--inputs and --batch exclude each other: the arrays in the .npz set the batch")
            put("inputs", path)
        check_seed(self.input_seed)
        provider = str(self.provider).strip().lower()
        if provider not in PROVIDERS:
            raise BadArgument(f"unknown provider {self.provider!r}; use one of: {', '.join(PROVIDERS)}")
        put("provider", provider)
        tolerance = str(self.tolerance).strip().lower()
        if tolerance not in TOLERANCE_PRESETS:
            raise BadArgument(
                f"unknown tolerance preset {self.tolerance!r}; use one of: {', '.join(TOLERANCE_PRESETS)}"
            )
        put("tolerance", tolerance)
        if self.atol is not None:
            put("atol", _check_nonneg_float(self.atol, "--atol"))
        if self.rtol is not None:
            put("rtol", _check_nonneg_float(self.rtol, "--rtol"))
        if self.atol == 0 and self.rtol == 0:
            raise BadArgument("--atol 0 and --rtol 0 together demand bit-exact results, which no export gives")
        if self.against is not None and (self.model or self.weights or self.alpha is not None
                                         or self.num_classes is not None):
            raise BadArgument("--against compares two files; drop --model/--alpha/--weights/--num-classes (they "
                              "describe an eager reference; --res may size the input)")

    @property
    def tol(self) -> Tolerance:
        base = TOLERANCE_PRESETS[self.tolerance]
        if self.atol is None and self.rtol is None:
            return base
        return Tolerance(
            name=f"{base.name} (custom)",
            atol=base.atol if self.atol is None else self.atol,
            rtol=base.rtol if self.rtol is None else self.rtol,
            min_cosine=base.min_cosine,
            tie_atol=base.tie_atol,
            tie_rtol=base.tie_rtol,
        )


# ----------------------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------------------
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
    #: how far PyTorch's own Conv-BN fold of the reference moves this output (max over samples, of the peak):
    #: the reference's sensitivity to fp32 rounding. None when not measured (no eager reference, no BN).
    ref_noise: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


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

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "format": self.format,
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
        }

    @property
    def worst(self) -> tuple[CaseResult, OutputStats] | None:
        pairs = [(c, o) for c in self.cases for o in c.outputs]
        return max(pairs, key=lambda p: p[1].tolerance_used) if pairs else None

    def summary(self) -> str:
        """One line: the verdict and its main reason."""
        if self.passed:
            worst = self.worst
            used = f"; worst case {worst[0].name} uses {100 * worst[1].tolerance_used:.1f}% of the tolerance" if worst else ""
            return f"PASS: {len(self.cases)} input cases within {self.tolerance.name} tolerances{used}"
        reasons: list[str] = []
        for check in self.checks:
            if not check.passed:
                reasons.append(f"{check.name}: {check.detail}")
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
        return text

    def to_table(self) -> str:
        from .report import table

        lines = [
            f"candidate  {self.candidate}",
            f"reference  {self.reference}",
            f"tolerance  {self.tolerance.describe()}",
            "",
        ]
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
                    "ok" if out.passed else "FAIL",
                ])
        lines.append(table(
            rows,
            ["case", "batch", "max_abs", "mean_abs", "p99.9_abs", "max_rel", "peak_rel", "ref_noise", "cosine", "top1",
             "top5", "tol_used", "verdict"],
            align="lrrrrrrrrrrrl",
        ))
        for case in self.cases:
            if case.error:
                lines.append(f"  {case.name}: {case.error}")
        if self.checks:
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


# ----------------------------------------------------------------------------------------------------------------
# Comparing outputs
# ----------------------------------------------------------------------------------------------------------------
def compare_output(name: str, ref: np.ndarray, cand: np.ndarray, tol: Tolerance,
                   folded: np.ndarray | None = None) -> OutputStats:
    """Statistics and verdict for one output (first dimension = batch).

    ``folded``: the same output computed by PyTorch's own Conv-BN fold of the reference. How far it moves from
    ``ref`` is the reference's sensitivity to rounding; where that exceeds the fixed tolerance the bounds widen to
    ``REFERENCE_NOISE_FACTOR`` times it, and beyond ``ILL_CONDITIONED`` the output cannot be verified at all.
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
    allowed = np.array([tol.allowed(float(p)) for p in peaks])
    ties = np.array([tol.tie(float(p)) for p in peaks])
    cos_floor = np.full(batch, tol.min_cosine)
    ref_noise: float | None = None
    if folded is not None and np.shape(folded) == ref.shape and np.isfinite(folded).all() and finite_ref.all():
        f = np.asarray(folded, dtype=np.float64).reshape(batch, -1)
        noise = np.abs(f - r).max(axis=1) if r.size else np.zeros(batch)
        with np.errstate(divide="ignore", invalid="ignore"):
            noise_rel = np.where(peaks > 0, noise / peaks, 0.0)
            fold_cos = np.sum(r * f, axis=1) / (np.linalg.norm(r, axis=1) * np.linalg.norm(f, axis=1))
        ref_noise = float(noise_rel.max()) if noise_rel.size else 0.0
        allowed = np.maximum(allowed, REFERENCE_NOISE_FACTOR * noise)
        ties = np.maximum(ties, 2 * REFERENCE_NOISE_FACTOR * noise)
        fold_cos = np.nan_to_num(fold_cos, nan=1.0)
        cos_floor = np.minimum(cos_floor, 1 - REFERENCE_NOISE_FACTOR**2 * (1 - fold_cos))
        if ref_noise > ILL_CONDITIONED:
            b = int(np.argmax(noise_rel))
            reasons.append(
                f"the reference is ill-conditioned on this input: PyTorch's own Conv-BN fold moves its output by "
                f"{noise_rel[b]:.1e} of the peak ({peaks[b]:.3g}), so no fp32 export can be verified against it "
                "(its activations amplify rounding: check the weights and BN statistics)"
            )
    with np.errstate(divide="ignore", invalid="ignore"):
        used = np.where(allowed > 0, max_per_sample / allowed, np.where(max_per_sample > 0, np.inf, 0.0))
        peak_rel = np.where(peaks > 0, max_per_sample / peaks, np.where(max_per_sample > 0, np.inf, 0.0))
        rel = diff / np.maximum(np.abs(r), np.finfo(np.float32).tiny)
    tolerance_used = float(used.max()) if used.size else 0.0
    if tolerance_used > 1.0:
        b = int(np.argmax(used))
        how = (f"= {tol.atol:g} + {tol.rtol:g} * peak {peaks[b]:.3g}" if allowed[b] <= tol.allowed(float(peaks[b]))
               else f"{REFERENCE_NOISE_FACTOR:g}x the reference's own fold noise")
        reasons.append(
            f"max abs error {max_per_sample[b]:.3g} exceeds {allowed[b]:.3g} ({how}; {peak_rel[b]:.2e} of the peak)"
        )
    # cosine similarity per sample (1.0 when both are all-zero)
    dots = np.sum(r * c, axis=1)
    norms = np.linalg.norm(r, axis=1) * np.linalg.norm(c, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cosines = np.where(norms > 0, dots / norms, np.where(np.linalg.norm(r - c, axis=1) == 0, 1.0, 0.0))
    cosines = np.nan_to_num(cosines, nan=-1.0)
    cosine = float(cosines.min()) if cosines.size else 1.0
    if (cosines < cos_floor).any():
        b = int(np.argmax(cos_floor - cosines))
        reasons.append(f"cosine similarity {cosines[b]:.6f} < {cos_floor[b]:.6g}")
    top1 = top5 = None
    if ref.ndim == 2 and ref.shape[1] >= 2 and np.isfinite(c).all() and np.isfinite(r).all():
        ref_top = np.argmax(r, axis=1)
        cand_top = np.argmax(c, axis=1)
        idx = np.arange(batch)
        # A flip between near-tied classes is rounding, not a fault (see Tolerance.tie).
        margin = r[idx, ref_top] - r[idx, cand_top]
        agree = (ref_top == cand_top) | (margin <= ties)
        top1 = float(agree.mean())
        if not agree.all():
            b = int(np.argmin(agree))
            reasons.append(
                f"top-1 class differs on {int((~agree).sum())} of {batch} samples "
                f"(sample {b}: reference {int(ref_top[b])}, candidate {int(cand_top[b])})"
            )
        k = min(5, r.shape[1])
        ref5 = np.argsort(-r, axis=1)[:, :k]
        cand5 = np.argsort(-c, axis=1)[:, :k]
        top5 = float(np.mean([len(set(a) & set(b_)) / k for a, b_ in zip(ref5, cand5)]))
    finite_diff = diff[np.isfinite(diff)]
    return OutputStats(
        output=name,
        shape=tuple(int(s) for s in cand.shape),
        ref_peak=float(peaks.max()) if peaks.size else 0.0,
        max_abs_err=float(diff.max()) if diff.size else 0.0,
        mean_abs_err=float(diff.mean()) if diff.size else 0.0,
        p999_abs_err=float(np.percentile(finite_diff, 99.9)) if finite_diff.size else 0.0,
        max_rel_err=float(rel.max()) if rel.size else 0.0,
        peak_rel_err=float(peak_rel.max()) if peak_rel.size else 0.0,
        tolerance_used=tolerance_used,
        cosine=cosine,
        top1=top1,
        top5=top5,
        passed=not reasons,
        reasons=tuple(reasons),
        ref_noise=ref_noise,
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


# ----------------------------------------------------------------------------------------------------------------
# Loading models: ONNX, TorchScript, torch.export pt2, eager
# ----------------------------------------------------------------------------------------------------------------
def _check_model_path(path: object, what: str) -> Path:
    path = Path(os.fspath(path))  # type: ignore[arg-type]
    if not path.exists():
        raise BadModelFile(f"{what} {str(path)!r} does not exist; pass the path of an exported .onnx or .pt file")
    if path.is_dir():
        raise BadModelFile(f"{what} {str(path)!r} is a directory; pass one .onnx or .pt file inside it")
    if not path.is_file():
        raise BadModelFile(f"{what} {str(path)!r} is not a regular file")
    if path.stat().st_size == 0:
        raise BadModelFile(f"{what} {str(path)!r} is empty (0 bytes); re-export it")
    return path


def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = lines[0] if lines else type(exc).__name__
    return line[:limit] + ("..." if len(line) > limit else "")


class _Model:
    """Something that maps an NCHW float batch to a list of output arrays."""

    kind = "?"
    label = "?"
    metadata: Metadata | None = None
    #: (N, C, H, W); a str or None for symbolic dimensions; None when the file does not say
    input_shape: tuple[Any, ...] | None = None
    input_name: str | None = None
    output_names: tuple[str, ...] = ()
    active_providers: tuple[str, ...] = ()

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    @property
    def dynamic_batch(self) -> bool | None:
        if self.input_shape is None:
            return None
        return not isinstance(self.input_shape[0], int)


def _ort_versions() -> str:
    found = []
    for dist in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino"):
        try:
            found.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(found) or "no onnxruntime distribution"


def _ort_session(model: str | bytes, provider: str, what: str) -> Any:
    """An ONNX Runtime session on ``provider``, refusing when that provider is not really the one running it."""
    import onnxruntime as ort

    wanted = _ORT_PROVIDER[provider]
    available = ort.get_available_providers()
    if wanted not in available:
        raise ProviderUnavailable(
            f"--provider {provider}: {wanted} is not in this onnxruntime (installed: {_ort_versions()}; "
            f"providers: {', '.join(available)}); for NVIDIA GPUs run 'pip uninstall -y onnxruntime && "
            "pip install onnxruntime-gpu' (onnxruntime-gpu replaces onnxruntime: never install both)"
        )
    options = ort.SessionOptions()
    options.log_severity_level = 3
    providers = [wanted] if provider == "cpu" else [wanted, "CPUExecutionProvider"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            session = ort.InferenceSession(model, sess_options=options, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/InvalidProtobuf/... types
        raise BadModelFile(f"ONNX Runtime cannot load {what}: {_first_line(exc)}") from None
    active = session.get_providers()
    if not active or active[0] != wanted:
        raise ProviderUnavailable(
            f"--provider {provider}: {wanted} is installed ({_ort_versions()}) but did not start, the session fell "
            f"back to {', '.join(active) or 'nothing'}; check the CUDA and cuDNN libraries onnxruntime-gpu needs "
            "(see onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider.html), or use --provider cpu"
        )
    return session


class _OnnxModel(_Model):
    kind = "onnx"

    def __init__(self, path: Path, provider: str) -> None:
        import onnx

        self.path = path
        self.proto = _read_onnx(path)
        props = {p.key: p.value for p in self.proto.metadata_props}
        self.metadata = Metadata.from_props(props, where=path.name)
        self.session = _ort_session(str(path), provider, path.name)
        self.provider = provider
        self.active_providers = tuple(self.session.get_providers())
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise BadModelFile(
                f"{path.name} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); verify handles "
                "single-input image models"
            )
        self.input_name = inputs[0].name
        self.input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        shape = tuple(d if isinstance(d, int) and d > 0 else (d or "?") for d in inputs[0].shape)
        self.input_shape = shape
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        self.output_shapes = tuple(tuple(o.shape) for o in self.session.get_outputs())
        self.label = f"{path.name} (ONNX opset {_opset(self.proto, onnx)}, onnxruntime {', '.join(self.active_providers)})"

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        outs = self.session.run(None, {self.input_name: x.astype(self.input_dtype, copy=False)})
        return [np.asarray(o, dtype=np.float32) for o in outs]


def _opset(proto: Any, onnx: Any) -> str:
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return str(entry.version)
    return "?"


def _read_onnx(path: Path) -> Any:
    """Parse an ONNX file and attach its external data, with one-line errors for every way that fails."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError, RuntimeError, ValueError ... depending on what the bytes are
        raise BadModelFile(
            f"{path.name} is not an ONNX model (it does not parse as ONNX protobuf: {_first_line(exc, 80)}); "
            "pass an .onnx written by 'edgekit export'"
        ) from None
    if proto.ir_version <= 0 or not proto.graph.node or not proto.graph.input or not proto.graph.output:
        raise BadModelFile(
            f"{path.name} is not an ONNX model (no graph in it); pass an .onnx written by 'edgekit export'"
        )
    base = path.parent
    missing: list[str] = []
    for tensor in _get_all_tensors(proto):
        if uses_external_data(tensor):
            location = {e.key: e.value for e in tensor.external_data}.get("location", "")
            if not location or not (base / location).is_file():
                if location not in missing:
                    missing.append(location or "(no location)")
    if missing:
        raise BadModelFile(
            f"{path.name} keeps its weights in external data {', '.join(repr(m) for m in missing[:3])} that is "
            f"missing from {str(base)!r}; copy it next to the .onnx, or re-export as one file (external_data=False)"
        )
    try:
        onnx.load_external_data_for_model(proto, str(base))
    except Exception as exc:
        raise BadModelFile(f"cannot read the external data of {path.name}: {_first_line(exc)}") from None
    return proto


class _TorchModel(_Model):
    """TorchScript, torch.export (.pt2) or an eager nn.Module, run on CPU or CUDA."""

    def __init__(self, module: Any, *, kind: str, label: str, provider: str, metadata: Metadata | None) -> None:
        self.kind = kind
        self.module = module
        self.metadata = metadata
        self.label = label
        if provider == "cuda":
            if not torch.cuda.is_available():
                raise ProviderUnavailable(
                    f"--provider cuda: torch {torch.__version__} sees no CUDA device here, so the {kind} model "
                    "cannot run on one; install a CUDA build of torch on a machine with an NVIDIA GPU, or use "
                    "--provider cpu"
                )
            self.device = torch.device("cuda")
            self.module = self.module.to(self.device)
            self.active_providers = (f"torch cuda ({torch.cuda.get_device_name(0)})",)
        else:
            self.device = torch.device("cpu")
            self.active_providers = ("torch cpu",)
        if metadata is not None:
            self.input_shape = tuple(metadata.input_shape)
            self.input_name = metadata.input_name
            self.output_names = (metadata.output_name,)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        import contextlib

        # TorchScript: run the saved (frozen) graph as written. The profiling executor would re-specialise it on
        # the first runs of every new shape, which costs seconds and checks a graph the file does not contain.
        plain = torch.jit.optimized_execution(False) if self.kind == "torchscript" else contextlib.nullcontext()
        with torch.inference_mode(), warnings.catch_warnings(), plain:
            warnings.simplefilter("ignore")
            out = self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device))
        outs = _flatten_outputs(out)
        if not self.output_names or len(self.output_names) != len(outs):
            self.output_names = tuple(f"output{i}" for i in range(len(outs))) if len(outs) > 1 else ("output",)
        return [o.detach().float().cpu().numpy() for o in outs]


def _flatten_outputs(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in _flatten_outputs(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _flatten_outputs(v)]
    raise TypeError(f"model returned {type(out).__name__}, not tensors")


def _zip_names(path: Path) -> list[str] | None:
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None


def _load_torchscript(path: Path, provider: str) -> _TorchModel:
    extra = {TORCHSCRIPT_EXTRA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:
        raise BadModelFile(
            f"{path.name} does not load as TorchScript ({_first_line(exc, 100)}); re-export it with 'edgekit export'"
        ) from None
    raw = extra.get(TORCHSCRIPT_EXTRA_FILE) or ""
    metadata = Metadata.from_json(raw, where=path.name) if raw.strip() else None
    module.eval()
    return _TorchModel(module, kind="torchscript", label=f"{path.name} (TorchScript, torch {torch.__version__})",
                       provider=provider, metadata=metadata)


def _load_pt2(path: Path, provider: str) -> _TorchModel:
    extra = {TORCHSCRIPT_EXTRA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(str(path), extra_files=extra)
            module = program.module()
    except Exception as exc:
        raise BadModelFile(
            f"{path.name} does not load as a torch.export program ({_first_line(exc, 100)}); re-export it"
        ) from None
    raw = extra.get(TORCHSCRIPT_EXTRA_FILE) or ""
    metadata = Metadata.from_json(raw, where=path.name) if raw.strip() else None
    model = _TorchModel(module, kind="pt2", label=f"{path.name} (torch.export pt2, torch {torch.__version__})",
                        provider=provider, metadata=metadata)
    model.program = program  # type: ignore[attr-defined]
    return model


def load_model_file(path: str | os.PathLike, provider: str = "cpu", what: str = "model file") -> _Model:
    """Open an exported model by its content (not its suffix): ONNX, TorchScript or torch.export pt2."""
    path = _check_model_path(path, what)
    names = _zip_names(path)
    if names is not None:
        if any(n.endswith("/archive_format") or n == "archive_format" for n in names):
            return _load_pt2(path, provider)
        if any("/code/" in n or n.startswith("code/") for n in names):
            return _load_torchscript(path, provider)
        if any(n.endswith("data.pkl") for n in names):
            raise BadModelFile(
                f"{path.name} is a PyTorch checkpoint (torch.save), not an exported model; verify the eager "
                "model with 'edgekit verify EXPORT --weights THIS_FILE', or export it with 'edgekit export'"
            )
        raise BadModelFile(f"{path.name} is a zip archive but neither TorchScript nor a torch.export .pt2")
    if path.suffix.lower() in (".pt", ".pth", ".pt2", ".ptl", ".torchscript"):
        with open(path, "rb") as fh:
            head = fh.read(2)
        if head[:1] == b"\x80":  # a legacy pickle: torch.save's old format
            raise BadModelFile(f"{path.name} is a pickled PyTorch checkpoint, not an exported model")
        raise BadModelFile(
            f"{path.name} is not a TorchScript or pt2 archive (not a zip file); re-export it with 'edgekit export'"
        )
    return _OnnxModel(path, provider)


# ----------------------------------------------------------------------------------------------------------------
# The eager reference
# ----------------------------------------------------------------------------------------------------------------
def _parse_weights(text: str) -> tuple[str | None, int | None]:
    """'seed:N' / 'seed' -> (None, N); 'imagenet[:tv]' -> ('imagenet', None); 'file:P' / P -> (P, None)."""
    value = text.strip()
    low = value.lower()
    if low == "seed" or low.startswith("seed:"):
        raw = value[5:] if ":" in value else "0"
        if not raw.isdigit():
            raise BadArgument(f"weights {text!r}: the seed must be a non-negative integer, as in seed:0")
        return None, int(raw)
    if low == "imagenet" or low.startswith("imagenet:"):
        return "imagenet", None
    if low.startswith("file:"):
        value = value[5:]
    if not value:
        raise BadArgument(f"weights {text!r} is empty; use seed:N, imagenet or a state_dict path")
    return value, None


@dataclass(frozen=True)
class _ReferenceSpec:
    model: str
    alpha: float
    res: int
    num_classes: int
    weights: str | None  # None (seeded), "imagenet" or a path
    seed: int
    source: str  # where the description came from: "metadata", "flags"


def _reference_spec(options: VerifyOptions, candidate: _Model, path: Path) -> _ReferenceSpec:
    from .models import check_res, get_spec

    meta = candidate.metadata
    if meta is None and options.model is None:
        raise BadArgument(
            f"{path.name} carries no edgekit metadata, so the PyTorch reference is unknown; pass "
            "--model NAME --alpha A --res R [--weights W] to rebuild it, or --against OTHER_FILE to compare "
            "with another export of the same model"
        )
    name = options.model or meta.model  # type: ignore[union-attr]
    spec = get_spec(name)
    if options.alpha is not None:
        alpha = options.alpha
    elif meta is not None and options.model in (None, meta.model):
        alpha = meta.alpha
    else:
        raise BadArgument(f"pass --alpha with --model for {path.name}: the width multiplier cannot be guessed")
    res = options.res
    if res is None and meta is not None:
        res = meta.res
    if res is None:
        shape = candidate.input_shape
        if shape is not None and len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
            res = shape[2]
        else:
            raise BadArgument(f"pass --res for {path.name}: its input size is not fixed in the file")
    res = check_res(spec, res)
    num_classes = options.num_classes or (meta.num_classes if meta is not None else None)
    if num_classes is None:
        out_shapes = getattr(candidate, "output_shapes", ())
        num_classes = out_shapes[0][-1] if out_shapes and isinstance(out_shapes[0][-1], int) else 1000
    weights_text = options.weights or (meta.weights if meta is not None else None) or "seed:0"
    weights, seed = _parse_weights(weights_text)
    if seed is None:
        seed = options.seed if options.seed is not None else (meta.seed if meta is not None and meta.seed is not None else 0)
    elif options.seed is not None:
        seed = options.seed
    if weights not in (None, "imagenet"):
        weights = str(resolve_weights_path(weights, path) if options.weights is None else Path(weights))
    source = "flags" if (options.model or options.alpha or options.res or options.weights) else "metadata"
    return _ReferenceSpec(spec.name, alpha, res, int(num_classes), weights, int(seed), source)


def _given_reference_spec(options: VerifyOptions, candidate: _Model, path: Path) -> _ReferenceSpec:
    """The caller passed the reference module (export's self-check): describe it from the metadata / flags."""
    meta = candidate.metadata
    res = options.res or (meta.res if meta is not None else None)
    shape = candidate.input_shape
    if res is None and shape is not None and len(shape) == 4 and isinstance(shape[2], int):
        res = shape[2]
    if res is None:
        raise BadArgument(f"pass res for {path.name}: its input size is neither in the file nor in its metadata")
    return _ReferenceSpec(
        model=options.model or (meta.model if meta is not None else "module"),
        alpha=options.alpha or (meta.alpha if meta is not None else 1.0),
        res=int(res),
        num_classes=options.num_classes or (meta.num_classes if meta is not None else 1000),
        weights=None,
        seed=0,
        source="caller",
    )


def _describe_reference(ref: _ReferenceSpec) -> str:
    if ref.weights is None:
        weights = f"seed:{ref.seed}"
    elif ref.weights == "imagenet":
        weights = "imagenet"
    else:
        weights = f"file:{ref.weights}"
    return (f"PyTorch eager {ref.model} alpha {ref.alpha:g} res {ref.res} classes {ref.num_classes} "
            f"weights {weights} (unfused, fp32, cpu; from {ref.source})")


# ----------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------
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
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:
        raise BadArgument(
            f"cannot read --inputs {path.name} as an .npz ({_first_line(exc, 80)}); write it with "
            "numpy.savez(PATH, name=array, ...)"
        ) from None
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
        cases.append(InputCase(str(key), np.ascontiguousarray(array, dtype=np.float32)))
    return cases


# ----------------------------------------------------------------------------------------------------------------
# Reference trace: module outputs in execution order, Conv -> BN links, the reference's Conv-BN fold
# ----------------------------------------------------------------------------------------------------------------
_LAYER_TYPES = (nn.modules.conv._ConvNd, nn.Linear)


@dataclass
class _Trace:
    order: list[str]  # conv/linear module names in execution order
    bn_of: dict[str, str]  # conv name -> the BatchNorm that consumes its output
    outputs: dict[str, np.ndarray]  # conv/linear name -> its fused-equivalent output (after its BN, if any)
    types: dict[str, str]


@torch.no_grad()
def _trace_reference(module: nn.Module, x: np.ndarray | None, res: int) -> _Trace:
    """Run ``module`` once with hooks: which layers run in which order, which BN follows which conv, and outputs."""
    names = {id(m): n for n, m in module.named_modules()}
    layers = {n: m for n, m in module.named_modules() if isinstance(m, _LAYER_TYPES)}
    order: list[str] = []
    bn_of: dict[str, str] = {}
    outputs: dict[str, np.ndarray] = {}
    live: dict[int, tuple[str, torch.Tensor]] = {}  # id(conv output) -> (conv name, the tensor: keeps the id unique)
    keep = x is not None

    def layer_hook(mod: nn.Module, _inputs: tuple, out: Any) -> None:
        name = names[id(mod)]
        if name in order or not isinstance(out, torch.Tensor):
            return
        order.append(name)
        live[id(out)] = (name, out)
        if keep:
            outputs[name] = out.detach().float().cpu().numpy().copy()  # clone: in-place activations follow

    def bn_pre(mod: nn.Module, inputs: tuple) -> None:
        if inputs and id(inputs[0]) in live:
            conv = live[id(inputs[0])][0]
            bn_of.setdefault(conv, names[id(mod)])
            mod._edgekit_conv = conv  # type: ignore[attr-defined]

    def bn_post(mod: nn.Module, _inputs: tuple, out: Any) -> None:
        conv = getattr(mod, "_edgekit_conv", None)
        if conv is not None and keep and isinstance(out, torch.Tensor):
            outputs[conv] = out.detach().float().cpu().numpy().copy()

    handles = []
    for name, mod in module.named_modules():
        if isinstance(mod, _LAYER_TYPES):
            handles.append(mod.register_forward_hook(layer_hook))
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            handles.append(mod.register_forward_pre_hook(bn_pre))
            handles.append(mod.register_forward_hook(bn_post))
    was_training = module.training
    module.eval()
    try:
        module(torch.from_numpy(x) if x is not None else torch.zeros(1, 3, res, res))
    finally:
        for handle in handles:
            handle.remove()
        for mod in module.modules():
            if hasattr(mod, "_edgekit_conv"):
                del mod._edgekit_conv
        module.train(was_training)
    types = {n: type(layers[n]).__name__ for n in order}
    return _Trace(order, bn_of, outputs, types)


def _fused_weights(module: nn.Module, trace: _Trace, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The weight and bias a faithful Conv-BN fold gives for layer ``name`` (torch's own folding formula)."""
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    layer = module.get_submodule(name)
    weight, bias = layer.weight.detach(), layer.bias.detach() if layer.bias is not None else None
    bn_name = trace.bn_of.get(name)
    if bn_name is not None:
        bn = module.get_submodule(bn_name)
        with torch.no_grad():
            fw, fb = fuse_conv_bn_weights(
                weight, bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias,
                transpose=isinstance(layer, nn.ConvTranspose2d),
            )
        return fw.detach().numpy(), fb.detach().numpy()
    return weight.numpy(), None if bias is None else bias.numpy()


def _fold_reference(module: nn.Module, trace: _Trace) -> nn.Module:
    """A copy of the reference with every Conv-BN pair folded by torch's own ``fuse_conv_bn_eval``."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(module).eval()
    for conv_name, bn_name in trace.bn_of.items():
        conv = folded.get_submodule(conv_name)
        bn = folded.get_submodule(bn_name)
        if not isinstance(conv, nn.modules.conv._ConvNd) or not isinstance(bn, nn.modules.batchnorm._BatchNorm):
            continue
        for name, new in ((conv_name, fuse_conv_bn_eval(conv, bn)), (bn_name, nn.Identity())):
            parent, _, leaf = name.rpartition(".")
            setattr(folded.get_submodule(parent) if parent else folded, leaf, new)
    return folded


def _norm_tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[^0-9A-Za-z]+", name) if t]


def _match_module(name: str, candidates: dict[str, str]) -> str | None:
    """Map a parameter / scope name to a module name by its dotted path, tolerating prefixes and separators.

    ``candidates`` maps normalised module paths ("features.3.conv.1.0") to module names. ``model.features.3.conv.1.0
    .weight``, ``p_features_3_conv_1_0_weight`` and ``features.3.conv.1.0.weight_bias`` all map to that module.
    """
    tokens = _norm_tokens(name)
    for end in range(len(tokens), 0, -1):
        for start in range(0, end):
            key = ".".join(tokens[start:end])
            if key in candidates:
                return candidates[key]
    return None


def _layer_index(trace: _Trace) -> dict[str, str]:
    return {".".join(_norm_tokens(n)): n for n in trace.order}


# ----------------------------------------------------------------------------------------------------------------
# Candidate layers: ONNX nodes, TorchScript / pt2 weights
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class _CandLayer:
    module: str | None  # reference module it maps to
    weight: np.ndarray | None  # in PyTorch layout
    bias: np.ndarray | None
    output: str | None = None  # ONNX value name to compare
    how: str = ""  # "initializer name", "name_scopes", "position"


_ONNX_LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _onnx_layers(proto: Any, trace: _Trace, module: nn.Module) -> list[_CandLayer]:
    from onnx import numpy_helper

    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    consts = {}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = node.attribute[0].t
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    index = _layer_index(trace)
    bn_index = {".".join(_norm_tokens(b)): c for c, b in trace.bn_of.items()}
    layers: list[_CandLayer] = []
    for node in graph.node:
        if node.op_type not in _ONNX_LAYER_OPS or len(node.input) < 2:
            continue
        wname = node.input[1]
        tensor = inits.get(wname)
        if tensor is None:
            tensor = consts.get(wname)
        if tensor is None and node.op_type == "MatMul":
            continue  # activation x activation
        weight = numpy_helper.to_array(tensor) if tensor is not None else None
        bias = None
        if len(node.input) > 2 and node.input[2] in inits:
            bias = numpy_helper.to_array(inits[node.input[2]])
        output = node.output[0]
        if weight is not None:
            attrs = {a.name: a for a in node.attribute}
            if node.op_type == "MatMul" or (node.op_type == "Gemm" and not (attrs.get("transB") and attrs["transB"].i)):
                weight = weight.T
            if node.op_type == "MatMul" or (node.op_type == "Conv" and bias is None):
                # bias added by a following Add: compare after it, where the PyTorch layer's output is
                users = consumers.get(output, [])
                if len(users) == 1 and users[0].op_type == "Add":
                    other = [i for i in users[0].input if i != output]
                    if other and other[0] in inits:
                        bias = numpy_helper.to_array(inits[other[0]]).reshape(-1)
                        output = users[0].output[0]
        mapped, how = _match_module(wname, index), "initializer name"
        if mapped is None:
            mapped, how = _scope_module(node, index, bn_index), "name_scopes"
        layers.append(_CandLayer(mapped, weight, bias, output, how if mapped else ""))
    return _finish_mapping(layers, trace, module)


def _scope_module(node: Any, index: dict[str, str], bn_index: dict[str, str]) -> str | None:
    props = {p.key: p.value for p in node.metadata_props}
    raw = props.get("pkg.torch.onnx.name_scopes")
    if not raw:
        return None
    try:
        scopes = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None
    for scope in reversed([s for s in scopes if isinstance(s, str) and s]):
        key = ".".join(_norm_tokens(scope))
        for table in (index, bn_index):
            tokens = key.split(".")
            for start in range(len(tokens)):
                sub = ".".join(tokens[start:])
                if sub in table:
                    return table[sub]
    return None


def _finish_mapping(layers: list[_CandLayer], trace: _Trace, module: nn.Module) -> list[_CandLayer]:
    """Drop duplicate mappings; map by position when nothing mapped by name and the layer lists line up."""
    seen: set[str] = set()
    for layer in layers:
        if layer.module is not None:
            if layer.module in seen:
                layer.module, layer.how = None, ""
            else:
                seen.add(layer.module)
    if not seen and layers and len(layers) == len(trace.order):
        # Nothing carries a usable name (frozen TorchScript, renamed initializers): pair the layers in execution
        # order. The structure check then reports any weight shape that does not fit.
        for layer, name in zip(layers, trace.order):
            layer.module, layer.how = name, "position"
    return layers


def _script_layers(model: _TorchModel, trace: _Trace, module: nn.Module) -> list[_CandLayer]:
    """Conv / linear weights of a TorchScript or pt2 candidate, by parameter name or, when frozen, graph order."""
    index = _layer_index(trace)
    layers: list[_CandLayer] = []
    state: dict[str, torch.Tensor] = {}
    program = getattr(model, "program", None)
    if program is not None:
        state = {k: v for k, v in program.state_dict.items() if isinstance(v, torch.Tensor)}
    else:
        try:
            state = {k: v for k, v in model.module.state_dict().items()}
        except Exception:
            state = {}
    weights = {k: v for k, v in state.items() if k.endswith("weight") and v.dim() >= 2}
    if weights:
        for key, value in weights.items():
            owner = key[: -len("weight")].rstrip("._")
            bias = state.get(f"{owner}.bias")
            mapped = _match_module(key, index)
            layers.append(_CandLayer(mapped, value.detach().float().cpu().numpy(),
                                     None if bias is None else bias.detach().float().cpu().numpy(),
                                     how="parameter name" if mapped else ""))
        return _finish_mapping(layers, trace, module)
    graph = getattr(model.module, "graph", None)
    if graph is None:
        return []
    kinds = {"aten::_convolution", "aten::conv1d", "aten::conv2d", "aten::conv3d", "aten::linear",
             "aten::conv_transpose2d"}

    def walk(block: Any) -> None:
        for node in block.nodes():
            for sub in node.blocks():
                walk(sub)
            if node.kind() not in kinds:
                continue
            values = list(node.inputs())
            weight = bias = None
            if len(values) > 1 and values[1].node().kind() == "prim::Constant":
                w = values[1].toIValue()
                weight = w.detach().float().cpu().numpy() if isinstance(w, torch.Tensor) else None
            if len(values) > 2 and values[2].node().kind() == "prim::Constant":
                b = values[2].toIValue()
                bias = b.detach().float().cpu().numpy() if isinstance(b, torch.Tensor) else None
            if weight is not None:
                layers.append(_CandLayer(None, weight, bias))

    walk(graph)
    return _finish_mapping(layers, trace, module)


def _structure_check(layers: list[_CandLayer], trace: _Trace, module: nn.Module, ref_label: str) -> Check | None:
    """Do the file's layer weights have the reference's shapes? (A different alpha or model shows up here.)"""
    if not layers:
        return None
    mapped = [layer for layer in layers if layer.module is not None and layer.weight is not None]
    if not mapped:
        return Check(
            "structure", False,
            f"none of the file's {len(layers)} conv/linear layers corresponds to a layer of the reference "
            f"({len(trace.order)} layers): it is a different network, or the metadata does not describe it",
        )
    wrong = [
        (layer.module, tuple(layer.weight.shape), tuple(module.get_submodule(layer.module).weight.shape))
        for layer in mapped
        if tuple(layer.weight.shape) != tuple(module.get_submodule(layer.module).weight.shape)
    ]
    if wrong:
        name, got, want = wrong[0]
        return Check(
            "structure", False,
            f"{len(wrong)} of {len(mapped)} layers have other weight shapes than the reference "
            f"(first: {name} {list(got)} in the file vs {list(want)}): the file is another alpha or model than "
            f"its metadata says",
        )
    unmapped = len(layers) - len(mapped)
    missing = len(trace.order) - len(mapped)
    if missing > 0 and unmapped == 0:
        return Check("structure", False, f"the file has {len(layers)} conv/linear layers, the reference "
                                         f"{len(trace.order)}: a different network")
    how = sorted({layer.how for layer in mapped})
    detail = f"{len(mapped)} of {len(trace.order)} reference layers found with matching shapes (by {', '.join(how)})"
    if unmapped:
        detail += f"; {unmapped} file layers not mapped"
    return Check("structure", True, detail)


def _weights_diff(layer: _CandLayer, module: nn.Module, trace: _Trace) -> tuple[float, int, int]:
    """(relative error, differing values, total values) of a layer's weights+bias vs the reference's fold."""
    ref_w, ref_b = _fused_weights(module, trace, layer.module)  # type: ignore[arg-type]
    if layer.weight is None or layer.weight.shape != ref_w.shape:
        return math.inf, -1, int(ref_w.size)
    scale_w = float(np.abs(ref_w).max()) or 1.0
    dw = np.abs(layer.weight.astype(np.float64) - ref_w)
    rel = float(dw.max()) / scale_w
    n_diff = int((dw > 1e-4 * scale_w).sum())
    total = int(ref_w.size)
    cand_b = layer.bias if layer.bias is not None else (np.zeros_like(ref_b) if ref_b is not None else None)
    if ref_b is not None and cand_b is not None and cand_b.shape == ref_b.shape:
        scale_b = max(float(np.abs(ref_b).max()), 1e-3 * scale_w, 1e-12)
        db = np.abs(cand_b.astype(np.float64) - ref_b)
        rel = max(rel, float(db.max()) / scale_b)
        n_diff += int((db > 1e-4 * scale_b).sum())
        total += int(ref_b.size)
    elif ref_b is None and layer.bias is not None and np.abs(layer.bias).max() > 0:
        rel, n_diff = max(rel, math.inf), n_diff + int((layer.bias != 0).sum())
    return rel, n_diff, total


_WEIGHT_RTOL = 1e-4  # a faithful fold reproduces torch's fold to ~1e-7 of the largest weight


# ----------------------------------------------------------------------------------------------------------------
# Localisation
# ----------------------------------------------------------------------------------------------------------------
def _localize_onnx(candidate: _OnnxModel, layers: list[_CandLayer], module: nn.Module, x: np.ndarray,
                   tol: Tolerance) -> Divergence:
    import onnx

    trace = _trace_reference(module, x, x.shape[-1])
    mapped = [layer for layer in layers if layer.module is not None and layer.output]
    unmapped = len(trace.order) - len(mapped)
    if not mapped:
        return Divergence("activations", None, None, None, None, 0, len(trace.order),
                          "no layer of the ONNX graph could be mapped to a PyTorch module (no parameter-named "
                          "initializers, no name_scopes metadata, layer counts differ)")
    proto = onnx.ModelProto()
    proto.CopyFrom(candidate.proto)
    existing = {o.name for o in proto.graph.output}
    elem = proto.graph.input[0].type.tensor_type.elem_type
    for layer in mapped:
        if layer.output not in existing:
            proto.graph.output.append(onnx.helper.make_tensor_value_info(layer.output, elem, None))
            existing.add(layer.output)
    session = _ort_session(proto.SerializeToString(), candidate.provider, candidate.path.name + " (with layer outputs)")
    names = [o.name for o in session.get_outputs()]
    values = dict(zip(names, session.run(None, {candidate.input_name: x.astype(candidate.input_dtype)})))
    position = {name: i for i, name in enumerate(trace.order)}
    mapped.sort(key=lambda layer: position.get(layer.module, len(position)))  # type: ignore[arg-type]
    results: list[LayerError] = []
    first: LayerError | None = None
    first_layer: _CandLayer | None = None
    last_ok: str | None = None
    for layer in mapped:
        ref = trace.outputs.get(layer.module)  # type: ignore[arg-type]
        got = values.get(layer.output)  # type: ignore[arg-type]
        if ref is None or got is None:
            continue
        got = np.asarray(got, dtype=np.float64)
        if got.shape != ref.shape:
            rel, abs_err = math.inf, math.inf
        else:
            abs_err = float(np.abs(got - ref).max())
            rel = abs_err / max(float(np.abs(ref).max()), 1e-12)
        diverged = not rel <= tol.rtol or not math.isfinite(rel)
        entry = LayerError(layer.module, trace.types.get(layer.module, "?"), rel, abs_err, diverged)  # type: ignore[arg-type]
        results.append(entry)
        if diverged and first is None:
            first, first_layer = entry, layer
        elif first is None:
            last_ok = layer.module
    if first is None or first_layer is None:
        return Divergence(
            "activations", None, None, None, last_ok, len(results), unmapped,
            f"all {len(results)} mapped layers agree within rtol {tol.rtol:g} of their peak; the difference arises "
            "after the last mapped layer or in ops between layers that have no weights (pooling, reshapes, "
            "activations, the graph's output)",
            tuple(results),
        )
    agreeing = sum(1 for r in results[: results.index(first)] if not r.diverged)
    detail = _divergence_detail(first, first_layer, module, trace, agreeing, last_ok, bn=trace.bn_of.get(first.module))
    return Divergence("activations", first.module, first.module_type, first.rel_err, last_ok, len(results),
                      unmapped, detail, tuple(results))


def _divergence_detail(first: LayerError, layer: _CandLayer, module: nn.Module, trace: _Trace,
                       agreeing: int, last_ok: str | None, bn: str | None) -> str:
    where = f"{first.module} ({first.module_type}{' + ' + bn + ' folded' if bn else ''})"
    rel = "its output has another shape" if not math.isfinite(first.rel_err) else \
        f"output error {first.rel_err:.2e} of its peak"
    text = f"first diverging layer: {where}, {rel}"
    if last_ok is not None:
        text += f"; the {agreeing} layers before it agree (last: {last_ok})"
    if layer.weight is not None:
        wrel, n_diff, total = _weights_diff(layer, module, trace)
        if n_diff < 0:
            text += "; its weights have another shape than the reference's"
        elif wrel > _WEIGHT_RTOL:
            text += (f"; its weights differ from the reference's Conv-BN fold in {n_diff} of {total} values "
                     f"(by up to {wrel:.2e} of the largest reference value)")
        elif last_ok is None:
            text += ("; its weights match the reference's fold, so its input differs: this is the first layer, so "
                     "the graph changes the input before it (channel order RGB/BGR? normalization inside the graph?)")
        else:
            text += (f"; its weights match the reference's fold, so its input differs: an op between {last_ok} and "
                     "this layer (activation, pooling, reshape, residual add, channel shuffle) computes something else")
    return text


def _localize_weights(candidate: _Model, layers: list[_CandLayer], module: nn.Module, trace: _Trace) -> Divergence:
    mapped = [layer for layer in layers if layer.module is not None]
    if not mapped:
        return Divergence("weights", None, None, None, None, 0, len(trace.order),
                          f"the {candidate.kind} file's layers could not be matched to the reference's layers")
    position = {name: i for i, name in enumerate(trace.order)}
    mapped.sort(key=lambda layer: position.get(layer.module, len(position)))  # type: ignore[arg-type]
    results: list[LayerError] = []
    first: LayerError | None = None
    last_ok = None
    for layer in mapped:
        rel, n_diff, total = _weights_diff(layer, module, trace)
        diverged = not rel <= _WEIGHT_RTOL
        entry = LayerError(layer.module, trace.types.get(layer.module, "?"), rel, math.nan, diverged)  # type: ignore[arg-type]
        results.append(entry)
        if diverged and first is None:
            first = entry
            bn = trace.bn_of.get(layer.module)  # type: ignore[arg-type]
            where = f"{layer.module} ({entry.module_type}{' + ' + bn + ' folded' if bn else ''})"
            detail = (f"first layer whose weights differ from the reference's Conv-BN fold: {where}, "
                      + ("other shape" if n_diff < 0 else f"{n_diff} of {total} values, max {rel:.2e} of the largest"))
        elif first is None:
            last_ok = layer.module
    if first is None:
        return Divergence(
            "weights", None, None, None, last_ok, len(results), len(trace.order) - len(results),
            f"the weights of all {len(results)} conv/linear layers match the reference's Conv-BN fold; the "
            "difference comes from the input handling (channel order, normalization) or ops between layers",
            tuple(results),
        )
    return Divergence("weights", first.module, first.module_type, first.rel_err, last_ok, len(results),
                      len(trace.order) - len(results), detail, tuple(results))


# ----------------------------------------------------------------------------------------------------------------
# Metadata checks
# ----------------------------------------------------------------------------------------------------------------
def _metadata_checks(candidate: _Model, ref: _ReferenceSpec | None, chw_res: int) -> list[Check]:
    meta = candidate.metadata
    if meta is None:
        return []
    checks: list[Check] = []
    from .registry import get_spec

    shape = candidate.input_shape if candidate.kind == "onnx" else None
    if shape is not None:
        file_dims = [d if isinstance(d, int) else "batch" for d in shape]
        meta_dims = list(meta.input_shape)
        problems = []
        if len(shape) == 4 and (shape[2], shape[3]) != (meta.res, meta.res):
            problems.append(f"the graph input is {shape[2]}x{shape[3]} but the metadata says res {meta.res}")
        if [str(d) for d in file_dims[1:]] != [str(d) for d in meta_dims[1:]]:
            problems.append(f"graph input {file_dims} vs metadata input_shape {meta_dims}")
        if candidate.dynamic_batch != bool(meta.dynamic_batch):
            problems.append(f"the batch dimension is {'symbolic' if candidate.dynamic_batch else 'fixed'} but "
                            f"the metadata says dynamic_batch={meta.dynamic_batch}")
        if candidate.input_name != meta.input_name:
            problems.append(f"input is named {candidate.input_name!r}, the metadata says {meta.input_name!r}")
        if candidate.output_names and candidate.output_names[0] != meta.output_name:
            problems.append(f"output is named {candidate.output_names[0]!r}, the metadata says {meta.output_name!r}")
        out_shapes = getattr(candidate, "output_shapes", ())
        if out_shapes and isinstance(out_shapes[0][-1], int) and out_shapes[0][-1] != meta.num_classes:
            problems.append(f"the output has {out_shapes[0][-1]} classes, the metadata says {meta.num_classes}")
        checks.append(Check("input/output vs metadata", not problems,
                            "; ".join(problems) or f"input {file_dims}, output {list(out_shapes[0]) if out_shapes else '?'}"))
    elif len(meta.input_shape) == 4 and meta.input_shape[2:] != (meta.res, meta.res):
        checks.append(Check("input/output vs metadata", False,
                            f"metadata input_shape {list(meta.input_shape)} disagrees with its res {meta.res}"))
    try:
        spec = get_spec(meta.model)
    except EdgekitError:
        return checks  # a module exported by itself: no registered mean/std to hold the metadata to
    mean_ok = len(meta.mean) == len(spec.mean) and np.allclose(meta.mean, spec.mean, atol=1e-6)
    std_ok = len(meta.std) == len(spec.std) and np.allclose(meta.std, spec.std, atol=1e-6)
    checks.append(Check(
        "normalization", mean_ok and std_ok,
        f"mean {list(meta.mean)} std {list(meta.std)}"
        + ("" if mean_ok and std_ok else f" differ from {spec.name}'s mean {list(spec.mean)} std {list(spec.std)}: "
           "a deployment that follows the metadata would feed wrongly normalized images"),
    ))
    if ref is not None and ref.weights not in (None, "imagenet") and meta.weights_sha256:
        from .weights import sha256_file

        digest = sha256_file(ref.weights)
        checks.append(Check(
            "weights file", digest == meta.weights_sha256,
            f"{ref.weights} sha256 {digest[:12]}" + ("" if digest == meta.weights_sha256 else
                                                     f" differs from the exported {meta.weights_sha256[:12]}: the "
                                                     "file changed since the export"),
        ))
    return checks


# ----------------------------------------------------------------------------------------------------------------
# verify()
# ----------------------------------------------------------------------------------------------------------------
def verify(path: str | os.PathLike, *, options: VerifyOptions | None = None,
           reference: nn.Module | None = None) -> VerifyReport:
    """Compare the exported model at ``path`` with its PyTorch reference; the report says PASS or FAIL and why.

    Usage errors (bad file, bad arguments, unavailable provider) raise :class:`EdgekitError`s. A verification that
    ran returns a report either way; ``report.raise_if_failed()`` turns FAIL into :class:`ToleranceExceeded`.
    ``reference``: the unfused eager model, when the caller already has it (the export's self-check), instead
    of rebuilding it from the metadata.
    """
    options = options or VerifyOptions()
    tol = options.tol
    timings: dict[str, float] = {}
    notes: list[str] = []
    path = _check_model_path(path, "model file")

    start = time.perf_counter()
    candidate = load_model_file(path, options.provider, "model file")
    timings["load_candidate"] = time.perf_counter() - start

    ref_spec: _ReferenceSpec | None = None
    ref_module: nn.Module | None = None
    start = time.perf_counter()
    if options.against is not None:
        ref_model: _Model = load_model_file(options.against, "cpu", "--against file")
        ref_label = f"{ref_model.label}"
        if ref_model.kind == "onnx" and candidate.kind == "onnx" and options.provider == "cpu":
            notes.append("both files run on the same runtime: this proves they compute the same, not that either "
                         "matches PyTorch")
    else:
        if reference is not None:
            ref_spec = _given_reference_spec(options, candidate, path)
            ref_module = reference.eval()
            ref_label = (f"PyTorch eager {ref_spec.model} alpha {ref_spec.alpha:g} res {ref_spec.res} "
                         "(the caller's unfused module, fp32, cpu)")
        else:
            from .models import build_model

            ref_spec = _reference_spec(options, candidate, path)
            ref_module, _ = build_model(ref_spec.model, alpha=ref_spec.alpha, num_classes=ref_spec.num_classes,
                                        weights=ref_spec.weights, seed=ref_spec.seed)
            ref_label = _describe_reference(ref_spec)
        ref_model = _TorchModel(ref_module, kind="pytorch", label=ref_label, provider="cpu", metadata=None)
        ref_model.output_names = candidate.output_names or ("output",)
        meta = candidate.metadata
        if meta is not None and ref_spec.source == "flags":
            if (meta.model, meta.alpha, meta.res) != (ref_spec.model, ref_spec.alpha, ref_spec.res):
                notes.append(f"reference built from the flags; the file's metadata says {meta.model} alpha "
                             f"{meta.alpha:g} res {meta.res}")
    timings["build_reference"] = time.perf_counter() - start

    # input geometry: the file's own input shape where it has one, else metadata, else the reference's res
    meta = candidate.metadata or ref_model.metadata
    if ref_spec is not None:
        res = ref_spec.res
    else:  # --against: two files; --res sizes the input when neither file says it
        res = options.res if options.res is not None else (meta.res if meta is not None else None)
    shape = candidate.input_shape if candidate.kind == "onnx" else None
    if shape is None and options.against is not None and ref_model.kind == "onnx":
        shape = ref_model.input_shape
    if shape is not None and len(shape) == 4 and all(isinstance(d, int) for d in shape[1:]):
        chw = (int(shape[1]), int(shape[2]), int(shape[3]))
        fixed_batch = shape[0] if isinstance(shape[0], int) else None
    else:
        if res is None:
            raise BadArgument(f"the input size of {path.name} is unknown; pass --res")
        chw = (3, res, res)
        dynamic = meta.dynamic_batch if meta is not None else True
        fixed_batch = None if dynamic else 1
    if options.against is not None and ref_model.kind == "onnx" and isinstance(ref_model.input_shape, tuple):
        other = ref_model.input_shape
        if len(other) == 4 and isinstance(other[0], int):
            fixed_batch = other[0] if fixed_batch is None else fixed_batch
    mean = meta.mean if meta is not None else (0.485, 0.456, 0.406)
    std = meta.std if meta is not None else (0.229, 0.224, 0.225)
    if ref_spec is not None and meta is None and ref_spec.source != "caller":
        from .registry import get_spec

        spec = get_spec(ref_spec.model)
        mean, std = spec.mean, spec.std

    if options.inputs is not None:
        cases = load_inputs(options.inputs, chw, fixed_batch)
    else:
        batches = options.batches
        if batches is None:
            batches = (fixed_batch,) if fixed_batch is not None else (1, DYNAMIC_BATCH_CASE)
        elif fixed_batch is not None and any(b != fixed_batch for b in batches):
            bad = next(b for b in batches if b != fixed_batch)
            shown_shape = list(shape) if shape else (list(meta.input_shape) if meta is not None else "?")
            raise BadArgument(
                f"{path.name} has a fixed batch of {fixed_batch} (input {shown_shape}), so "
                f"--batch {bad} cannot run; use --batch {fixed_batch}, or re-export with --dynamic-batch"
            )
        cases = make_inputs(chw, mean, std, batches, options.input_seed)
        if ref_spec is not None and ref_spec.source != "caller" and max(batches) > 8:
            try:
                from .guards import check_memory
            except ImportError:  # pragma: no cover - guards land separately
                check_memory = None
            if check_memory is not None:
                check_memory(ref_spec.model, ref_spec.alpha, chw[1], max(batches), what=f"verify at batch {max(batches)}")

    # checks of the file against its metadata and the reference's structure
    checks = _metadata_checks(candidate, ref_spec, chw[1])
    layers: list[_CandLayer] = []
    trace: _Trace | None = None
    if ref_module is not None:
        start = time.perf_counter()
        trace = _trace_reference(ref_module, None, chw[1])
        if candidate.kind == "onnx":
            layers = _onnx_layers(candidate.proto, trace, ref_module)  # type: ignore[attr-defined]
        else:
            layers = _script_layers(candidate, trace, ref_module)  # type: ignore[arg-type]
        structure = _structure_check(layers, trace, ref_module, ref_label)
        if structure is not None:
            checks.append(structure)
        timings["structure"] = time.perf_counter() - start

    # The reference's own sensitivity to rounding: the same model with every Conv-BN folded by PyTorch. Built and
    # run only for a case that misses the fixed bound, where it decides between "the export is wrong" and "the
    # reference cannot tell" (a passing case needs no excuse).
    folded_model: _TorchModel | None = None
    can_fold = ref_module is not None and trace is not None and bool(trace.bn_of)

    # run and compare
    results: list[CaseResult] = []
    start = time.perf_counter()
    run_time = {"reference": 0.0, "candidate": 0.0}
    for case in cases:
        try:
            t0 = time.perf_counter()
            ref_out = ref_model.run(case.array)
            run_time["reference"] += time.perf_counter() - t0
        except EdgekitError:
            raise
        except Exception as exc:
            if options.against is None:
                raise  # the eager reference failing is a bug of ours, not a verdict on the file
            results.append(CaseResult(case.name, case.batch, (), False, f"the reference failed: {_first_line(exc)}"))
            continue
        try:
            t0 = time.perf_counter()
            cand_out = candidate.run(case.array)
            run_time["candidate"] += time.perf_counter() - t0
        except EdgekitError:
            raise
        except Exception as exc:
            results.append(CaseResult(case.name, case.batch, (), False, f"the candidate failed to run: {_first_line(exc)}"))
            continue
        names = candidate.output_names or ref_model.output_names
        names = tuple(names) + tuple(f"output{i}" for i in range(len(names), len(ref_out)))
        stats = compare_outputs(names, ref_out, cand_out, tol)
        if can_fold and not all(s.passed for s in stats):
            if folded_model is None:
                t0 = time.perf_counter()
                folded_model = _TorchModel(_fold_reference(ref_module, trace), kind="pytorch",  # type: ignore[arg-type]
                                           label="folded reference", provider="cpu", metadata=None)
                timings["fold_reference"] = time.perf_counter() - t0
            stats = compare_outputs(names, ref_out, cand_out, tol, folded_model.run(case.array))
        results.append(CaseResult(case.name, case.batch, stats, all(s.passed for s in stats)))
    timings["run_reference"] = run_time["reference"]
    timings["run_candidate"] = run_time["candidate"]

    numbers_ok = all(r.passed for r in results)
    passed = numbers_ok and all(c.passed for c in checks)

    # where it breaks
    divergence: Divergence | None = None
    structure_ok = all(c.passed for c in checks if c.name == "structure")
    if not numbers_ok and options.localize and ref_module is not None and trace is not None and structure_ok:
        start = time.perf_counter()
        failing = next((c for c, r in zip(cases, results) if not r.passed), cases[0])
        x = failing.array[:1]
        if candidate.kind == "onnx":
            try:
                divergence = _localize_onnx(candidate, layers, ref_module, x, tol)  # type: ignore[arg-type]
            except EdgekitError:
                raise
            except Exception as exc:  # the augmented graph did not run: say so rather than hide the verdict
                notes.append(f"could not localise the divergence: {_first_line(exc)}")
        else:
            divergence = _localize_weights(candidate, layers, ref_module, trace)
        timings["localize"] = time.perf_counter() - start

    return VerifyReport(
        path=str(path),
        format=candidate.kind,
        candidate=candidate.label,
        reference=ref_label,
        provider=options.provider,
        active_providers=tuple(candidate.active_providers),
        tolerance=tol,
        passed=passed,
        cases=tuple(results),
        checks=tuple(checks),
        divergence=divergence,
        metadata=candidate.metadata.to_dict() if candidate.metadata is not None else None,
        notes=tuple(notes),
        timings_s={k: round(v, 4) for k, v in timings.items()},
    )


__all__ = [
    "verify",
    "VerifyOptions",
    "VerifyReport",
    "Tolerance",
    "TOLERANCE_PRESETS",
    "CaseResult",
    "OutputStats",
    "Check",
    "Divergence",
    "LayerError",
    "compare_output",
    "compare_outputs",
    "make_inputs",
    "load_model_file",
]
