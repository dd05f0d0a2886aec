"""The one image -> tensor path (preprocess.py) and the image sources (data.py): torchvision's eval transform
reproduced, every image mode to RGB, untrusted folders, .npz and synthetic sources, --labels, the calibration split."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekit.precision import BadCalibrationData, BadImage, Preprocess, load_all, load_image, resolve_source
from edgekit.precision.data import (
    apply_labels,
    calibration_set,
    check_classes,
    load_npz,
    read_labels,
    scan_folder,
)
from edgekit.precision.int8 import CalibrationReader


def _rgb(h: int, w: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _save(folder: Path, name: str, img: Image.Image) -> Path:
    path = folder / name
    img.save(path)
    return path


@pytest.mark.parametrize("size,res", [((37, 37), 32), ((64, 48), 64), ((48, 64), 224), ((300, 200), 64),
                                      ((8, 8), 32), ((224, 500), 224)])
def test_matches_torchvision_eval_transform(tmp_path, size, res):
    from torchvision import transforms as T

    path = _save(tmp_path, "a.png", _rgb(*size))
    pre = Preprocess(res=res)
    ours = load_image(path, pre)
    tv = T.Compose([T.Resize(pre.resize_to, interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(res),
                    T.ToTensor(), T.Normalize(pre.mean, pre.std)])
    ref = tv(Image.open(path).convert("RGB")).numpy()
    assert ours.shape == (3, res, res) and ours.dtype == np.float32
    assert np.abs(ours - ref).max() < 1e-5


def test_modes_all_become_rgb(tmp_path):
    pre = Preprocess(res=32)
    base = _rgb(40, 40)
    cases = {"l.png": base.convert("L"), "la.png": base.convert("LA"), "p.png": base.convert("P"),
             "rgba.png": base.convert("RGBA"), "cmyk.jpg": base.convert("CMYK"),
             "i16.png": Image.fromarray(np.asarray(base.convert("L"), np.uint16) * 257)}
    gray = load_image(_save(tmp_path, "ref.png", base.convert("L").convert("RGB")), pre)
    for name, img in cases.items():
        x = load_image(_save(tmp_path, name, img), pre)
        assert x.shape == (3, 32, 32) and np.isfinite(x).all(), name
    # 16-bit gray is scaled to 8 bits, not clipped at 255 (PIL's convert("RGB") would make it all white)
    assert np.abs(load_image(tmp_path / "i16.png", pre) - gray).max() < 0.05


def test_alpha_and_exif(tmp_path):
    img = Image.new("RGBA", (40, 40), (255, 0, 0, 0))  # fully transparent red
    path = _save(tmp_path, "t.png", img)
    pre = Preprocess(res=32)
    mean, std = np.asarray(pre.mean), np.asarray(pre.std)
    assert np.allclose(load_image(path, pre)[:, 0, 0], (np.array([1, 0, 0]) - mean) / std, atol=1e-5)
    white = load_image(path, Preprocess(res=32, alpha="white"))
    assert np.allclose(white[:, 0, 0], (np.array([1, 1, 1]) - mean) / std, atol=1e-5)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    _rgb(20, 40).save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    from PIL import ImageOps

    upright = ImageOps.exif_transpose(Image.open(tmp_path / "r.jpg"))
    ref = load_image(_save(tmp_path, "u.png", upright.convert("RGB")), Preprocess(res=16))
    assert np.abs(load_image(tmp_path / "r.jpg", Preprocess(res=16)) - ref).max() < 1e-5


def test_bad_files(tmp_path):
    pre = Preprocess(res=32)
    (tmp_path / "notimg.png").write_bytes(b"hello")
    with pytest.raises(BadImage, match="not an image"):
        load_image(tmp_path / "notimg.png", pre)
    _rgb(64, 64).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(BadImage, match="cannot decode"):
        load_image(tmp_path / "trunc.jpg", pre)
    bomb = tmp_path / "bomb.png"  # 30000 x 30000 pixels in about 1 MB: refused from the header, never decoded
    Image.new("1", (30000, 30000)).save(bomb)
    with pytest.raises(BadImage, match="900 MP"):
        load_image(bomb, pre)


def test_folder_layouts_and_untrusted_contents(tmp_path):
    root = tmp_path / "data"
    with pytest.raises(BadCalibrationData, match="does not exist"):
        scan_folder(root)
    root.mkdir()
    with pytest.raises(BadCalibrationData, match="is empty"):
        scan_folder(root)
    (root / "README.txt").write_text("x")
    (root / ".DS_Store").write_text("x")
    with pytest.raises(BadCalibrationData, match="no image files"):
        scan_folder(root)
    for cls in ("cat", "dog"):
        (root / cls).mkdir()
        for i in range(3):
            _rgb(20, 20, i).save(root / cls / f"{i}.png")
    (root / "dog" / "sub").mkdir()
    _rgb(20, 20, 9).save(root / "dog" / "sub" / "deep.png")
    (root / "dog" / "loop").symlink_to(root / "dog")
    (root / "dog" / "dangling.png").symlink_to(root / "nowhere.png")
    ds = scan_folder(root)
    assert ds.classes == ["cat", "dog"] and ds.labels().tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert {"directory already visited (symlink loop or duplicate link)", "broken symlink or vanished file",
            "not an image extension"} <= set(ds.skipped)
    assert load_all(ds, Preprocess(res=32))[0].shape == (7, 3, 32, 32)
    _rgb(20, 20).save(root / "loose.png")
    with pytest.raises(BadCalibrationData, match="mixes 1 loose images"):
        scan_folder(root)
    os.unlink(root / "loose.png")
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(BadImage, match="broken.png"):
        load_all(scan_folder(root), Preprocess(res=32))
    assert len(load_all(scan_folder(root), Preprocess(res=32), on_bad="skip")[0]) == 7
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(4):
        _rgb(20, 20, i).save(flat / f"{i}.png")
    ds = scan_folder(flat)
    assert len(ds) == 4 and not ds.labelled and not ds.skipped


def test_labels_file_and_class_count(tmp_path):
    root = tmp_path / "data"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        _rgb(20, 20).save(root / cls / "0.png")
    names = tmp_path / "names.txt"
    names.write_text("# ours\nbird\ndog\ncat\n\n")
    ds = apply_labels(scan_folder(root), read_labels(names))
    assert ds.labels().tolist() == [2, 1] and ds.classes == ["bird", "dog", "cat"]
    check_classes(ds, 3, "m", labels_given=True)
    with pytest.raises(BadCalibrationData, match="names 3 classes but m has 10"):
        check_classes(ds, 10, "m", labels_given=True)
    with pytest.raises(BadCalibrationData, match="2 class folders but m has 10"):
        check_classes(scan_folder(root), 10, "m")
    (tmp_path / "dup.txt").write_text("cat\ncat\n")
    with pytest.raises(BadCalibrationData, match="twice"):
        read_labels(tmp_path / "dup.txt")
    (tmp_path / "only_dog.txt").write_text("dog\n")
    with pytest.raises(BadCalibrationData, match="'cat' is not named"):
        apply_labels(scan_folder(root), read_labels(tmp_path / "only_dog.txt"))


def test_npz_synthetic_and_reader(tmp_path):
    pre = Preprocess(res=32)
    np.savez(tmp_path / "ok.npz", x=np.zeros((5, 3, 32, 32), np.float32), y=np.arange(5))
    assert load_npz(tmp_path / "ok.npz", (3, 32, 32)).labels().tolist() == [0, 1, 2, 3, 4]
    np.savez(tmp_path / "bad.npz", x=np.zeros((5, 3, 16, 16), np.float32))
    with pytest.raises(BadCalibrationData, match="has shape"):
        load_npz(tmp_path / "bad.npz", (3, 32, 32))
    np.savez(tmp_path / "nan.npz", x=np.full((2, 3, 32, 32), np.nan, np.float32))
    with pytest.raises(BadCalibrationData, match="NaN"):
        load_npz(tmp_path / "nan.npz", (3, 32, 32))
    a, b = resolve_source("synthetic:8", pre), resolve_source("synthetic:8", pre)
    assert a.tensors.shape == (8, 3, 32, 32) and np.array_equal(a.tensors, b.tensors)
    with pytest.raises(BadCalibrationData, match="synthetic:N"):
        resolve_source("synthetic:zero", pre)
    reader = CalibrationReader(a.tensors[:3], "input", batch=2)  # a fixed batch of 2: the last one padded
    batches = list(reader)
    assert [len(f["input"]) for f in batches] == [2, 2] and len(reader) == 2


def test_calibration_split_is_disjoint_and_seeded(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(30):
        _rgb(8, 8, i).save(root / f"{i:02d}.png")
    pre = Preprocess(res=8)
    one, two = calibration_set(root, pre, 20), calibration_set(root, pre, 20)
    assert np.array_equal(one.x, two.x) and len(one.x) + len(one.held_x) == 30
    together = np.concatenate([one.x, one.held_x]).reshape(30, -1)
    assert len(np.unique(together, axis=0)) == 30  # no image both calibrates and judges
    assert one.notes  # fewer spare images than HOLDOUT_MIN: the split is announced
    whole = calibration_set(root, pre, 100, holdout=False)
    assert len(whole.x) == 30 and len(whole.held_x) == 0
