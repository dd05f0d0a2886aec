"""VerifyOptions: what to compare against and how strictly; every flag of ``edgekit verify`` is declared here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import BadArgument
from ..parsing import parse_int
from ..options import opt, validate
from .tolerances import TOLERANCE_PRESETS, Tolerance

DEFAULT_INPUT_SEED = 0
#: Batch of the extra case run when the batch dimension is symbolic: > 1, and not a power of two, so a graph that
#: baked the example batch (1) or a "typical" one (2, 4, 8) into a reshape is caught.
DYNAMIC_BATCH_CASE = 3
MAX_BATCH = 1024
MAX_SAMPLES = 100_000


def check_batch(value: object) -> int:
    return parse_int(value, "--batch", lo=1, hi=MAX_BATCH, example="--batch 3",
                     too_big="a few samples are enough; use --data DIR --samples N for statistics")


def known_providers() -> list[str]:
    """Every device name some runtime accepts: ONNX Runtime EPs (and short names), torch and OpenVINO devices."""
    from ..runtimes import RUNTIMES

    names = [d for spec in RUNTIMES.values() for d in spec.devices]
    return list(dict.fromkeys(names))


def check_provider(value: object) -> str:
    text = str(value).strip()
    if not text:
        raise BadArgument("--provider is empty; pass e.g. --provider cpu")
    low = text.lower()
    if low in known_providers():
        return low
    try:
        from ..runtimes.onnxruntime import resolve_provider

        return resolve_provider(text)
    except BadArgument:
        raise BadArgument(
            f"unknown provider {value!r}; use one of: {', '.join(known_providers())} or an ONNX Runtime execution "
            "provider name"
        ) from None


@dataclass(frozen=True)
class VerifyOptions:
    """What to compare against and how strictly; validated once, here (strings from the CLI are accepted).

    ``against``: another exported file as the reference instead of the eager model. ``model``/``alpha``/``res``/
    ``weights``/``num_classes``/``seed``: describe the eager reference; needed for a file without edgekit metadata,
    and override the metadata when given. ``batches``: batch sizes of the generated inputs (default: 1, plus 3
    when the batch dimension is symbolic). ``inputs``: an ``.npz`` of your own input tensors instead.
    ``runtime``/``provider``: where the candidate runs (default: its format's runtime, on the CPU).
    ``tolerance``: a preset name (default: the file's precision, else its format's); ``atol``/``rtol`` override
    its numbers. ``localize``: on failure, find the first diverging layer.
    """

    against: Path | None = opt(None, kind="path", metavar="REF", help="compare with another export instead of the "
                                                                      "eager PyTorch model")
    model: str | None = opt(None, metavar="NAME", help="registered model name (see 'edgekit models')")
    alpha: float | None = opt(None, metavar="A", help="width multiplier")
    res: int | None = opt(None, metavar="R", help="input resolution in pixels")
    weights: str | None = opt(None, metavar="W", help="seed:N (seeded weights, default seed:0), imagenet, or a "
                                                      "state_dict file")
    num_classes: int | None = opt(None, metavar="N", help="classifier outputs")
    seed: int | None = opt(None, cli=False, help="seed of seeded reference weights")
    batches: tuple[int, ...] | None = opt(None, flag="--batch", metavar="N", nargs="+",
                                          help="batch sizes to test (default: 1, and 3 when the batch dimension is "
                                               "symbolic)")
    inputs: Path | None = opt(None, kind="path", metavar="FILE.npz",
                              help="your own NCHW float32 tensors, one case per array (numpy.savez)")
    data: str | None = opt(None, kind="path", metavar="DIR",
                           help="real images to compare on (a folder, flat or with class sub-folders, or an .npz), "
                                "preprocessed as the file's metadata says; the int8 verdict needs them")
    samples: int | None = opt(None, kind="int", metavar="N", what="--samples", lo=1, hi=MAX_SAMPLES,
                              example="--samples 500", help="samples for --data and the statistical int8 check "
                                                            "(default: 500 images, or 100 seeded image-like inputs)")
    input_seed: int = opt(DEFAULT_INPUT_SEED, kind="int", flag="--seed", metavar="S", what="--seed", lo=0,
                          hi=2**32 - 1, example="--seed 0", help="seed of the generated inputs")
    runtime: str | None = opt(None, metavar="NAME", help="runtime that runs the candidate (default: the format's "
                                                         "own: onnxruntime for ONNX, torch for .pt/.pt2)")
    provider: str = opt("cpu", metavar="NAME", help="device / execution provider the runtime uses: cpu, cuda, an ONNX "
                                                    "Runtime EP name, an OpenVINO device")
    tolerance: str | None = opt(None, metavar="PRESET", help="tolerance preset: fp32, fp16, int8 (default: the "
                                                             "file's precision)")
    atol: float | None = opt(None, kind="float", metavar="X", what="--atol", lo=0.0, example="--atol 1e-5",
                             help="absolute tolerance (overrides the preset)")
    rtol: float | None = opt(None, kind="float", metavar="Y", what="--rtol", lo=0.0, example="--rtol 1e-4",
                             help="tolerance relative to each sample's peak |reference| (overrides the preset)")
    localize: bool = opt(True, kind="bool", help="on failure, do not search the diverging layer")

    def __post_init__(self) -> None:
        from ..files import check_input_file
        from ..models import check_alpha, check_num_classes, check_res, get_spec
        from ..weights import WeightsRef, check_seed

        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        validate(self, ("input_seed", "atol", "rtol", "localize", "samples"))
        if self.data is not None:
            if not str(self.data).strip():
                raise BadArgument("--data is empty; pass a folder of images or an .npz")
            put("data", str(self.data))
            if self.inputs is not None or self.batches is not None:
                raise BadArgument("--data and --inputs/--batch exclude each other: the images set the inputs")
        if self.against is not None:
            put("against", check_input_file(self.against, "--against file"))
        spec = get_spec(self.model) if self.model is not None else None
        if spec is not None:
            put("model", spec.name)
        if self.alpha is not None:
            put("alpha", check_alpha(self.alpha))
        if self.res is not None:
            if spec is not None:
                put("res", check_res(spec, self.res))
            else:
                from ..registry import MAX_RES

                put("res", parse_int(self.res, "resolution", lo=1, hi=MAX_RES, example="--res 224"))
        if self.num_classes is not None:
            put("num_classes", check_num_classes(self.num_classes if isinstance(self.num_classes, int)
                                                 else parse_int(self.num_classes, "num_classes", lo=1)))
        if self.seed is not None:
            put("seed", check_seed(self.seed))
        if self.weights is not None:
            WeightsRef.parse(str(self.weights))  # raises on a malformed value
            put("weights", str(self.weights))
        if self.batches is not None:
            batches = (self.batches,) if isinstance(self.batches, (int, str)) else tuple(self.batches)
            if not batches:
                raise BadArgument("--batch needs at least one batch size")
            if len(batches) > 16:
                raise BadArgument(f"--batch lists {len(batches)} sizes; a few are enough (at most 16)")
            put("batches", tuple(dict.fromkeys(check_batch(b) for b in batches)))
        if self.inputs is not None:
            if self.batches is not None:
                raise BadArgument("--inputs and --batch exclude each other: the arrays in the .npz set the batch")
            put("inputs", check_input_file(self.inputs, "--inputs file", cls=BadArgument,
                                           hint="pass an .npz written by numpy.savez"))
        if self.runtime is not None:
            from ..runtimes import get_runtime

            put("runtime", get_runtime(self.runtime).name)
        put("provider", check_provider(self.provider))
        if self.tolerance is not None:
            tolerance = str(self.tolerance).strip().lower()
            if tolerance not in TOLERANCE_PRESETS:
                raise BadArgument(
                    f"unknown tolerance preset {self.tolerance!r}; use one of: {', '.join(TOLERANCE_PRESETS)}"
                )
            put("tolerance", tolerance)
        if self.atol == 0 and self.rtol == 0:
            raise BadArgument("--atol 0 and --rtol 0 together demand bit-exact results, which no export gives")
        if self.against is not None and (self.model or self.weights or self.alpha is not None
                                         or self.num_classes is not None):
            raise BadArgument("--against compares two files; drop --model/--alpha/--weights/--num-classes (they "
                              "describe an eager reference; --res may size the input)")

    def tolerance_for(self, preset: str | None = None) -> Tolerance:
        """The tolerance in force: ``self.tolerance`` (else ``preset``, else fp32) with ``atol``/``rtol`` applied."""
        base = TOLERANCE_PRESETS[self.tolerance or preset or "fp32"]
        if self.atol is None and self.rtol is None:
            return base
        if base.statistical:
            raise BadArgument(f"--atol/--rtol do not apply to the statistical {base.name} preset (its verdict is "
                              "agreement over many samples); drop them, or pass --tolerance fp16 for a per-sample "
                              "bound")
        return Tolerance(
            name=f"{base.name} (custom)",
            atol=base.atol if self.atol is None else self.atol,
            rtol=base.rtol if self.rtol is None else self.rtol,
            min_cosine=base.min_cosine,
            tie_atol=base.tie_atol,
            tie_rtol=base.tie_rtol,
            weights_rtol=base.weights_rtol,
        )

    @property
    def tol(self) -> Tolerance:
        return self.tolerance_for()
