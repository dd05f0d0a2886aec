"""The registry: names, aliases, did-you-mean, duplicates, and the completeness walk over every model."""

from __future__ import annotations

import pytest
import torch

import edgekit
from edgekit.errors import BadArgument, UnknownModel
from edgekit.models import check_alpha, check_res
from edgekit.registry import ModelSpec, get_spec, list_aliases, register_model

EXPECTED = {
    "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
    "shufflenet_v1_g1", "shufflenet_v1_g2", "shufflenet_v1_g3", "shufflenet_v1_g4", "shufflenet_v1_g8",
    "shufflenet_v2", *(f"efficientnet_b{i}" for i in range(8)),
}


def test_every_family_of_the_scope_is_registered():
    assert set(edgekit.list_models()) == EXPECTED


def test_aliases_resolve_to_their_models():
    aliases = list_aliases()
    assert aliases["mobilenet_v3"] == "mobilenet_v3_large"
    assert aliases["shufflenet_v1"] == "shufflenet_v1_g3"
    assert get_spec("MobileNet-V3").name == "mobilenet_v3_large"


def test_unknown_model_suggests_the_closest_name():
    with pytest.raises(UnknownModel, match="did you mean 'mobilenet_v2'"):
        get_spec("mobilnet_v2")
    with pytest.raises(UnknownModel, match="edgekit models"):
        get_spec("resnet50")


def test_registering_a_name_twice_raises():
    spec = get_spec("mobilenet_v2")
    with pytest.raises(ValueError, match="registered twice"):
        register_model(ModelSpec(name="mobilenet_v2", family="x", builder=spec.builder, default_res=224, source=""))
    with pytest.raises(ValueError, match="registered twice"):
        register_model(ModelSpec(name="fresh_name", family="x", builder=spec.builder, default_res=224, source="", aliases=("mobilenet_v3",)))


@pytest.mark.parametrize("bad", [0, -0.5, "x", "nan", "inf", 100])
def test_bad_alpha_is_refused_with_the_fix(bad):
    with pytest.raises(BadArgument, match="alpha"):
        check_alpha(bad)


@pytest.mark.parametrize("bad", [0, 16, "abc", 96.5, 100000])
def test_bad_resolution_is_refused(bad):
    with pytest.raises(BadArgument, match="resolution"):
        check_res(get_spec("mobilenet_v2"), bad)


def test_default_resolution_is_the_published_one():
    assert check_res(get_spec("mobilenet_v2"), None) == 224
    assert get_spec("efficientnet_b0").default_res == 224
    assert get_spec("efficientnet_b7").default_res == 600
    assert get_spec("efficientnet_b3").default_res == 300


ALPHAS = (0.25, 0.5, 1.0, 1.5)
RESOLUTIONS = (96, 160, 224)


@pytest.mark.parametrize("name", sorted(EXPECTED))
@torch.inference_mode()
def test_every_model_builds_and_runs_at_several_alphas_and_resolutions(name):
    """Completeness: each model at each alpha (rotating resolutions), and alpha 0.5 at every resolution.

    The wide EfficientNets (B3-B7 at alpha >= 1) run on the meta device: shapes are checked exactly, but no
    seconds are spent initialising and multiplying 10-150 M parameters on a 2-core CI machine.
    """
    spec = get_spec(name)
    heavy = name in {f"efficientnet_b{i}" for i in range(3, 8)}
    for i, alpha in enumerate(ALPHAS):
        device = "meta" if heavy and alpha >= 1.0 else "cpu"
        with torch.device(device):
            model = spec.builder(alpha, 10).eval()
        resolutions = RESOLUTIONS if alpha == 0.5 else (RESOLUTIONS[i % len(RESOLUTIONS)],)
        for res in resolutions:
            out = model(torch.randn(1, 3, res, res, device=device))
            assert out.shape == (1, 10), (name, alpha, res)
            if device == "cpu":
                assert torch.isfinite(out).all()
