"""The short run of the cluster harness (``make cluster`` runs the long one): about 200
instances through HAProxy into 2 SCPs, 3 workers and 2 gateways on PostgreSQL + S3, while one
process of each kind is SIGKILLed and restarted and the EHR (MLLP and FHIR) is down for 20 s.
Nothing acknowledged may be lost, every scored study must reach the EHR exactly once per version
on each channel, in order per patient, and nothing may be left stuck."""

from __future__ import annotations

import shutil

import pytest

from tests.cluster.cluster import ClusterConfig
from tests.cluster.harness import Run, RunOptions
from tests.conftest import _pg_or_skip

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


def test_short_cluster_run_under_faults() -> None:
    _pg_or_skip()
    assert shutil.which("haproxy") or shutil.which("/usr/sbin/haproxy"), "install haproxy"
    options = RunOptions(
        instances=200,
        seed=7,
        modalities=4,
        faults="short",
        ehr_outage=20.0,
        config=ClusterConfig(),  # every study is exported too (pixel-PHI OCR in the workers)
    )
    verdict = Run(options).execute()
    print(verdict.render())
    assert verdict.ok, verdict.render()
    figures = verdict.figures
    assert figures["instances acknowledged"] == figures["instances sent"] >= 200
    assert figures["pod restarts"] >= 3
    assert figures["FHIR pushes answered 503"] > 0, "the EHR outage missed the deliveries"
    assert "mllp-down 20 s" in figures["faults"] and "kill-scp" in figures["faults"]
