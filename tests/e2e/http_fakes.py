"""A local HTTP endpoint standing in for Telegram's Bot API or a webhook receiver.

It records every POST (path and JSON body) and answers as told: ``ok`` (200), ``fail``
(500) or ``hang`` (no answer until released), so tests can prove a sink's failure stays
off the copy path.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeHttp:
    def __init__(self, behaviour: str = "ok") -> None:
        self.behaviour = behaviour
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.posts.append((self.path, body))
                if fake.behaviour == "hang":
                    fake.release.wait(30)
                status = 500 if fake.behaviour == "fail" else 200
                reply = json.dumps({"ok": status == 200}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> FakeHttp:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
