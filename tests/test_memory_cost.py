"""Memory access cost next to MACs: the MACs are exactly edgekit.complexity's, the bytes are what the shapes say,
and ``edgekit info`` shows them per stage."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from edgekit.cli import main as cli_main
from edgekit.complexity import info
from edgekit.memory_cost import by_kind, layer_costs, memory_cost
from edgekit.registry import list_models


@pytest.mark.parametrize("name", [n for n in list_models() if not n.startswith("efficientnet_b") or n == "efficientnet_b0"])
def test_macs_equal_the_flop_counters_for_every_model(name):
    cost = memory_cost(name, alpha=0.5, res=64)
    assert cost.macs == info(name, alpha=0.5, res=64).macs
    assert sum(s.macs for s in cost.stages) == cost.macs
    assert sum(s.bytes for s in cost.stages) == cost.bytes


def test_bytes_by_hand_on_a_small_network():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),  # 3x32x32 -> 8x16x16
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise
        nn.Conv2d(8, 16, 1),  # pointwise
        nn.AdaptiveAvgPool2d(1), nn.Conv2d(16, 4, 1),  # a 1x1 conv on a 1x1 map (SE-like)
        nn.Flatten(), nn.Linear(4, 10),
    )
    layers, other = layer_costs(net, 32)
    by = {layer.module: layer for layer in layers}
    stem, dw, pw, fc, linear = by["0"], by["3"], by["4"], by["6"], by["8"]
    assert (stem.kind, dw.kind, pw.kind, fc.kind, linear.kind) == ("conv", "depthwise", "pointwise", "fc1x1", "linear")
    assert stem.act_in_bytes == 3 * 32 * 32 * 4 and stem.act_out_bytes == 8 * 16 * 16 * 4
    assert stem.weight_bytes == (8 * 3 * 9 + 8) * 4  # the bias a Conv-BN fold adds is counted
    assert stem.macs == 8 * 16 * 16 * 3 * 9
    assert dw.macs == 8 * 16 * 16 * 9 and dw.weight_bytes == (8 * 9 + 8) * 4
    assert linear.macs == 40 and linear.weight_bytes == (40 + 10) * 4 and linear.act_in_bytes == 16
    assert stem.intensity == pytest.approx(stem.macs / stem.bytes)
    # the ReLU (read + write in place) and the pooling (read 16x16x16, write 16) between the layers
    assert other["2"] == 2 * 8 * 16 * 16 * 4 and other["5"] == (16 * 16 * 16 + 16) * 4
    kinds = {k.kind: k for k in by_kind(layers)}
    assert sum(k.macs_share for k in kinds.values()) == pytest.approx(1.0)
    assert kinds["linear"].bytes_share > kinds["linear"].macs_share  # weights read once per image: memory-bound


def test_info_shows_memory_traffic_per_stage(capsys):
    assert cli_main(["info", "mobilenet_v3", "--alpha", "0.75", "--res", "192"]) == 0
    out = capsys.readouterr().out
    assert "weights MB" in out and "MAC/B" in out and "memory traffic (fp32, batch 1)" in out
    classifier = next(line for line in out.splitlines() if line.startswith("classifier"))
    assert "8.82" in classifier.split()  # 2 Linear layers: (720*1280 + 1280 + 1280*1000 + 1000) * 4 bytes
    assert cli_main(["info", "shufflenet_v2", "--alpha", "0.5", "--res", "64", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    memory = data["memory"]
    assert memory["macs"] == data["macs"]
    names = [s["name"] for s in memory["stages"]]
    assert names[:len(data["stages"])] == [s["name"] for s in data["stages"]]
    assert names[len(data["stages"]):] == ["(top level)"]  # the global mean in ShuffleNetV2's own forward
    assert sum(s["bytes"] for s in memory["stages"]) == memory["bytes"]


def test_meta_device_costs_no_memory():
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 64, 3), nn.ReLU())
    layers, _ = layer_costs(model, 4096)  # 4096 px: sized from shapes only
    assert layers[0].act_out_bytes == 64 * 4094 * 4094 * 4
