"""The deployment artefacts, checked offline: the Kubernetes manifests against the API's
schemas (kubernetes-validate, strict), their probes, security and autoscaling; the Dockerfile
(non-root, health check, 0.0.0.0 by environment, no bootstrap key); the compose file's services
and mounts; and the configs they carry load as seekport settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from seekport.config import load_settings
from seekport.telemetry.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"


def manifests() -> dict[str, dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    out = {}
    for name in kustomization["resources"]:
        doc = yaml.safe_load((K8S / name).read_text())
        out[doc["kind"]] = doc
    return out


@pytest.mark.parametrize("name", sorted(p.name for p in K8S.glob("*.yaml")))
def test_each_manifest_passes_the_kubernetes_schema(name: str) -> None:
    doc = yaml.safe_load((K8S / name).read_text())
    if doc["kind"] == "Kustomization":
        missing = [r for r in doc["resources"] if not (K8S / r).is_file()]
        assert not missing
        return
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_the_deployment_probes_runs_unprivileged_and_scales(tmp_path: Path) -> None:
    m = manifests()
    pod = m["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["startupProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    # the startup probe waits out a model's warm-up (minutes) before liveness applies
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["terminationGracePeriodSeconds"] > load_settings().shutdown_grace_s
    assert container["envFrom"] == [{"secretRef": {"name": m["Secret"]["metadata"]["name"]}}]
    hpa = {x["type"]: x for x in m["HorizontalPodAutoscaler"]["spec"]["metrics"]}
    assert hpa["Resource"]["resource"]["name"] == "cpu"
    queue = hpa["Pods"]["pods"]["metric"]["name"]
    assert queue in Metrics().render().decode()  # a metric the server really exports
    assert m["PodDisruptionBudget"]["spec"]["minAvailable"] >= 1
    # the config it mounts is a valid seekport config, with the secret's URLs
    config = tmp_path / "seekport.yaml"
    config.write_text(m["ConfigMap"]["data"]["seekport.yaml"])
    secret = m["Secret"]["stringData"]
    settings = load_settings(
        config,
        {"database_url": secret["SEEKPORT_DATABASE_URL"], "data_dir": tmp_path / "data"},
    )
    assert settings.host == "0.0.0.0" and not settings.bootstrap_admin_key


def test_the_dockerfile_runs_unprivileged_binds_all_and_prints_no_key() -> None:
    d = DockerfileParser(str(REPO / "Dockerfile"))
    stages = [i for i in d.structure if i["instruction"] == "FROM"]
    final = [i for i in d.structure if i["startline"] > stages[-1]["startline"]]
    user = [i["value"] for i in final if i["instruction"] == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    env = d.envs
    assert env["SEEKPORT_HOST"] == "0.0.0.0" and env["SEEKPORT_BOOTSTRAP_ADMIN_KEY"] == "false"
    assert any(i["instruction"] == "HEALTHCHECK" and "/health/live" in i["value"] for i in final)
    assert any(i["instruction"] == "EXPOSE" and i["value"] == "8000" for i in final)
    for i in d.structure:  # what the build copies from the repository exists
        if i["instruction"] == "COPY" and not i["value"].startswith("--from"):
            assert all((REPO / p).exists() for p in i["value"].split()[:-1]), i["value"]


def test_the_compose_file_runs_seekport_with_its_state_and_monitoring() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"seekport", "postgres", "redis", "prometheus", "vllm"}
    assert services["vllm"]["profiles"] == ["gpu"]  # only on GPU hosts
    seekport = services["seekport"]
    assert seekport["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "/health/ready" in " ".join(seekport["healthcheck"]["test"])
    assert seekport["ports"] == ["127.0.0.1:8000:8000"]  # published on loopback only
    for service in services.values():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("./") and not source.endswith(".key"):
                assert (DEPLOY / source).exists(), mount
    settings = load_settings(
        DEPLOY / "seekport.compose.yaml",
        {"database_url": seekport["environment"]["SEEKPORT_DATABASE_URL"]},
    )
    assert settings.host == "0.0.0.0" and settings.data_dir == Path("/var/lib/seekport")
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.compose.yml").read_text())
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == ["seekport:8000"]
