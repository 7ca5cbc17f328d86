"""HTTP plumbing: connections, one thread each, keep-alive, and the order in which a request is checked.

Per request: read the body (one read of Content-Length) -> injected fault -> 413 -> route (404/405) -> API key
(401) -> revision (400/404) -> media type (415) -> rate limit (429) -> endpoint. Requests refused before the
rate limit are not counted; the others count at the moment they arrived (request line and headers read), as
at an edge proxy, however long their body then took to read. Every answer is one ``write`` (headers and body
together) so small responses never wait on Nagle's algorithm, and every request lands in the request log."""

from __future__ import annotations

import socket
import sys
import threading
import time
import traceback
from collections.abc import Collection
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from . import admission
from .context import Reply, Request
from .faults import Fault, Faults
from .jobs import JobRunner
from .jsonapi import MEDIA_TYPE, ApiError, dumps, error_object, status_phrase
from .params import Query
from .ratelimit import RateLimiter
from .requestlog import RequestLog, RequestRecord, mask_header
from .routes import resolve
from .store import Store
from .validation import MAX_BODY_BYTES

# Bodies over the 5 MB cap are still read and thrown away, up to this much, so the client gets its 413
# instead of a broken pipe; beyond it the connection is closed after answering.
_DRAIN_LIMIT = 64_000_000


@dataclass
class Backend:
    """Everything a request handler needs; shared by all connections."""

    store: Store
    faults: Faults
    limiter: RateLimiter
    log: RequestLog
    jobs: JobRunner
    api_keys: Collection[str] | None
    verbose: bool
    stopping: threading.Event
    base_url: str = ""


class SandboxServer(HTTPServer):
    """An HTTPServer with one daemon thread per connection that it can also close and join on shutdown."""

    request_queue_size = 256  # listen backlog: a burst of a hundred clients connecting at once must not fail
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], backend: Backend, family: socket.AddressFamily) -> None:
        self.address_family = family
        self.backend = backend
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._connections_lock = threading.Lock()
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name="klaviyo-sandbox-conn",
            daemon=True,
        )
        with self._connections_lock:
            self._connections[request] = thread
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.pop(request, None)
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (timeouts, dropped keep-alive connections) are normal, not errors."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def close_connections(self, timeout: float) -> None:
        """Close every open connection, then wait for its thread."""
        with self._connections_lock:
            connections = list(self._connections.items())
        for connection, _ in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client
        for _, thread in connections:
            thread.join(timeout)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True
    timeout = 300  # seconds an idle keep-alive connection may stay open
    server: SandboxServer
    server_version = "klaviyo-magic-sandbox"

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_DELETE = do_PATCH = do_PUT = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """The stdlib's per-request stderr line is replaced by the request log (and ``verbose``)."""

    def _handle(self) -> None:
        backend = self.server.backend
        arrived, started = time.time(), time.perf_counter()
        arrival = backend.limiter.now()  # rate limits count a request when it arrives, not once it is read
        path, _, raw_query = self.path.partition("?")
        path = path.rstrip("/") or "/"  # both spellings are used in the wild (§1.1)
        operation: str | None = None
        body_bytes = 0
        try:
            body = self._read_body()
            body_bytes = len(body) if body is not None else int(self.headers.get("Content-Length") or 0)
            fault = backend.faults.take(self.command, path)
            if fault is not None and fault.kind == "drop":
                reply = None  # read the request, then hang up without a word
            else:
                reply, operation = self._answer(backend, path, raw_query, body, fault, arrival)
        except ApiError as error:  # the request could not even be read; the connection is closed after this
            reply = Reply(error.status, error.document(), error.headers)
        except (ConnectionError, TimeoutError):
            reply = None  # the client hung up mid-request, or the sandbox is stopping
        # Logged before answering, so a client that has its answer always finds its request in the log.
        duration = time.perf_counter() - started
        status = reply.status if reply else None
        headers = {name: mask_header(name, value) for name, value in self.headers.items()}
        record = RequestRecord(self.command, path, raw_query, status, headers, body_bytes, arrived, duration, operation)
        backend.log.append(record)
        if backend.verbose:
            print(
                f"{self.command} {self.path} -> {status or 'dropped'} ({duration * 1000:.0f} ms)",
                file=sys.stderr,
            )
        if reply is None:
            self.close_connection = True
        else:
            self._send(reply.status, reply.document, reply.headers)

    def _answer(
        self,
        backend: Backend,
        path: str,
        raw_query: str,
        body: bytes | None,
        fault: Fault | None,
        arrival: float,
    ) -> tuple[Reply, str | None]:
        """Work out the answer to a request that was read; also return the operation it went to."""
        operation: str | None = None
        rate_headers: dict[str, str] = {}
        try:
            if fault is not None and fault.kind == "delay" and backend.stopping.wait(fault.seconds):
                raise ConnectionError("sandbox stopping")
            if fault is not None and fault.kind == "fail":
                raise fault.error()
            if body is None:
                detail = f"The request body is larger than the {MAX_BODY_BYTES:,}-byte limit."
                raise ApiError(413, [error_object(413, "request_too_large", "Request entity too large.", detail)])
            route, path_params = resolve(self.command, path)
            operation = route.operation
            admission.authenticate(self.headers.get("Authorization"), backend.api_keys)
            admission.check_revision(self.headers.get("revision"))
            if body:
                admission.check_media_type(self.headers.get("Content-Type"), self.headers.get("Content-Encoding"))
            query = Query(raw_query)
            extra = route.extra_buckets(query) if route.extra_buckets else []
            rate_headers = backend.limiter.admit([route.operation, *extra], arrival)
            query.check_allowed(route.params)
            request = Request(
                method=self.command,
                path=path,
                path_params=path_params,
                query=query,
                body=body,
                base_url=backend.base_url,
                store=backend.store,
                faults=backend.faults,
                jobs=backend.jobs,
            )
            reply = route.handler(request)
            reply.headers = {**rate_headers, **reply.headers}
            return reply, operation
        except ApiError as error:
            return Reply(error.status, error.document(), {**rate_headers, **error.headers}), operation
        except (ConnectionError, TimeoutError):
            raise
        except Exception:
            # A bug in the sandbox: say so loudly on stderr, and answer like a server error would.
            traceback.print_exc()
            error = error_object(500, "error", "A server error occurred.", "The sandbox failed; see its stderr.")
            return Reply(500, {"errors": [error]}), operation

    def _read_body(self) -> bytes | None:
        """The body in one read, or None when it is over the 5 MB cap (§1.1); chunked bodies are refused."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise _unreadable(411, "length_required", "Send the body with a Content-Length header.")
        raw_length = self.headers.get("Content-Length") or "0"
        if not raw_length.isdigit():
            self.close_connection = True
            raise _unreadable(400, "invalid", f"Content-Length '{raw_length}' is not a number.")
        length = int(raw_length)
        if length <= MAX_BODY_BYTES:
            body = self.rfile.read(length) if length else b""
            if len(body) < length:
                raise ConnectionError("client closed the connection mid-body")
            return body
        if length > _DRAIN_LIMIT:
            self.close_connection = True
            return None
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                raise ConnectionError("client closed the connection mid-body")
            length -= len(chunk)
        return None

    def _send(self, status: int, document: dict[str, Any] | None, headers: dict[str, str]) -> None:
        body = dumps(document) if document is not None else b""
        lines = [
            f"HTTP/1.1 {status} {status_phrase(status)}",
            f"Date: {formatdate(usegmt=True)}",
            f"Server: {self.server_version}",
        ]
        if document is not None:
            lines += [f"Content-Type: {MEDIA_TYPE}", f"Content-Length: {len(body)}"]
        elif status != 204:
            lines.append("Content-Length: 0")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


def _unreadable(status: int, code: str, detail: str) -> ApiError:
    return ApiError(status, [error_object(status, code, status_phrase(status) + ".", detail)])
