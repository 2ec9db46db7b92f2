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
  shows on reload.

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

    def __init__(self, root: Path, address: tuple[str, int], index_path: str = "report/index.html") -> None:
        self.root = Path(os.path.realpath(root))
        self.index_path = index_path
        host = address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__(address, RunFileHandler)

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
    run_dir: Path | str, host: str = "127.0.0.1", port: int = 8000, index_path: str = "report/index.html"
) -> RunServer:
    """Bind a :class:`RunServer` for ``run_dir`` (``port=0`` picks a free port).

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
    try:
        return RunServer(run_dir, (host.strip("[]"), port), index_path)
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
