"""The `dialhub` command, run as a user runs it: a subprocess on a temporary SQLite file."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from realtime.embedded import free_port

DIALHUB = str(Path(sys.executable).with_name("dialhub"))
SERVE_START_TIMEOUT = 60.0


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the suite's servers: the command picks its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIALHUB_", "REDIS_URL"))}
    env.pop("DATABASE_URL", None)
    return {**env, **extra}


@pytest.fixture
def sqlite_env(tmp_path: Path) -> dict[str, str]:
    return clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'cli.sqlite3'}")


def dialhub(
    *args: str, env: dict[str, str], cwd: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DIALHUB, *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_clean_failure(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_seed_and_create_user(tmp_path: Path, sqlite_env: dict[str, str]) -> None:
    migrated = dialhub("migrate", env=sqlite_env, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert "revision" in migrated.stdout

    seeded = dialhub("seed", "--demo", env=sqlite_env, cwd=tmp_path)
    assert seeded.returncode == 0, seeded.stderr
    assert "created" in seeded.stdout
    assert "agent1 … agent20, supervisor1, admin1" in seeded.stdout
    again = dialhub("seed", "--demo", env=sqlite_env, cwd=tmp_path)
    assert again.returncode == 0 and "already there" in again.stdout

    more = dialhub("seed", "--customers", "300", env=sqlite_env, cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert "added 300 customers" in more.stdout

    created = dialhub(
        "create-user",
        "kari",
        "--name",
        "Kari Nordmann",
        "--role",
        "supervisor",
        "--data-owner",
        "Nordlys Energi AS",
        "--password",
        "s3cret",
        env=sqlite_env,
        cwd=tmp_path,
    )
    assert created.returncode == 0, created.stderr
    assert "kari" in created.stdout

    piped = dialhub(
        "create-user",
        "ola",
        "--role",
        "agent",
        "--data-owner",
        "Fjord Forsikring AS",
        env=sqlite_env,
        cwd=tmp_path,
        stdin="from-stdin\n",
    )
    assert piped.returncode == 0, piped.stderr

    with sqlite3.connect(tmp_path / "cli.sqlite3") as db:
        rows = dict(db.execute("SELECT username, role FROM users WHERE username IN ('kari','ola')"))
    assert rows == {"kari": "supervisor", "ola": "agent"}


def test_user_mistakes_end_in_one_line_and_a_failure_code(
    tmp_path: Path, sqlite_env: dict[str, str]
) -> None:
    unmigrated = dialhub("seed", "--demo", env=sqlite_env, cwd=tmp_path)
    assert_clean_failure(unmigrated, "dialhub migrate")

    port = str(free_port())
    unmigrated_serve = dialhub("serve", "--port", port, env=sqlite_env, cwd=tmp_path)
    assert_clean_failure(unmigrated_serve, "dialhub migrate")

    assert dialhub("migrate", env=sqlite_env, cwd=tmp_path).returncode == 0
    user = ("create-user", "kari", "--role", "agent", "--password", "pw")
    unknown_owner = dialhub(*user, "--data-owner", "Nobody AS", env=sqlite_env, cwd=tmp_path)
    assert_clean_failure(unknown_owner, "no data owner named 'Nobody AS'")

    nothing = dialhub("seed", env=sqlite_env, cwd=tmp_path)
    assert_clean_failure(nothing, "nothing to seed")

    bad_role = dialhub(
        "create-user", "x", "--role", "boss", "--data-owner", "A", env=sqlite_env, cwd=tmp_path
    )
    assert_clean_failure(bad_role, "invalid choice")

    assert dialhub("seed", "--demo", env=sqlite_env, cwd=tmp_path).returncode == 0
    taken = dialhub(*user, "--data-owner", "Nordlys Energi AS", env=sqlite_env, cwd=tmp_path)
    assert taken.returncode == 0, taken.stderr
    twice = dialhub(*user, "--data-owner", "Nordlys Energi AS", env=sqlite_env, cwd=tmp_path)
    assert_clean_failure(twice, "already exists")

    wrong_db = dialhub("migrate", env={**sqlite_env, "DATABASE_URL": "mysql://x/y"}, cwd=tmp_path)
    assert_clean_failure(wrong_db, "unsupported database")


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """`dialhub serve --demo` with nothing configured: embedded Redis, SQLite in ./var."""
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [DIALHUB, "serve", "--demo", "--host", "127.0.0.1", "--port", str(port)],
            env=clean_env(),  # like `make run`: the relative default var/ under the cwd
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, f"http://127.0.0.1:{port}", log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_until_healthy(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + SERVE_START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, f"dialhub serve exited early:\n{log.read_text()}"
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"dialhub serve not healthy in {SERVE_START_TIMEOUT}s:\n{log.read_text()}")


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_serve_demo_runs_the_app_and_stops_its_embedded_redis(
    demo_server: tuple[subprocess.Popen[bytes], str, Path],
) -> None:
    process, base_url, log = demo_server
    wait_until_healthy(process, base_url, log)

    output = log.read_text()
    assert f"dialhub serving at {base_url}" in output
    assert "agent1 … agent20, supervisor1, admin1 — password: demo" in output
    found = re.search(r"embedded Redis at \S+ \(pid (\d+)\)", output)
    assert found, output
    redis_pid = int(found.group(1))
    assert process_exists(redis_pid)

    login = httpx.post(
        f"{base_url}/api/auth/token", json={"username": "agent1", "password": "demo"}, timeout=10
    )
    assert login.status_code == 200, login.text
    assert login.json()["user"]["role"] == "agent"
    assert httpx.get(f"{base_url}/readyz", timeout=10).status_code == 200

    # Bulk commands beside the server, with nothing configured, find its embedded Redis.
    token = httpx.post(
        f"{base_url}/api/auth/token",
        json={"username": "supervisor1", "password": "demo"},
        timeout=10,
    ).json()["token"]
    assignments = httpx.get(
        f"{base_url}/api/assignments", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()
    filter_ = f'{{"assignment_id": {assignments[0]["id"]}}}'
    cwd = log.parent
    preview = dialhub(
        "bulk", "preview", "--as", "supervisor1", "--filter", filter_, env=clean_env(), cwd=cwd
    )
    assert preview.returncode == 0, preview.stderr
    assert "customers match" in preview.stdout

    process.terminate()
    assert process.wait(timeout=30) == 0
    assert not process_exists(redis_pid), "the embedded redis-server outlived dialhub serve"
    assert not (cwd / "var" / "redis" / "embedded.url").exists()
    alone = dialhub(
        "bulk", "preview", "--as", "supervisor1", "--filter", filter_, env=clean_env(), cwd=cwd
    )
    assert_clean_failure(alone, "set REDIS_URL, or start `dialhub serve`")
