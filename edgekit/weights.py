"""Where a model's numbers come from: a fixed seed, torchvision's ImageNet weights, or a state_dict file.

``weights=None`` gives a deterministic model whose BatchNorm layers carry non-trivial statistics: the running
mean/var are calibrated on seeded noise (so activations stay well scaled even in EfficientNet-B7), then gamma/beta
are drawn away from their identity defaults. Conv-BN folding and verification are therefore really exercised: a
fold that ignored the statistics, or a verifier that compared identity BNs, would be caught.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .errors import BadArgument, BadWeights, first_line
from .files import sha256_file  # noqa: F401  (re-exported: models and older callers import it from here)
from .modes import eval_mode
from .parsing import parse_int
from .registry import IMAGENET_MEAN, IMAGENET_STD, ModelSpec

DEFAULT_SEED = 0
#: Seeds are stored in metadata and JSON; past 2**63 they stop being portable integers.
MAX_SEED = 2**63 - 1
_CALIBRATION_RES = 224  # stride-32 maps of 7x7: calibrating at 64 px (2x2 maps, mostly padding) under-sizes the late BNs
_CALIBRATION_BATCH = 2
_KINDS = ("seed", "imagenet", "file", "module")


@dataclass(frozen=True)
class WeightsRef:
    """Where a model's numbers come from, as one typed value: ``kind`` is seed, imagenet, file or module.

    :meth:`describe` writes the string recorded in export metadata (``seed:0``, ``imagenet:mobilenet_v2``,
    ``file:w.pth``, ``module``) and :meth:`parse` reads it (and what users type: ``imagenet``, a bare path) back:
    the one pair every command uses.
    """

    kind: str
    seed: int | None = None
    path: str | None = None
    sha256: str | None = None
    torchvision_name: str | None = None

    def describe(self) -> str:
        if self.kind == "seed":
            return f"seed:{self.seed}"
        if self.kind == "imagenet":
            return f"imagenet:{self.torchvision_name}" if self.torchvision_name else "imagenet"
        if self.kind == "module":
            return "module"
        return f"file:{self.path}"

    @classmethod
    def parse(cls, text: object, *, seed: int | None = None) -> "WeightsRef":
        """``seed[:N]``, ``imagenet[:name]``, ``module``, ``file:PATH`` or a bare ``PATH``; ``seed`` overrides N."""
        if not isinstance(text, (str, os.PathLike)):
            raise BadArgument(f"weights must be seed:N, imagenet or a state_dict path, got {text!r}")
        value = os.fspath(text).strip()
        low = value.lower()
        if low == "seed" or low.startswith("seed:"):
            raw = value[5:] if ":" in value else str(DEFAULT_SEED)
            if not raw.isdigit():
                raise BadArgument(f"weights {value!r}: the seed must be a non-negative integer, as in seed:0")
            number = check_seed(int(raw[:20]) if len(raw) <= 19 else MAX_SEED + 1)
            return cls("seed", seed=check_seed(seed) if seed is not None else number)
        if low == "imagenet" or low.startswith("imagenet:"):
            return cls("imagenet", torchvision_name=value[9:] or None)
        if low == "module":
            return cls("module")
        if low.startswith("file:"):
            value = value[5:]
        if not value:
            raise BadArgument(f"weights {os.fspath(text)!r} is empty; use seed:N, imagenet or a state_dict path")
        return cls("file", path=value)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


#: The name the first release used; kept for code that imported it.
WeightsSource = WeightsRef


def seed_model(model: nn.Module, seed: int = DEFAULT_SEED) -> None:
    """Re-initialise ``model`` deterministically from ``seed`` and give every BatchNorm non-trivial statistics.

    Order matters: gamma/beta are drawn first, then the running statistics are calibrated on seeded noise with
    every BN in training mode, so each BN's running mean/var describe the activations it really sees. Drawing the
    statistics independently instead would compound layer after layer (logits in the thousands on MobileNetV3 /
    EfficientNet), which makes an absolute tolerance meaningless.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.01)
        bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for bn in bns:
            bn.weight.copy_(torch.empty_like(bn.weight).uniform_(0.5, 1.5, generator=gen))
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=gen) * 0.2)
        momenta = [bn.momentum for bn in bns]
        with eval_mode(model):  # dropout / stochastic depth off; only the BNs calibrate
            for bn in bns:
                bn.reset_running_stats()
                bn.momentum = None  # cumulative average over the calibration batches
                bn.train()
            # Calibrate on the inputs the model will be fed: standard normal and image-like (uniform [0,1] pixels,
            # then ImageNet mean/std). Random deep nets in eval mode are very sensitive to the input distribution
            # (MobileNetV3 logits grow 40x for inputs 1.26x wider than the calibration noise), so both are covered.
            shape = (_CALIBRATION_BATCH, 3, _CALIBRATION_RES, _CALIBRATION_RES)
            mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
            model(torch.randn(shape, generator=gen))
            model((torch.rand(shape, generator=gen) - mean) / std)
            for bn, momentum in zip(bns, momenta):
                bn.momentum = momentum


def _unwrap_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BadWeights(
            f"{path} is not a state_dict (a dict of tensor names to tensors); save one with "
            "torch.save(model.state_dict(), PATH)"
        )
    # Checkpoints saved from DataParallel / torch.compile carry a prefix; strip it so names line up.
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    return obj


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state_dict safely (``weights_only=True``: a pickle with code in it is refused, never run)."""
    from .files import check_input_file

    path = check_input_file(path, "weights file", cls=BadWeights,
                            hint="pass the path of a state_dict written by torch.save(model.state_dict(), PATH)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError ... for bad files
        first = first_line(exc, 120)
        kind = _exported_model_kind(path)
        if kind is not None:
            raise BadWeights(
                f"{str(path)!r} is an exported {kind} model, not a state_dict; --weights takes the state_dict the "
                "model was trained to (torch.save(model.state_dict(), PATH)); to check an export use 'edgekit verify'"
            ) from None
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise BadWeights(
                f"refused to load {str(path)!r}: it contains pickled Python objects, not only tensors "
                "(loading it could run code); re-save it as torch.save(model.state_dict(), PATH)"
            ) from None
        raise BadWeights(
            f"cannot read weights file {str(path)!r} ({first}); pass a file written by torch.save(state_dict)"
        ) from None
    return _unwrap_state_dict(obj, path)


def _exported_model_kind(path: Path) -> str | None:
    """'TorchScript', 'torch.export pt2', 'ONNX' or 'ExecuTorch' when ``path`` is an exported model, else None."""
    from .formats import detect_format

    try:
        fmt = detect_format(path)
    except Exception:  # noqa: BLE001 - not recognisable as any export: the caller reports it as a bad state_dict
        return None
    return fmt.title if fmt is not None else None


def apply_state_dict(model: nn.Module, state: dict[str, torch.Tensor], what: str, name: str, alpha: float) -> None:
    """Strict load with an explanation of what does not match (first few keys of each kind)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]

    def few(items: list[str]) -> str:
        return ", ".join(items[:3]) + (f" (+{len(items) - 3} more)" if len(items) > 3 else "")

    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches: {few(mismatched)}")
    if missing:
        problems.append(f"{len(missing)} missing keys: {few(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {few(unexpected)}")
    if problems:
        raise BadWeights(
            f"{what} does not match {name} at alpha {alpha:g}: {'; '.join(problems)}; "
            "check the model name, --alpha and --num-classes the weights were trained with"
        )
    model.load_state_dict(state, strict=True)


def imagenet_weights_name(spec: ModelSpec, alpha: float) -> str:
    """torchvision's builder name for ``spec``'s ImageNet weights at ``alpha``; BadWeights where none exist."""
    tv_name = spec.imagenet_weights_name(alpha)
    if tv_name is None:
        where = "alpha 1.0" if spec.torchvision_weights else "no alpha"
        extra = sorted(spec.weights_alphas)
        if extra:
            where = "alpha " + "/".join(f"{a:g}" for a in extra)
        raise BadWeights(
            f"no published ImageNet weights for {spec.name} at alpha {alpha:g} (torchvision has them for {where}); "
            "use weights=None (seeded) or pass a state_dict file with --weights PATH"
        )
    return tv_name


def load_imagenet_state_dict(spec: ModelSpec, alpha: float) -> tuple[dict[str, torch.Tensor], str]:
    """torchvision's published ImageNet weights for ``spec`` at ``alpha`` (downloads through torch.hub)."""
    from torchvision.models import get_model_weights

    tv_name = imagenet_weights_name(spec, alpha)
    enum = get_model_weights(tv_name)
    weights = enum.DEFAULT
    try:
        state = weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        raise BadWeights(
            f"could not download ImageNet weights for {spec.name} ({type(exc).__name__}: {str(exc)[:80]}); "
            f"download {weights.url} by hand and pass it with --weights PATH"
        ) from None
    return state, tv_name


def check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise BadArgument(f"seed must be a non-negative integer, got {seed!r}")
    return parse_int(seed, "seed", lo=0, hi=MAX_SEED, example="0")


def resolve_weights_path(raw: str, near: Path) -> Path:
    """A weights file named in a model file's metadata: where it says, or next to that model file."""
    path = Path(raw)
    if path.is_file():
        return path
    beside = near.parent / path.name
    if not path.is_absolute() and (near.parent / path).is_file():
        return near.parent / path
    if beside.is_file():
        return beside
    raise BadWeights(
        f"the reference weights file {raw!r} (from the metadata of {near.name}) is not there; "
        "pass its current location with --weights PATH"
    )
