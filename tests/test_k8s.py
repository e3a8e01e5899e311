"""The Kubernetes manifests: rendered, schema-valid (1.30) and following the deployment rules."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

from services import registry

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"


def objects() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_manifests_match_the_renderer(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "render_k8s.py"), str(tmp_path)], check=True
    )
    rendered = sorted(p.name for p in tmp_path.glob("*.yaml"))
    assert rendered == sorted(p.name for p in K8S.glob("*.yaml"))
    stale = [n for n in rendered if not filecmp.cmp(tmp_path / n, K8S / n, shallow=False)]
    assert not stale, f"run scripts/render_k8s.py: {stale}"


def test_every_object_is_schema_valid() -> None:
    docs = objects()
    assert len(docs) > 20
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30", strict=True)


def test_deployment_rules() -> None:
    docs = objects()
    by_kind: dict[str, dict[str, dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    deployments = by_kind["Deployment"]
    assert set(deployments) == {*registry.NAMES, "edge"}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        assert container["readinessProbe"] and container["livenessProbe"], name
        assert container["resources"]["limits"], name
        assert container["securityContext"]["runAsNonRoot"], name
        assert container["securityContext"]["readOnlyRootFilesystem"], name
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, name
        service = by_kind["Service"][name]
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items(), name
        assert by_kind["HorizontalPodAutoscaler"][name]["spec"]["scaleTargetRef"]["name"] == name
        assert (
            by_kind["PodDisruptionBudget"][name]["spec"]["selector"]["matchLabels"]
            == (deployment["spec"]["selector"]["matchLabels"])
        )
        if name != "edge":
            assert service["spec"]["clusterIP"] == "None", name  # client-side round-robin
            assert "grpc" in container["readinessProbe"], name
            mounted = {v["name"]: v for v in pod["spec"]["volumes"]}["jwt"]["secret"]["items"]
            has_private = any(i["key"] == "private.pem" for i in mounted)
            assert has_private == registry.get(name).mints_tokens, name  # only minters sign
    load_balancers = [
        n for n, s in by_kind["Service"].items() if s["spec"].get("type") == "LoadBalancer"
    ]
    assert load_balancers == ["edge"]
    assert "default-deny-ingress" in by_kind["NetworkPolicy"]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for service in registry.IMPLEMENTED:
        assert f"{service}.yaml" in kustomization["resources"]
