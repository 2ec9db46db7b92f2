"""Serve one run directory over HTTP, for viewing its report in a browser.

Standard library only (:class:`http.server.ThreadingHTTPServer`) with a
handler that serves files of the run directory and nothing else:

* a path with a ``..`` segment is refused (404), and a path that resolves
  (through symlinks) outside the run directory is forbidden (403);
* only ``GET`` and ``HEAD``; no directory listings (``/`` redirects to the
  report);
* ``Range`` requests (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``) get a ``206``
  with ``Content-Range``, so a browser can seek in an mp4 without loading it;
* HTML and JSON are sent with ``Cache-Control: no-cache`` so a rebuilt report
  shows on reload;
* a request whose ``Host`` header names another server is refused (421): a web
  page whose name an attacker re-points at 127.0.0.1 (DNS rebinding) cannot
  read the run. Allowed: the bound address, and ``localhost``/loopback
  addresses for a loopback bind, any IP address and this machine's names for
  a wildcard bind (``0.0.0.0``, ``::``), plus ``allowed_hosts``; always with
  the bound port;
* a connection idle for ``idle_timeout`` seconds is closed, and over
  ``max_connections`` open connections a new one gets 503 and is closed
  without a thread, so threads stay bounded.

It binds to 127.0.0.1 by default: a run directory holds configs, host names
and commands that need not be shared with the network.

Example:
    >>> import tempfile, pathlib, threading, urllib.request
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.txt").write_text("hello")
    >>> server = make_server(d, port=0)
    >>> t = threading.Thread(target=server.serve_forever, daemon=True); t.start()
    >>> urllib.request.urlopen(server.url("a.txt")).read()
    b'hello'
    >>> server.shutdown(); server.server_close()
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import mimetypes
import os
import posixpath
import re
import signal
import socket
import threading
import urllib.parse
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from trialrun.errors import InputError, PortInUseError

logger = logging.getLogger(__name__)

_CHUNK = 256 * 1024
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson; charset=utf-8",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".webm": "video/webm",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".yaml": "text/plain; charset=utf-8",
    ".yml": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".log": "text/plain; charset=utf-8",
}
_NO_CACHE = {".html", ".htm", ".json", ".jsonl"}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
#: Defaults of ``report --serve --idle-timeout`` and ``--max-connections``.
IDLE_TIMEOUT = 30.0
MAX_CONNECTIONS = 64
_BUSY_BODY = b"503 Service Unavailable: too many connections\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


def content_type(path: Path) -> str:
    """The ``Content-Type`` for a file of a run (mp4 as ``video/mp4``)."""
    suffix = path.suffix.lower()
    if suffix in _TYPES:
        return _TYPES[suffix]
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive byte range ``(first, last)`` a ``Range`` header asks for.

    Returns None when the header is not a single byte range this server
    understands (the whole file is sent, as RFC 9110 allows).

    Raises:
        ValueError: the range cannot be satisfied (the caller answers 416).

    Example:
        >>> parse_range("bytes=0-99", 1000), parse_range("bytes=900-", 1000), parse_range("bytes=-10", 1000)
        ((0, 99), (900, 999), (990, 999))
    """
    match = _RANGE.match(header.strip())
    if not match:
        return None
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:  # suffix range: the last n bytes
        n = int(last_text)
        if n == 0 or size == 0:
            raise ValueError("empty suffix range")
        return max(0, size - n), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        return None
    if first >= size:
        raise ValueError("range starts past the end of the file")
    return first, min(last, size - 1)


class RunFileHandler(BaseHTTPRequestHandler):
    """Serves the files of ``server.root`` (a resolved directory) and nothing else."""

    server: RunServer
    server_version = "trialrun"
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Every read and write of this connection: an idle (or half-open) client lets go of its thread.
        self.connection.settimeout(self.server.idle_timeout)

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    # ------------------------------------------------------------------ helpers

    def _error(self, status: HTTPStatus, message: str = "") -> None:
        body = f"{status.value} {status.phrase}{': ' + message if message else ''}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _resolve(self) -> Path | HTTPStatus:
        """The file the request path names, or the status to answer with."""
        raw = urllib.parse.urlsplit(self.path).path
        text = urllib.parse.unquote(raw, errors="strict")
        if "\x00" in text or "\\" in text:
            return HTTPStatus.NOT_FOUND
        segments = [s for s in text.split("/") if s not in ("", ".")]
        if any(s == ".." for s in segments):
            return HTTPStatus.NOT_FOUND
        root = self.server.root
        candidate = root.joinpath(*segments) if segments else root
        real = Path(os.path.realpath(candidate))
        if real != root and root not in real.parents:
            return HTTPStatus.FORBIDDEN
        return real

    def _redirect(self, location: str) -> None:
        self.send_response(HTTPStatus.FOUND)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _serve(self, send_body: bool) -> None:
        host = self.headers.get("Host")
        if host is None:
            self._error(HTTPStatus.BAD_REQUEST, "a Host header is required")
            return
        if not self.server.host_allowed(host):
            self.close_connection = True
            self._error(HTTPStatus.MISDIRECTED_REQUEST, "this server does not answer for that Host")
            return
        try:
            target = self._resolve()
        except UnicodeDecodeError:
            self._error(HTTPStatus.NOT_FOUND)
            return
        if isinstance(target, HTTPStatus):
            self._error(target)
            return
        if target.is_dir():
            index = target / "index.html"
            path = urllib.parse.urlsplit(self.path).path
            if target == self.server.root and not index.is_file():
                self._redirect(f"/{self.server.index_path}")
                return
            if index.is_file():
                if not path.endswith("/"):
                    self._redirect(path + "/")
                    return
                target = index
            else:
                self._error(HTTPStatus.NOT_FOUND, "no directory listings")
                return
        if not target.is_file():
            self._error(HTTPStatus.NOT_FOUND)
            return
        try:
            f = open(target, "rb")  # noqa: SIM115 (closed in finally below)
        except OSError:
            self._error(HTTPStatus.FORBIDDEN)
            return
        try:
            size = os.fstat(f.fileno()).st_size
            first, last = 0, size - 1
            status = HTTPStatus.OK
            header = self.headers.get("Range")
            if header:
                try:
                    wanted = parse_range(header, size)
                except ValueError:
                    self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if wanted is not None:
                    first, last = wanted
                    status = HTTPStatus.PARTIAL_CONTENT
            length = max(0, last - first + 1)
            self.send_response(status)
            self.send_header("Content-Type", content_type(target))
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Last-Modified", formatdate(os.fstat(f.fileno()).st_mtime, usegmt=True))
            self.send_header("X-Content-Type-Options", "nosniff")
            if target.suffix.lower() in _NO_CACHE:
                self.send_header("Cache-Control", "no-cache")
            if status == HTTPStatus.PARTIAL_CONTENT:
                self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
            self.end_headers()
            if not send_body:
                return
            f.seek(first)
            remaining = length
            while remaining > 0:
                chunk = f.read(min(_CHUNK, remaining))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            # Browsers drop video requests all the time (seeking, closing the view).
            logger.debug("client closed the connection while receiving %s", target)
            self.close_connection = True
        finally:
            f.close()


class RunServer(ThreadingHTTPServer):
    """A threading HTTP server rooted at one run directory.

    ``allow_reuse_port`` stays off: two servers must never share a port
    silently (the second one gets a clear "port in use" error instead).
    """

    daemon_threads = True
    allow_reuse_address = True
    allow_reuse_port = False
    request_queue_size = 128

    def __init__(
        self,
        root: Path,
        address: tuple[str, int],
        index_path: str = "report/index.html",
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        allowed_hosts: tuple[str, ...] = (),
    ) -> None:
        self.root = Path(os.path.realpath(root))
        self.index_path = index_path
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self._open = 0
        self._open_lock = threading.Lock()
        host = address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__(address, RunFileHandler)
        # A wildcard bind answers on every address of the machine: any IP literal is one of them
        # (DNS rebinding needs a name), and so are its own names.
        self._any_ip = host in ("", "0.0.0.0", "::")
        self._hosts = {host.lower(), *(h.lower().strip("[]") for h in allowed_hosts)}
        if is_loopback(host):
            self._hosts |= {"localhost", "127.0.0.1", "::1"}
        if self._any_ip:
            self._hosts |= {"localhost", socket.gethostname().lower(), socket.getfqdn().lower()}

    def host_allowed(self, header: str) -> bool:
        """Whether a request's ``Host`` header names this server: one of its names, its port.

        Example (a server bound to 127.0.0.1 port 8000):
            ``127.0.0.1:8000``, ``localhost:8000`` and ``[::1]:8000`` pass;
            ``evil.example:8000`` and ``localhost:9000`` do not.
        """
        match = re.fullmatch(r"(\[[^\]]*\]|[^:\[\]]*)(?::(\d{1,5}))?", header.strip().lower())
        if match is None:
            return False
        name, port = match.group(1).strip("[]"), int(match.group(2) or 80)
        if port != self.server_address[1]:
            return False
        if name in self._hosts:
            return True
        if not self._any_ip:
            return False
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    def process_request(self, request: Any, client_address: Any) -> None:
        """Hand the connection to a thread, or answer 503 and close it when at the cap."""
        with self._open_lock:
            full = self._open >= self.max_connections
            if not full:
                self._open += 1
        if full:
            logger.warning("refused a connection from %s: %d open", client_address, self.max_connections)
            with contextlib.suppress(OSError):  # the client is gone already: nothing to tell it
                request.settimeout(1.0)
                request.sendall(_BUSY)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # the thread did not start (no memory for one): free the slot
            self._release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._open_lock:
            self._open -= 1

    def url(self, path: str = "") -> str:
        """The address of ``path`` (relative to the run directory) on this server."""
        host, port = self.server_address[0], self.server_address[1]
        shown = str(host)
        if shown in ("0.0.0.0", "::"):
            shown = "127.0.0.1" if shown == "0.0.0.0" else "::1"
        if ":" in shown:
            shown = f"[{shown}]"
        quoted = "/".join(urllib.parse.quote(part) for part in path.split("/"))
        return f"http://{shown}:{port}/{quoted}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("error while serving %s", client_address, exc_info=True)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def make_server(
    run_dir: Path | str,
    host: str = "127.0.0.1",
    port: int = 8000,
    index_path: str = "report/index.html",
    *,
    idle_timeout: float = IDLE_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
    allowed_hosts: tuple[str, ...] = (),
) -> RunServer:
    """Bind a :class:`RunServer` for ``run_dir`` (``port=0`` picks a free port).

    ``idle_timeout`` (seconds a connection may stay silent), ``max_connections``
    (open at once) and ``allowed_hosts`` (more names for the ``Host`` check)
    are the ``report --serve`` options of the same names.

    Raises:
        PortInUseError: the port is taken ("port 8000 is in use; choose another
            with --port").
        InputError: the host cannot be bound (unknown name, not an address of
            this machine, a privileged port).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    if not 0 <= port <= 65535:
        raise InputError(f"--port must be between 0 and 65535, got {port}")
    if not idle_timeout > 0:
        raise InputError(f"--idle-timeout must be a positive number of seconds, got {idle_timeout}")
    if max_connections < 1:
        raise InputError(f"--max-connections must be at least 1, got {max_connections}")
    try:
        return RunServer(
            run_dir,
            (host.strip("[]"), port),
            index_path,
            idle_timeout=idle_timeout,
            max_connections=max_connections,
            allowed_hosts=allowed_hosts,
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(f"port {port} is in use; choose another with --port") from None
        if exc.errno == errno.EACCES:
            raise InputError(
                f"cannot listen on port {port}: permission denied; choose a port above 1023"
            ) from None
        if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
            raise InputError(f"cannot listen on host '{host}': {exc.strerror or exc}") from None
        raise InputError(f"cannot listen on {host}:{port}: {exc}") from None


def serve_until_stopped(server: RunServer) -> None:
    """Serve until Ctrl+C (SIGINT) or SIGTERM, then close the socket and return
    normally: stopping a server is not an error.

    SIGTERM is turned into the same clean stop while serving (in the main
    thread only; elsewhere the caller stops the server with ``shutdown()``).
    """

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop) if in_main else None
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("stopping the server")
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        server.server_close()


def request_path_for(run_dir: Path, file: Path) -> str:
    """``file`` as a URL path relative to the served ``run_dir`` (posix)."""
    rel = os.path.relpath(os.path.realpath(file), os.path.realpath(run_dir))
    return posixpath.join(*Path(rel).parts)
