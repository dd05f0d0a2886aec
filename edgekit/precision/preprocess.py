"""The one image -> tensor path of edgekit.

Calibration, ``eval`` and the digits fixture's training all go through :func:`load_image`, so a model is
calibrated and scored on exactly the pixels it will see in deployment:

1. open with PIL (header only), refuse images above ``max_pixels`` before decoding (decompression bombs);
2. apply the EXIF orientation (a phone photo is used the way viewers show it);
3. convert to 8-bit RGB: L/LA/P/PA/CMYK/YCbCr/RGBA via PIL, 16-bit and 32-bit grayscale scaled to 8 bits first
   (PIL's own ``convert("RGB")`` clips those at 255); the alpha channel is dropped as torchvision's
   ``pil_loader`` does (``alpha="drop"``) or composited over white (``alpha="white"``);
4. resize the SHORTER side to ``round(res / crop_fraction)`` with PIL bilinear (antialiased when shrinking), the
   longer side as torchvision's ``Resize(int)`` computes it (``int(new_short * long / short)``);
5. centre-crop ``res x res`` (torchvision's ``CenterCrop`` offsets: ``int(round((h - res) / 2))``);
6. scale to [0, 1] and normalise ``(x - mean) / std`` per channel -> float32 CHW.

This is torchvision's ImageNet evaluation transform (``Resize(256) + CenterCrop(224)`` at 224 px), reproduced
bit-for-bit on the resize/crop geometry, with no torchvision import.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import BadArgument, first_line

#: The standard "resize to res / 0.875, centre-crop res" evaluation ratio (224 <- 256).
CROP_FRACTION = 0.875
#: PIL's own default warning threshold (about 89.5 megapixels); decoding more would need > 256 MiB as RGB.
DEFAULT_MAX_PIXELS = 89_478_485
#: Extensions looked at as images (torchvision's IMG_EXTENSIONS, plus .gif for a first frame).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")


class BadImage(BadArgument):
    """An image file that cannot be used as model input (unreadable, truncated, too large, odd mode)."""

    exit_code = 1


@dataclass(frozen=True)
class Preprocess:
    """How image files become model input: the values edgekit's metadata records for an exported model."""

    res: int
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    crop_fraction: float = CROP_FRACTION
    alpha: str = "drop"  # "drop" (torchvision's pil_loader) or "white" (composite over a white background)
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if isinstance(self.res, bool) or not isinstance(self.res, int) or self.res < 1:
            raise BadArgument(f"preprocess resolution must be a positive integer, got {self.res!r}")
        for key in ("mean", "std"):
            values = tuple(float(v) for v in getattr(self, key))
            if len(values) != 3 or not all(math.isfinite(v) for v in values):
                raise BadArgument(f"preprocess {key} must be 3 finite numbers (R, G, B), got {getattr(self, key)!r}")
            object.__setattr__(self, key, values)
        if min(self.std) <= 0:
            raise BadArgument(f"preprocess std must be > 0 for every channel, got {self.std!r}")
        if not 0 < self.crop_fraction <= 1:
            raise BadArgument(f"crop fraction must be in (0, 1], got {self.crop_fraction!r}; the default is 0.875")
        if self.alpha not in ("drop", "white"):
            raise BadArgument(f"alpha handling must be 'drop' or 'white', got {self.alpha!r}")

    @property
    def resize_to(self) -> int:
        """Length of the shorter side before the centre crop."""
        return max(self.res, int(round(self.res / self.crop_fraction)))

    @classmethod
    def from_metadata(cls, meta: object, **overrides: object) -> "Preprocess":
        """From an ``edgekit.metadata.Metadata`` (res, mean, std of the exported model)."""
        kwargs = {"res": int(getattr(meta, "res")), "mean": tuple(getattr(meta, "mean")),
                  "std": tuple(getattr(meta, "std"))}
        kwargs.update(overrides)
        return cls(**kwargs)  # type: ignore[arg-type]


def is_image_name(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def _open_checked(path: Path, max_pixels: int):  # -> PIL.Image.Image
    from PIL import Image, UnidentifiedImageError

    try:
        # Image.open reads the header only; PIL's own bomb check runs here against its global limit, which we
        # lift for this call (a thread-unsafe global, but edgekit decodes on one thread) and replace by ours.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                img = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except UnidentifiedImageError:
        raise BadImage(f"{path} is not an image PIL can read; remove it from the folder or convert it to "
                       "PNG/JPEG") from None
    except OSError as exc:
        raise BadImage(f"cannot open {path} ({exc.strerror or exc}); check the file's permissions") from None
    width, height = img.size
    if width < 1 or height < 1:
        img.close()
        raise BadImage(f"{path} has an empty size {width}x{height}; remove it")
    if width * height > max_pixels:
        img.close()
        raise BadImage(
            f"{path} is {width}x{height} = {width * height / 1e6:.0f} MP, above the {max_pixels / 1e6:.0f} MP limit "
            "(a decompression bomb or a huge scan); downscale it first or raise max_pixels"
        )
    return img


def _to_rgb(img, alpha: str):  # -> PIL.Image.Image (mode RGB)
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or (mode == "I" and arr.max(initial=0) > 255) else 255.0
        if mode == "F":
            top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        arr = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr)  # uint8 2-D -> mode L
        mode = "L"
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        if alpha == "white":
            background = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, img)
        return img.convert("RGB")
    if mode != "RGB":
        img = img.convert("RGB")
    return img


def resize_and_crop(img, res: int, resize_to: int):  # -> PIL.Image.Image
    from PIL import Image

    width, height = img.size
    if width <= height:
        new_w, new_h = resize_to, max(1, int(resize_to * height / width))
    else:
        new_w, new_h = max(1, int(resize_to * width / height)), resize_to
    if (new_w, new_h) != (width, height):
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    top = int(round((new_h - res) / 2.0))
    left = int(round((new_w - res) / 2.0))
    return img.crop((left, top, left + res, top + res))


def normalize(pixels_u8: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """HWC uint8 RGB -> CHW float32, scaled to [0, 1] then (x - mean) / std."""
    x = pixels_u8.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def load_image(path: str | os.PathLike, pre: Preprocess) -> np.ndarray:
    """One image file -> float32 array [3, res, res], ready to stack into an NCHW batch."""
    from PIL import ImageOps

    path = Path(path)
    img = _open_checked(path, pre.max_pixels)
    try:
        with img:
            img.load()
            img = ImageOps.exif_transpose(img) or img
            rgb = _to_rgb(img, pre.alpha)
            cropped = resize_and_crop(rgb, pre.res, pre.resize_to)
            pixels = np.asarray(cropped, dtype=np.uint8)
    except BadImage:
        raise
    except (OSError, SyntaxError, ValueError) as exc:  # truncated / corrupt data surfaces at load()
        raise BadImage(f"cannot decode {path} ({first_line(exc, 100)}); remove it or re-save it as PNG/JPEG") from None
    return normalize(pixels, pre.mean, pre.std)


def load_images(paths: Sequence[str | os.PathLike], pre: Preprocess) -> np.ndarray:
    """Several files -> float32 NCHW [len(paths), 3, res, res]."""
    out = np.empty((len(paths), 3, pre.res, pre.res), dtype=np.float32)
    for i, path in enumerate(paths):
        out[i] = load_image(path, pre)
    return out
