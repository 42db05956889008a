"""``truce serve``: run the gateway over the model store.

Options override the ``TRUCE_*`` environment (see ``gateway/settings.py`` for every setting,
including the limits that have no option here).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve every model in the store (Open Inference Protocol v2, REST and gRPC)",
        description="Serve every model version in the store over REST and gRPC. Every "
        "setting can also come from the environment: TRUCE_<SETTING> (e.g. "
        "TRUCE_MAX_REQUEST_BYTES, TRUCE_REQUEST_TIMEOUT_S, TRUCE_ADMIN_TOKEN).",
    )
    p.add_argument(
        "--store", metavar="DIR", help="model store (default: $TRUCE_STORE, else per-user)"
    )
    p.add_argument("--host", help="inference address (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--http-port", type=int, metavar="N", help="REST port (default 8080; 0: any)")
    p.add_argument("--grpc-port", type=int, metavar="N", help="gRPC port (default 8081; 0: any)")
    p.add_argument("--admin-host", help="admin address (default 127.0.0.1)")
    p.add_argument("--admin-port", type=int, metavar="N", help="admin port (default 8082; 0: any)")
    p.add_argument("--no-grpc", action="store_true", help="do not serve gRPC")
    p.add_argument("--no-admin", action="store_true", help="do not run the admin listener")
    p.add_argument(
        "--version-policy", metavar="POLICY", help="latest (default), latest:N, all, versions:1,3"
    )
    p.add_argument(
        "--reload-interval", type=float, metavar="S", help="store polling period (0: off)"
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--ports-file",
        type=Path,
        metavar="FILE",
        help="write the bound ports as JSON here once listening (useful with port 0)",
    )
    p.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    from gateway.server import run_server
    from gateway.settings import build_settings

    settings = build_settings(
        store=args.store,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        admin_host=args.admin_host,
        admin_port=args.admin_port,
        grpc_enabled=False if args.no_grpc else None,
        admin_enabled=False if args.no_admin else None,
        version_policy=args.version_policy,
        reload_interval_s=args.reload_interval,
        log_level=args.log_level,
    )
    return run_server(settings, ports_file=args.ports_file)
