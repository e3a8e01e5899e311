"""The `socialmesh` command: run the whole system, one service, or print the edge config."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from pathlib import Path

from services.kit.config import DEFAULT_PORTS, IMPLEMENTED_SERVICES


def _cmd_up(args: argparse.Namespace) -> int:
    from services.devstack import Stack

    stack = Stack(
        data_dir=Path(args.data_dir).resolve(),
        edge_port=args.edge_port,
        admin_port=args.admin_port,
        base_port=args.base_port,
        log_dir=Path(args.log_dir).resolve() if args.log_dir else None,
        edge_rate_limit=args.edge_rate_limit,
    )
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stack.start()
    print(stack.describe(), flush=True)
    try:
        while not stopping.wait(0.5):
            for name, proc in stack.processes.items():
                if proc.poll() is not None:
                    print(f"{name} exited with code {proc.returncode}; stopping", flush=True)
                    stopping.set()
    finally:
        print("stopping...", flush=True)
        stack.stop()
        print("stopped", flush=True)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from services.kit.server import run

    module = importlib.import_module(f"services.{args.service}.service")
    run(module.build_spec())
    return 0


def _cmd_envoy_config(args: argparse.Namespace) -> int:
    """Prints the edge config: for `socialmesh up` by default, or for a cluster."""
    from services.devstack import edge_yaml
    from services.kit.auth import generate_signing_key
    from services.kit.config import JWT_AUDIENCE_DEFAULT, JWT_ISSUER_DEFAULT

    if args.jwt_public_key_file:
        public_key = Path(args.jwt_public_key_file)
    else:
        keys = Path(args.data_dir).resolve() / "keys"
        generate_signing_key(keys / "jwt-signing.pem", keys / "jwt-signing.pub.pem")
        public_key = keys / "jwt-signing.pub.pem"
    services = args.services.split(",") if args.services else list(IMPLEMENTED_SERVICES)
    upstreams = {
        name: (
            args.upstream_host_template.format(name=name),
            args.upstream_port or args.base_port + DEFAULT_PORTS[name] - DEFAULT_PORTS["user"],
        )
        for name in services
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
        )
    )
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from services.bench import main as bench_main

    return bench_main(args)


def _cmd_seed(args: argparse.Namespace) -> int:
    from services.seed import main as seed_main

    return seed_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="socialmesh", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def stack_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--edge-port", type=int, default=8080, help="REST/gRPC edge port")
        p.add_argument("--admin-port", type=int, default=9901, help="Envoy admin port")
        p.add_argument(
            "--base-port",
            type=int,
            default=DEFAULT_PORTS["user"],
            help="first service gRPC port (user); others follow",
        )
        p.add_argument("--data-dir", default=".socialmesh", help="where data survives restarts")

    up = sub.add_parser("up", help="run PostgreSQL, Redis, every service and Envoy")
    stack_flags(up)
    up.add_argument("--log-dir", help="write each process's log to a file here")
    up.add_argument(
        "--edge-rate-limit", type=int, default=2000, help="edge-wide requests/s before 429"
    )
    up.set_defaults(func=_cmd_up)

    serve = sub.add_parser("serve", help="run one service (the Kubernetes entrypoint)")
    serve.add_argument("service", choices=IMPLEMENTED_SERVICES)
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
    envoy.set_defaults(func=_cmd_envoy_config)

    bench = sub.add_parser("bench", help="measure the running edge (needs wrk)")
    bench.add_argument("--edge-url", default=None, help="existing edge; default: start a stack")
    bench.add_argument("--scenario", choices=("all", "profile", "graph", "post"), default="all")
    bench.add_argument("--seed-posts", type=int, default=200_000)
    bench.add_argument("--seed-likes", type=int, default=500_000)
    bench.add_argument("--seed-comments", type=int, default=100_000)
    bench.add_argument("--seed-users", type=int, default=120_000)
    bench.add_argument("--seed-follows", type=int, default=600_000)
    bench.add_argument("--seed-celebrity-followers", type=int, default=100_000)
    bench.add_argument("--duration", type=int, default=10)
    bench.add_argument("--connections", type=int, default=32)
    bench.add_argument(
        "--edge-rate-limit",
        type=int,
        default=1_000_000,
        help="edge-wide local rate limit of the stack bench starts (high: measure the mesh)",
    )
    bench.set_defaults(func=_cmd_bench)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
