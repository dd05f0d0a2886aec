"""INT8 / fp16 with proof, judged on real labelled images: scikit-learn's digits and a model fine-tuned on them.

Independent sources: the images' real labels, the PyTorch eager reference (verify), ONNX Runtime running the fp32
file, scipy's Wilson interval. The heavy searches (--scheme auto with latency, --keep-fp32 auto on an injected
fault, entropy calibration, the main job model) are marked slow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgekit.cli import main
from edgekit.errors import EdgekitError

DIGITS_WEIGHTS = Path(__file__).parent / "data" / "digits_mobilenet_v3_small_a0.35_r64.pth"


def _eval(path, data, **kw):
    from edgekit.eval import EvalOptions, evaluate

    return evaluate(path, data, options=EvalOptions(**kw))


# --- the acceptance numbers on the digits model ---------------------------------------------------------------------
def test_int8_on_digits_loses_at_most_one_point(digits_int8, digits_onnx, digits_dir):
    """Per-channel U8S8 calibrated on 200 real images: accuracy on the 497 held-out test images within 1 point of
    fp32's, judged against the images' real labels."""
    cmp = digits_int8.comparison
    fp32, int8 = _eval(digits_onnx, digits_dir / "test"), _eval(digits_int8.path, digits_dir / "test")
    assert fp32.images == int8.images == 497
    assert fp32.top1 > 0.95  # the fixture really learned the digits (97.4% when trained)
    assert int8.top1 >= fp32.top1 - 0.01
    assert cmp.fp32.accuracy == pytest.approx(fp32.top1) and cmp.other.accuracy == pytest.approx(int8.top1)
    assert cmp.agreement > 0.98 and cmp.samples == 497
    assert int8.precision == "int8" and digits_int8.path.stat().st_size < 0.45 * Path(digits_onnx).stat().st_size


def test_int8_file_records_how_it_was_made(digits_int8, digits_onnx, digits_dir):
    from edgekit.files import sha256_file
    from edgekit.formats import read_metadata
    from edgekit.precision import Preprocess
    from edgekit.precision.data import calibration_set
    from edgekit.precision.int8 import tensors_sha256

    meta = read_metadata(digits_int8.path)
    q = meta.quantization
    assert meta.precision == "int8" and meta.model == "mobilenet_v3_small" and meta.num_classes == 10
    assert q["scheme"] == "U8S8 per-channel" and q["method"] == "minmax" and q["fp32_layers"] == []
    assert q["calibration"]["count"] == 200 and q["calibration"]["kind"] == "folder"
    assert q["fp32_sha256"] == sha256_file(digits_onnx)
    again = calibration_set(digits_dir / "calib", Preprocess.from_metadata(meta), 200)  # seeded: the same images
    assert q["calibration"]["sha256"] == tensors_sha256(again.x) and len(again.held_x) == 100
    manifest = json.loads((Path(digits_onnx).parent / "manifest.json").read_text())
    entry = next(f for f in manifest["files"] if f["name"] == digits_int8.path.name)
    assert entry["precision"] == "int8" and entry["sha256"] == sha256_file(digits_int8.path)
    names = [e["module"] for e in digits_int8.conversion.layers]
    assert len(names) == 5 and all(n.startswith(("features.", "classifier.")) or " after " in n for n in names)


def test_verify_data_passes_faithful_int8_and_fails_constant_calibration(digits_int8, digits_onnx, digits_dir,
                                                                         tmp_path):
    from PIL import Image

    from edgekit.precision.quantize import QuantizeOptions, quantize
    from edgekit.verify import VerifyOptions, verify

    fp32 = verify(digits_onnx, options=VerifyOptions(data=str(digits_dir / "test"), samples=100))
    assert fp32.passed and fp32.cases[0].name == "data" and fp32.cases[0].batch == 100  # fp32: per sample, on images
    good = verify(digits_int8.path, options=VerifyOptions(data=str(digits_dir / "test")))
    st = good.statistical
    assert good.passed and st.judged and st.stats.n == 497 and st.stats.top1_agree_lo > 0.95
    assert st.stats.ref_accuracy > 0.95  # labels reached the statistics: accuracy of the PyTorch reference
    assert any(c.name == "weights" and c.passed for c in good.checks)
    gray = tmp_path / "gray"
    gray.mkdir()
    for i in range(20):
        Image.new("L", (32, 32), 128).save(gray / f"{i}.png")
    broken = quantize(digits_onnx, options=QuantizeOptions(calib=str(gray), out=str(tmp_path / "broken.onnx"),
                                                           latency=False)).path
    bad = verify(broken, options=VerifyOptions(data=str(digits_dir / "test"), samples=200))
    assert not bad.passed and bad.statistical.stats.top1_agree < 0.5
    assert "input quantization" in bad.summary()  # the layer whose calibrated range collapsed is named
    with pytest.raises(EdgekitError, match="top-1 agreement"):
        bad.raise_if_failed()


def test_verify_int8_without_data_checks_weights_and_reports_agreement(digits_int8, tmp_path):
    from onnx import numpy_helper

    from edgekit.verify import VerifyOptions, verify

    report = verify(digits_int8.path, options=VerifyOptions(samples=32))
    assert report.passed and not report.statistical.judged and "not judged" in report.summary()
    model = onnx.load(str(digits_int8.path))
    init = next(t for t in model.graph.initializer if t.name == "features.4.block.0.0.weight_quantized")
    w = numpy_helper.to_array(init).copy()
    w.flat[:3] = -w.flat[:3]  # three weights of one layer flipped: within int8, but not the model's
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    tampered = tmp_path / "tampered.onnx"
    onnx.save(model, str(tampered))
    bad = verify(tampered, options=VerifyOptions(samples=32))
    assert not bad.passed and "features.4.block.0.0" in bad.summary() and "weights" in bad.summary()


def test_verify_without_data_judges_a_synthetic_calibration_on_its_own_inputs(digits_onnx, tmp_path):
    """A file calibrated on seeded image-like inputs is judged on such inputs without --data: each quantized
    activation must survive its quantization. Calibrated on constant images instead (and recorded as synthetic),
    the input's range collapses, and verify names it."""
    import dataclasses

    from edgekit.formats import read_metadata
    from edgekit.formats.onnx import set_metadata
    from edgekit.precision.quantize import QuantizeOptions, quantize
    from edgekit.verify import VerifyOptions, verify

    good = quantize(digits_onnx, options=QuantizeOptions(calib="synthetic", samples=64, latency=False,
                                                         out=str(tmp_path / "syn.onnx"))).path
    report = verify(good, options=VerifyOptions(samples=32))
    assert report.passed and report.statistical.coverage_judged
    assert min(c.sqnr_db for c in report.statistical.coverage if not c.folded) > 15
    np.savez(tmp_path / "gray.npz", x=np.zeros((40, 3, 64, 64), np.float32))
    flat = quantize(digits_onnx, options=QuantizeOptions(calib=str(tmp_path / "gray.npz"), latency=False,
                                                         out=str(tmp_path / "flat.onnx"))).path
    meta = read_metadata(flat)
    quant = dict(meta.quantization, calibration=dict(meta.quantization["calibration"], kind="synthetic"))
    model = onnx.load(str(flat))
    set_metadata(model, dataclasses.replace(meta, quantization=quant))
    onnx.save(model, str(flat))
    bad = verify(flat, options=VerifyOptions(samples=32))
    assert not bad.passed and "input quantization" in bad.summary()


def test_fp16_on_digits_and_where_it_overflows(digits_onnx, digits_dir, tmp_path):
    from onnx import numpy_helper

    from edgekit.precision.quantize import QuantizeOptions, quantize
    from edgekit.verify import verify

    report = quantize(digits_onnx, options=QuantizeOptions(to="fp16", out=str(tmp_path / "m_fp16.onnx"),
                                                           eval=str(digits_dir / "test"), latency=False))
    assert report.conversion.nonfinite == [] and report.comparison.agreement > 0.995
    assert verify(report.path).passed  # the fp16 preset, per sample, on verify's seeded inputs
    # a classifier scaled x1e5 keeps fp32's decisions but overflows fp16 (65504): the module is named
    model = onnx.load(str(digits_onnx))
    for t in model.graph.initializer:
        if t.name.startswith("classifier.3."):
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * np.float32(1e5), t.name))
    hot = tmp_path / "hot.onnx"
    onnx.save(model, str(hot))
    over = quantize(hot, options=QuantizeOptions(to="fp16", latency=False))
    assert over.conversion.nonfinite and over.conversion.nonfinite[0].module == "classifier.3"
    assert "classifier.3" in over.to_text()


def test_export_precisions_share_quantize_and_self_check(digits_dir, tmp_path):
    from edgekit.export import ExportOptions, export

    out = tmp_path / "exp"
    result = export("shufflenet_v2", alpha=0.5, res=32, out_dir=out,
                    options=ExportOptions(formats=("onnx",), precision=("fp32", "fp16", "int8"), calib="synthetic",
                                          calib_samples=64, num_classes=10))
    names = {f["name"]: f for f in result.manifest["files"]}
    assert set(names) == {"shufflenet_v2_a0.5_r32.onnx", "shufflenet_v2_a0.5_r32_fp16.onnx",
                          "shufflenet_v2_a0.5_r32_int8.onnx"}
    assert names["shufflenet_v2_a0.5_r32_int8.onnx"]["quantization"]["calibration"]["kind"] == "synthetic"
    assert names["shufflenet_v2_a0.5_r32_int8.onnx"]["precision"] == "int8"
    assert all(c.ok for c in result.checks) and len(result.checks) == 3
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, "manifest.json"])  # no scratch files left


def test_a_format_without_the_precision_is_said_not_silently_skipped(tmp_path):
    from edgekit.export import ExportOptions, export

    result = export("mobilenet_v2", alpha=0.35, res=32, out_dir=tmp_path / "exp",
                    options=ExportOptions(formats=("onnx", "torchscript"), precision=("fp32", "fp16"), verify=False))
    assert set(result.files) == {"onnx", "onnx_fp16", "torchscript", "manifest"}
    skipped = [s for s in result.stages if s.name == "skipped"]
    assert [s.detail for s in skipped] == ["torchscript fp16: TorchScript is written at fp32 only"]


# --- eval ------------------------------------------------------------------------------------------------------------
def test_eval_cli_two_files_and_labels(digits_int8, digits_onnx, digits_dir, tmp_path, capsys):
    import torch

    from edgekit.models import build_model
    from edgekit.precision import Preprocess, load_all
    from edgekit.precision.data import scan_folder

    assert main(["eval", str(digits_onnx), str(digits_int8.path), "--data", str(digits_dir / "test"),
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    # the fp32 file's accuracy is the eager PyTorch model's on the same images (an independent computation)
    x, y = load_all(scan_folder(digits_dir / "test"), Preprocess(res=64))
    model, _ = build_model("mobilenet_v3_small", alpha=0.35, num_classes=10, weights=str(DIGITS_WEIGHTS))
    with torch.no_grad():
        eager = float((model.eval()(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    assert data["a"]["top1"] == pytest.approx(eager, abs=1 / 497)
    assert data["a"]["images"] == 497 and data["agreement"] > 0.98
    assert data["top1_drop_points"] == pytest.approx(100 * (data["a"]["top1"] - data["b"]["top1"]))
    names = sorted(p.name for p in (digits_dir / "test").iterdir())
    shifted = tmp_path / "shifted.txt"
    shifted.write_text("\n".join(names[1:] + names[:1]) + "\n")  # every class renamed to the next index
    assert main(["eval", str(digits_onnx), "--data", str(digits_dir / "test"), "--labels", str(shifted),
                 "--json", "--limit", "100"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] < 0.2
    short = tmp_path / "short.txt"
    short.write_text("\n".join(names[:5]) + "\n")
    assert main(["eval", str(digits_onnx), "--data", str(digits_dir / "test"), "--labels", str(short)]) == 1
    assert "not named in --labels" in capsys.readouterr().err


# --- bad input: one line, non-zero exit, nothing written ------------------------------------------------------------
def _bad_cases(tmp, onnx_path, int8_path, calib):
    (tmp / "empty").mkdir()
    (tmp / "texts").mkdir()
    (tmp / "texts" / "a.txt").write_text("x")
    three = tmp / "three"
    for c in ("a", "b", "c"):
        (three / c).mkdir(parents=True)
        for i in range(2):
            (three / c / f"{i}.png").write_bytes((calib / "0" / sorted(p.name for p in (calib / "0").iterdir())[i])
                                                 .read_bytes())
    plain = tmp / "plain.onnx"
    model = onnx.load(str(onnx_path))
    del model.metadata_props[:]
    onnx.save(model, str(plain))
    base = [str(onnx_path), "--no-latency"]
    return [
        ([*base, "--calib", str(tmp / "empty")], 1, "is empty"),
        ([*base, "--calib", str(tmp / "texts")], 1, "no image files"),
        ([*base, "--calib", str(three)], 1, "3 class folders but"),
        ([*base, "--calib", str(calib), "--samples", "0"], 2, "--samples must be >= 1"),
        ([str(int8_path), "--calib", str(calib)], 2, "already int8"),
        ([str(plain), "--calib", str(calib)], 2, "no edgekit metadata"),
        ([*base, "--calib", str(calib), "--method", "kl"], 2, "unknown method"),
        ([*base, "--calib", str(calib), "--scheme", "fast"], 2, "unknown scheme"),
        ([*base, "--calib", str(calib), "--target-agreement", "0"], 2, "--target-agreement must be > 0"),
        ([*base, "--calib", str(calib), "--target-agreement", "1.5"], 2, "--target-agreement must be <= 1"),
        ([*base], 2, "needs calibration images"),
        ([*base, "--calib", str(tmp / "missing")], 1, "does not exist"),
    ]


def test_quantize_refuses_bad_input_in_one_line(digits_onnx, digits_int8, digits_dir, tmp_path, capsys):
    folder = Path(digits_onnx).parent
    before = sorted(p.name for p in folder.iterdir())
    for argv, code, text in _bad_cases(tmp_path, digits_onnx, digits_int8.path, digits_dir / "calib"):
        assert main(["quantize", *argv]) == code, argv
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]  # after any '... reading calibration images' progress lines
        assert text in last and last.startswith("edgekit quantize: error:") and "Traceback" not in err, (argv, err)
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written next to the model


def test_verify_and_eval_refuse_bad_input(digits_onnx, digits_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    cases = [
        (["verify", str(digits_onnx), "--data", str(tmp_path / "empty")], 1, "is empty"),
        (["verify", str(digits_onnx), "--data", str(digits_dir / "test"), "--samples", "0"], 2, "--samples"),
        (["verify", str(digits_onnx), "--tolerance", "int8", "--atol", "1e-3"], 2, "do not apply"),
        (["eval", str(digits_onnx), "--data", str(tmp_path / "empty")], 1, "is empty"),
        (["eval", str(digits_onnx), "--data", str(digits_dir / "test"), "--batch", "0"], 2, "--batch"),
    ]
    for argv, code, text in cases:
        assert main(argv) == code, argv
        err = capsys.readouterr().err
        assert text in err and err.count("\n") == 1, (argv, err)


# --- the statistics --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (99, 100), (100, 100), (482, 497), (1, 1)])
def test_wilson_interval_matches_scipy(k, n):
    scipy_stats = pytest.importorskip("scipy.stats")
    from edgekit.verify.agreement import wilson_interval

    ref = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(ref.low, abs=1e-9) and hi == pytest.approx(ref.high, abs=1e-9)


def test_agreement_statistics():
    from edgekit.verify.agreement import agreement

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(200, 10))
    same = agreement(ref, ref.copy(), labels=ref.argmax(1))
    assert same.top1_agree == 1 and same.cosine_p05 == pytest.approx(1) and same.ref_accuracy == 1
    noisy = ref + rng.normal(scale=3.0, size=ref.shape)
    stats = agreement(ref, noisy)
    assert 0.1 < stats.top1_agree < 0.9 and stats.top1_agree_lo < stats.top1_agree < stats.top1_agree_hi
    broken = noisy.copy()
    broken[5, 2] = np.nan
    assert agreement(ref, broken).nonfinite == 1


# --- the heavy searches -----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_scheme_auto_on_digits_times_every_scheme(digits_onnx, digits_dir, tmp_path):
    from edgekit.precision.quantize import QuantizeOptions, quantize

    report = quantize(digits_onnx, options=QuantizeOptions(calib=str(digits_dir / "calib"), samples=200,
                                                           scheme="auto", out=str(tmp_path / "auto.onnx"),
                                                           iters=100))
    search = report.conversion.schemes
    assert len(search.trials) == 4 and all(t.latency_ms > 0 for t in search.trials) and search.fp32_latency_ms > 0
    passing = [t for t in search.trials if t.passed]
    assert search.chosen.label == min(passing, key=lambda t: t.latency_ms).scheme
    assert "scheme auto" in report.to_text()


@pytest.mark.slow
def test_keep_fp32_auto_repairs_an_injected_range_fault(digits_onnx, digits_dir, tmp_path, monkeypatch):
    """One layer's calibrated output range shrunk to a tenth (as a calibration that never saw its large values
    would give): the per-layer ranking blames that layer, and keeping it and the layers reading it in fp32 restores
    agreement with fp32 on the held-out images."""
    from edgekit.precision import int8
    from edgekit.precision.layers import graph_layers
    from edgekit.precision.quantize import QuantizeOptions, quantize

    target = "features.6.block.0.0"
    real = int8.calibrate

    def faulty(prepared, x, method, cache):
        real(prepared, x, method, cache)
        layer = next(lay for lay in graph_layers(onnx.load(str(prepared))) if lay.module == target)
        data = json.loads(cache.read_text())
        for key in ("lowest", "highest"):
            data["data"][layer.output][key]["data"] = [v / 10 for v in data["data"][layer.output][key]["data"]]
        cache.write_text(json.dumps(data))
        return cache

    monkeypatch.setattr(int8, "calibrate", faulty)
    report = quantize(digits_onnx, options=QuantizeOptions(
        calib=str(digits_dir / "calib"), samples=200, keep_fp32=("auto",), target_agreement=0.99,
        out=str(tmp_path / "mixed.onnx"), latency=False))
    mixed = report.conversion.mixed
    assert mixed.reached and mixed.steps[0].agreement < 0.99
    assert mixed.final.kept_fp32[0] == target
    assert target in report.to_text() and "cost of the fp32 layers" in report.to_text()
    assert mixed.final.size_bytes > mixed.steps[0].size_bytes
