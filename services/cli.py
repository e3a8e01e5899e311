"""The `socialmesh` command: run the whole system, one service, or print the edge config.

One job, the command line, hence one module despite its length: half of it is the
argparse tree (`build_parser`); each `_cmd_*` turns its arguments into a call of
the module that does the work, imported when called (start-up time, optional deps).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from services import registry

#: `socialmesh serve web`: the web app's static file server (services/webapp/), not a
#: gRPC service, so not in the registry.
WEB = "web"


def _cmd_up(args: argparse.Namespace) -> int:
    """Runs the whole stack until Ctrl-C / SIGTERM, or until one of its processes dies.

    A process that dies is not restarted: `up` stops everything and exits 1, naming
    it and printing the tail of its log. Restarting would hide a crashing service on
    a laptop; a non-zero exit tells you, CI, or whatever supervises `up`, at once.
    Ctrl-C / SIGTERM while starting stops what was started and exits 128 + signal.
    """
    from services.devstack import Stack, StartupCancelled, StartupError

    stack = Stack(
        data_dir=Path(args.data_dir).resolve(),
        edge_port=args.edge_port,
        admin_port=args.admin_port,
        base_port=args.base_port,
        log_dir=Path(args.log_dir).resolve() if args.log_dir else None,
        edge_rate_limit=args.edge_rate_limit,
        edge_rate_limit_per_client=args.edge_rate_limit_per_client,
        tls=args.tls,
    )
    stopping = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stack.start(cancel=stopping)
    except StartupCancelled:
        name = signal.Signals(received[0]).name
        print(f"socialmesh up: {name} while starting; stopped everything", file=sys.stderr)
        return 128 + received[0]
    except StartupError as exc:
        print(f"socialmesh up: {exc}", file=sys.stderr)
        return 1
    print(stack.describe(), flush=True)
    dead, report = None, ""
    try:
        while not stopping.wait(0.5):
            dead = stack.dead_process()
            if dead is not None:
                report = stack.death_report(dead)
                print(f"{dead} exited; stopping everything", flush=True)
                break
    finally:
        print("stopping...", flush=True)
        stack.stop()
        print("stopped", flush=True)
    if dead is not None:
        print(f"socialmesh up: {report}", file=sys.stderr)
        return 1
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    if args.service == WEB:
        from services.webapp.server import main as serve_web

        serve_web()  # the web app's static files (WEB_ROOT, WEB_HOST, WEB_PORT)
        return 0
    from services.kit.server import run

    service = registry.get(args.service)
    run(service.build_spec(), registry.settings(service.name))
    return 0


def _cmd_envoy_config(args: argparse.Namespace) -> int:
    """Prints the edge config: for `socialmesh up` by default, or for a cluster."""
    from services.devstack import edge_yaml, jwt_key_pair
    from services.kit.config import JWT_AUDIENCE_DEFAULT, JWT_ISSUER_DEFAULT

    if args.jwt_public_key_file:
        public_key: Path | str = args.jwt_public_key_file  # may list several, comma-separated
    else:
        _, public_key = jwt_key_pair(Path(args.data_dir).resolve() / "keys")
    names = args.services.split(",") if args.services else registry.IMPLEMENTED
    ports = registry.ports(args.base_port)
    upstreams = {
        service.name: (
            args.upstream_host_template.format(name=service.name),
            args.upstream_port or ports[service.name],
        )
        for service in map(registry.get, names)
    }
    sys.stdout.write(
        edge_yaml(
            upstreams,
            edge_port=args.edge_port,
            admin_port=args.admin_port,
            bind_address=args.bind_address,
            public_key_file=public_key,
            issuer=args.jwt_issuer or JWT_ISSUER_DEFAULT,
            audience=args.jwt_audience or JWT_AUDIENCE_DEFAULT,
            rate_limit_per_second=args.edge_rate_limit,
            rate_limit_per_client_per_second=args.edge_rate_limit_per_client,
            otlp_collector=args.otlp_collector,
            tls_cert_file=args.tls_cert_file,
            tls_key_file=args.tls_key_file,
            **_file_routes(args.media_files, args.chat_events),
            **_app_files(args.app_files),
        )
    )
    return 0


def _file_routes(media_files: str, chat_events: str) -> dict[str, object]:
    """`--media-files host:port`: the edge routes /v1/media/files/ to media's file server;
    `--chat-events host:port`: /v1/events/sse to chat's SSE server (browsers)."""
    from gateway.envoy_config import FileRoute
    from services.chat.sse import PATH as SSE_PATH

    routes = []
    for name, prefix, address in (
        ("media-files", "/v1/media/files/", media_files),
        ("chat-events", SSE_PATH, chat_events),
    ):
        if address:
            host, _, port = address.rpartition(":")
            routes.append(FileRoute(name, prefix, host, int(port)))
    return {"file_routes": tuple(routes)} if routes else {}


def _app_files(address: str) -> dict[str, object]:
    """`--app-files host:port`: every other GET/HEAD goes to the web app's static server."""
    if not address:
        return {}
    from gateway.envoy_config import FileRoute

    host, _, port = address.rpartition(":")
    return {"app_files": FileRoute("web-app", "/", host, int(port))}


def _cmd_service_keys(args: argparse.Namespace) -> int:
    """Creates each service's identity key pair, keeping any that exist (k8s/README.md)."""
    from services.devstack import service_keys

    public_dir = service_keys(Path(args.out_dir).resolve())
    print(f"private keys: {public_dir.parent}/<service>.key.pem; public keys: {public_dir}/")
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    """Applies every service's pending migrations, then exits (the k8s Job run before a
    rollout, k8s/README.md "Migrations").

    Connects with MIGRATIONS_DATABASE_URL (the schema owner), else DATABASE_URL, and
    `lock_timeout`: a DDL statement queued behind a long transaction would block every
    query queued behind it, so it fails fast instead and the Job retries.

    Then grants the services' runtime role (--runtime-role, else RUNTIME_DB_ROLE, else
    the user of DATABASE_URL when MIGRATIONS_DATABASE_URL is another DSN) DML on every
    schema, and on tables later migrations create: it needs no DDL rights, and the
    services run with MIGRATE_ON_START=false. Idempotent.
    """
    import asyncio
    import os

    import asyncpg

    from services.kit.migrations import migrate

    owner_dsn = os.environ.get("MIGRATIONS_DATABASE_URL")
    dsn = owner_dsn or os.environ.get("DATABASE_URL")
    if not dsn:
        print("socialmesh migrate: set MIGRATIONS_DATABASE_URL or DATABASE_URL", file=sys.stderr)
        return 2
    runtime_role = args.runtime_role or os.environ.get("RUNTIME_DB_ROLE", "")
    if not runtime_role and owner_dsn and os.environ.get("DATABASE_URL"):
        runtime_role = _dsn_user(os.environ["DATABASE_URL"])
    names = args.services.split(",") if args.services else registry.IMPLEMENTED
    specs = [registry.get(name).build_spec() for name in names]
    lock_timeout_ms = str(round(args.lock_timeout * 1000))

    async def run() -> None:
        conn = await asyncpg.connect(
            dsn,
            server_settings={
                "lock_timeout": lock_timeout_ms,
                "application_name": "socialmesh-migrate",
            },
        )
        try:
            grantee = runtime_role
            if grantee and grantee == await conn.fetchval("SELECT current_user"):
                grantee = ""  # the owner itself: nothing to grant
            if not grantee:
                print(
                    "socialmesh migrate: no separate runtime role (RUNTIME_DB_ROLE): "
                    "no grants made",
                    file=sys.stderr,
                )
            for spec in specs:
                applied = await migrate(
                    conn, spec.schema, spec.migrations_dir, runtime_role=grantee or None
                )
                done = f"applied {applied}" if applied else "up to date"
                print(f"{spec.name}: {done}" + (f"; {grantee} may read/write" if grantee else ""))
        finally:
            await conn.close()

    try:
        asyncio.run(run())
    except asyncpg.LockNotAvailableError as exc:
        print(
            f"socialmesh migrate: no lock within {args.lock_timeout}s ({exc}); nothing of "
            "the failed migration was applied, retry",
            file=sys.stderr,
        )
        return 1
    except ValueError as exc:  # e.g. the runtime role does not exist
        print(f"socialmesh migrate: {exc}", file=sys.stderr)
        return 2
    return 0


def _dsn_user(dsn: str) -> str:
    """The user a PostgreSQL URL connects as ('' when it names none)."""
    import urllib.parse

    parts = urllib.parse.urlsplit(dsn)
    if parts.username:
        return urllib.parse.unquote(parts.username)
    return urllib.parse.parse_qs(parts.query).get("user", [""])[0]


def _cmd_bench(args: argparse.Namespace) -> int:
    from services.bench import main as bench_main

    return bench_main(args)


def _cmd_mail(args: argparse.Namespace) -> int:
    from services.user.mailer import print_spool

    return print_spool(Path(args.data_dir), to=args.to, limit=args.limit, as_json=args.json)


def _cmd_seed(args: argparse.Namespace) -> int:
    from services.seed import main as seed_main

    return seed_main(args)


def _cmd_events(args: argparse.Namespace) -> int:
    """Inspects the event bus of a running stack (or of REDIS_URL)."""
    import asyncio
    import os

    from services import events_admin
    from services.devstack import REDIS_URL_FILE
    from services.kit.redis import connect_redis

    url = args.redis_url or os.environ.get("REDIS_URL", "")
    if not url:
        url_file = Path(args.data_dir) / REDIS_URL_FILE
        if not url_file.exists():
            print("no REDIS_URL and no running `socialmesh up` in --data-dir", file=sys.stderr)
            return 2
        url = url_file.read_text().strip()
    events_admin.load_event_types(list(registry.NAMES))

    async def run() -> object:
        redis = await connect_redis(url)
        try:
            if args.events_command == "status":
                return await events_admin.status(redis, list(registry.NAMES))
            return await events_admin.dead_letters(
                redis, args.stream, args.group, replay=args.replay, count=args.count
            )
        finally:
            await redis.aclose()

    result = asyncio.run(run())
    if isinstance(result, int):
        print(f"replayed {result} dead letter(s) to {args.stream} for group {args.group}")
    else:
        events_admin.print_json(result)
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    """Search maintenance: `backfill` fills the search copies from the exports now."""
    from services.search_backfill import main as backfill_main

    return backfill_main(args)


def _cmd_train_ranker(args: argparse.Namespace) -> int:
    from services.feed.admin import train_ranker

    return train_ranker(args)


def _cmd_experiments(args: argparse.Namespace) -> int:
    from services.feed.admin import experiments_report

    return experiments_report(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="socialmesh", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def edge_limit_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--edge-rate-limit", type=int, default=2000, help="edge-wide requests/s before 429"
        )
        p.add_argument(
            "--edge-rate-limit-per-client",
            type=int,
            default=200,
            help="requests/s per client address before 429 (burst: twice that)",
        )

    def stack_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--edge-port", type=int, default=8080, help="REST/gRPC edge port")
        p.add_argument("--admin-port", type=int, default=9901, help="Envoy admin port")
        p.add_argument(
            "--base-port",
            type=int,
            default=registry.BASE_PORT,
            help=f"gRPC port of {registry.NAMES[0]}; the other services follow",
        )
        p.add_argument("--data-dir", default=".socialmesh", help="where data survives restarts")

    up = sub.add_parser("up", help="run PostgreSQL, Redis, every service and Envoy")
    stack_flags(up)
    up.add_argument("--log-dir", help="write each process's log to a file here")
    edge_limit_flags(up)
    up.add_argument(
        "--tls",
        action="store_true",
        help="serve the edge over TLS (h2 + http/1.1) with a generated localhost certificate",
    )
    up.set_defaults(func=_cmd_up)

    serve = sub.add_parser("serve", help="run one service (the Kubernetes entrypoint)")
    serve.add_argument("service", choices=(*registry.IMPLEMENTED, WEB))
    serve.set_defaults(func=_cmd_serve)

    envoy = sub.add_parser("envoy-config", help="print the rendered Envoy bootstrap YAML")
    stack_flags(envoy)
    envoy.add_argument("--bind-address", default="127.0.0.1", help="listener address")
    envoy.add_argument(
        "--upstream-host-template",
        default="127.0.0.1",
        help="host of each service, '{name}' is replaced (e.g. '{name}.socialmesh.svc')",
    )
    envoy.add_argument("--upstream-port", type=int, default=0, help="one port for every service")
    envoy.add_argument("--services", default="", help="comma-separated; default: implemented")
    envoy.add_argument("--jwt-public-key-file", default="", help="default: the data dir's key")
    envoy.add_argument("--jwt-issuer", default="")
    envoy.add_argument("--jwt-audience", default="")
    edge_limit_flags(envoy)
    envoy.add_argument(
        "--media-files", default="", help="host:port of media's file server (Range, 304, HEAD)"
    )
    envoy.add_argument(
        "--app-files", default="", help="host:port of the web app's static server (GET/HEAD /)"
    )
    envoy.add_argument(
        "--chat-events", default="", help="host:port of chat's SSE stream server (browsers)"
    )
    envoy.add_argument("--tls-cert-file", default="", help="PEM chain: the edge speaks TLS")
    envoy.add_argument("--tls-key-file", default="", help="PEM key of --tls-cert-file")
    envoy.add_argument(
        "--otlp-collector",
        default="",
        help="host:port of an OTLP/gRPC collector: the edge traces requests (joins services)",
    )
    envoy.set_defaults(func=_cmd_envoy_config)

    keys = sub.add_parser(
        "service-keys", help="create every service's identity key pair (for Kubernetes)"
    )
    keys.add_argument(
        "--out-dir",
        default=".socialmesh/keys/services",
        help="writes <service>.key.pem here and public/<service>.pem",
    )
    keys.set_defaults(func=_cmd_service_keys)

    bench = sub.add_parser(
        "bench", help="open-loop load through the edge (HdrHistogram, --find-max, vs ceiling)"
    )
    bench.add_argument("--edge-url", default=None, help="existing edge; default: start a stack")
    bench.add_argument(
        "--scenario",
        default="all",
        help="all (ceiling,mix,profile,graph,post), or comma-separated, also chat,chat-streams,"
        "fanout (ceiling always runs)",
    )
    bench.add_argument("--pairs", type=int, default=100, help="chat: sender->receiver DM pairs")
    bench.add_argument(
        "--chat-streams",
        default="1000,2000,5000,10000",
        help="chat-streams: cumulative open-stream steps on one chat instance",
    )
    bench.add_argument("--chat-channels", type=int, default=16, help="chat: gRPC client channels")
    bench.add_argument(
        "--chat-open-batch", type=int, default=50, help="chat-streams: streams opened at once"
    )
    bench.add_argument(
        "--chat-hold", type=float, default=25.0, help="chat-streams: seconds to hold each step"
    )
    bench.add_argument(
        "--chat-redis-pool",
        type=int,
        default=0,
        help="chat: Redis max_connections of the bench's second chat instance (0: default)",
    )
    bench.add_argument("--resume-messages", type=int, default=50, help="chat: M in resume")
    bench.add_argument("--resume-repeats", type=int, default=3, help="chat: resume measurements")
    bench.add_argument(
        "--fanout-followers", type=int, default=10_000, help="fanout: the author's followers K"
    )
    bench.add_argument("--fanout-posts", type=int, default=5, help="fanout: posts per round")
    bench.add_argument(
        "--fanout-warm", type=int, default=500, help="fanout: followers who read first (warm)"
    )
    bench.add_argument(
        "--fanout-sample", type=int, default=5, help="fanout: warm followers polling the edge"
    )
    bench.add_argument("--fanout-timeout", type=float, default=30.0, help="fanout: per post, s")
    bench.add_argument(
        "--fanout-reads",
        default="following,ranked",
        help="fanout: GET /v1/feed tabs measured after the posts (or none)",
    )
    bench.add_argument("--graph", choices=("reed98", "powerlaw"), default="reed98")
    bench.add_argument("--users", type=int, default=10_000, help="users of --graph powerlaw")
    bench.add_argument("--posts-per-user", type=int, default=10, help="seeded posts per user")
    bench.add_argument("--rate", type=float, default=200.0, help="offered operations/s")
    bench.add_argument("--arrival", choices=("fixed", "poisson"), default="fixed")
    bench.add_argument("--duration", type=float, default=5.0, help="seconds per step")
    bench.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds first")
    bench.add_argument("--find-max", action="store_true", help="step the rate up to the bound")
    bench.add_argument("--p99-bound-ms", type=float, default=50.0)
    bench.add_argument("--start-rate", type=float, default=100.0)
    bench.add_argument("--step-factor", type=float, default=2.0)
    bench.add_argument("--refine", type=int, default=2, help="bisection steps after doubling")
    bench.add_argument("--max-rate", type=float, default=50_000.0)
    bench.add_argument("--connections", type=int, default=64, help="across all workers")
    bench.add_argument("--workers", type=int, default=1, help="load generator processes")
    bench.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    bench.add_argument("--zipf-s", type=float, default=1.0, help="Zipf exponent of user picks")
    bench.add_argument(
        "--mix-feed-kind",
        choices=("following", "ranked"),
        default="following",
        help="mix: the home timeline's feed tab (DeathStarBench's is chronological: following)",
    )
    bench.add_argument(
        "--edge-users", type=int, default=10, help="accounts registered with --edge-url"
    )
    bench.add_argument("--out", default=".socialmesh/bench", help="JSON and plots go here")
    bench.add_argument("--no-plots", action="store_true")
    bench.add_argument(
        "--edge-rate-limit",
        type=int,
        default=1_000_000,
        help="edge-wide local rate limit of the stack bench starts (high: measure the mesh)",
    )
    bench.add_argument(
        "--edge-rate-limit-per-client",
        type=int,
        default=1_000_000,
        help="per-client-address limit of the stack bench starts (one load generator)",
    )
    bench.set_defaults(func=_cmd_bench)
    events = sub.add_parser("events", help="event bus: group status, dead letters, replay")
    events.add_argument("--data-dir", default=".socialmesh", help="a running `up`'s data dir")
    events.add_argument("--redis-url", default="", help="default: REDIS_URL, else the data dir's")
    events_sub = events.add_subparsers(dest="events_command", required=True)
    events_sub.add_parser("status", help="groups per stream: pending, dead letters, counters")
    dead = events_sub.add_parser("dead-letters", help="list (or --replay) a group's dead letters")
    dead.add_argument("--stream", required=True, help="e.g. events:post")
    dead.add_argument("--group", required=True, help="the consumer group that gave up")
    dead.add_argument("--replay", action="store_true", help="re-publish them for that group")
    dead.add_argument("--count", type=int, default=100)
    events.set_defaults(func=_cmd_events)

    migrate = sub.add_parser("migrate", help="apply pending migrations, then exit (k8s Job)")
    migrate.add_argument(
        "--services", default="", help="comma-separated (default: every implemented one)"
    )
    migrate.add_argument(
        "--lock-timeout", type=float, default=5.0, help="seconds to wait for any lock"
    )
    migrate.add_argument(
        "--runtime-role",
        default="",
        help="role the services run as: granted DML only (default: RUNTIME_DB_ROLE, "
        "else DATABASE_URL's user when MIGRATIONS_DATABASE_URL differs)",
    )
    migrate.set_defaults(func=_cmd_migrate)

    seed = sub.add_parser("seed", help="load a power-law social graph with COPY")
    seed.add_argument("--data-dir", default=".socialmesh", help="embedded PostgreSQL's data dir")
    seed.add_argument("--users", type=int, default=120_000)
    seed.add_argument("--follows", type=int, default=600_000)
    seed.add_argument("--celebrity-followers", type=int, default=100_000)
    seed.add_argument("--private-every", type=int, default=0, help="every Nth user private")
    seed.add_argument("--posts", type=int, default=200_000)
    seed.add_argument("--likes", type=int, default=500_000)
    seed.add_argument("--comments", type=int, default=100_000)
    seed.add_argument("--random-seed", type=int, default=42)
    seed.set_defaults(func=_cmd_seed)

    mail = sub.add_parser("mail", help="the dev mailbox of `socialmesh up` (latest first)")
    mail.add_argument("--data-dir", default=".socialmesh", help="the data dir `up` runs on")
    mail.add_argument("--to", default="", help="only mail to this address")
    mail.add_argument("--limit", type=int, default=20, help="at most this many mails")
    mail.add_argument("--json", action="store_true", help="whole mails (bodies, links) as JSON")
    mail.set_defaults(func=_cmd_mail)

    search = sub.add_parser("search", help="search maintenance (docs/search.md)")
    search_sub = search.add_subparsers(dest="search_command", required=True)
    backfill = search_sub.add_parser(
        "backfill",
        help="fill the post and user search copies of follows, blocks and account states "
        "from graph's and user's exports (waits for one already running)",
    )
    backfill.add_argument(
        "--service", default="", help="post, user or both comma-separated (default: both)"
    )
    backfill.add_argument(
        "--data-dir", default=".socialmesh", help="a `socialmesh up` data dir (PostgreSQL, keys)"
    )
    backfill.add_argument(
        "--base-port",
        type=int,
        default=registry.BASE_PORT,
        help="`up --base-port` (where graph and user listen, unless SOCIALMESH_*_ADDR say)",
    )
    search.set_defaults(func=_cmd_search)
    train = sub.add_parser(
        "train-ranker", help="train the feed's engagement model (docs/feed.md, RANKED)"
    )
    train.add_argument("--data-dir", default=".socialmesh", help="used without DATABASE_URL")
    train.add_argument(
        "--out", default=".socialmesh/models/feed", help="model directory (FEED_MODEL_DIR)"
    )
    train.add_argument("--days", type=float, default=30.0, help="impressions of the last N days")
    train.add_argument("--estimator", choices=("logistic", "hgb"), default="logistic")
    train.add_argument("--min-rows", type=int, default=200, help="refuse with fewer impressions")
    train.add_argument(
        "--min-positives", type=int, default=20, help="refuse with fewer of either label"
    )
    train.add_argument("--page-size", type=int, default=500, help="candidates per timed batch")
    train.set_defaults(func=_cmd_train_ranker)

    exp = sub.add_parser("experiments", help="feed ranking experiments (docs/feed.md)")
    exp_sub = exp.add_subparsers(dest="experiments_command", required=True)
    report = exp_sub.add_parser("report", help="per-arm CTR, 95% CIs and significance")
    report.add_argument("--experiment", default="", help="default: every FEED_EXPERIMENTS one")
    report.add_argument("--days", type=float, default=30.0, help="impressions of the last N days")
    report.add_argument("--data-dir", default=".socialmesh", help="used without DATABASE_URL")
    exp.set_defaults(func=_cmd_experiments)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
