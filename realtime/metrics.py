"""Prometheus metrics of a node, served at `GET /metrics` (text exposition format)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

CONNECTIONS = Gauge("dialhub_ws_connections", "Open WebSocket connections on this node")
FRAMES = Counter(
    "dialhub_ws_frames_total", "WebSocket frames by direction", ["direction"]
)  # in / out
ERRORS = Counter("dialhub_ws_errors_total", "Error replies by code", ["code"])
CLOSES = Counter("dialhub_ws_closes_total", "Connections the server closed, by code", ["code"])
KICK_SECONDS = Histogram(
    "dialhub_kick_seconds",
    "From a release by someone else to selection.revoked handed to the holder's connection",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
LOCK_OPERATIONS = Counter(
    "dialhub_lock_operations_total", "Selection operations by verb and result", ["op", "result"]
)
EVENTS_DELIVERED = Counter(
    "dialhub_events_delivered_total", "Events handed to connections on this node"
)
PRESENCE_SWEPT = Counter("dialhub_presence_leases_swept_total", "Run-out presence leases ended")


async def metrics(_request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
