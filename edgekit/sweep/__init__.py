"""Sweeps: a grid of width multipliers x resolutions, each exported and benchmarked, as a CSV and a latency-vs-MACs
plot with the Pareto front marked: the picture a user looks at to pick a multiplier and a resolution.

The front: a configuration is on it when no other one has at least as many MACs (compute, the capacity that buys
accuracy) at no more latency, and is strictly better in one of the two. Lowest latency alone would only ever pick
the smallest model; the front shows where extra latency buys the most compute, and where it is wasted (alpha and
resolution pairs with the same MACs can differ a lot in latency on a given runtime).

Each point reuses the export API (``edgekit.export``: fused, simplified ONNX with edgekit metadata) and the bench
API (``edgekit.bench``), one after the other, never concurrently.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .bench import BenchOptions, BenchReport, bench
from .errors import BadArgument, EdgekitError
from .files import atomic_write
from .parsing import parse_int, parse_list

#: progress(index, total, alpha, res, stage, report): stage is "export", "bench" or "done" (report set on "done").
SweepProgress = Callable[[int, int, float, int, str, "BenchReport | None"], None]
#: exporter(name, alpha, res, folder, weights) -> path of the .onnx it wrote
Exporter = Callable[[str, float, int, Path, "str | None"], Path]

MAX_GRID_POINTS = 100


def pareto_front(latency_ms: Sequence[float], macs: Sequence[float]) -> list[int]:
    """Indices of the points no other point dominates, ordered by latency (then by MACs, descending).

    Point j dominates point i when ``latency[j] <= latency[i]`` and ``macs[j] >= macs[i]`` with at least one of the
    two strict: j is as fast and does as much compute, and is better in one. Identical points do not dominate each
    other, so both stay on the front. A pure function.
    """
    if len(latency_ms) != len(macs):
        raise ValueError("latency_ms and macs must have the same length")
    points = list(zip(latency_ms, macs))
    front = []
    for i, (lat_i, mac_i) in enumerate(points):
        dominated = any(
            lat_j <= lat_i and mac_j >= mac_i and (lat_j < lat_i or mac_j > mac_i)
            for j, (lat_j, mac_j) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


@dataclass(frozen=True)
class SweepOptions:
    """The grid and how each point is benchmarked. ``alphas``/``resolutions`` accept sequences or "0.5,0.75"
    strings; each value is validated for the model when the sweep starts. ``export_dir``: keep the ONNX files there
    (default: a temporary folder, deleted afterwards). ``plot``: write the PNG (needs matplotlib, ``edgekit[plot]``).
    """

    alphas: tuple[float, ...]
    resolutions: tuple[int, ...]
    bench: BenchOptions = field(default_factory=lambda: BenchOptions(providers=("cpu",)))
    export_dir: Path | None = None
    plot: bool = True
    weights: str | None = None

    def __post_init__(self) -> None:
        from .models import check_alpha

        alphas = [check_alpha(a) for a in parse_list(self.alphas, "the list of alphas", "--alphas 0.5,0.75,1.0")]
        from .registry import MAX_RES

        resolutions = [parse_int(r, f"resolution {r!r}", lo=1, hi=MAX_RES, example="--res 160,192,224")
                       for r in parse_list(self.resolutions, "the list of resolutions", "--res 160,192,224")]
        object.__setattr__(self, "alphas", tuple(sorted(set(alphas))))
        object.__setattr__(self, "resolutions", tuple(sorted(set(resolutions))))
        if len(self.alphas) * len(self.resolutions) > MAX_GRID_POINTS:
            raise BadArgument(
                f"a grid of {len(self.alphas)} x {len(self.resolutions)} points is more than {MAX_GRID_POINTS}; "
                f"sweep fewer alphas or resolutions"
            )
        if not isinstance(self.bench, BenchOptions):
            raise BadArgument("bench must be a BenchOptions")
        if self.export_dir is not None:
            object.__setattr__(self, "export_dir", Path(self.export_dir))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["bench"] = self.bench.to_dict()
        data["export_dir"] = str(self.export_dir) if self.export_dir else None
        return data


@dataclass(frozen=True)
class SweepPoint:
    model: str
    alpha: float
    res: int
    macs: int
    params: int | None
    latency_ms: dict  # p50, p90, p99, mean, std, min, max
    throughput: float  # items/s
    gmacs: float | None
    provider: str
    threads: int
    batch: int
    iterations: int
    export_s: float
    bench_s: float
    on_front: bool
    onnx: str | None  # the file, when kept

    @property
    def label(self) -> str:
        return f"a{self.alpha:g} r{self.res}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SweepResult:
    model: str
    provider: str
    points: tuple[SweepPoint, ...]
    front: tuple[int, ...]  # indices into points, by latency
    csv_path: Path
    png_path: Path | None
    system: dict
    elapsed_s: float

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "provider": self.provider,
            "points": [p.to_dict() for p in self.points],
            "front": list(self.front),
            "csv_path": str(self.csv_path),
            "png_path": str(self.png_path) if self.png_path else None,
            "system": self.system,
            "elapsed_s": self.elapsed_s,
        }


def _default_exporter(
    name: str, alpha: float, res: int, folder: Path, weights: str | None, *, dynamic_batch: bool = False
) -> Path:
    """edgekit.export, ONNX only and without the self-check: the sweep measures speed (`edgekit verify` and the
    export's own tests check numerics), and the check would add about a third to each point's export time."""
    from .export import export

    result = export(name, alpha=alpha, res=res, out_dir=folder, options=export_options(weights, dynamic_batch))
    return Path(result.files["onnx"])


def export_options(weights: str | None = None, dynamic_batch: bool = False) -> Any:
    from .export import ExportOptions

    return ExportOptions(formats=("onnx",), verify=False, weights=weights, dynamic_batch=dynamic_batch)


def require_matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise EdgekitError(
            "the sweep plot needs matplotlib, which is not installed: pip install 'edgekit[plot]' (or pass --no-plot)"
        ) from None
    return matplotlib


def sweep(
    name: str,
    *,
    out_dir: str | os.PathLike,
    options: SweepOptions,
    progress: SweepProgress | None = None,
    exporter: Exporter | None = None,
) -> SweepResult:
    """Export and benchmark every (alpha, res) of the grid; write ``<model>_<provider>_sweep.csv`` (and ``.png``)
    into ``out_dir``. Every value is validated before the first export, and matplotlib is looked for before any
    work, so a bad grid or a missing extra fails in a second rather than after the sweep."""
    from .bench import check_providers_available
    from .complexity import info
    from .guards import check_memory
    from .models import check_res
    from .registry import get_spec
    from .weights import imagenet_weights_name

    spec = get_spec(name)
    for res in options.resolutions:
        check_res(spec, res)
    for alpha in options.alphas:  # what would otherwise fail only at its own grid point, after the earlier ones ran
        info(spec.name, alpha=alpha, res=min(options.resolutions))  # the widths build at this alpha (meta device)
        if isinstance(options.weights, str) and options.weights.strip().lower() == "imagenet":
            imagenet_weights_name(spec, alpha)
        check_memory(spec.name, alpha, max(options.resolutions), options.bench.batch or 1,
                     what=f"the sweep point alpha {alpha:g} res {max(options.resolutions)}")
    check_providers_available(options.bench.providers)
    if options.plot:
        require_matplotlib()
    from .files import check_output_folder

    out = check_output_folder(out_dir, "--out")
    _prepare_folder(out, "--out")
    if options.export_dir is not None:
        _prepare_folder(options.export_dir, "--keep-onnx")
    # A batch above 1 needs a symbolic batch dimension in the exported graph.
    exporter = exporter or functools.partial(_default_exporter, dynamic_batch=(options.bench.batch or 1) > 1)
    progress = progress or (lambda *a: None)

    started = time.perf_counter()
    grid = [(a, r) for a in options.alphas for r in options.resolutions]
    reports: list[tuple[float, int, BenchReport, float, float, str | None]] = []
    with tempfile.TemporaryDirectory(prefix="edgekit-sweep-") as scratch:
        base = options.export_dir or Path(scratch)
        for index, (alpha, res) in enumerate(grid, 1):
            progress(index, len(grid), alpha, res, "export", None)
            t0 = time.perf_counter()
            folder = base / f"{spec.name}_a{alpha:g}_r{res}"
            onnx_path = exporter(spec.name, alpha, res, folder, options.weights)
            export_s = time.perf_counter() - t0
            progress(index, len(grid), alpha, res, "bench", None)
            t0 = time.perf_counter()
            report = bench(onnx_path, options=options.bench)
            bench_s = time.perf_counter() - t0
            if not report.macs:
                raise EdgekitError(f"{onnx_path} carries no MACs in its edgekit metadata; the sweep cannot place it")
            kept = str(onnx_path) if options.export_dir is not None else None
            reports.append((alpha, res, report, export_s, bench_s, kept))
            progress(index, len(grid), alpha, res, "done", report)

    front = pareto_front([r.latency_ms.p50 for _, _, r, *_ in reports], [r.macs or 0 for _, _, r, *_ in reports])
    on_front = set(front)
    points = tuple(
        SweepPoint(
            model=spec.name,
            alpha=alpha,
            res=res,
            macs=int(report.macs or 0),
            params=report.params,
            latency_ms={k: getattr(report.latency_ms, k) for k in ("p50", "p90", "p99", "mean", "std", "min", "max")},
            throughput=report.throughput,
            gmacs=report.gmacs,
            provider=report.provider,
            threads=report.threads,
            batch=report.batch,
            iterations=report.iterations,
            export_s=export_s,
            bench_s=bench_s,
            on_front=i in on_front,
            onnx=kept,
        )
        for i, (alpha, res, report, export_s, bench_s, kept) in enumerate(reports)
    )
    last = reports[-1][2]
    system = {
        "cpu_name": last.system.cpu_name,
        "gpu_name": last.system.gpu_name,
        "ort_version": last.system.ort_version,
        "platform": last.system.platform,
    }
    provider_short = last.provider.replace("ExecutionProvider", "").lower()
    stem = f"{spec.name}_{provider_short}_b{last.batch}_sweep"
    csv_path = write_csv(points, out / f"{stem}.csv")
    png_path = None
    if options.plot:
        title = f"{spec.name} on {last.provider}, batch {last.batch}, {last.threads} threads"
        device = last.system.gpu_name or f"{last.system.cpu_name} ({last.system.cpu_count} CPUs)"
        png_path = plot(points, front, out / f"{stem}.png", title=title, subtitle=f"{device}, onnxruntime {last.system.ort_version}")
    return SweepResult(
        model=spec.name,
        provider=last.provider,
        points=points,
        front=tuple(front),
        csv_path=csv_path,
        png_path=png_path,
        system=system,
        elapsed_s=time.perf_counter() - started,
    )


def _prepare_folder(folder: Path, flag: str) -> None:
    from .files import check_output_folder

    folder = check_output_folder(folder, flag)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadArgument(f"{flag} {str(folder)!r} cannot be created: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK):
        raise BadArgument(f"{flag} {str(folder)!r} is not writable")


CSV_COLUMNS = (
    "model", "alpha", "res", "macs", "params", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms",
    "throughput_items_per_s", "gmacs", "pareto", "provider", "threads", "batch", "iterations", "export_s", "bench_s",
    "onnx",
)  # fmt: skip


def write_csv(points: Sequence[SweepPoint], path: Path) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for p in points:
        lat = p.latency_ms
        writer.writerow(
            [
                p.model, p.alpha, p.res, p.macs, "" if p.params is None else p.params,
                *(round(lat[k], 4) for k in ("p50", "p90", "p99", "mean", "std", "min", "max")),
                round(p.throughput, 2), "" if p.gmacs is None else round(p.gmacs, 3), int(p.on_front),
                p.provider, p.threads, p.batch, p.iterations, round(p.export_s, 2), round(p.bench_s, 2), p.onnx or "",
            ]
        )  # fmt: skip
    return atomic_write(path, buffer.getvalue().encode())


#: Where a label may go, relative to its point (offset points), tried in this order until one overlaps nothing.
_LABEL_OFFSETS = ((7, 7), (7, -9), (-7, 9), (-7, -9), (14, 20), (14, -20), (-14, 22), (-14, -22), (24, 34), (24, -34))


def _text_box(annotation: Any, renderer: Any) -> Any:
    """The label's own box, without its leader line (Annotation.get_window_extent includes the arrow)."""
    from matplotlib.text import Text

    annotation.update_positions(renderer)
    return Text.get_window_extent(annotation, renderer)


def _label_points(fig: Any, ax: Any, points: Sequence[SweepPoint], avoid: Sequence[Any] = ()) -> None:
    """Label every point at the first candidate spot inside the axes that covers no marker, no earlier label and
    nothing in ``avoid`` (legend, footnote); a thin leader line joins a label moved away from its point. When no
    spot is free the label goes to the nearest one."""
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = [artist.get_window_extent(renderer) for artist in avoid]
    markers = {}
    for p in points:  # the markers themselves: no label may cover another point
        x, y = ax.transData.transform((p.macs / 1e6, p.latency_ms["p50"]))
        markers[id(p)] = Bbox.from_extents(x - 6, y - 6, x + 6, y + 6)

    def put(p: SweepPoint, dx: int, dy: int) -> Any:
        leader = None if (dx, dy) == _LABEL_OFFSETS[0] else {"arrowstyle": "-", "color": "0.55", "linewidth": 0.6}
        text = ax.annotate(p.label, (p.macs / 1e6, p.latency_ms["p50"]), textcoords="offset points", xytext=(dx, dy),
                           fontsize=8, ha="left" if dx >= 0 else "right", va="center", arrowprops=leader,
                           fontweight="bold" if p.on_front else "normal", annotation_clip=False)  # fmt: skip
        text.set_in_layout(False)
        return text

    for p in sorted(points, key=lambda q: (not q.on_front, q.macs)):  # front labels get the best spots
        others = placed + [box for key, box in markers.items() if key != id(p)]
        for dx, dy in _LABEL_OFFSETS:
            text = put(p, dx, dy)
            box = _text_box(text, renderer)
            inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
            if inside and not any(box.overlaps(other) for other in others):
                break
            text.remove()
        else:
            text = put(p, *_LABEL_OFFSETS[0])
        placed.append(_text_box(text, renderer).expanded(1.04, 1.1))
    ax.set_autoscale_on(False)  # the labels were placed for these limits


def plot(points: Sequence[SweepPoint], front: Sequence[int], path: Path, *, title: str, subtitle: str = "") -> Path:
    """Latency (p50, bars from min to p90) against MACs; the Pareto front drawn as a line; every point labelled."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.5, 6), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    alphas = sorted({p.alpha for p in points})
    colours = {a: f"C{i % 10}" for i, a in enumerate(alphas)}
    for alpha in alphas:
        group = [p for p in points if p.alpha == alpha]
        xs = [p.macs / 1e6 for p in group]
        ys = [p.latency_ms["p50"] for p in group]
        low = [max(0.0, p.latency_ms["p50"] - p.latency_ms["min"]) for p in group]
        high = [max(0.0, p.latency_ms["p90"] - p.latency_ms["p50"]) for p in group]
        ax.errorbar(xs, ys, yerr=[low, high], fmt="o", color=colours[alpha], ecolor=colours[alpha], alpha=0.9,
                    capsize=3, markersize=6, label=f"alpha {alpha:g}")  # fmt: skip
    if front:
        ordered = sorted(front, key=lambda i: points[i].macs)
        ax.plot([points[i].macs / 1e6 for i in ordered], [points[i].latency_ms["p50"] for i in ordered], "-",
                color="black", linewidth=1.2, zorder=1, label="Pareto front")  # fmt: skip
        ax.scatter([points[i].macs / 1e6 for i in ordered], [points[i].latency_ms["p50"] for i in ordered], s=160,
                   facecolors="none", edgecolors="black", linewidths=1.5, zorder=3)  # fmt: skip
    ax.margins(x=0.1, y=0.12)
    ax.set_xlabel("multiply-adds per image (millions)")
    ax.set_ylabel("latency p50 (ms); bars: min to p90")
    ax.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    ax.grid(True, alpha=0.3)
    legend = ax.legend(fontsize=8, loc="upper left")
    note = ax.text(0.99, 0.01, "front: no other point has more MACs at no more latency", transform=ax.transAxes,
                   ha="right", va="bottom", fontsize=7, color="0.35")  # fmt: skip
    fig.canvas.draw()  # runs the layout, so the label placement below sees the final axes
    _label_points(fig, ax, points, avoid=(legend, note))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return atomic_write(path, buffer.getvalue())


__all__ = ["SweepOptions", "SweepResult", "SweepPoint", "sweep", "pareto_front", "plot", "write_csv"]
