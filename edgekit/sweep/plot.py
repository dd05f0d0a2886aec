"""The sweep's picture: latency against MACs, each model family's Pareto front, the overall front marked.

One model: points coloured by width multiplier and every point labelled (up to 30). Several families: points
coloured by family, each family's front drawn as a dashed line in its colour, the overall front as a black line
with its points labelled. Several precisions or runtimes get
one marker shape each.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import EdgekitError
from ..files import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    from . import SweepPoint

#: Label every point up to this many; past it, only the overall front.
LABEL_ALL_UP_TO = 30
#: Several families whose MACs (or latencies) span more than this ratio are drawn on a log axis.
LOG_SPAN = 10
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
#: Where a label may go, relative to its point (offset points), tried in this order until one overlaps nothing.
_LABEL_OFFSETS = ((7, 7), (7, -9), (-7, 9), (-7, -9), (14, 20), (14, -20), (-14, 22), (-14, -22), (24, 34), (24, -34))


def require_matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise EdgekitError(
            "the sweep plot needs matplotlib, which is not installed: pip install 'edgekit[plot]' (or pass --no-plot)"
        ) from None
    return matplotlib


def _text_box(annotation: Any, renderer: Any) -> Any:
    """The label's own box, without its leader line (Annotation.get_window_extent includes the arrow)."""
    from matplotlib.text import Text

    annotation.update_positions(renderer)
    return Text.get_window_extent(annotation, renderer)


def _label_points(fig: Any, ax: Any, points: Sequence["SweepPoint"], labelled: Sequence["SweepPoint"],
                  text_of: Any, avoid: Sequence[Any] = ()) -> None:
    """Label each of ``labelled`` at the first candidate spot inside the axes that covers no marker, no earlier label
    and nothing in ``avoid`` (legend, footnote); a thin leader line joins a label moved away from its point. When no
    spot is free the label goes to the nearest one."""
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = [artist.get_window_extent(renderer) for artist in avoid]
    markers = {}
    for p in points:  # the markers themselves: no label may cover another point
        x, y = ax.transData.transform((p.macs / 1e6, p.latency_ms["p50"]))
        markers[id(p)] = Bbox.from_extents(x - 6, y - 6, x + 6, y + 6)

    def put(p: "SweepPoint", dx: int, dy: int) -> Any:
        leader = None if (dx, dy) == _LABEL_OFFSETS[0] else {"arrowstyle": "-", "color": "0.55", "linewidth": 0.6}
        text = ax.annotate(text_of(p), (p.macs / 1e6, p.latency_ms["p50"]), textcoords="offset points",
                           xytext=(dx, dy), fontsize=8,
                           ha="left" if dx >= 0 else "right", va="center", arrowprops=leader,
                           fontweight="bold" if p.on_front else "normal", annotation_clip=False)  # fmt: skip
        text.set_in_layout(False)
        return text

    for p in sorted(labelled, key=lambda q: (not q.on_front, q.macs)):  # front labels get the best spots
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


def _groups(points: Sequence["SweepPoint"]) -> tuple[str, list]:
    """What the colours tell apart: families, else models, else width multipliers."""
    for attr in ("family", "model"):
        values = list(dict.fromkeys(getattr(p, attr) for p in points))
        if len(values) > 1:
            return attr, values
    return "alpha", sorted({p.alpha for p in points})


def _variant(p: "SweepPoint") -> str:
    return f"{p.precision} {p.runtime}"


def _label_text(points: Sequence["SweepPoint"]) -> Any:
    several_models = len({p.model for p in points}) > 1
    several_variants = len({_variant(p) for p in points}) > 1

    def text(p: "SweepPoint") -> str:
        parts = [p.model] if several_models else []
        parts.append(p.label)
        if several_variants:
            parts.append(p.precision if len({p.runtime for p in points}) == 1 else _variant(p))
        return " ".join(parts)

    return text


def _draw_line(ax: Any, chosen: Sequence["SweepPoint"], **style: Any) -> None:
    ordered = sorted(chosen, key=lambda p: p.macs)
    ax.plot([p.macs / 1e6 for p in ordered], [p.latency_ms["p50"] for p in ordered], **style)


def plot(points: Sequence["SweepPoint"], front: Sequence[int], path: Path, *, title: str, subtitle: str = "") -> Path:
    """Latency (p50, bars from min to p90) against MACs; the fronts drawn as lines; points labelled."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.5, 6) if len(points) <= LABEL_ALL_UP_TO else (11, 7.5), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    attr, values = _groups(points)
    colours = {v: f"C{i % 10}" for i, v in enumerate(values)}
    variants = list(dict.fromkeys(_variant(p) for p in points))
    shapes = {v: _MARKERS[i % len(_MARKERS)] for i, v in enumerate(variants)}
    for value in values:
        for variant in variants:
            group = [p for p in points if getattr(p, attr) == value and _variant(p) == variant]
            if not group:
                continue
            name = f"alpha {value:g}" if attr == "alpha" else str(value)
            ax.errorbar([p.macs / 1e6 for p in group], [p.latency_ms["p50"] for p in group],
                        yerr=[[max(0.0, p.latency_ms["p50"] - p.latency_ms["min"]) for p in group],
                              [max(0.0, p.latency_ms["p90"] - p.latency_ms["p50"]) for p in group]],
                        fmt=shapes[variant], color=colours[value], ecolor=colours[value], alpha=0.9, capsize=3,
                        markersize=6, label=name if len(variants) == 1 else f"{name}, {variant}")  # fmt: skip
        if attr == "family":
            members = [p for p in points if p.family == value and p.family_front]
            if len(members) > 1:
                _draw_line(ax, members, linestyle="--", color=colours[value], linewidth=0.9, zorder=1)
    if front:
        chosen = [points[i] for i in front]
        _draw_line(ax, chosen, linestyle="-", color="black", linewidth=1.2, zorder=1, label="Pareto front")
        ax.scatter([p.macs / 1e6 for p in chosen], [p.latency_ms["p50"] for p in chosen], s=160, facecolors="none",
                   edgecolors="black", linewidths=1.5, zorder=3)  # fmt: skip
    ax.margins(x=0.1, y=0.12)
    if len(values) > 1 and attr == "family":  # families span decades of MACs and latency: spread them evenly
        macs = [p.macs for p in points]
        lat = [p.latency_ms["p50"] for p in points]
        if max(macs) > LOG_SPAN * min(macs):
            ax.set_xscale("log")
        if min(lat) > 0 and max(lat) > LOG_SPAN * min(lat):
            ax.set_yscale("log")
    ax.set_xlabel("multiply-adds per image (millions)")
    ax.set_ylabel("latency p50 (ms); bars: min to p90")
    ax.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    ax.grid(True, alpha=0.3)
    legend = ax.legend(fontsize=8 if len(values) * len(variants) <= 12 else 6, loc="upper left")
    footnote = "front: no other point has more MACs at no more latency"
    if attr == "family":
        footnote += "; dashed: each family's front"
    note = ax.text(0.99, 0.01, footnote, transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="0.35")
    fig.canvas.draw()  # runs the layout, so the label placement below sees the final axes
    crowded = len(points) > LABEL_ALL_UP_TO or attr == "family"  # colours name the families; labels, the front
    labelled = [p for p in points if p.on_front] if crowded else points
    _label_points(fig, ax, points, labelled, _label_text(points), avoid=(legend, note))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return atomic_write(path, buffer.getvalue())
