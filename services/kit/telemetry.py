"""OpenTelemetry tracing for gRPC servers and clients, with context propagation.

Spans are created by opentelemetry-instrumentation-grpc for every inbound and
outbound call, so W3C trace context flows across every hop. Export is off by
default; OTEL_TRACES_EXPORTER=console prints spans and OTEL_TRACES_EXPORTER=otlp
sends them to OTEL_EXPORTER_OTLP_ENDPOINT (OTLP/HTTP, e.g. an OpenTelemetry Collector).
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.instrumentation.grpc import (
    GrpcAioInstrumentorClient,
    GrpcAioInstrumentorServer,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

_configured = False


def setup_tracing(service: str, extra_processor: SpanProcessor | None = None) -> None:
    """Installs the tracer provider and instruments grpc.aio (idempotent)."""
    global _configured
    if _configured:
        provider = trace.get_tracer_provider()
        if extra_processor is not None and isinstance(provider, TracerProvider):
            provider.add_span_processor(extra_processor)  # e.g. a second test's exporter
        return
    provider = TracerProvider(resource=Resource.create({"service.name": f"socialmesh-{service}"}))
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "none")
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        # OTLP over HTTP/protobuf; endpoint, headers and timeouts come from the standard
        # OTEL_EXPORTER_OTLP_* variables, which the exporter reads itself.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if extra_processor is not None:
        provider.add_span_processor(extra_processor)
    trace.set_tracer_provider(provider)
    GrpcAioInstrumentorServer().instrument()
    GrpcAioInstrumentorClient().instrument()
    _configured = True
