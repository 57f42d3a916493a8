"""compose.yaml against the Compose Specification JSON schema (vendored in the check-jsonschema
wheel, Apache-2.0) and deploy/k8s against the Kubernetes OpenAPI JSON schemas (vendored in the
kubernetes-validate wheel), strict: unknown fields fail. No network is used. Also: the Grafana
dashboard, Prometheus config and Dockerfile say what the stack needs."""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.30"


def compose_schema() -> dict[str, Any]:
    path = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    schema = compose_schema()
    jsonschema.validate(compose(), schema)
    broken = copy.deepcopy(compose())
    broken["services"]["gateway"]["ports"] = {"8080": "8080"}  # a mapping is not allowed
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_compose_stack_has_every_part() -> None:
    services = compose()["services"]
    assert {
        "postgres",
        "minio",
        "minio-init",
        "migrate",
        "scp",
        "worker",
        "gateway",
        "prometheus",
        "grafana",
        "orthanc",
        "mllp-sink",
    } <= set(services)
    for role in ("scp", "worker", "gateway"):
        service = services[role]
        assert service["image"] == "xraygate:latest" and service["command"] == [role]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["worker"]["deploy"]["replicas"] >= 2
    orthanc = services["orthanc"]["environment"]
    assert json.loads(orthanc["ORTHANC__DICOM_MODALITIES"]) == {
        "xraygate": ["XRAYGATE", "scp", 11112]
    }
    assert services["scp"]["environment"]["XRAYGATE_HL7_HOST"] == "mllp-sink"
    for mount in services["grafana"]["volumes"] + services["prometheus"]["volumes"]:
        source = mount.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).exists(), source


def _k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def generated_k8s_secret() -> dict[str, Any]:
    """The Secret deploy/k8s/make-secrets.sh prints (the repository ships none)."""
    import subprocess

    env = {
        "PATH": "/usr/bin:/bin",
        "XRAYGATE_DATABASE_URL": "postgresql://xraygate:p'w@postgres.database.svc:5432/xraygate",
        "XRAYGATE_S3_ACCESS_KEY_ID": "site-key",
        "XRAYGATE_S3_SECRET_ACCESS_KEY": "site-secret",
    }
    script = ROOT / "deploy" / "k8s" / "make-secrets.sh"
    out = subprocess.run(["sh", str(script)], env=env, capture_output=True, check=True, text=True)
    doc: dict[str, Any] = yaml.safe_load(out.stdout)
    return doc


def _is_keda(doc: dict[str, Any]) -> bool:
    return str(doc["apiVersion"]).startswith("keda.sh/")


def test_k8s_manifests_validate_strictly() -> None:
    docs = _k8s_docs()
    assert len(docs) >= 8
    for _name, doc in [*docs, ("make-secrets.sh", generated_k8s_secret())]:
        if not _is_keda(doc):  # KEDA's custom resources: test_keda_scaled_objects
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    deployment = next(d for _, d in docs if d["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pth"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, K8S_VERSION, strict=True)


def test_k8s_has_replicas_probes_config_and_migration() -> None:
    docs = _k8s_docs()
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in docs}
    kinds.add((generated_k8s_secret()["kind"], generated_k8s_secret()["metadata"]["name"]))
    assert {
        ("ConfigMap", "xraygate-config"),
        ("Secret", "xraygate-secrets"),
        ("Job", "xraygate-migrate"),
    } <= kinds
    deployments = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {"xraygate-gateway", "xraygate-scp", "xraygate-worker"}
    scaled = {
        d["spec"]["scaleTargetRef"]["name"]: d for _, d in docs if d["kind"] == "ScaledObject"
    }
    for name in ("xraygate-worker", "xraygate-scp"):
        assert "replicas" not in deployments[name]["spec"], "KEDA owns the replica count"
        assert (
            2 <= scaled[name]["spec"]["minReplicaCount"] < scaled[name]["spec"]["maxReplicaCount"]
        )
    assert deployments["xraygate-gateway"]["spec"]["replicas"] >= 2
    budgets = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "PodDisruptionBudget"}
    assert set(budgets) == set(deployments)
    for name, budget in budgets.items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert budget["spec"]["maxUnavailable"] == 1
    for deployment in deployments.values():
        spec = deployment["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        [container] = spec["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert {"configMapRef", "secretRef"} <= {k for e in container["envFrom"] for k in e}
    job = next(d for _, d in docs if d["kind"] == "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]


POSTGRESQL_SCALER = {"connectionFromEnv", "query", "targetQueryValue", "activationTargetQueryValue"}
PROMETHEUS_SCALER = {"serverAddress", "query", "threshold", "activationThreshold"}


def test_keda_scaled_objects(pg_url: str, tmp_path: Path) -> None:
    """Valid against KEDA's models (types, required and unknown fields), and they scale on
    what they say: the PostgreSQL queries run on our schema, the PromQL parses (promtool) and
    names a metric the SCP exports."""
    from sqlalchemy import create_engine, text

    from tests.gateway.keda_models import validation_errors
    from xraygate.core import db, metrics

    keda = [d for _, d in _k8s_docs() if _is_keda(d)]
    assert {d["kind"] for d in keda} == {"ScaledObject"} and len(keda) == 2
    broken = copy.deepcopy(keda[0])
    broken["spec"]["minReplicaCount"] = "two"
    misspelt = copy.deepcopy(keda[0])
    misspelt["spec"]["cooldownPeriods"] = 300
    errors = validation_errors([*keda, broken, misspelt])
    assert errors[: len(keda)] == [None] * len(keda), errors
    assert "minReplicaCount must be integer" in str(errors[-2])
    assert "unknown fields: spec.cooldownPeriods" in str(errors[-1])

    worker = next(d for d in keda if d["metadata"]["name"] == "xraygate-worker")
    triggers = worker["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"postgresql"}
    db.upgrade(pg_url)
    engine = create_engine(pg_url)
    kinds_counted = ""
    with engine.connect() as conn:
        for trigger in triggers:
            meta = trigger["metadata"]
            assert set(meta) <= POSTGRESQL_SCALER and float(meta["targetQueryValue"]) > 0
            assert meta["connectionFromEnv"] == "XRAYGATE_DATABASE_URL"
            assert conn.execute(text(meta["query"])).scalar_one() == 0
            kinds_counted += meta["query"]
    engine.dispose()
    from xraygate.core.jobs import JobKind

    for kind in JobKind:  # every kind of work makes the workers scale, and only real kinds
        assert f"'{kind.value}'" in kinds_counted, f"no trigger counts {kind.value} jobs"
    assert set(re.findall(r"'([a-z-]+)'", kinds_counted)) - {"running", "pending"} <= {
        k.value for k in JobKind
    }

    scp = next(d for d in keda if d["metadata"]["name"] == "xraygate-scp")
    [trigger] = scp["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and set(trigger["metadata"]) <= PROMETHEUS_SCALER
    query = trigger["metadata"]["query"]
    assert metrics.ASSOCIATIONS_ACTIVE._name in query
    rules = tmp_path / "rules.yml"
    rules.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {"name": "keda", "rules": [{"record": "xraygate:keda_scp", "expr": query}]}
                ]
            }
        )
    )
    import subprocess

    checked = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_k8s_and_compose_settings_exist() -> None:
    from xraygate.core.config import Settings

    known = {f"XRAYGATE_{name.upper()}" for name in Settings.model_fields}
    used = set(compose()["x-xraygate-env"])
    for _, doc in _k8s_docs():
        if doc["kind"] == "ConfigMap":
            used |= set(doc["data"])
        assert doc["kind"] != "Secret", "secrets are generated, never shipped"
    used |= set(generated_k8s_secret()["stringData"])
    used |= {s.upper() for s in compose()["secrets"] if s.startswith("xraygate_")}
    used -= {"XRAYGATE_SECRETS_DIR"}  # read before the settings (core/config.py)
    assert used <= known, used - known


def test_grafana_dashboard_and_prometheus_config() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/xraygate.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    from xraygate.core import metrics

    for needed in (
        "instances_received",
        "studies_scored",
        "deid_exports",
        "study_scores",
        "queue_depth",
        "deliveries",
        "feedback_total",
    ):
        assert f"xraygate_{needed}" in exprs
    defined = {m._name for m in vars(metrics).values() if hasattr(m, "_name")}
    for name in set(re.findall(r"xraygate_[a-z_]+", exprs)):
        base = re.sub(r"_(bucket|total)$", "", name)
        assert base in defined or name in defined, f"dashboard uses unknown metric {name}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {j["job_name"] for j in prometheus["scrape_configs"]}
    assert {"xraygate-gateway", "xraygate-scp", "xraygate-worker"} <= jobs
    provisioning = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/xraygate.yml").read_text()
    )
    assert provisioning["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dockerfile_one_image_non_root_with_tensorflow_cpu() -> None:
    text = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "tensorflow-cpu" in text and 'ENTRYPOINT ["xraygate"]' in text
