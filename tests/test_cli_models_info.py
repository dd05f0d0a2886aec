"""`edgekit models` and `edgekit info` through the real CLI."""

from __future__ import annotations

import json

import pytest

import edgekit


def test_models_lists_every_model_with_aliases_and_numbers(cli_inprocess):
    result = cli_inprocess("models")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name in edgekit.list_models():
        assert any(line.startswith(name + " ") for line in lines), name
    mnv3 = next(line for line in lines if line.startswith("mobilenet_v3_large "))
    assert "mobilenet_v3" in mnv3 and "224" in mnv3


def test_models_json(cli_inprocess):
    result = cli_inprocess("models", "--json")
    rows = json.loads(result.stdout)
    by_name = {r["name"]: r for r in rows}
    assert by_name["shufflenet_v1_g3"]["aliases"] == ["shufflenet_v1"]
    assert by_name["efficientnet_b7"]["default_res"] == 600
    assert all(isinstance(r["macs"], int) and r["source"] for r in rows)


def test_info_json_reproduces_the_mobilenet_v3_paper_row(cli_inprocess):
    """The issue's acceptance line: MobileNetV3-large 0.75 @224 is 155 M MACs and 4.0 M params in the paper."""
    result = cli_inprocess("info", "mobilenet_v3", "--alpha", "0.75", "--res", "224", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["name"] == "mobilenet_v3_large" and data["alpha"] == 0.75 and data["res"] == 224
    assert data["macs"] / 1e6 == pytest.approx(155, rel=0.025)
    assert data["params"] / 1e6 == pytest.approx(4.0, abs=0.05)


def test_info_text_has_a_per_stage_breakdown(cli_inprocess):
    result = cli_inprocess("info", "mobilenet_v2", "--alpha", "0.5", "--res", "160")
    assert result.returncode == 0
    assert "stage" in result.stdout and "features.0" in result.stdout and "classifier" in result.stdout
    assert "50.2 M" in result.stdout  # 0.5/160 is 50 M MACs in the TF-slim table


@pytest.mark.parametrize(
    "args, needle",
    [
        (["info", "mobilnet_v3"], "did you mean 'mobilenet_v3'"),
        (["info", "mobilenet_v2", "--alpha", "0"], "alpha"),
        (["info", "mobilenet_v2", "--alpha", "abc"], "alpha"),
        (["info", "mobilenet_v2", "--res", "8"], "too small"),
        (["info", "mobilenet_v2", "--res", "big"], "resolution"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli_inprocess, args, needle):
    result = cli_inprocess(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert needle in result.stderr
    assert result.stdout == ""
