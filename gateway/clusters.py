"""The edge's upstream clusters: how Envoy reaches each service, file server and collector.

Service clusters speak HTTP/2 (gRPC) with active health checks, outlier detection,
circuit breakers and keepalive pings; file servers (media, SSE, the web app) plain
HTTP/1.1; the OTLP collector HTTP/2 without health checks (tracing is best effort).
"""

from __future__ import annotations

from datetime import timedelta

from envoy_data_plane.envoy.config.cluster.v3 import (
    CircuitBreakers,
    CircuitBreakersThresholds,
    CircuitBreakersThresholdsRetryBudget,
    Cluster,
    ClusterCustomClusterType,
    ClusterDiscoveryType,
    ClusterLbPolicy,
    OutlierDetection,
)
from envoy_data_plane.envoy.config.core.v3 import (
    HealthCheck,
    HealthCheckGrpcHealthCheck,
    Http2ProtocolOptions,
    KeepaliveSettings,
)
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.extensions.clusters.common.dns.v3 import DnsLookupFamily
from envoy_data_plane.envoy.extensions.clusters.dns.v3 import DnsCluster
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
    HttpProtocolOptions as UpstreamHttpProtocolOptions,
)
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
    HttpProtocolOptionsExplicitHttpConfig,
)
from envoy_data_plane.envoy.type.v3 import (
    Percent,
)
from envoy_data_plane.google.protobuf import Any

from .addresses import is_ip, socket_address
from .limits import CONNECTION_BUFFER_BYTES
from .settings import EdgeSettings, FileRoute, Upstream

# Upstream resilience knobs shared by every service cluster.
CONNECT_TIMEOUT = timedelta(seconds=1)
HEALTH_CHECK_INTERVAL = timedelta(seconds=2)
HEALTH_CHECK_TIMEOUT = timedelta(seconds=1)
# Envoy's HTTP/2 PING to each upstream connection: how long it waits for the ACK before
# closing the connection (the interval is EdgeSettings.upstream_keepalive_interval_seconds).
UPSTREAM_KEEPALIVE_TIMEOUT = timedelta(seconds=5)

_UPSTREAM_PROTOCOL_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
#: The tracer's cluster (gateway/listeners.py names it in the connection manager).
OTEL_COLLECTOR_CLUSTER = "otel_collector"


def collector_cluster(address: str) -> Cluster:
    """HTTP/2 cluster for the OTLP collector (no health check: tracing is best effort)."""
    host, _, port = address.rpartition(":")
    cluster = Cluster(
        name=OTEL_COLLECTOR_CLUSTER,
        connect_timeout=CONNECT_TIMEOUT,
        load_assignment=ClusterLoadAssignment(
            cluster_name=OTEL_COLLECTOR_CLUSTER,
            endpoints=[
                LocalityLbEndpoints(
                    lb_endpoints=[
                        LbEndpoint(endpoint=Endpoint(address=socket_address(host, int(port))))
                    ]
                )
            ],
        ),
    )
    _discover(cluster, host)
    cluster.typed_extension_protocol_options = {
        _UPSTREAM_PROTOCOL_OPTIONS_KEY: Any.pack(
            UpstreamHttpProtocolOptions(
                explicit_http_config=HttpProtocolOptionsExplicitHttpConfig(
                    http2_protocol_options=Http2ProtocolOptions()
                )
            )
        )
    }
    return cluster


def file_cluster(files: FileRoute) -> Cluster:
    """An HTTP/1.1 cluster for a file server (plain HTTP, no gRPC health check)."""
    cluster = Cluster(
        name=files.name,
        connect_timeout=CONNECT_TIMEOUT,
        lb_policy=ClusterLbPolicy.ROUND_ROBIN,
        load_assignment=ClusterLoadAssignment(
            cluster_name=files.name,
            endpoints=[
                LocalityLbEndpoints(
                    lb_endpoints=[
                        LbEndpoint(
                            endpoint=Endpoint(address=socket_address(files.host, files.port))
                        )
                    ]
                )
            ],
        ),
    )
    _discover(cluster, files.host)
    return cluster


def service_cluster(upstream: Upstream, settings: EdgeSettings) -> Cluster:
    """An HTTP/2 cluster with active gRPC health checks, outlier detection and breakers."""
    cluster = Cluster(
        name=upstream.name,
        connect_timeout=CONNECT_TIMEOUT,
        per_connection_buffer_limit_bytes=CONNECTION_BUFFER_BYTES,
        lb_policy=ClusterLbPolicy.ROUND_ROBIN,
        load_assignment=ClusterLoadAssignment(
            cluster_name=upstream.name,
            endpoints=[
                LocalityLbEndpoints(
                    lb_endpoints=[
                        LbEndpoint(endpoint=Endpoint(address=socket_address(host, port)))
                        for host, port in ((upstream.host, upstream.port), *upstream.replicas)
                    ]
                )
            ],
        ),
        typed_extension_protocol_options={
            _UPSTREAM_PROTOCOL_OPTIONS_KEY: Any.pack(
                UpstreamHttpProtocolOptions(
                    explicit_http_config=HttpProtocolOptionsExplicitHttpConfig(
                        http2_protocol_options=Http2ProtocolOptions(
                            # Notice a dead peer (e.g. a killed pod) without waiting for TCP.
                            # The servers must allow this rate (kit/server.py), or they
                            # answer GOAWAY too_many_pings and take quiet streams with them.
                            connection_keepalive=KeepaliveSettings(
                                interval=timedelta(
                                    seconds=settings.upstream_keepalive_interval_seconds
                                ),
                                timeout=UPSTREAM_KEEPALIVE_TIMEOUT,
                            )
                        )
                    )
                )
            )
        },
        health_checks=[
            HealthCheck(
                timeout=HEALTH_CHECK_TIMEOUT,
                interval=HEALTH_CHECK_INTERVAL,
                # Without this a cluster that has had no traffic yet is only probed every 60s.
                no_traffic_interval=HEALTH_CHECK_INTERVAL,
                unhealthy_threshold=2,
                healthy_threshold=1,
                grpc_health_check=HealthCheckGrpcHealthCheck(service_name=upstream.grpc_service),
            )
        ],
        outlier_detection=OutlierDetection(
            # gRPC statuses count as their HTTP equivalents (UNAVAILABLE = 503, ...).
            consecutive_5xx=5,
            consecutive_gateway_failure=3,
            # Defaults to 0%: gateway-failure ejection is computed but never applied.
            enforcing_consecutive_gateway_failure=100,
            interval=timedelta(seconds=5),
            base_ejection_time=timedelta(seconds=15),
            max_ejection_percent=50,
        ),
        circuit_breakers=CircuitBreakers(
            thresholds=[
                CircuitBreakersThresholds(
                    max_connections=1024,
                    max_pending_requests=1024,
                    max_requests=upstream.max_requests,
                    # Retries may add at most 20% load on top of live requests.
                    retry_budget=CircuitBreakersThresholdsRetryBudget(
                        budget_percent=Percent(value=20.0), min_retry_concurrency=10
                    ),
                )
            ]
        ),
    )
    _discover(cluster, upstream.host)
    return cluster


def _discover(cluster: Cluster, host: str) -> None:
    """STATIC for an IP literal, else DNS (re-resolved: one name may find every pod)."""
    if is_ip(host):
        cluster.type = ClusterDiscoveryType.STATIC
    else:
        # STRICT_DNS via the cluster extension (Cluster.dns_lookup_family is deprecated).
        # V4_PREFERRED: "localhost" must reach services bound to 127.0.0.1, not ::1.
        cluster.cluster_type = ClusterCustomClusterType(
            name="envoy.clusters.dns",
            typed_config=Any.pack(DnsCluster(dns_lookup_family=DnsLookupFamily.V4_PREFERRED)),
        )
