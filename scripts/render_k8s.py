"""Renders k8s/*.yaml: one Deployment + headless Service + HPA + PDB per service, the edge,
network policies and a kustomization. The YAML is committed (ops apply it with
`kubectl apply -k k8s/`); a test fails if it drifts from this renderer.

Why generated: six services share one shape, and a hand-copied shape drifts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services import registry  # noqa: E402

NAMESPACE = "socialmesh"
IMAGE = "socialmesh:latest"
GRPC_PORT = 50051
PART_OF = {"app.kubernetes.io/part-of": "socialmesh"}
JWT_DIR = "/etc/socialmesh/jwt"
#: This service's own identity key (Secret `socialmesh-service-key-<name>`, key `key.pem`).
SERVICE_KEY_DIR = "/etc/socialmesh/service-key"
#: Every service's public key, `<name>.pem` (ConfigMap `socialmesh-service-public-keys`).
SERVICE_PUBLIC_KEYS_DIR = "/etc/socialmesh/service-public-keys"


def labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, **PART_OF}


def security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def service_env(name: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "SOCIALMESH_GRPC_HOST", "value": "0.0.0.0"},
        {"name": "SOCIALMESH_GRPC_PORT", "value": str(GRPC_PORT)},
        {"name": "SHUTDOWN_GRACE_SECONDS", "value": "10"},
        {"name": "JWT_PUBLIC_KEY_FILE", "value": f"{JWT_DIR}/public.pem"},
        {"name": "SERVICE_KEY_FILE", "value": f"{SERVICE_KEY_DIR}/key.pem"},
        {"name": "SERVICE_PUBLIC_KEYS_DIR", "value": SERVICE_PUBLIC_KEYS_DIR},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    for other in registry.NAMES:
        env.append(
            {
                "name": f"SOCIALMESH_{other.upper()}_ADDR",
                "value": f"dns:///{other}.{NAMESPACE}.svc.cluster.local:{GRPC_PORT}",
            }
        )
    secret = "socialmesh-datastores"
    for var, key, optional in (
        ("DATABASE_URL", "database-url", False),
        ("DATABASE_REPLICA_URLS", "database-replica-urls", True),
        ("REDIS_URL", "redis-url", False),
        ("PAGE_TOKEN_SECRET", "page-token-secret", False),
    ):
        env.append(
            {
                "name": var,
                "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": optional}},
            }
        )
    if registry.get(name).mints_tokens:
        env.append({"name": "JWT_PRIVATE_KEY_FILE", "value": f"{JWT_DIR}/private.pem"})
    return env


def deployment(name: str) -> dict[str, Any]:
    probe = {"grpc": {"port": GRPC_PORT}}
    jwt_items = [{"key": "public.pem", "path": "public.pem"}]
    if registry.get(name).mints_tokens:  # only a token minter mounts the signing key
        jwt_items.append({"key": "private.pem", "path": "private.pem"})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels(name)},
        "spec": {
            # No `replicas`: the HPA owns the count (re-applying must not reset it).
            "minReadySeconds": 5,
            "selector": {"matchLabels": labels(name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": labels(name)},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": name,
                            "image": IMAGE,
                            "command": ["socialmesh", "serve", name],
                            "ports": [{"name": "grpc", "containerPort": GRPC_PORT}],
                            "env": service_env(name),
                            # NOT_SERVING until PostgreSQL/Redis answer and migrations ran,
                            # and again while draining after SIGTERM.
                            "startupProbe": {**probe, "periodSeconds": 2, "failureThreshold": 60},
                            "readinessProbe": {**probe, "periodSeconds": 5},
                            # Liveness asks for the "liveness" health service, which stays
                            # SERVING while PostgreSQL/Redis are down: an outage makes pods
                            # unready, it must not restart them all.
                            "livenessProbe": {
                                "grpc": {"port": GRPC_PORT, "service": "liveness"},
                                "periodSeconds": 10,
                                "failureThreshold": 6,
                            },
                            "resources": {
                                "requests": {"cpu": "250m", "memory": "256Mi"},
                                "limits": {"cpu": "1", "memory": "512Mi"},
                            },
                            "securityContext": security_context(),
                            "volumeMounts": [
                                {"name": "jwt", "mountPath": JWT_DIR, "readOnly": True},
                                {
                                    "name": "service-key",
                                    "mountPath": SERVICE_KEY_DIR,
                                    "readOnly": True,
                                },
                                {
                                    "name": "service-public-keys",
                                    "mountPath": SERVICE_PUBLIC_KEYS_DIR,
                                    "readOnly": True,
                                },
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [
                        {
                            "name": "jwt",
                            "secret": {"secretName": "socialmesh-jwt", "items": jwt_items},
                        },
                        {
                            # Identity for service-to-service calls: only this
                            # service's private key (k8s/README.md creates it).
                            "name": "service-key",
                            "secret": {
                                "secretName": f"socialmesh-service-key-{name}",
                                "items": [{"key": "key.pem", "path": "key.pem"}],
                            },
                        },
                        {
                            "name": "service-public-keys",
                            "configMap": {"name": "socialmesh-service-public-keys"},
                        },
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def headless_service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels(name)},
        "spec": {
            # Headless: clients resolve every pod and round-robin themselves
            # (gRPC keeps connections open, so kube-proxy balancing would pin them).
            "clusterIP": "None",
            "selector": labels(name),
            "ports": [
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "appProtocol": "grpc"}
            ],
        },
    }


def hpa(name: str, max_replicas: int = 10) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels(name)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 2,
            "maxReplicas": max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
    }


def pdb(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels(name)},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": labels(name)}},
    }


def edge() -> list[dict[str, Any]]:
    name = "edge"
    deployment_doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels(name)},
        "spec": {
            "selector": {"matchLabels": labels(name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": labels(name)},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "envoy",
                            "image": "envoyproxy/envoy:v1.40-latest",
                            "args": ["-c", "/etc/envoy/envoy.yaml", "--log-level", "warn"],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            # Envoy's health_check filter answers /healthz on the public
                            # listener; the admin port stays on the pod's loopback.
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 5,
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 10,
                            },
                            "resources": {
                                "requests": {"cpu": "250m", "memory": "128Mi"},
                                "limits": {"cpu": "1", "memory": "256Mi"},
                            },
                            "securityContext": security_context(),
                            "volumeMounts": [
                                {"name": "config", "mountPath": "/etc/envoy", "readOnly": True}
                            ],
                        }
                    ],
                    # Rendered by `socialmesh envoy-config` (see k8s/README.md), never hand-edited.
                    "volumes": [{"name": "config", "configMap": {"name": "envoy-config"}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels(name)},
        "spec": {
            "type": "LoadBalancer",
            "selector": labels(name),
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }
    return [deployment_doc, service, hpa(name, 20), pdb(name)]


def network_policies() -> list[dict[str, Any]]:
    meta = {"namespace": NAMESPACE, "labels": PART_OF}
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny-ingress", **meta},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "edge-from-anywhere", **meta},
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "edge"}},
                "policyTypes": ["Ingress"],
                "ingress": [{"ports": [{"port": 8080, "protocol": "TCP"}]}],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "services-from-the-mesh", **meta},
            "spec": {
                "podSelector": {
                    "matchExpressions": [
                        {
                            "key": "app.kubernetes.io/name",
                            "operator": "In",
                            "values": list(registry.NAMES),
                        }
                    ]
                },
                "policyTypes": ["Ingress"],
                # Only the edge and sibling services reach gRPC ports (the kubelet's
                # gRPC probes are not subject to NetworkPolicy).
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": PART_OF}}],
                        "ports": [{"port": GRPC_PORT, "protocol": "TCP"}],
                    }
                ],
            },
        },
    ]


def documents() -> dict[str, list[dict[str, Any]]]:
    files: dict[str, list[dict[str, Any]]] = {
        "namespace.yaml": [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": NAMESPACE, "labels": PART_OF},
            }
        ],
    }
    for name in registry.NAMES:
        files[f"{name}.yaml"] = [deployment(name), headless_service(name), hpa(name), pdb(name)]
    files["edge.yaml"] = edge()
    files["network-policies.yaml"] = network_policies()
    return files


def render(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    files = documents()
    for filename, docs in files.items():
        header = "# Generated by scripts/render_k8s.py; do not edit.\n"
        service = registry.BY_NAME.get(filename.removesuffix(".yaml"))
        if service is not None and not service.implemented:
            header += "# Roadmap service: the image serves it once its issue lands.\n"
        (out / filename).write_text(header + yaml.safe_dump_all(docs, sort_keys=False))
    implemented = [f"{s}.yaml" for s in registry.IMPLEMENTED]
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": NAMESPACE,
        "resources": ["namespace.yaml", *implemented, "edge.yaml", "network-policies.yaml"],
    }
    (out / "kustomization.yaml").write_text(
        "# Generated by scripts/render_k8s.py. Lists the services implemented today;\n"
        "# the other manifests are ready for when their services land.\n"
        + yaml.safe_dump(kustomization, sort_keys=False)
    )


if __name__ == "__main__":
    render(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "k8s")
