"""optuna-dashboard behind a secret, as Jupyter serves notebooks on shared machines.

On a login node every user reaches 127.0.0.1, and optuna-dashboard has no authentication and
a write API (it deletes studies, tells trials, edits notes). So every request must carry the
run's token: in the query (``?token=...``, the URL printed once at start) or in the cookie
set on that first visit. Anything else gets 403. The token is random per run unless
``ECGSEARCH_DASHBOARD_TOKEN`` gives one, is compared in constant time, and is never logged
(the server's request log is off: a URL with the token would land in it).

A Unix socket (``--socket``, created 0600) is the other way in, for ``ssh -L`` from a laptop;
the token is asked for there too.
"""

from __future__ import annotations

import hmac
import os
import secrets
import signal
import socket
import socketserver
from collections.abc import Callable, Iterable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

__all__ = ["TOKEN_ENV", "TokenGate", "serve", "token_from_environment"]

TOKEN_ENV = "ECGSEARCH_DASHBOARD_TOKEN"
MIN_TOKEN_LENGTH = 16

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def token_from_environment() -> str:
    """The token the environment gives (a weak one is refused), else a new random one."""
    given = os.environ.get(TOKEN_ENV) or None  # set but empty (a compose file's default): not given
    if given is None:
        return secrets.token_urlsafe(32)
    if len(given) < MIN_TOKEN_LENGTH:
        raise ValueError(f"{TOKEN_ENV} is shorter than {MIN_TOKEN_LENGTH} characters: too easy to guess")
    return given


class TokenGate:
    """WSGI middleware: the wrapped app answers only requests that carry the token."""

    def __init__(self, app: WSGIApp, token: str, cookie_name: str) -> None:
        self.app = app
        self._token = token.encode()
        self.cookie_name = cookie_name

    def _matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self._token)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        from_query = parse_qs(environ.get("QUERY_STRING", "")).get("token", [None])[0]
        if self._matches(from_query):
            cookie = f"{self.cookie_name}={from_query}; Path=/; HttpOnly; SameSite=Strict"

            def with_cookie(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
                return start_response(status, [*headers, ("Set-Cookie", cookie)], *rest)

            return self.app(environ, with_cookie)
        try:
            jar = SimpleCookie(environ.get("HTTP_COOKIE", ""))
        except Exception:  # a garbled Cookie header is no token
            jar = SimpleCookie()
        morsel = jar.get(self.cookie_name)
        if self._matches(morsel.value if morsel else None):
            return self.app(environ, start_response)
        start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"403: open the URL with the token that `ecgsearch dashboard` printed\n"]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a request line holds the token on the first visit


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # the page loads many API calls at once


class _UnixServer(_ThreadingServer):
    address_family = socket.AF_UNIX

    def server_bind(self) -> None:
        previous = os.umask(0o177)  # the socket is born 0600: no moment when others could connect
        try:
            socketserver.TCPServer.server_bind(self)
        finally:
            os.umask(previous)
        self.server_name, self.server_port = "localhost", 0
        self.setup_environ()

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        connection, _ = self.socket.accept()
        return connection, ("unix-socket", 0)  # WSGI's REMOTE_ADDR wants a host


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def serve(
    app: WSGIApp, *, host: str, port: int, unix_socket: Path | None = None, ready: Callable[[], None] = lambda: None
) -> None:
    """Serve ``app`` until interrupted, on ``host:port`` or on ``unix_socket`` (0600); ``ready()`` once bound."""
    if unix_socket is None:
        server = make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    else:
        if unix_socket.is_socket():
            unix_socket.unlink()  # left by a dashboard that was killed
        server = _UnixServer(str(unix_socket), _QuietHandler)
        server.set_app(app)
    signal.signal(signal.SIGTERM, _interrupt)  # stopped by a scheduler or `kill`: tidy up as on Ctrl-C
    try:
        ready()
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if unix_socket is not None:
            unix_socket.unlink(missing_ok=True)
