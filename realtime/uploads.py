"""`POST /api/bulk/uploads`: an import file (rule 22) comes over HTTP, not in a WebSocket frame.

Frames are small by design (DIALHUB_WS_MAX_FRAME_BYTES, 64 KiB by default, checked before a
frame is parsed), and a spreadsheet is easily megabytes; a raw HTTP body streams, is capped at
its own limit, and needs no multipart parser. The file is read and checked here, then kept in
Redis for an hour under the data owner's prefix, so the `bulk.import` verb that maps its
columns and starts the job may arrive on any node. Only administrators import.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from domain.db.imports import Table, read_table
from domain.errors import NotFound
from domain.model import Role, User
from presence.keys import owner_prefix
from realtime.auth import require_user
from realtime.errors import ApiError
from realtime.services import Services, services_of

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
UPLOAD_TTL_S = 3600
SAMPLE_ROWS = 5
SUFFIXES = (".csv", ".xlsx")


def upload_key(owner: int, upload_id: str) -> str:
    return f"{owner_prefix(owner)}upload:{upload_id}"


@dataclass(frozen=True, slots=True)
class Upload:
    name: str
    data: bytes


async def upload_import_file(request: Request) -> JSONResponse:
    """Body: the file's bytes; `?name=` its file name (.csv or .xlsx). Answers `upload_id`,
    the header row, the number of rows and the first rows, for mapping the columns."""
    services = services_of(request)
    user = await require_user(services, request)
    if user.role is not Role.ADMIN:
        raise ApiError(403, "forbidden", "imports are for administrators")
    name = Path(request.query_params.get("name", "")).name.strip()
    if not name.lower().endswith(SUFFIXES):
        raise ApiError(400, "invalid", "name the file: ?name=<file>.csv or .xlsx", field="name")
    data = await _read_capped(request)
    if not data:
        raise ApiError(400, "invalid", "the file is empty")
    table = await asyncio.to_thread(read_table, name, data=data)  # Invalid: a 400
    upload_id = secrets.token_urlsafe(18)
    stored = {"user_id": user.id, "name": name, "data": base64.b64encode(data).decode("ascii")}
    await services.redis.set(
        upload_key(user.data_owner_id, upload_id), json.dumps(stored), ex=UPLOAD_TTL_S
    )
    return JSONResponse(
        {
            "upload_id": upload_id,
            "file_name": name,
            "bytes": len(data),
            "headers": list(table.headers),
            "rows": len(table.rows),
            "sample": [_cells(row) for row in table.rows[:SAMPLE_ROWS]],
        }
    )


async def _read_capped(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise _too_large()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large() -> ApiError:
    return ApiError(413, "invalid", f"the file is larger than {MAX_UPLOAD_BYTES} bytes")


def _cells(row: Any) -> list[str]:
    return ["" if v is None else str(v) for v in row]


async def take_upload(services: Services, user: User, upload_id: str) -> tuple[Upload, Table]:
    """The file this user uploaded, read again; NotFound when it is another's or expired."""
    raw = await services.redis.get(upload_key(user.data_owner_id, upload_id))
    stored = json.loads(raw) if raw else None
    if not stored or stored.get("user_id") != user.id:
        raise NotFound("no such upload (uploads are kept for an hour)")
    upload = Upload(stored["name"], base64.b64decode(stored["data"]))
    table = await asyncio.to_thread(read_table, upload.name, data=upload.data)
    return upload, table


async def forget_upload(services: Services, user: User, upload_id: str) -> None:
    await services.redis.delete(upload_key(user.data_owner_id, upload_id))
