"""Tolerances: what "the same numbers" means for each precision, and why (see edgekit/verify/__init__.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .agreement import AgreementThresholds

#: Where the reference itself is sensitive to rounding (see "Ill-conditioned references"), a faithful export
#: may differ from it by this multiple of how far PyTorch's own rounding variants (fold, channels-last) move it ...
REFERENCE_NOISE_FACTOR = 4.0
#: ... up to this fraction of the output's peak; beyond it the reference cannot certify anything and the case fails.
ILL_CONDITIONED = 1e-2


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
    #: statistical presets (int8): the verdict is agreement over many samples instead of a per-sample bound
    agreement: AgreementThresholds | None = None
    #: reduced-precision files: each layer's weights must equal the reference's Conv-BN fold within this fraction of
    #: the layer's largest weight (the rounding of the precision); None: shapes only
    weights_rtol: float | None = None
    #: statistical presets on inputs like the file's own calibration data: the smallest SQNR (dB) any quantized
    #: activation may have against its unquantized value (how well the calibrated ranges cover the inputs)
    min_activation_sqnr_db: float | None = None

    def allowed(self, peak: float) -> float:
        """The largest absolute error allowed for a sample whose largest reference magnitude is ``peak``."""
        return self.atol + self.rtol * peak

    def tie(self, peak: float) -> float:
        """Reference top-1 margins at or below this are near-ties: a flip there is rounding, not a fault."""
        return 2 * (self.tie_atol + self.tie_rtol * peak)

    @property
    def statistical(self) -> bool:
        return self.agreement is not None

    def describe(self) -> str:
        if self.agreement is not None:
            return f"{self.name}: {self.agreement.describe()} (statistical, over many samples)"
        return (
            f"{self.name}: max|c - r| <= {self.atol:g} + {self.rtol:g} * max|r| per sample, "
            f"cosine >= {self.min_cosine:g}, top-1 agrees (near-ties excepted)"
        )

    def to_dict(self) -> dict:
        return asdict(self)


#: INT8, judged over N samples (edgekit/verify/agreement.py; the reasons are in edgekit/verify/__init__.py).
#: Measured on the digits model (MobileNetV3-Small 0.35 @64 px fine-tuned on scikit-learn's digits, 497 held-out
#: images): faithful INT8 files (U8S8/S8S8, per-channel and per-tensor, min-max / entropy / percentile, calibrated on
#: 200 real or 300 synthetic images) agree on 98.6-99.8% of the images (95% lower bound 0.971-0.989), median logit
#: cosine 0.992-0.9992, 5th percentile 0.962-0.997; a file calibrated on constant gray images agrees on 9.9% (lower
#: bound 0.075), median cosine -0.15. ImageNet-class mobile networks flip 2-6% of their predictions under
#: per-channel PTQ (agreement 0.94-0.98): the floor of 0.90 on the lower bound passes them at N = 500.
INT8_AGREEMENT = AgreementThresholds(min_top1_agree_lo=0.90, min_cosine_median=0.98, min_cosine_p05=0.90)

TOLERANCE_PRESETS: dict[str, Tolerance] = {
    "fp32": Tolerance("fp32", atol=1e-5, rtol=1e-4, min_cosine=0.99999, tie_atol=1e-5, tie_rtol=1e-4),
    # fp16: faithful fp16 files of the zoo's seeded models land at up to 1.5e-2 of the peak logit (ShuffleNetV2 0.5
    # and MobileNetV1 0.25 at 64 px; 1e-2 failed them), the digits model well below; cosine >= 0.9998 everywhere.
    # Weights round to 11 significant bits: 2**-11 = 4.9e-4 of a layer's largest weight at most (the weights check
    # catches what a looser logit bound could let through: a changed weight)
    "fp16": Tolerance("fp16", atol=1e-3, rtol=2e-2, min_cosine=0.999, tie_atol=1e-3, tie_rtol=2e-2,
                      weights_rtol=1e-3),
    # int8 weights (symmetric, 127 levels a side, per channel or per tensor) round by at most half a step:
    # 1/254 = 3.9e-3 of the layer's (or channel's) largest weight (biases are int32 at input x weight scale, not
    # compared); the input's calibrated range keeps about 48 dB SQNR on inputs like the calibration data when
    # faithful, 1.4 dB when calibrated on constant images
    "int8": Tolerance("int8", atol=float("inf"), rtol=float("inf"), min_cosine=-1.0, tie_atol=0.0, tie_rtol=0.0,
                      agreement=INT8_AGREEMENT, weights_rtol=4.5e-3, min_activation_sqnr_db=10.0),
}


