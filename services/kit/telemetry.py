"""OpenTelemetry tracing for gRPC servers and clients, with context propagation.

The kit traces its own RPCs (server side in `ServiceInterceptor`, client side in
`channels.OutboundCall`) instead of opentelemetry-instrumentation-grpc, whose
interceptors cost about a quarter of a profile read's CPU (py-spy, issue 12):
they build attribute dicts, parse the peer, proxy the servicer context and
create an SDK span per call whether anything is recorded or not.

* Every request has a trace context: the caller's W3C `traceparent` when one
  came with it (Envoy's, or an upstream service's), else a fresh trace id. Log
  lines (`logs.py`) and INTERNAL/UNAVAILABLE errors carry that trace id, and
  outbound calls propagate it, with or without export.
* Spans are *recorded* only when something consumes them (`OTEL_TRACES_EXPORTER`
  is `console` or `otlp`, or a processor was added, as tests do) and the trace
  is sampled. Sampling is decided once, where the trace starts (Envoy's
  tracer, or the first service, with the SDK's `OTEL_TRACES_SAMPLER`, default
  parent-based always-on), and followed downstream through the sampled flag. An
  unsampled request gets no SDK span, only a context object naming its ids.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    TraceState,
)
from opentelemetry.trace.status import Status, StatusCode

_configured = False
#: True once spans have somewhere to go (an exporter or an added processor).
_recording = False
_tracer: trace.Tracer = trace.NoOpTracer()
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def setup_tracing(service: str, extra_processor: SpanProcessor | None = None) -> None:
    """Installs the tracer provider (idempotent); a processor turns recording on."""
    global _configured, _recording, _tracer
    if _configured:
        provider = trace.get_tracer_provider()
        if extra_processor is not None and isinstance(provider, TracerProvider):
            provider.add_span_processor(extra_processor)  # e.g. a second test's exporter
            _recording = True
        return
    provider = TracerProvider(resource=Resource.create({"service.name": f"socialmesh-{service}"}))
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "none")
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        _recording = True
    elif exporter == "otlp":
        # OTLP over HTTP/protobuf; endpoint, headers and timeouts come from the standard
        # OTEL_EXPORTER_OTLP_* variables, which the exporter reads itself.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        _recording = True
    if extra_processor is not None:
        provider.add_span_processor(extra_processor)
        _recording = True
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("socialmesh.kit")
    _configured = True


def recording() -> bool:
    return _recording


def _parse_traceparent(value: str, state: str | None) -> SpanContext | None:
    """A W3C `traceparent` (version 00 layout), or None when malformed."""
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff":
        return None
    version, tid, sid, flags = parts[:4]
    if len(tid) != 32 or len(sid) != 16 or len(flags) != 2 or (version == "00" and len(parts) > 4):
        return None
    try:
        trace_id, span_id, bits = int(tid, 16), int(sid, 16), int(flags, 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    trace_state = None
    if state:
        try:
            trace_state = TraceState.from_header([state])
        except ValueError:
            trace_state = None
    return SpanContext(
        trace_id,
        span_id,
        is_remote=True,
        trace_flags=TraceFlags(bits & TraceFlags.SAMPLED),
        trace_state=trace_state,
    )


def _metadata_value(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def incoming_context(metadata: Iterable[tuple[str, Any]] | None) -> SpanContext | None:
    """The caller's trace context from gRPC metadata, if it sent a valid one."""
    parent = state = None
    for key, value in metadata or ():
        if key == "traceparent":
            parent = _metadata_value(value)
        elif key == "tracestate":
            state = _metadata_value(value)
    return _parse_traceparent(parent, state) if parent else None


def _unsampled_child(parent: SpanContext | None) -> NonRecordingSpan:
    """A context-only span: the parent's trace (or a new one), a fresh span id."""
    if parent is None:
        trace_id, flags, state = random.getrandbits(128) or 1, _UNSAMPLED, None
    else:
        trace_id, flags, state = parent.trace_id, parent.trace_flags, parent.trace_state
    return NonRecordingSpan(
        SpanContext(
            trace_id,
            random.getrandbits(64) or 1,
            is_remote=False,
            trace_flags=flags,
            trace_state=state,
        )
    )


class ServerSpan:
    """The span of one inbound RPC, current while the handler runs."""

    __slots__ = ("_token", "span")

    def __init__(self, method: str, metadata: Iterable[tuple[str, Any]] | None) -> None:
        parent = incoming_context(metadata)
        if _recording and (parent is None or parent.trace_flags.sampled):
            parent_ctx = (
                trace.set_span_in_context(NonRecordingSpan(parent)) if parent is not None else None
            )
            service, _, rpc = method.lstrip("/").partition("/")
            span: trace.Span = _tracer.start_span(
                method,
                context=parent_ctx,
                kind=SpanKind.SERVER,
                attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc},
            )
        else:
            span = _unsampled_child(parent)
        self.span = span
        self._token = otel_context.attach(trace.set_span_in_context(span))

    def end(self, code: grpc.StatusCode, exc: BaseException | None = None) -> None:
        otel_context.detach(self._token)
        span = self.span
        if span.is_recording():
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code != grpc.StatusCode.OK:
                span.set_status(Status(StatusCode.ERROR, code.name))
                if exc is not None and not isinstance(exc, grpc.aio.AbortError):
                    span.record_exception(exc)
            span.end()


def client_span(method: str) -> trace.Span | None:
    """A CLIENT span for an outbound call, only when the current trace is recorded."""
    if not _recording:
        return None
    current = trace.get_current_span()
    if not current.is_recording():
        return None
    service, _, rpc = method.lstrip("/").partition("/")
    return _tracer.start_span(
        method,
        kind=SpanKind.CLIENT,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc},
    )


def end_client_span(span: trace.Span, code: grpc.StatusCode) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code != grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, code.name))
    span.end()


def traceparent_headers(span: trace.Span | None = None) -> list[tuple[str, str]]:
    """`traceparent` (and `tracestate`) naming `span`, or the current span, if valid."""
    ctx = (span or trace.get_current_span()).get_span_context()
    if not ctx.is_valid or ctx is INVALID_SPAN_CONTEXT:
        return []
    flags = _SAMPLED if ctx.trace_flags.sampled else _UNSAMPLED
    headers = [("traceparent", f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{flags:02x}")]
    if ctx.trace_state:
        headers.append(("tracestate", ctx.trace_state.to_header()))
    return headers
