"""Resource guards size a request on the meta device and refuse what would swap the machine."""

from __future__ import annotations

import pytest

from edgekit.errors import ResourceLimit
from edgekit.guards import check_memory, estimate_inference_bytes


def test_estimate_grows_with_batch_and_resolution():
    base = estimate_inference_bytes("mobilenet_v2", 1.0, 224, 1)
    per_image = estimate_inference_bytes("mobilenet_v2", 1.0, 224, 2) - base
    assert per_image > 0
    assert estimate_inference_bytes("mobilenet_v2", 1.0, 224, 8) == pytest.approx(base + 7 * per_image, rel=1e-6)
    assert estimate_inference_bytes("mobilenet_v2", 1.0, 448, 1) > 2 * base
    # One 224 image through MobileNetV2 needs tens of MB, not GB (first expanded layer: 96x112x112 floats).
    assert 20e6 < base < 500e6


def test_absurd_batch_is_refused_with_an_estimate():
    with pytest.raises(ResourceLimit, match=r"about \d+(\.\d)? GiB .*smaller --res or --batch"):
        check_memory("mobilenet_v2", 1.0, 2048, 4096)


def test_reasonable_request_passes():
    check_memory("mobilenet_v2", 0.5, 224, 4)
