"""The embedded Redis is a real redis-server that runs Lua and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import redis

from realtime.embedded import EmbeddedRedis


def test_embedded_redis_serves_scripts_and_stops(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path).start()
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        assert client.eval("return redis.call('INCR', KEYS[1])", 1, "counter") == 1
        assert client.config_get("save") == {"save": ""}
        client.close()
        process = server.process
        assert process is not None
    finally:
        server.stop()
    assert process.poll() is not None


def test_embedded_redis_kill_is_a_crash(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path).start()
    process = server.process
    server.kill()
    assert process is not None and process.returncode is not None
    client = redis.Redis.from_url(server.url, socket_connect_timeout=0.2)
    try:
        client.ping()
        raised = False
    except redis.ConnectionError:
        raised = True
    finally:
        client.close()
    assert raised
