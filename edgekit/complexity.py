"""Parameters and multiply-adds, counted the papers' way.

The papers count multiply-adds of convolutions (including grouped, depthwise and the SE 1x1s) and fully-connected
layers, and nothing else (not BN, activations, pooling or residual adds). ``torch.utils.flop_counter.FlopCounterMode``
counts exactly those ops (conv + matmul/addmm) at 2 FLOPs per multiply-add, so MACs = FLOPs / 2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .models import check_alpha, check_res
from .modes import eval_mode
from .registry import get_spec


@dataclass(frozen=True)
class StageInfo:
    """One top-level stage of the network (a child of the model, or of its ``features`` container)."""

    name: str
    params: int
    macs: int
    out_shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    alpha: float
    res: int
    params: int
    macs: int
    input_shape: tuple[int, int, int, int]
    num_classes: int
    source: str
    stages: tuple[StageInfo, ...] = field(default=())

    def to_dict(self) -> dict:
        data = asdict(self)
        data["stages"] = [asdict(s) for s in self.stages]
        return data

    def to_text(self, memory: Any = None) -> str:
        """The stage table; with ``memory`` (edgekit.memory_cost's result) also the bytes each stage moves."""
        from .report import human, mega, table

        lines = [f"{self.name}  alpha {self.alpha:g}  res {self.res}  input {list(self.input_shape)}",
                 f"params {human(self.params)} ({self.params:,})   MACs {human(self.macs)} ({self.macs:,})"]
        if memory is None:
            rows = [[s.name, mega(s.params), mega(s.macs), f"{100 * s.macs / max(self.macs, 1):.1f}%",
                     "x".join(map(str, s.out_shape[1:]))] for s in self.stages]
            lines += ["", table(rows, ["stage", "params(M)", "MACs(M)", "MACs%", "output CxHxW"], align="lrrrl")]
        else:
            lines += [f"memory traffic (fp32, batch 1) {human(memory.bytes, 'B')}: "
                      f"{memory.macs / max(memory.bytes, 1):.2f} MACs per byte", "", self._memory_table(memory)]
            lines.append("\nweights: parameters read (with biases); act: conv/linear inputs and outputs; other: the ops "
                         "between them\n(activations, adds, pooling, concatenation, shuffle copies); MAC/B: "
                         "multiply-adds per byte moved")
        lines.append(f"\nsource: {self.source}")
        return "\n".join(lines)

    def _memory_table(self, memory: Any) -> str:
        from .report import mega, table

        def mb(n: float) -> str:
            return f"{n / 1e6:.2f}"

        traffic = {s.name: s for s in memory.stages}
        rows = []
        for s in self.stages:
            moved = traffic.get(s.name)
            cells = ((mb(moved.weight_bytes), mb(moved.act_bytes), mb(moved.other_bytes), f"{moved.intensity:.2f}")
                     if moved else ("-",) * 4)
            rows.append([s.name, mega(s.params), mega(s.macs), f"{100 * s.macs / max(self.macs, 1):.1f}%", *cells,
                         "x".join(map(str, s.out_shape[1:]))])
        shown = {s.name for s in self.stages}
        rows += [[s.name, "", "", "", mb(s.weight_bytes), mb(s.act_bytes), mb(s.other_bytes), f"{s.intensity:.2f}", ""]
                 for s in memory.stages if s.name not in shown]  # ops in the model's own forward (a global mean)
        return table(rows, ["stage", "params(M)", "MACs(M)", "MACs%", "weights MB", "act MB", "other MB", "MAC/B",
                            "output CxHxW"], align="lrrrrrrrl")


@dataclass(frozen=True)
class ZooEntry:
    name: str
    aliases: tuple[str, ...]
    family: str
    default_res: int
    params: int
    macs: int
    imagenet_weights: bool
    source: str

    def to_dict(self) -> dict:
        data = asdict(self)
        data["aliases"] = list(self.aliases)
        return data


@dataclass(frozen=True)
class Zoo:
    """Every registered model at alpha 1.0 and its default resolution (``edgekit models``)."""

    entries: tuple[ZooEntry, ...]

    def to_dict(self) -> list[dict]:  # type: ignore[override]
        return [e.to_dict() for e in self.entries]

    def to_text(self) -> str:
        from .report import mega, table

        rows = [[e.name, ",".join(e.aliases), e.default_res, mega(e.params), mega(e.macs),
                 "yes" if e.imagenet_weights else "-", e.source.split(";")[0]] for e in self.entries]
        return (table(rows, ["name", "aliases", "res", "params(M)", "MACs(M)", "imagenet", "source"], align="llrrrll")
                + "\n\nparams/MACs at alpha 1.0 and the default resolution; MACs = multiply-adds counted the papers' way.")


def zoo() -> Zoo:
    from .registry import list_aliases, list_models

    aliases: dict[str, list[str]] = {}
    for alias, target in list_aliases().items():
        aliases.setdefault(target, []).append(alias)
    entries = []
    for name in list_models():
        spec = get_spec(name)
        model_info = info(name)
        entries.append(ZooEntry(name, tuple(sorted(aliases.get(name, []))), spec.family, spec.default_res,
                                model_info.params, model_info.macs,
                                spec.torchvision_weights is not None or bool(spec.weights_alphas), spec.source))
    return Zoo(tuple(entries))


def _stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Top-level stages: the model's children, with Sequential ``features``-like containers expanded one level."""
    out: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if isinstance(child, nn.Sequential) and name in ("features", "stages", "blocks") and len(child) > 1:
            out.extend((f"{name}.{sub}", grand) for sub, grand in child.named_children())
        else:
            out.append((name, child))
    return out


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_complexity(model: nn.Module, res: int, *, with_stages: bool = True) -> tuple[int, int, list[StageInfo]]:
    """(params, macs, per-stage breakdown) of ``model`` on one ``3 x res x res`` image."""
    stages = _stages(model) if with_stages else []
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        module.register_forward_hook(lambda _m, _i, out, n=name: shapes.__setitem__(n, tuple(out.shape)))
        for name, module in stages
    ]
    try:
        device = next(model.parameters()).device  # "meta" costs no compute: counts are shape-only
        with eval_mode(model), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, res, res, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    total_macs = counter.get_total_flops() // 2
    per_module = counter.get_flop_counts()
    root = type(model).__name__
    infos = []
    for name, module in stages:
        flops = sum(per_module.get(f"{root}.{name}", {}).values())
        infos.append(StageInfo(name=name, params=count_params(module), macs=int(flops) // 2, out_shape=shapes.get(name, ())))
    return count_params(model), int(total_macs), infos


def info(name: str, *, alpha: float = 1.0, res: int | None = None, num_classes: int = 1000) -> ModelInfo:
    """Params and multiply-adds of a registered model at width ``alpha`` and resolution ``res``."""
    spec = get_spec(name)
    alpha = check_alpha(alpha)
    res = check_res(spec, res)
    # Counts depend on shapes only: build on the meta device (no weights allocated, no arithmetic done), so
    # EfficientNet-B7 at 600 px is counted in well under a second.
    with torch.device("meta"):
        model = spec.builder(alpha, num_classes)
    params, macs, stages = count_complexity(model, res)
    return ModelInfo(
        name=spec.name,
        family=spec.family,
        alpha=alpha,
        res=res,
        params=params,
        macs=macs,
        input_shape=(1, 3, res, res),
        num_classes=num_classes,
        source=spec.source,
        stages=tuple(stages),
    )
