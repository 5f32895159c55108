"""The dashboard's WSGI application, mounted under `/dashboard` on the service's HTTP app.

Routes (read-only; the only POSTs sign in and out):

    GET  /dashboard                 the fleet (filter and sort with query parameters)
    GET  /dashboard/runs/RUN        one run (id or unique prefix)
    GET  /dashboard/login           the sign-in form;  POST: exchange the token for a cookie
    POST /dashboard/logout          end the session
    GET  /dashboard/static/NAME     the stylesheet and icon shipped in the package (no sign-in)

Every answer carries a strict Content-Security-Policy (no script at all, `default-src 'self'`,
`frame-ancestors 'none'`), `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`
and `Cache-Control: no-store` (pages).  A request without a valid credential gets no data: a
browser is sent to the sign-in form (303), a request that carried a wrong bearer token gets 401.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote

from sqlalchemy.exc import SQLAlchemyError

from bot.audit import AuditStore, VerifyReport
from bot.models import utc_now
from bot.service.dashboard import render
from bot.service.dashboard.auth import DashboardAuth, Viewer
from bot.service.dashboard.data import DEFAULT_WINDOW, FleetQuery, load_fleet, load_run

log = logging.getLogger(__name__)

PREFIX = "/dashboard"
MAX_FORM_BYTES = 4096
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
_RUN = re.compile(r"^/dashboard/runs/(?P<run>[0-9a-f-]{4,36})$")
_STATIC = re.compile(r"^/dashboard/static/(?P<name>[a-z]+\.(?:css|svg))$")
_NEXT = re.compile(r"^/dashboard(?:/[A-Za-z0-9._~/-]*)?(?:\?[A-Za-z0-9._~=&%+-]*)?$")
_TYPES = {"css": "text/css; charset=utf-8", "svg": "image/svg+xml"}
_REASONS = {
    200: "OK",
    303: "See Other",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    503: "Service Unavailable",
}

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


class ChainCheck:
    """`AuditStore.verify` for the run pages, recomputed when the chain grew and at least every
    `max_age` seconds (the whole chain is read each time; a page view should not be)."""

    def __init__(
        self,
        audit: AuditStore,
        *,
        max_age: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.audit = audit
        self.max_age = max_age
        self.clock = clock
        self._lock = threading.Lock()
        self._last: tuple[tuple[int, str], float, VerifyReport] | None = None

    def __call__(self) -> VerifyReport:
        head = self.audit.chain_head()
        with self._lock:
            if self._last is not None:
                seen, checked, report = self._last
                if seen == head and self.clock() - checked < self.max_age:
                    return report
            report = self.audit.verify()
            self._last = (head, self.clock(), report)
            return report


class DashboardApp:
    """Serves the dashboard pages from the audit store to signed-in viewers."""

    def __init__(
        self,
        *,
        audit: AuditStore,
        auth: DashboardAuth,
        runbooks: Iterable[str] = (),
        clock: Callable[[], datetime] = utc_now,
        window: timedelta = DEFAULT_WINDOW,
    ) -> None:
        self.audit = audit
        self.auth = auth
        self.runbooks = sorted(runbooks)
        self.clock = clock
        self.window = window
        self.chain = ChainCheck(audit)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        static = _STATIC.match(path)
        if static and method in ("GET", "HEAD"):
            return self._static(static["name"], start_response)
        if not self.auth.enabled:
            return self._page(
                start_response,
                404,
                render.render_message(
                    "The dashboard is off",
                    "Set ROTATION_BOT_DASHBOARD_TOKEN (or ROTATION_BOT_DASHBOARD_AUTH_HEADER "
                    "behind an authenticating proxy) and restart rotation-bot serve.",
                    now=self.clock(),
                ),
            )
        if path == f"{PREFIX}/login":
            return self._login(environ, start_response, method)
        if path == f"{PREFIX}/logout" and method == "POST":
            return self._redirect(
                start_response,
                f"{PREFIX}/login",
                [("Set-Cookie", self.auth.clear_cookie(secure=_https(environ)))],
            )
        viewer = self.auth.viewer(environ)
        if viewer is None:
            return self._refuse(environ, start_response, path)
        if method not in ("GET", "HEAD"):
            return self._page(
                start_response,
                405,
                render.render_message("Read-only", "The dashboard only reads.", now=self.clock()),
                [("Allow", "GET, HEAD")],
            )
        try:
            return self._route(environ, start_response, path, viewer)
        except SQLAlchemyError as error:
            log.warning(
                "dashboard could not read the audit store", extra={"error": type(error).__name__}
            )
            return self._page(
                start_response,
                503,
                render.render_message(
                    "Audit store unavailable",
                    "The audit database did not answer; check ROTATION_BOT_DATABASE_URL.",
                    now=self.clock(),
                ),
            )

    def _route(
        self, environ: Environ, start_response: StartResponse, path: str, viewer: Viewer
    ) -> Iterable[bytes]:
        now = self.clock()
        if path in (PREFIX, f"{PREFIX}/"):
            params = dict(parse_qsl(str(environ.get("QUERY_STRING", ""))))
            fleet = load_fleet(self.audit, now=now, window=self.window)
            known = {line.runbook for row in fleet.repositories for line in row.packages}
            known |= {row.last_run.runbook for row in fleet.repositories} - {"-"}
            page = render.render_fleet(
                fleet,
                FleetQuery.parse(params),
                viewer,
                runbooks=sorted(known | set(self.runbooks)),
            )
            return self._page(start_response, 200, page)
        match = _RUN.match(path)
        view = load_run(self.audit, match["run"], verify=self.chain) if match else None
        if view is None:
            return self._page(
                start_response,
                404,
                render.render_message("Not found", "No single run matches this address.", now=now),
            )
        return self._page(start_response, 200, render.render_run(view, viewer, now=now))

    # --- signing in --------------------------------------------------------------------------

    def _login(
        self, environ: Environ, start_response: StartResponse, method: str
    ) -> Iterable[bytes]:
        now = self.clock()
        if not self.auth.accepts_token:
            return self._page(
                start_response,
                404,
                render.render_message(
                    "Sign in through your proxy",
                    "This dashboard trusts an authenticating proxy; no token is configured.",
                    now=now,
                ),
            )
        query = dict(parse_qsl(str(environ.get("QUERY_STRING", ""))))
        if method in ("GET", "HEAD"):
            return self._page(
                start_response,
                200,
                render.render_login(problem=None, next_path=_safe_next(query.get("next")), now=now),
            )
        if method != "POST":
            return self._page(
                start_response,
                405,
                render.render_message("Not allowed", "Use the form.", now=now),
                [("Allow", "GET, POST")],
            )
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_FORM_BYTES:
            return self._page(
                start_response, 413, render.render_message("Too large", "Form too large.", now=now)
            )
        form = dict(parse_qsl(environ["wsgi.input"].read(length).decode("utf-8", "replace")))
        next_path = _safe_next(form.get("next"))
        if not self.auth.token_matches(form.get("token", "")):
            log.warning(
                "dashboard sign-in refused", extra={"remote": environ.get("REMOTE_ADDR", "?")}
            )
            return self._page(
                start_response,
                401,
                render.render_login(
                    problem="That is not the dashboard token (ROTATION_BOT_DASHBOARD_TOKEN of "
                    "the service).",
                    next_path=next_path,
                    now=now,
                ),
            )
        return self._redirect(
            start_response,
            next_path,
            [("Set-Cookie", self.auth.session_cookie(secure=_https(environ)))],
        )

    def _refuse(
        self, environ: Environ, start_response: StartResponse, path: str
    ) -> Iterable[bytes]:
        if environ.get("HTTP_AUTHORIZATION") or not self.auth.accepts_token:
            body = b"unauthorized: send Authorization: Bearer <ROTATION_BOT_DASHBOARD_TOKEN>\n"
            return self._respond(
                start_response,
                401,
                body,
                "text/plain; charset=utf-8",
                [("WWW-Authenticate", 'Bearer realm="rotation-bot dashboard"')],
            )
        query = str(environ.get("QUERY_STRING", ""))
        target = _safe_next(f"{path}?{query}" if query else path)
        return self._redirect(start_response, f"{PREFIX}/login?next={quote(target, safe='')}")

    # --- responses ---------------------------------------------------------------------------

    def _static(self, name: str, start_response: StartResponse) -> Iterable[bytes]:
        try:
            data = render.static_file(name)
        except KeyError:
            return self._respond(start_response, 404, b"not found\n", "text/plain; charset=utf-8")
        return self._respond(
            start_response,
            200,
            data,
            _TYPES[name.rsplit(".", 1)[1]],
            [("Cache-Control", "public, max-age=3600")],
        )

    def _page(
        self,
        start_response: StartResponse,
        status: int,
        html: str,
        headers: list[tuple[str, str]] | None = None,
    ) -> Iterable[bytes]:
        return self._respond(
            start_response, status, html.encode("utf-8"), "text/html; charset=utf-8", headers
        )

    def _redirect(
        self,
        start_response: StartResponse,
        location: str,
        headers: list[tuple[str, str]] | None = None,
    ) -> Iterable[bytes]:
        return self._respond(
            start_response,
            303,
            b"",
            "text/plain; charset=utf-8",
            [("Location", location), *(headers or [])],
        )

    @staticmethod
    def _respond(
        start_response: StartResponse,
        status: int,
        body: bytes,
        content_type: str,
        headers: list[tuple[str, str]] | None = None,
    ) -> list[bytes]:
        extra = list(headers or [])
        if not any(name == "Cache-Control" for name, _ in extra):
            extra.append(("Cache-Control", "no-store"))
        start_response(
            f"{status} {_REASONS[status]}",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                *SECURITY_HEADERS,
                *extra,
            ],
        )
        return [body]


def _https(environ: Environ) -> bool:
    return environ.get("wsgi.url_scheme") == "https"


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a dashboard path on this host, never elsewhere."""
    return value if value and _NEXT.match(value) else PREFIX
