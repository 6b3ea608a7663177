"""Connection-level verbs: `ping` (round trip) and `resume` (what was missed while away)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field

from presence.selections import Selection
from realtime.connection import WATCH_TOPICS, Context
from realtime.protocol import Request, verb


class Ping(Request):
    type: Literal["ping"]


class Resume(Request):
    type: Literal["resume"]
    last_seq: int | None = Field(
        default=None, ge=0, description="the last event seq the client saw; omit on first connect"
    )


@verb(Ping)
async def ping(_ctx: Context, _request: Ping) -> dict[str, Any]:
    """Answers at once with the server time."""
    return {"now": datetime.now(UTC).isoformat().replace("+00:00", "Z")}


@verb(Resume)
async def resume(ctx: Context, request: Resume) -> dict[str, Any]:
    """Replays the events after `last_seq` (or sends `resync` when they are gone) and answers
    the user's last seq and current selection (rule 9: back into the same customer screen)."""
    connection, services = ctx.connection, ctx.services
    owner, user_id = ctx.owner, ctx.user.id
    replayed, resync = 0, False
    connection.replay_buffer = []  # live events wait until the missed ones are out
    try:
        if request.last_seq is None:
            last = await services.events.last_seq(owner, user_id)
        else:
            limit = max(1, connection.queue.maxsize // 2)
            frames, last = await services.events.since(owner, user_id, request.last_seq, limit + 1)
            after = request.last_seq
            gone = after > last or (after < last and (not frames or frames[0][0] != after + 1))
            if gone or len(frames) > limit:
                resync = True
                connection.send_text(resync_frame(last, "events missed are no longer kept"))
            else:
                for seq, frame in frames:
                    topic = WATCH_TOPICS.get(json.loads(frame).get("event", ""))
                    if topic is None or connection.watches(topic, frame):
                        connection.push_event(seq, frame)
                        replayed += 1
    finally:
        buffered, connection.replay_buffer = connection.replay_buffer or [], None
        for seq, _event, frame in buffered:
            connection.push_event(seq, frame)
    selection = await services.selections.current(owner, user_id)
    return {
        "seq": last,
        "replayed": replayed,
        "resync": resync,
        "selection": selection_data(selection),
    }


def resync_frame(seq: int, reason: str) -> str:
    frame = {"type": "event", "seq": seq, "event": "resync", "data": {"reason": reason}}
    return json.dumps(frame, separators=(",", ":"))


def selection_data(selection: Selection | None) -> dict[str, Any] | None:
    """The selection a client needs to reopen its customer screen."""
    if selection is None:
        return None
    return {
        "customer_id": str(selection.customer_id),
        "assignment_id": None if selection.assignment_id is None else str(selection.assignment_id),
        "segment_id": None if selection.segment_id is None else str(selection.segment_id),
        "selection_token": str(selection.token),
        "mode": selection.mode.value,
        "selected_at": datetime.fromtimestamp(selection.since / 1000, UTC)
        .isoformat()
        .replace("+00:00", "Z"),
    }
