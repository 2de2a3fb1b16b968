"""``--admission``: the cluster's admission policy from the command line (issue 11)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from servesim.cli import app
from servesim.cli.overrides import admission_override
from servesim.config import SimConfig
from servesim.core.errors import ConfigError


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("accept-all", {"kind": "accept_all", "options": {}}),
        (
            "token-bucket:rate-per-s=2.5,burst=4",
            {"kind": "token_bucket", "options": {"rate_per_s": 2.5, "burst": 4}},
        ),
        ("slo_ttft:ttft-s=0.3", {"kind": "slo_ttft", "options": {"ttft_s": 0.3}}),
        ("gate.py:Gate", {"kind": "gate.py:Gate", "options": {}}),
        ("dir/gate.py:Gate:limit=3", {"kind": "dir/gate.py:Gate", "options": {"limit": 3}}),
    ],
)
def test_admission_specs_parse(spec: str, expected: dict) -> None:
    assert admission_override(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("token-bucket:rate", "is not key=value"),
        ("token-bucket:burst=1,burst=2", "given twice"),
        (":burst=1", "names no policy"),
    ],
)
def test_bad_admission_specs_name_the_flag(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        admission_override(spec)
    assert "--admission" in str(info.value)


def test_flag_sets_the_deployment_admission_also_over_a_deployment() -> None:
    cfg = SimConfig.from_dict({"admission": admission_override("token-bucket:rate-per-s=1")})
    assert cfg.effective_deployment().admission.kind == "token_bucket"
    assert SimConfig().effective_deployment().admission.kind == "accept_all"


def _run(*flags: str) -> dict:
    base = ["simulate", "--num-requests", "120", "--rate", "8", "--seed", "3", "--json"]
    result = CliRunner().invoke(app, [*base, *flags])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_token_bucket_refuses_what_the_bucket_cannot_hold() -> None:
    plain = _run()["summary"]
    gated = _run("--admission", "token-bucket:rate-per-s=2,burst=4")["summary"]
    assert plain["rejected_by_reason"]["not_finished"] == 0
    refused = gated["rejected_by_reason"]["rejected_by_admission"]
    assert refused == sum(gated["rejected_by_reason"].values())
    # 120 Poisson arrivals at 8/s span ~15 s: the bucket admits at most 4 + 2 x 15 ~ 34 of them.
    assert 120 - 4 - 2 * 20 <= refused <= 120 - 4, refused
    assert _run("--admission", "accept-all")["summary"] == plain


ARGS = ("--num-requests", "5", "--admission", "nope")


def test_unknown_admission_policy_is_one_line_exit_2() -> None:
    failed = subprocess.run(
        [sys.executable, "-m", "servesim.cli", "simulate", *ARGS],
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 2
    assert failed.stderr.strip().count("\n") == 0
    assert "unknown admission policy 'nope'" in failed.stderr
