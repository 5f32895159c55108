"""Who may read the dashboard: a bearer token, a session cookie, or a trusted proxy's header.

- `Authorization: Bearer <ROTATION_BOT_DASHBOARD_TOKEN>` (for scripts), compared in constant time;
- the login form exchanges the token for a session cookie (HttpOnly, SameSite=Strict, Path
  /dashboard, Secure over https, 12 hours).  The cookie holds an expiry and an HMAC of it keyed
  with the token, never the token itself: changing the token ends every session;
- with `ROTATION_BOT_DASHBOARD_AUTH_HEADER` (e.g. `X-Forwarded-User`), a request that a proxy in
  `ROTATION_BOT_DASHBOARD_TRUSTED_PROXIES` (default: loopback only) forwarded with that header
  set is signed in as the header's user: the proxy authenticates, and must strip the header from
  its clients' requests.  From any other address the header is ignored.

Nothing is configured → no access at all (the dashboard answers that it is off).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any

from bot.config import Settings
from bot.errors import ConfigError

COOKIE = "rotation_bot_session"
SESSION_SECONDS = 12 * 3600
MINIMUM_TOKEN_LENGTH = 16
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_USER = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


@dataclass(frozen=True)
class Viewer:
    """Who is looking, and how they signed in (`token`, `session` or `proxy`)."""

    name: str
    method: str


def _networks(values: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError as error:
            raise ConfigError(
                f"ROTATION_BOT_DASHBOARD_TRUSTED_PROXIES: {value!r} is not an IP address or "
                "network (e.g. 10.0.0.0/8)"
            ) from error
    return tuple(networks)


class DashboardAuth:
    """Checks requests against the configured token and trusted proxy header."""

    def __init__(
        self,
        *,
        token: str | None,
        proxy_header: str | None = None,
        trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1"),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if token is not None and len(token) < MINIMUM_TOKEN_LENGTH:
            raise ConfigError(
                f"ROTATION_BOT_DASHBOARD_TOKEN is shorter than {MINIMUM_TOKEN_LENGTH} "
                "characters; generate one with: "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        if proxy_header is not None and not _HEADER_NAME.match(proxy_header):
            raise ConfigError(
                f"ROTATION_BOT_DASHBOARD_AUTH_HEADER {proxy_header!r} is not an HTTP header name"
            )
        self._token = token.encode("utf-8") if token else b""
        self._proxy_key = "HTTP_" + proxy_header.upper().replace("-", "_") if proxy_header else None
        self._proxies = _networks(trusted_proxies)
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> DashboardAuth:
        """From `ROTATION_BOT_DASHBOARD_*`."""
        return cls(
            token=settings.dashboard_token,
            proxy_header=settings.dashboard_auth_header,
            trusted_proxies=settings.dashboard_trusted_proxies,
        )

    @property
    def enabled(self) -> bool:
        """Whether any way in is configured."""
        return bool(self._token or self._proxy_key)

    @property
    def accepts_token(self) -> bool:
        """Whether the token (and so the login form) is configured."""
        return bool(self._token)

    def token_matches(self, candidate: str) -> bool:
        """Constant-time comparison with the configured token."""
        if not self._token:
            return False
        return hmac.compare_digest(self._token, candidate.encode("utf-8", "surrogateescape"))

    def _mac(self, expires: int) -> str:
        return hmac.new(
            self._token, f"dashboard-session:{expires}".encode(), hashlib.sha256
        ).hexdigest()

    def session_cookie(self, *, secure: bool) -> str:
        """A `Set-Cookie` value for a new session."""
        expires = int(self._clock()) + SESSION_SECONDS
        attributes = f"; Max-Age={SESSION_SECONDS}; Path=/dashboard; HttpOnly; SameSite=Strict"
        return f"{COOKIE}={expires}.{self._mac(expires)}{attributes}{'; Secure' if secure else ''}"

    @staticmethod
    def clear_cookie(*, secure: bool) -> str:
        """A `Set-Cookie` value that ends the session."""
        attributes = "; Max-Age=0; Path=/dashboard; HttpOnly; SameSite=Strict"
        return f"{COOKIE}={attributes}{'; Secure' if secure else ''}"

    def _session_valid(self, value: str) -> bool:
        expires, _, mac = value.partition(".")
        if not self._token or not expires.isdigit() or int(expires) < self._clock():
            return False
        return hmac.compare_digest(self._mac(int(expires)).encode(), mac.encode("ascii", "replace"))

    def _from_proxy(self, environ: Mapping[str, Any]) -> str | None:
        if self._proxy_key is None:
            return None
        user = str(environ.get(self._proxy_key, "")).strip()
        if not user or not _USER.match(user):
            return None
        try:
            peer = ipaddress.ip_address(str(environ.get("REMOTE_ADDR", "")))
        except ValueError:
            return None
        return user if any(peer in network for network in self._proxies) else None

    def viewer(self, environ: Mapping[str, Any]) -> Viewer | None:
        """Who sent this request, or None when it carries no valid credential."""
        scheme, _, credential = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
        if scheme.lower() == "bearer":
            return Viewer("token", "token") if self.token_matches(credential.strip()) else None
        cookies = SimpleCookie()
        try:
            cookies.load(str(environ.get("HTTP_COOKIE", "")))
        except CookieError:
            cookies = SimpleCookie()
        morsel = cookies.get(COOKIE)
        if morsel is not None and self._session_valid(morsel.value):
            return Viewer("session", "session")
        user = self._from_proxy(environ)
        return Viewer(user, "proxy") if user else None
