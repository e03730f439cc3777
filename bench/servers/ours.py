"""Launch this project's core (and, unless ``--no-gateway``, its WebSocket gateway) in one process.

This is the embedded shape ``arcp-grpc serve`` runs: core and gateway in one process (the
gateway reaching the core in process), a data directory for the store (or ``--store-url``,
as a node of a cluster: ``bench.servers.cluster``), the demo agents (``echo``, ``chatty``,
``report``) registered by default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arcp_grpc.process import event_loop
from arcp_grpc.runtime import RuntimeLimits
from arcp_grpc.server import CoreConfig, start_core
from arcp_grpc.store.sqlite.store import WAL_LIMIT
from bench.servers._common import (
    BENCH_PRINCIPAL,
    BENCH_TOKEN,
    BENCH_WORKER_TOKEN,
    launcher_args,
    wait_for_stop,
    write_ready,
)
from gateway.links import LocalLink
from gateway.server import GatewayConfig, start_gateway

__all__ = ["main"]


async def _serve(args: Any) -> None:
    core = await start_core(
        CoreConfig(
            data_dir=Path(args.data_dir),
            grpc_port=0,
            tokens={BENCH_TOKEN: BENCH_PRINCIPAL},
            worker_tokens={BENCH_WORKER_TOKEN: "bench-worker"},
            store_url=args.store_url,
            store_key=args.store_key or None,
            sqlite_wal_bytes=args.sqlite_wal_bytes,
            limits=RuntimeLimits(
                retention_sec=args.retention_sec, idempotency_ttl_sec=args.idempotency_ttl_sec
            ),
        )
    )
    gateway: Any = None
    try:
        info: dict[str, Any] = {"grpc": core.grpc_address}
        if args.gateway:
            # As `arcp-grpc serve` runs it: the embedded gateway reaches the core in process.
            gateway = await start_gateway(
                GatewayConfig(core_address=core.grpc_address, port=0),
                link=LocalLink(core),
            )
            info["url"] = gateway.url
        write_ready(args.port_file, info)
        await wait_for_stop(args.max_seconds)
    finally:
        if gateway is not None:
            await gateway.stop()
        await core.stop()


def main() -> None:
    """Entry point of ``python -m bench.servers.ours``."""
    parser = launcher_args("arcp-grpc core (+ gateway) for the benchmark", event_loop_choice=True)
    parser.add_argument("--data-dir", required=True, help="store directory (the harness owns it)")
    parser.add_argument("--gateway", action="store_true", help="also start the WebSocket gateway")
    parser.add_argument("--store-url", default="", help="store.url (default: SQLite in data dir)")
    parser.add_argument("--store-key", default="", help="base64 sealing key (a cluster's nodes)")
    # The soak (bench.soak) shortens the windows so retention works within its run.
    defaults = RuntimeLimits()
    parser.add_argument("--sqlite-wal-bytes", type=int, default=WAL_LIMIT, help="store knob")
    parser.add_argument("--retention-sec", type=float, default=defaults.retention_sec)
    parser.add_argument("--idempotency-ttl-sec", type=float, default=defaults.idempotency_ttl_sec)
    args = parser.parse_args()
    event_loop.run(_serve(args), args.event_loop)


if __name__ == "__main__":
    main()
