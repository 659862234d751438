"""``cmamd sim``: run the simulated Open API server until SIGINT/SIGTERM.

Prints the endpoint, the app credentials and every account with its tokens: they are the
simulator's own fake credentials, printed so that a local daemon can be pointed at it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import sys
from pathlib import Path
from typing import Any, TextIO

from cmamd.sim.config import SimConfig
from cmamd.sim.server import SimServer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="simulator YAML (default: the demo broker)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=5035, help="port (0 picks a free one)")
    parser.add_argument(
        "--http-port", type=int, default=0, help="port of the OAuth pages (default: any free one)"
    )
    parser.add_argument("--tls-cert", type=Path, help="certificate (PEM) to serve wss://")
    parser.add_argument("--tls-key", type=Path, help="private key (PEM) of --tls-cert")
    parser.add_argument(
        "--describe", type=Path, help="write endpoint, credentials and accounts as JSON here"
    )
    parser.add_argument(
        "--no-price-walk", action="store_true", help="keep prices still (they move by default)"
    )


def main(args: argparse.Namespace) -> int:
    if (args.tls_cert is None) != (args.tls_key is None):
        print("cmamd sim: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    overrides = {"price_walk": not args.no_price_walk}
    if args.config is not None:
        config = SimConfig.from_yaml(args.config, **overrides)
    else:
        config = SimConfig.default(**overrides)
    ssl_context = None
    if args.tls_cert is not None:
        ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
    asyncio.run(_serve(config, args.host, args.port, ssl_context, args.describe, args.http_port))
    return 0


async def _serve(
    config: SimConfig,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    describe_path: Path | None,
    http_port: int = 0,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = SimServer(config)
    await server.start(host, port, ssl_context, http_port=http_port)
    try:
        description = server.describe()
        if describe_path is not None:
            _write_atomically(describe_path, json.dumps(description, indent=2) + "\n")
        print_summary(description, sys.stdout)
        await stop.wait()
    finally:
        await server.stop()


def print_summary(description: dict[str, Any], out: TextIO) -> None:
    print(f"cmamd sim listening on {description['url']}", file=out)
    print(f"  client_id     {description['client_id']}", file=out)
    print(f"  client_secret {description['client_secret']}", file=out)
    print(f"  auth_url      {description['auth_url']}  (OAuth authorisation page)", file=out)
    print(f"  token_url     {description['token_url']}  (OAuth token endpoint)", file=out)
    print(f"  redirect_uris {', '.join(description['redirect_uris'])}", file=out)
    for account in description["accounts"]:
        print(
            f"  {account['name']:<18} account_id={account['account_id']} "
            f"{account['kind']} {account['broker']!r} balance={account['balance']} "
            f"{account['deposit_asset']} ctid={account['ctid']}",
            file=out,
        )
        print(f"    access_token  {account['access_token']}", file=out)
        print(f"    refresh_token {account['refresh_token']}", file=out)
    out.flush()


def _write_atomically(path: Path, text: str) -> None:
    """Readers polling for the file never see it half written."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
