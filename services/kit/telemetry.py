"""OpenTelemetry tracing for gRPC servers and clients, with context propagation.

Spans are created by opentelemetry-instrumentation-grpc for every inbound and
outbound call, so W3C trace context flows across every hop. Export is off by
default; OTEL_TRACES_EXPORTER=console prints spans (an OTLP exporter can be
plugged in the same way in a real deployment).
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
    if os.environ.get("OTEL_TRACES_EXPORTER", "none") == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    if extra_processor is not None:
        provider.add_span_processor(extra_processor)
    trace.set_tracer_provider(provider)
    GrpcAioInstrumentorServer().instrument()
    GrpcAioInstrumentorClient().instrument()
    _configured = True
