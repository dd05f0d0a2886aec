"""Tolerances: what "the same numbers" means for each precision, and why (see edgekit/verify/__init__.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

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


