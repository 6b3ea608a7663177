"""The `dialhub` command: serve, migrate, seed, create-user, bulk, import, sms.

User mistakes (a bad argument, an unknown data owner, a database that does not answer) end with
one line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import FrameType
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.db.engine import async_url, current_revision, make_engine, migrate
from domain.errors import DomainError
from domain.model import Role
from realtime.embedded import EmbeddedRedis
from realtime.settings import Settings

T = TypeVar("T")

DEMO_LOGINS = "agent1 … agent20, supervisor1, admin1 — password: demo"


class CliError(Exception):
    """A failure the user can fix; printed as one line, exit code 1."""


class Terminated(Exception):
    """SIGTERM arrived: unwind so the embedded Redis is stopped on the way out."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
        # Absolute, because redis-server changes into its --dir before opening its log file.
        settings = settings.model_copy(update={"var_dir": settings.var_dir.resolve()})
        return args.command(args, settings)
    except (CliError, DomainError) as error:
        print(f"dialhub: error: {error}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Terminated):
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dialhub", description="Real-time work server for outbound contact centers."
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the app (HTTP and WebSocket)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    serve.add_argument("--demo", action="store_true", help="migrate and load the demo data first")
    serve.set_defaults(command=cmd_serve)

    migrate_cmd = commands.add_parser("migrate", help="upgrade the database to the newest schema")
    migrate_cmd.set_defaults(command=cmd_migrate)

    seed = commands.add_parser("seed", help="load demo data")
    seed.add_argument("--demo", action="store_true", help="the demo data owners, users, lists")
    seed.add_argument(
        "--customers", type=_non_negative, metavar="N", help="add N demo customers in bulk"
    )
    seed.set_defaults(command=cmd_seed)

    user = commands.add_parser("create-user", help="add a user to a data owner")
    user.add_argument("username")
    user.add_argument("--name", help="display name (default: the username)")
    user.add_argument("--role", required=True, choices=[r.value for r in Role])
    user.add_argument("--data-owner", required=True, metavar="NAME", help="data owner's name")
    user.add_argument("--password", help="asked for when omitted")
    user.set_defaults(command=cmd_create_user)

    add_bulk_commands(commands)
    return parser


def add_bulk_commands(commands: Any) -> None:
    """`dialhub bulk outcome|move|preview|resume`, `dialhub import`, `dialhub sms deliver`."""
    bulk = commands.add_parser("bulk", help="mass outcome and moves on a customer filter")
    verbs = bulk.add_subparsers(title="bulk commands", required=True, metavar="VERB")

    def common(verb: argparse.ArgumentParser, *, filtered: bool = True) -> None:
        verb.add_argument("--as", dest="username", required=True, help="the supervisor's username")
        if filtered:
            verb.add_argument(
                "--filter",
                required=True,
                type=_json_object,
                metavar="JSON",
                help='customer filter, e.g. \'{"assignment_id": 3, "statuses": ["available"]}\'',
            )
        verb.add_argument("--batch", type=_positive, default=1000, help="customers per batch")

    outcome = verbs.add_parser("outcome", help="register one outcome on every filtered customer")
    common(outcome)
    outcome.add_argument("--outcome", required=True, metavar="KEY", help="the outcome's key")
    outcome.add_argument(
        "--detail", action="append", default=[], metavar="KEY=VALUE", help="outcome detail"
    )
    outcome.add_argument("--follow-up-at", metavar="ISO", help="follow-up time (with offset)")
    outcome.set_defaults(command=cmd_bulk_outcome)

    move = verbs.add_parser("move", help="move every filtered customer")
    common(move)
    target = move.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-segment", type=int, metavar="ID", help="a segment of the same list")
    target.add_argument("--to-assignment", type=int, metavar="ID", help="another assignment")
    move.set_defaults(command=cmd_bulk_move)

    preview = verbs.add_parser("preview", help="count the filtered customers and selections")
    common(preview)
    preview.set_defaults(command=cmd_bulk_preview)

    resume = verbs.add_parser("resume", help="resume jobs whose node stopped")
    resume.add_argument("--batch", type=_positive, default=1000, help="customers per batch")
    resume.set_defaults(command=cmd_bulk_resume)

    imp = commands.add_parser("import", help="update customer cards from an xlsx or csv file")
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--as", dest="username", required=True, help="the administrator's username")
    imp.add_argument("--crm", type=int, required=True, metavar="ID", help="the CRM to update")
    imp.add_argument(
        "--map",
        action="append",
        required=True,
        metavar="COLUMN=FIELD",
        help="column onto external_id or an info field (repeat)",
    )
    imp.add_argument("--batch", type=_positive, default=1000, help="rows per batch")
    imp.add_argument("--report", metavar="CSV", help="write the report per row to this file")
    imp.set_defaults(command=cmd_import)

    sms = commands.add_parser("sms", help="send the SMS waiting in the outbox")
    sms_verbs = sms.add_subparsers(title="sms commands", required=True, metavar="VERB")
    deliver = sms_verbs.add_parser("deliver", help="send every due SMS once")
    deliver.add_argument("--file", metavar="PATH", help="append to this file (default: console)")
    deliver.add_argument("--gateway", metavar="URL", help="post to this HTTP SMS gateway")
    deliver.add_argument("--token", help="the gateway's bearer token")
    deliver.set_defaults(command=cmd_sms_deliver)


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _json_object(text: str) -> dict[str, Any]:
    import json

    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


# -- commands ---------------------------------------------------------------------------------


def cmd_migrate(_args: argparse.Namespace, settings: Settings) -> int:
    async def run(engine: AsyncEngine) -> str | None:
        await migrate(engine)
        return await current_revision(engine)

    revision = with_engine(settings, run)
    print(f"database {database_label(settings)} is at revision {revision}")
    return 0


def cmd_seed(args: argparse.Namespace, settings: Settings) -> int:
    if not args.demo and args.customers is None:
        raise CliError("nothing to seed: give --demo and/or --customers N")
    from domain.db import seed

    if args.demo:
        summary = with_engine(settings, seed.seed_demo, require_schema=True)
        print(f"demo data ready in {database_label(settings)}: {format_summary(summary)}")
        print(f"demo logins: {DEMO_LOGINS}")
    if args.customers:
        added = seed_customers_with_progress(settings, args.customers)
        print(f"added {added} customers")
    return 0


def seed_customers_with_progress(settings: Settings, n: int) -> int:
    from tqdm import tqdm

    from domain.db import seed

    with tqdm(total=n, unit="customer", unit_scale=True, desc="customers") as bar:

        def progress(done: int) -> None:
            # `done` counts customers inserted so far; tqdm wants the step.
            bar.update(max(0, done - bar.n))

        async def run(engine: AsyncEngine) -> int:
            return await seed.seed_customers(engine, n, progress=progress)

        added = with_engine(settings, run, require_schema=True)
        bar.update(max(0, added - bar.n))
    return added


def cmd_create_user(args: argparse.Namespace, settings: Settings) -> int:
    from domain.db import repositories

    password = args.password if args.password is not None else ask_password()
    if not password:
        raise CliError("the password must not be empty")

    async def run(engine: AsyncEngine) -> Any:
        async with engine.begin() as conn:
            owner_id = await data_owner_id(conn, args.data_owner)
            if await repositories.get_user_by_username(conn, args.username) is not None:
                raise CliError(f"user {args.username!r} already exists")
            return await repositories.create_user(
                conn, owner_id, args.username, args.name or args.username, Role(args.role), password
            )

    user = with_engine(settings, run, require_schema=True)
    print(f"created {user.role} {user.username!r} (id {user.id}) in data owner {args.data_owner!r}")
    return 0


# -- bulk work ----------------------------------------------------------------------------------


def cmd_bulk_outcome(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import datetime

    from domain.db import bulk

    details = dict(_key_value(d, "--detail") for d in args.detail)
    follow_up_at = None
    if args.follow_up_at:
        try:
            follow_up_at = datetime.fromisoformat(args.follow_up_at)
        except ValueError:
            raise CliError(f"--follow-up-at: not an ISO time: {args.follow_up_at!r}") from None

    async def create(conn: AsyncConnection, user: Any) -> Any:
        return await bulk.create_mass_outcome_job(
            conn, user, args.filter, args.outcome, details, _now(), follow_up_at=follow_up_at
        )

    return run_bulk_with_progress(settings, args, create)


def cmd_bulk_move(args: argparse.Namespace, settings: Settings) -> int:
    from domain.db import bulk

    async def create(conn: AsyncConnection, user: Any) -> Any:
        return await bulk.create_move_job(
            conn,
            user,
            args.filter,
            _now(),
            to_segment_id=args.to_segment,
            to_assignment_id=args.to_assignment,
        )

    return run_bulk_with_progress(settings, args, create)


def cmd_bulk_preview(args: argparse.Namespace, settings: Settings) -> int:
    from domain.db import bulk

    async def run(engine: AsyncEngine) -> Any:
        async with selection_probe(settings) as probe, engine.connect() as conn:
            user = await user_named(conn, args.username)
            return await bulk.preview(conn, user, args.filter, probe)

    seen = with_engine(settings, run, require_schema=True)
    statuses = ", ".join(f"{k}: {v}" for k, v in seen.statuses.items()) or "none"
    print(f"{seen.matched} customers match ({statuses}); {seen.selected} selected right now")
    print(f"outcomes that can be registered on all: {', '.join(seen.outcome_options) or 'none'}")
    return 0


def cmd_bulk_resume(args: argparse.Namespace, settings: Settings) -> int:
    from domain.db import bulk

    async def run(engine: AsyncEngine) -> Any:
        async with selection_probe(settings) as probe:
            return await bulk.resume_bulk_jobs(engine, selections=probe, batch_size=args.batch)

    for job in with_engine(settings, run, require_schema=True):
        print(f"job {job.id} ({job.kind}): {_job_line(job)}")
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from domain.db import imports

    mapping = dict(_key_value(m, "--map") for m in args.map)
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"no such file: {args.file}")
    table = imports.read_table(path)

    async def create(conn: AsyncConnection, user: Any) -> Any:
        return await imports.create_import_job(
            conn, user, args.crm, table, mapping, _now(), file_name=path.name
        )

    job_id = run_bulk_with_progress(settings, args, create, unit="row", return_job=True)
    if args.report:

        async def rows(engine: AsyncEngine) -> list[dict[str, Any]]:
            async with engine.connect() as conn:
                return await imports.import_rows(conn, job_id)

        write_report(Path(args.report), with_engine(settings, rows))
        print(f"report per row: {args.report}")
    return 0


def write_report(path: Any, rows: list[dict[str, Any]]) -> None:
    import csv

    columns = ["row_no", "external_id", "result", "detail", "customer_id", "assignment"]
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def cmd_sms_deliver(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from domain.db.sms_outbox import deliver_due
    from domain.db.sms_providers import FileSmsProvider, HttpSmsProvider

    async def run(engine: AsyncEngine) -> Any:
        provider: Any
        if args.gateway:
            provider = HttpSmsProvider(args.gateway, token=args.token)
        else:
            provider = FileSmsProvider(Path(args.file) if args.file else None)
        total = await deliver_due(engine, provider)
        while True:  # until a round finds nothing due
            more = await deliver_due(engine, provider)
            if not (more.sent or more.retried or more.failed):
                break
            total.sent, total.retried, total.failed = (
                total.sent + more.sent,
                total.retried + more.retried,
                total.failed + more.failed,
            )
        if isinstance(provider, HttpSmsProvider):
            await provider.aclose()
        return total

    done = with_engine(settings, run, require_schema=True)
    print(f"sent {done.sent}, to retry {done.retried}, failed {done.failed}", file=sys.stderr)
    return 0


def run_bulk_with_progress(
    settings: Settings,
    args: argparse.Namespace,
    create: Callable[[AsyncConnection, Any], Awaitable[Any]],
    *,
    unit: str = "customer",
    return_job: bool = False,
) -> int:
    """Make the job, then run it with a progress bar; prints its report. Returns 0 (or the
    job's id with `return_job`)."""
    from tqdm import tqdm

    from domain.db import bulk

    async def run(engine: AsyncEngine) -> Any:
        async with selection_probe(settings) as probe:
            async with engine.begin() as conn:
                user = await user_named(conn, args.username)
                job = await create(conn, user)
            with tqdm(total=job.expected, unit=unit, unit_scale=True, desc=job.kind) as bar:

                def progress(p: Any) -> None:
                    bar.update(max(0, p.processed - bar.n))

                return await bulk.run_bulk_job(
                    engine, job.id, selections=probe, on_progress=progress, batch_size=args.batch
                )

    job = with_engine(settings, run, require_schema=True)
    print(f"job {job.id}: {_job_line(job)}")
    return job.id if return_job else 0


def _job_line(job: Any) -> str:
    if job.report is None:
        return f"{job.status}{': ' + job.error if job.error else ''}"
    return str(job.report["summary"])


@asynccontextmanager
async def selection_probe(settings: Settings) -> AsyncIterator[Any]:
    """The selection store the servers use: bulk work must see live selections (rule 5).
    REDIS_URL, else the embedded Redis of a `dialhub serve` running on this var directory."""
    from redis.exceptions import RedisError

    from presence.selections import SelectionStore
    from realtime.services import open_redis

    url = settings.redis_url
    if not url:
        try:
            url = embedded_url_file(settings).read_text().strip()
        except OSError:
            url = None
    if not url:
        raise CliError(
            "bulk work needs the Redis the servers use, to skip selected customers: set "
            "REDIS_URL, or start `dialhub serve` (its embedded Redis is found under "
            f"{settings.var_dir})"
        )
    client = open_redis(url, cluster=settings.redis_cluster)
    try:
        try:
            await client.ping()
        except (RedisError, OSError) as error:
            raise CliError(f"cannot reach Redis at {url}: {error}") from None
        yield SelectionStore(client)
    finally:
        await client.aclose()


async def user_named(conn: AsyncConnection, username: str) -> Any:
    from domain.db import repositories

    found = await repositories.get_user_by_username(conn, username)
    if found is None:
        raise CliError(f"no user named {username!r}")
    return found[0]


def _key_value(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise CliError(f"{option}: expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def _now() -> Any:
    from domain.db.repositories import utcnow

    return utcnow()


def ask_password() -> str:
    """Prompt twice on a terminal; read one line when the password is piped in."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    try:
        first = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != first:
            raise CliError("the passwords do not match")
    except EOFError:
        raise CliError("no password given: use --password or type one") from None
    return first


async def data_owner_id(conn: AsyncConnection, name: str) -> int:
    from domain.db import repositories
    from domain.db.tables import data_owners

    owner = await repositories.get_data_owner_by_name(conn, name)
    if owner is None:
        names = (await conn.scalars(select(data_owners.c.name).order_by(data_owners.c.name))).all()
        known = ", ".join(repr(n) for n in names) or "none yet (run `dialhub seed --demo`)"
        raise CliError(f"no data owner named {name!r}; known: {known}")
    return owner.id


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from realtime.app import create_app

    own_origin = f"http://{args.host}:{args.port}"
    if own_origin not in settings.allowed_origins:
        # The pages this node serves must be able to open its WebSocket.
        settings = settings.model_copy(
            update={"allowed_origins": [*settings.allowed_origins, own_origin]}
        )
    with terminate_gracefully():
        embedded: EmbeddedRedis | None = None
        try:
            if not settings.redis_url:
                embedded = start_embedded_redis(EmbeddedRedis(settings.var_dir / "redis"))
                settings = settings.model_copy(update={"redis_url": embedded.url})
                assert embedded.process is not None
                print(f"embedded Redis at {embedded.url} (pid {embedded.process.pid})")
                # `dialhub bulk` and `dialhub import` beside this server find it there.
                embedded_url_file(settings).write_text(embedded.url + "\n")
            prepare_database(settings, demo=args.demo)
            print(f"dialhub serving at http://{args.host}:{args.port}")
            if args.demo:
                print(f"demo logins: {DEMO_LOGINS}")
            sys.stdout.flush()
            config = uvicorn.Config(
                create_app(settings, send_sms=True, own_process=True),
                host=args.host,
                port=args.port,
                ws_per_message_deflate=False,
                # A hard cap at the socket; frames between the app's limit and this one are
                # answered `invalid` and the connection stays (docs/protocol.md).
                ws_max_size=settings.ws_max_frame_bytes * 4,
                log_level="info",
                timeout_graceful_shutdown=10,
            )
            uvicorn.Server(config).run()
        finally:
            if embedded is not None:
                _forget_embedded_url(settings, embedded.url)
                embedded.stop()
    return 0


def embedded_url_file(settings: Settings) -> Any:
    """Where `dialhub serve` writes the URL of its embedded Redis while it runs."""
    return settings.var_dir / "redis" / "embedded.url"


def _forget_embedded_url(settings: Settings, url: str) -> None:
    path = embedded_url_file(settings)
    try:
        if path.read_text().strip() == url:  # not a newer server's
            path.unlink()
    except OSError:
        pass


def start_embedded_redis(server: EmbeddedRedis) -> EmbeddedRedis:
    try:
        return server.start()
    except RuntimeError as error:
        raise CliError(f"cannot start the embedded Redis: {error}") from None


def prepare_database(settings: Settings, *, demo: bool) -> None:
    """With `demo`: migrate and load the demo. Without: refuse a database with no schema."""
    if demo:
        summary = with_engine(settings, _migrate_and_seed_demo)
        print(f"demo data ready in {database_label(settings)}: {format_summary(summary)}")
    else:
        with_engine(settings, current_revision, require_schema=True)
    print(f"database: {database_label(settings)}")


async def _migrate_and_seed_demo(engine: AsyncEngine) -> Any:
    from domain.db import seed

    await migrate(engine)
    return await seed.seed_demo(engine)


@contextmanager
def terminate_gracefully() -> Iterator[None]:
    """Turn SIGTERM into an exception, so `finally` blocks run (the embedded Redis stops).

    uvicorn handles SIGTERM itself while serving, then re-raises it once shut down; it lands
    here instead of killing the process with the Redis child still running.
    """

    def raise_terminated(_signum: int, _frame: FrameType | None) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- database plumbing ------------------------------------------------------------------------


def with_engine(
    settings: Settings,
    work: Callable[[AsyncEngine], Awaitable[T]],
    *,
    require_schema: bool = False,
) -> T:
    """Run `work(engine)` on a fresh engine; database failures become a CliError."""

    async def run() -> T:
        engine = make_engine(engine_url(settings), schema=settings.database_schema)
        try:
            if require_schema and await current_revision(engine) is None:
                raise CliError(
                    f"the database {database_label(settings)} has no schema yet: "
                    "run `dialhub migrate` first"
                )
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except (sa_exc.OperationalError, sa_exc.InterfaceError, OSError) as error:
        raise CliError(
            f"cannot use the database {database_label(settings)}: {_first_line(error)}"
        ) from None
    except sa_exc.DBAPIError as error:
        raise CliError(f"database error: {_first_line(error)}") from None


def engine_url(settings: Settings) -> str:
    try:
        return async_url(settings.database_url, settings.sqlite_path)
    except (ValueError, sa_exc.ArgumentError) as error:
        raise CliError(f"DATABASE_URL: {error}") from None


def database_label(settings: Settings) -> str:
    """The database URL without its password, for messages."""
    if not settings.database_url:
        return str(settings.sqlite_path)
    try:
        return make_url(settings.database_url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return "(unreadable DATABASE_URL)"


def format_summary(summary: dict[str, Any]) -> str:
    """One line about seed_demo's summary."""
    state = "created" if summary.get("created") else "already there"
    counts = ", ".join(
        f"{len(summary.get(key) or [])} {key.replace('_', ' ')}"
        for key in ("data_owners", "assignments", "users")
    )
    return f"{state} ({counts}, {summary.get('customers', 0)} customers)"


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__
