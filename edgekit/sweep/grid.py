"""The sweep's grid: models x width multipliers x resolutions x precisions x runtimes, validated before anything runs.

A point is (model, alpha, res, precision, runtime). Its file comes from the export format the runtime runs that can
be written at that precision, looked up in the format and runtime tables (``edgekit.formats.FORMATS``,
``edgekit.runtimes.RUNTIMES``) when the sweep starts: a precision or a runtime registered later sweeps with no change
here.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from ..bench import BenchOptions
from ..errors import BadArgument, MissingExtra
from ..parsing import parse_int, parse_list

#: Width multipliers x resolutions of one model.
MAX_GRID_POINTS = 100
#: The whole grid: models x alphas x resolutions x precisions x runtimes (the issue's zoo-wide example is 1,080).
MAX_SWEEP_POINTS = 2_000
#: A model list naming every registered model.
ALL_MODELS = "all"


@dataclass(frozen=True, order=True)
class Point:
    """One configuration of the grid; ``model`` is the registry's canonical name, ``runtime`` the table's."""

    model: str
    alpha: float
    res: int
    precision: str = "fp32"
    runtime: str = "onnxruntime"

    def key(self, threads: int) -> tuple[str, ...]:
        """What ``--resume`` matches a CSV row on: the CSV's own text for each key column."""
        return (self.model, f"{self.alpha:g}", str(self.res), self.precision, self.runtime, str(threads))

    @property
    def label(self) -> str:
        return f"{self.model} a{self.alpha:g} r{self.res} {self.precision} {self.runtime}"

    @property
    def folder_name(self) -> str:
        """Where a kept export goes: one folder per point (two points never re-export into each other's folder)."""
        return f"{self.model}_a{self.alpha:g}_r{self.res}_{self.precision}_{self.runtime}"


def known_precisions() -> list[str]:
    from ..formats import FORMATS

    return list(dict.fromkeys(p for f in FORMATS.values() for p in f.precisions))


def format_for(runtime: str, precision: str) -> str:
    """The export format a point on ``runtime`` at ``precision`` is written in.

    Among the runtime's formats that can be written at that precision, those whose own runtime it is come first; of
    those, the last one listed (a runtime's table lists its formats oldest first: TorchScript, then torch.export's
    pt2).
    """
    from ..formats import FORMATS
    from ..runtimes import get_runtime, runtimes_for

    spec = get_runtime(runtime)
    able = [f for f in spec.formats if f in FORMATS and precision in FORMATS[f].precisions]
    if not able:
        others = [r.name for f in FORMATS.values() if precision in f.precisions for r in runtimes_for(f.name)]
        written = ", ".join(f"{f} ({'/'.join(FORMATS[f].precisions)})" for f in spec.formats if f in FORMATS)
        raise BadArgument(
            f"the {spec.name} runtime runs no format written at {precision}: its formats write {written or 'nothing'}; "
            f"sweep {precision} on {', '.join(dict.fromkeys(others)) or 'no runtime'} or drop it from --precisions"
        )
    own = [f for f in able if FORMATS[f].default_runtime == spec.name]
    return (own or able)[-1]


def parse_models(names: str | Sequence[str]) -> tuple[str, ...]:
    """Canonical model names, in the order given, each once; ``all`` is every registered model."""
    from ..registry import get_spec, list_models

    items = parse_list(names, "the list of models", "mobilenet_v2,shufflenet_v2")
    out: list[str] = []
    for item in items:
        out.extend(list_models() if item.lower() == ALL_MODELS else [get_spec(item).name])
    return tuple(dict.fromkeys(out))


def _parse_names(values: object, what: str, example: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.lower() for v in parse_list(values, what, example)))


@dataclass(frozen=True)
class SweepOptions:
    """The grid and how each point is made and timed. ``alphas``/``resolutions``/``precisions``/``runtimes`` accept
    sequences or "0.5,0.75" strings; each value is validated when the sweep starts. ``export_dir``: keep every export
    there, one folder per point (default: a temporary folder on the machine that made it, deleted after the
    benchmark); with Ray it must be a folder every node reaches. ``plot``: write the PNG (needs matplotlib,
    ``edgekit[plot]``). ``verify``: check every export against its PyTorch reference before timing it. ``calib``:
    calibration images for int8 (see ``edgekit export --calib``).
    """

    alphas: tuple[float, ...]
    resolutions: tuple[int, ...]
    bench: BenchOptions = field(default_factory=lambda: BenchOptions(providers=("cpu",)))
    export_dir: Path | None = None
    plot: bool = True
    weights: str | None = None
    precisions: tuple[str, ...] = ("fp32",)
    runtimes: tuple[str, ...] = ("onnxruntime",)
    verify: bool = True
    calib: str | None = None
    calib_samples: int = 300

    def __post_init__(self) -> None:
        from ..models import check_alpha
        from ..registry import MAX_RES

        put = lambda key, value: object.__setattr__(self, key, value)  # noqa: E731 (frozen dataclass)
        alphas = [check_alpha(a) for a in parse_list(self.alphas, "the list of alphas", "--alphas 0.5,0.75,1.0")]
        resolutions = [parse_int(r, f"resolution {r!r}", lo=1, hi=MAX_RES, example="--res 160,192,224")
                       for r in parse_list(self.resolutions, "the list of resolutions", "--res 160,192,224")]
        put("alphas", tuple(sorted(set(alphas))))
        put("resolutions", tuple(sorted(set(resolutions))))
        if len(self.alphas) * len(self.resolutions) > MAX_GRID_POINTS:
            raise BadArgument(
                f"a grid of {len(self.alphas)} x {len(self.resolutions)} points is more than {MAX_GRID_POINTS}; "
                f"sweep fewer alphas or resolutions"
            )
        if not isinstance(self.bench, BenchOptions):
            raise BadArgument("bench must be a BenchOptions")
        if self.export_dir is not None:
            put("export_dir", Path(self.export_dir))
        self._check_precisions_and_runtimes()
        for key in ("plot", "verify"):
            if not isinstance(getattr(self, key), bool):
                raise BadArgument(f"{key} must be true or false, got {getattr(self, key)!r}")
        put("calib_samples", parse_int(self.calib_samples, "--calib-samples", lo=1, hi=100_000,
                                       example="--calib-samples 300"))

    def _check_precisions_and_runtimes(self) -> None:
        from ..runtimes import RUNTIMES, get_runtime

        precisions = _parse_names(self.precisions, "the list of precisions", "--precisions fp32,int8")
        known = known_precisions()
        for p in precisions:
            if p not in known:
                raise BadArgument(f"unknown precision {p!r}; the export formats write: {', '.join(known)} "
                                  f"(e.g. --precisions {known[0]})")
        runtimes = []
        for name in _parse_names(self.runtimes, "the list of runtimes", "--runtime onnxruntime,torch"):
            try:
                runtimes.append(get_runtime(name).name)
            except BadArgument:
                raise BadArgument(f"unknown runtime {name!r}; use one of: {', '.join(RUNTIMES)} "
                                  "(e.g. --runtime onnxruntime)") from None
        object.__setattr__(self, "precisions", precisions)
        object.__setattr__(self, "runtimes", tuple(dict.fromkeys(runtimes)))
        for runtime in self.runtimes:
            for precision in self.precisions:
                format_for(runtime, precision)

    def bench_for(self, runtime: str) -> BenchOptions:
        """The benchmark options of one runtime: providers are ONNX Runtime names in ``bench``; other runtimes take
        the short device names (cpu, cuda)."""
        if runtime == "onnxruntime":
            return replace(self.bench, runtime=runtime)
        from ..runtimes.onnxruntime import PROVIDER_ALIASES

        short = {}
        for alias, full in PROVIDER_ALIASES.items():
            short.setdefault(full, alias)
        return replace(self.bench, runtime=runtime, providers=tuple(short.get(p, p) for p in self.bench.providers))

    def export_for(self, fmt: str, precision: str) -> Any:
        """``ExportOptions`` of one artifact: that format at that precision, no self-check (the sweep verifies)."""
        from ..export import ExportOptions

        return ExportOptions(formats=(fmt,), precision=(precision,), verify=False, weights=self.weights,
                             dynamic_batch=(self.bench.batch or 1) > 1, calib=self.calib,
                             calib_samples=self.calib_samples)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["bench"] = self.bench.to_dict()
        data["export_dir"] = str(self.export_dir) if self.export_dir else None
        return data


def expand(models: Sequence[str], options: SweepOptions) -> list[Point]:
    """Every point, model by model, then alpha, resolution, precision, runtime (the order of the CSV's rows)."""
    total = len(models) * len(options.alphas) * len(options.resolutions) * len(options.precisions) * len(
        options.runtimes)
    if total > MAX_SWEEP_POINTS:
        raise BadArgument(
            f"a sweep of {len(models)} models x {len(options.alphas)} alphas x {len(options.resolutions)} resolutions "
            f"x {len(options.precisions)} precisions x {len(options.runtimes)} runtimes is {total:,} points, more "
            f"than {MAX_SWEEP_POINTS:,}; split it into several sweeps (they can share a CSV with --resume)"
        )
    return [Point(m, a, r, p, rt) for m in models for a in options.alphas for r in options.resolutions
            for p in options.precisions for rt in options.runtimes]


def preflight(models: Sequence[str], options: SweepOptions) -> None:
    """What would otherwise fail only at its own grid point, after the earlier ones ran: every resolution fits each
    model, the widths build at every alpha (meta device), ImageNet weights exist, memory suffices at the largest
    resolution, every runtime, format and provider is installed, and each artifact's export options are valid."""
    from ..bench import check_providers_available
    from ..complexity import info
    from ..formats import FORMATS
    from ..guards import check_memory
    from ..models import check_res
    from ..registry import get_spec
    from ..runtimes import get_runtime
    from ..weights import imagenet_weights_name

    for name in models:
        spec = get_spec(name)
        for res in options.resolutions:
            check_res(spec, res)
        for alpha in options.alphas:
            info(spec.name, alpha=alpha, res=min(options.resolutions))
            if isinstance(options.weights, str) and options.weights.strip().lower() == "imagenet":
                imagenet_weights_name(spec, alpha)
            check_memory(spec.name, alpha, max(options.resolutions), options.bench.batch or 1,
                         what=f"the sweep point {spec.name} alpha {alpha:g} res {max(options.resolutions)}")
    for runtime in options.runtimes:
        spec = get_runtime(runtime)
        if not spec.available():
            raise MissingExtra(f"the {spec.name} runtime is not installed (no module {spec.requires!r}); install it "
                               f"with: {spec.install_hint()}")
        options.bench_for(runtime)  # the providers make sense for this runtime
        for precision in options.precisions:
            fmt = FORMATS[format_for(runtime, precision)]
            if not fmt.available():
                raise MissingExtra(f"the {fmt.name} format needs the {fmt.extra or fmt.requires} extra; install it "
                                   f"with: pip install -e '.[{fmt.extra}]'")
            options.export_for(fmt.name, precision)
    if "onnxruntime" in options.runtimes:
        check_providers_available(options.bench.providers)


def check_folder(folder: str | os.PathLike, flag: str) -> Path:
    """A folder we write into: created if missing, writable."""
    from ..files import check_output_folder

    path = check_output_folder(folder, flag)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadArgument(f"{flag} {str(path)!r} cannot be created: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK):
        raise BadArgument(f"{flag} {str(path)!r} is not writable")
    return path
