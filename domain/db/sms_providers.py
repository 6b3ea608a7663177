"""SMS providers (rule 23): a file or console one by default, and an HTTP gateway.

Both satisfy domain.db.sms_outbox.SmsProvider: ``await provider.send(message) -> provider id``,
raising when the message was not accepted (the outbox then retries it).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from domain.sms import SmsMessage


class FileSmsProvider:
    """Appends each SMS as one JSON line to a file, or writes it to a stream (the console):
    for development, demos and tests, where no SMS must leave the building."""

    def __init__(self, path: Path | None = None, *, stream: TextIO | None = None) -> None:
        self.path = path
        self.stream = stream if stream is not None or path is not None else sys.stdout

    async def send(self, message: SmsMessage) -> str:
        line = json.dumps(
            {"key": message.key, "to": message.to, "body": message.body}, ensure_ascii=False
        )
        if self.path is not None:
            await asyncio.to_thread(self._append, line)
        if self.stream is not None:
            print(line, file=self.stream, flush=True)
        return message.key

    def _append(self, line: str) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")


class HttpSmsProvider:
    """Posts each SMS as JSON ({"to", "body", "reference"}) to an SMS gateway; a 2xx answer
    accepts it and its JSON "id" (or the reference) is the provider id. The reference lets the
    gateway drop a resend of the same message."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        sender: str | None = None,
        timeout: float = 10.0,
        client: Any = None,
    ) -> None:
        import httpx

        self.url = url
        self.sender = sender
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = client or httpx.AsyncClient(timeout=timeout, headers=headers)

    async def send(self, message: SmsMessage) -> str:
        payload: dict[str, Any] = {
            "to": message.to,
            "body": message.body,
            "reference": message.key,
        }
        if self.sender:
            payload["from"] = self.sender
        response = await self.client.post(self.url, json=payload)
        response.raise_for_status()
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        return str(answer.get("id") or message.key) if isinstance(answer, dict) else message.key

    async def aclose(self) -> None:
        await self.client.aclose()
