"""The HTTP side of the service: `POST /webhook`, `GET /healthz`, `GET /metrics`, and the
read-only dashboard under `/dashboard` (bot/service/dashboard, with its own sign-in).

A plain WSGI application served by waitress (bounded worker threads; request bodies are buffered
by waitress's I/O loop before a worker sees them, so slow clients cannot tie up workers; body
and connection limits built in).  A delivery is handled in this order, nothing parsed before the
signature holds:

1. body larger than the cap → 413;
2. `X-Hub-Signature-256` missing or not the HMAC-SHA256 of the raw body with the webhook secret
   (constant-time comparison) → 401;
3. `X-GitHub-Delivery` id seen before (persisted in the database, so a restart does not replay)
   → 200 "duplicate";
4. JSON parsed; `issue_comment` commands on served repositories, and `pull_request` deliveries
   (opened, synchronize, reopened: the config check, bot.service.config_check), are handed to
   the chat pool and answered 202 at once; anything else → 200 "ignored".
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from prometheus_client import make_wsgi_app
from sqlalchemy import Column, Engine, MetaData, String, Table, delete, insert
from sqlalchemy.exc import IntegrityError

from bot.audit import create_table, now, stamp
from bot.service.chat import ChatCommands, comment_event
from bot.service.config_check import pull_request_event
from bot.service.metrics import Metrics

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
_DELIVERY_ID = re.compile(r"^[A-Za-z0-9-]{1,100}$")
_EVENT = re.compile(r"^[a-z_]{1,60}$")
INSTALLATION_EVENTS = ("installation", "installation_repositories")

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

_metadata = MetaData()
deliveries = Table(
    "webhook_deliveries",
    _metadata,
    Column("id", String(100), primary_key=True),
    Column("event", String(60), nullable=False),
    Column("received_at", String(40), nullable=False, index=True),
)


class DeliveryLog:
    """The `X-GitHub-Delivery` ids already accepted, in the audit database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        create_table(deliveries, engine)

    def first_time(self, delivery: str, event: str) -> bool:
        """Record `delivery`; False when it was recorded before (a replay)."""
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    insert(deliveries).values(id=delivery, event=event, received_at=stamp(None))
                )
        except IntegrityError:
            return False
        return True

    def forget(self, delivery: str) -> None:
        """Drop `delivery` (its work could not be queued), so a redelivery is handled."""
        with self.engine.begin() as connection:
            connection.execute(delete(deliveries).where(deliveries.c.id == delivery))

    def prune(self, older_than: timedelta) -> int:
        """Drop ids older than `older_than`; returns how many."""
        cutoff = stamp(now() - older_than)
        with self.engine.begin() as connection:
            result = connection.execute(delete(deliveries).where(deliveries.c.received_at < cutoff))
        return int(result.rowcount or 0)


def signature_valid(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether `header` is `sha256=` + the hex HMAC-SHA256 of `body` under `secret`."""
    if not secret or not header:
        return False
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), header.encode("latin-1"))


class WebhookApp:
    """The WSGI application."""

    def __init__(
        self,
        *,
        secret: str | None,
        deliveries: DeliveryLog,
        metrics: Metrics,
        chat: ChatCommands | None,
        serves: Callable[[str], bool],
        on_installation_change: Callable[[], None] | None = None,
        max_body: int = MAX_BODY_BYTES,
        dashboard: Callable[[Environ, StartResponse], Iterable[bytes]] | None = None,
    ) -> None:
        self.secret = secret.encode("utf-8") if secret else b""
        self.deliveries = deliveries
        self.metrics = metrics
        self.chat = chat
        self.serves = serves
        self.on_installation_change = on_installation_change
        self.max_body = max_body
        self.dashboard = dashboard
        self.stopping = threading.Event()
        self._metrics_app = make_wsgi_app(metrics.registry)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        if path == "/healthz" and method in ("GET", "HEAD"):
            return _json(start_response, 200, {"status": "ok"})
        if path == "/metrics" and method == "GET":
            result: Iterable[bytes] = self._metrics_app(environ, start_response)
            return result
        if self.dashboard is not None and (path == "/dashboard" or path.startswith("/dashboard/")):
            return self.dashboard(environ, start_response)
        if path == "/webhook":
            if method != "POST":
                return _json(start_response, 405, {"error": "use POST"}, [("Allow", "POST")])
            status, body = self.deliver(environ)
            self.metrics.deliveries.labels(result=body["result"]).inc()
            return _json(start_response, status, body)
        return _json(start_response, 404, {"error": "not found"})

    def deliver(self, environ: Environ) -> tuple[int, dict[str, str]]:
        """Handle one delivery: (HTTP status, JSON answer with a `result`)."""
        if not self.secret:
            return 503, {"result": "disabled", "error": "no webhook secret is configured"}
        if self.stopping.is_set():
            return 503, {"result": "stopping", "error": "shutting down; redeliver later"}
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return 400, {"result": "invalid", "error": "bad Content-Length"}
        if length > self.max_body:
            return 413, {"result": "too-large", "error": f"body over {self.max_body} bytes"}
        raw = environ["wsgi.input"].read(length) if length > 0 else b""
        if not signature_valid(self.secret, raw, environ.get("HTTP_X_HUB_SIGNATURE_256")):
            return 401, {"result": "unauthorized", "error": "missing or invalid signature"}
        delivery = environ.get("HTTP_X_GITHUB_DELIVERY", "")
        event = environ.get("HTTP_X_GITHUB_EVENT", "")
        if not _DELIVERY_ID.match(delivery) or not _EVENT.match(event):
            return 400, {"result": "invalid", "error": "missing X-GitHub-Delivery or -Event"}
        if not self.deliveries.first_time(delivery, event):
            return 200, {"result": "duplicate"}
        try:
            payload = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return 400, {"result": "invalid", "error": "body is not JSON"}
        return self.route(delivery, event, payload)

    def route(self, delivery: str, event: str, payload: Any) -> tuple[int, dict[str, str]]:
        """Act on a verified, first-time delivery."""
        if event == "ping":
            return 200, {"result": "pong"}
        if event in INSTALLATION_EVENTS and self.on_installation_change is not None:
            self.on_installation_change()
            return 202, {"result": "accepted"}
        if event == "pull_request" and self.chat is not None:
            change = pull_request_event(payload)
            if change is None or not self.serves(change.repo):
                return 200, {"result": "ignored"}
            if not self.chat.accept_config_check(change):
                self.deliveries.forget(delivery)
                return 503, {"result": "busy", "error": "too many waiting; redeliver later"}
            return 202, {"result": "accepted"}
        if event != "issue_comment" or self.chat is None:
            return 200, {"result": "ignored"}
        comment = comment_event(payload)
        if comment is None or not self.chat.wants(comment) or not self.serves(comment.repo):
            return 200, {"result": "ignored"}
        if not self.chat.accept(comment):
            self.deliveries.forget(delivery)
            return 503, {"result": "busy", "error": "too many commands waiting; redeliver later"}
        log.info(
            "chat command accepted",
            extra={"repo": comment.repo, "user": comment.author, "delivery": delivery},
        )
        return 202, {"result": "accepted"}


def _json(
    start_response: StartResponse,
    status: int,
    body: dict[str, str],
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    data = json.dumps(body).encode("utf-8")
    reason = {
        200: "OK",
        202: "Accepted",
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        405: "Method Not Allowed",
        413: "Content Too Large",
        503: "Service Unavailable",
    }[status]
    start_response(
        f"{status} {reason}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            *(headers or []),
        ],
    )
    return [data]
