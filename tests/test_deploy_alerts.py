"""The shipped Prometheus alert rules: valid (`promtool check`), behaving as their unit tests say
(`promtool test rules`), and reading only metrics xraygate exports."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must check the alert rules: promtool (Debian prometheus) is missing")
        pytest.skip("promtool not installed (Debian package prometheus)")
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["check", "rules", "deploy/prometheus/alerts.yml"],
        ["check", "config", "deploy/prometheus/prometheus.yml"],
        ["test", "rules", "deploy/prometheus/alerts.test.yml"],
    ],
    ids=["check-rules", "check-config", "test-rules"],
)
def test_promtool(args: list[str]) -> None:
    done = subprocess.run(
        [promtool(), *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_rules_read_only_metrics_we_export() -> None:
    from prometheus_client import REGISTRY

    import xraygate.core.metrics  # noqa: F401  (registers every metric)

    exported = set()
    for family in REGISTRY.collect():
        exported.add(family.name)
        exported.update(sample.name for sample in family.samples)
    exported.update(name for name in REGISTRY._names_to_collectors)  # gauges without samples
    groups = yaml.safe_load(RULES.read_text())["groups"]
    used = {
        name
        for group in groups
        for rule in group["rules"]
        for name in re.findall(r"\bxraygate_[a-z_]+", rule["expr"])
    }
    assert used and used <= exported, used - exported
    assert {"XraygateAgreementBelowFloor", "XraygateScoreDrift", "XraygateDeadLetters"} <= {
        rule["alert"] for group in groups for rule in group["rules"]
    }
