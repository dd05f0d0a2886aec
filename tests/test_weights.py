"""Weights: seeded determinism with non-trivial BN statistics, state_dict files, ImageNet loading (stand-in)."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn as nn

import edgekit
from edgekit.errors import BadArgument, BadWeights
from edgekit.models import build_model


def _bns(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def test_seeded_model_is_deterministic():
    a = edgekit.get_model("mobilenet_v2", alpha=0.35)
    b = edgekit.get_model("mobilenet_v2", alpha=0.35)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(a(x), b(x))


def test_a_different_seed_gives_different_weights():
    a, src_a = build_model("mobilenet_v2", alpha=0.35, seed=0)
    b, src_b = build_model("mobilenet_v2", alpha=0.35, seed=1)
    assert src_a.describe() == "seed:0" and src_b.describe() == "seed:1"
    assert not torch.equal(a.features[0][0].weight, b.features[0][0].weight)


def test_seeded_batchnorm_statistics_are_not_identity():
    """Folding identity BNs would prove nothing: every BN must carry non-trivial statistics and affine params."""
    model = edgekit.get_model("mobilenet_v2", alpha=0.35)
    assert not model.training
    for bn in _bns(model):
        assert bn.running_mean.abs().max() > 1e-3
        assert (bn.running_var - 1).abs().max() > 1e-2
        assert (bn.weight - 1).abs().max() > 1e-2
        assert bn.bias.abs().max() > 1e-3


def test_seeded_model_gives_well_scaled_distinct_logits():
    model = edgekit.get_model("mobilenet_v2", alpha=0.5)
    with torch.no_grad():
        out = model(torch.randn(4, 3, 96, 96))
    assert torch.isfinite(out).all()
    assert 1e-2 < out.std() < 1e3
    assert len(set(out.argmax(1).tolist())) > 1 or out.std(0).max() > 1e-3


def test_state_dict_file_round_trip(tmp_path):
    source = edgekit.get_model("mobilenet_v2", alpha=0.5)
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    loaded, where = build_model("mobilenet_v2", alpha=0.5, weights=path)
    assert where.kind == "file" and len(where.sha256) == 64
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_wrapped_and_prefixed_checkpoints_load(tmp_path):
    state = edgekit.get_model("mobilenet_v2", alpha=0.5).state_dict()
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    loaded = edgekit.get_model("mobilenet_v2", alpha=0.5, weights=path)
    assert torch.equal(loaded.features[0][0].weight, state["features.0.0.weight"])


def test_mismatched_weights_name_the_shapes_and_the_fix(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(edgekit.get_model("mobilenet_v2", alpha=0.5).state_dict(), path)
    with pytest.raises(BadWeights, match=r"shape mismatches: features\.0\.0\.weight .*--alpha"):
        edgekit.get_model("mobilenet_v2", alpha=1.0, weights=path)


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    state = edgekit.get_model("mobilenet_v2", alpha=0.5).state_dict()
    state.pop("classifier.1.bias")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "w.pth"
    torch.save(state, path)
    with pytest.raises(BadWeights, match=r"1 missing keys: classifier\.1\.bias; 1 unexpected keys: extra\.weight"):
        edgekit.get_model("mobilenet_v2", alpha=0.5, weights=path)


class _Evil:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def test_pickled_code_is_refused_and_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"weight": _Evil()}, fh)
    with pytest.raises(BadWeights, match="refused|cannot read"):
        edgekit.get_model("mobilenet_v2", weights=path)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("content", [None, b"", b"not a checkpoint at all"])
def test_missing_empty_or_garbage_weights(tmp_path, content):
    path = tmp_path / "w.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadWeights):
        edgekit.get_model("mobilenet_v2", weights=path)


def test_non_state_dict_is_refused(tmp_path):
    path = tmp_path / "w.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(BadWeights, match="not a state_dict"):
        edgekit.get_model("mobilenet_v2", weights=path)


def test_imagenet_weights_load_through_torchvision(monkeypatch):
    """Nothing can be downloaded here: stand in for the download, keep the real loading path around it."""
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

    reference = mobilenet_v2()
    calls = []

    def fake_get_state_dict(self, *args, **kwargs):
        calls.append(self)
        return reference.state_dict()

    monkeypatch.setattr(MobileNet_V2_Weights, "get_state_dict", fake_get_state_dict)
    model, source = build_model("mobilenet_v2", weights="imagenet")
    assert calls == [MobileNet_V2_Weights.DEFAULT]
    assert source.describe() == "imagenet:mobilenet_v2"
    assert torch.equal(model.classifier[1].weight, reference.classifier[1].weight)


def test_imagenet_weights_refused_where_none_are_published():
    with pytest.raises(BadWeights, match="no published ImageNet weights"):
        edgekit.get_model("mobilenet_v2", alpha=0.5, weights="imagenet")
    with pytest.raises(BadWeights, match="no published ImageNet weights"):
        edgekit.get_model("mobilenet_v1", weights="imagenet")


def test_failed_download_is_one_clear_error(monkeypatch):
    from torchvision.models import MobileNet_V2_Weights

    def offline(self, *args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(MobileNet_V2_Weights, "get_state_dict", offline)
    with pytest.raises(BadWeights, match="could not download.*--weights PATH"):
        edgekit.get_model("mobilenet_v2", weights="imagenet")


def test_bad_num_classes_and_seed():
    with pytest.raises(BadArgument):
        edgekit.get_model("mobilenet_v2", num_classes=0)
    with pytest.raises(BadArgument):
        build_model("mobilenet_v2", seed=-1)
