"""The HTTP side of the emulator: a threaded ``http.server`` that speaks like the gateway.

Why apart from :mod:`.emulator`: what the service decides (checks, records, flow control)
is testable without sockets; this module only turns HTTP requests into parameter maps,
applies the injected transport faults (drop, truncate, delay, HTTP errors) and writes the
answer the way the real gateway does (keep-alive, ``Tengine``, ``x-acs-request-id``).
"""

from __future__ import annotations

import json
import socket
import socketserver
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from .signing import gateway_body, new_request_id

__all__ = ["Fault", "Server"]


@dataclass
class Fault:
    """A misbehaviour queued for the next ``remaining`` SendSms requests."""

    kind: str  # "error", "delay", "drop" or "truncate"
    remaining: int
    status: int = 200
    code: str = ""
    message: str = ""
    seconds: float = 0.0


class Backend(Protocol):
    """What the HTTP plumbing needs from the emulator (a protocol, so neither imports both)."""

    _stopping: threading.Event

    def handle_request(
        self, method: str, params: Mapping[str, str]
    ) -> tuple[int, dict[str, Any]]: ...

    def _take_fault(self) -> Fault | None: ...

    def _connection_opened(self, conn: socket.socket) -> None: ...

    def _connection_closed(self, conn: socket.socket) -> None: ...

    def _request_received(self) -> None: ...


class Server(ThreadingHTTPServer):
    """A threaded HTTP server bound to one emulator."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], emulator: Backend) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's FQDN lookup, which can stall on DNS."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Keep quiet about clients that hung up (read timeouts), report anything else."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one reused AcsClient = one TCP connection
    server_version = "Tengine"
    sys_version = ""
    disable_nagle_algorithm = True  # TCP_NODELAY, else ~40 ms per reused-connection call
    server: Server

    def setup(self) -> None:
        super().setup()
        self.server.emulator._connection_opened(self.request)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.emulator._connection_closed(self.request)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log lines on stderr."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        emulator = self.server.emulator
        emulator._request_received()
        length_header = self.headers.get("Content-Length") or "0"
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower() or not (
            length_header.isdigit()
        ):
            # Neither the SDK nor a form post needs chunked bodies; refuse rather than guess.
            self.close_connection = True
            message = "A request body needs a valid Content-Length."
            self._send(411, gateway_body("MissingContentLength", message, new_request_id()))
            return
        length = int(length_header)
        body = self.rfile.read(length) if length > 0 else b""
        params: dict[str, str] = dict(
            parse_qsl(urlsplit(self.path).query, keep_blank_values=True, errors="replace")
        )
        content_type = self.headers.get("Content-Type", "")
        if body and (not content_type or "x-www-form-urlencoded" in content_type):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))

        fault = emulator._take_fault() if params.get("Action") == "SendSms" else None
        if fault is not None:
            if fault.kind == "drop":
                self.close_connection = True
                return
            if fault.kind == "truncate":
                self._send_truncated()
                return
            if fault.kind == "delay":
                emulator._stopping.wait(fault.seconds)
            elif fault.kind == "error":
                request_id = new_request_id()
                if fault.status >= 400:
                    payload = gateway_body(fault.code, fault.message, request_id)
                else:
                    payload = {
                        "Code": fault.code,
                        "Message": fault.message,
                        "RequestId": request_id,
                    }
                self._send(fault.status, payload)
                return
        status, payload = emulator.handle_request(self.command, params)
        self._send(status, payload)

    def _send(self, status: int, payload: Mapping[str, Any]) -> None:
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-acs-request-id", str(payload.get("RequestId", "")))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _send_truncated(self) -> None:
        payload = {"Code": "OK", "Message": "OK", "RequestId": new_request_id()}
        data = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data) + 100))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True
