"""Access control at the HTTP edge: the one place that enforces every route's declared ``Policy`` (``POLICIES``, the
table in ``soulfra.api.policies``), ``AccessControl``, ASGI middleware outside every other part of the app.

For each request it checks the Host header against an allow-list, finds the route and its policy (a route without
one fails closed: 500 and a log line), authenticates ``Authorization: Bearer`` through the ``TokenService`` (401) or
else a dashboard session cookie (``SessionTable``: its token's identity; a change must then carry the session's CSRF
token, 403 ``csrf``), checks the role (403) and the instance scope (404, as for an instance that does not exist),
the content type of a mutating request (415) and the rate limits (429). Every mutating request, accepted or refused,
is one audit row (``AuditRecorder.acting`` around the whole request: what runs inside refines it). Every reply
carries an ``X-Request-ID`` and the security headers. Must not: read bodies, or know what a route does beyond its
policy.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import cookie_parser
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from soulfra.api.limits import json_refusal
from soulfra.api.policies import JSON, PACKAGE_TYPES, POLICIES, Policy, policy_for, routes_of
from soulfra.errors import (
    AuthenticationError,
    BadHostError,
    CsrfError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    SoulfraError,
    UnsupportedMediaError,
)
from soulfra.logs import bind, checked_request_id, note
from soulfra.offload import off_loop
from soulfra.security.audit import AuditRecorder, current_action
from soulfra.security.identity import ANONYMOUS, Identity
from soulfra.security.sessions import CSRF_HEADER, SESSION_COOKIE, Session, SessionTable
from soulfra.security.tokens import TokenService, token_hash

__all__ = [
    "JSON",
    "LOOPBACK_HOSTS",
    "PACKAGE_TYPES",
    "POLICIES",
    "AccessControl",
    "AccessSettings",
    "Policy",
    "identity_of",
    "policy_for",
    "routes_of",
    "session_of",
]

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def identity_of(scope_or_request: Any) -> Identity:
    """Who sent the request (``AccessControl`` put it in the request's state); anonymous if nobody said."""
    scope = scope_or_request if isinstance(scope_or_request, dict) else scope_or_request.scope
    found = (scope.get("state") or {}).get("identity")
    return found if isinstance(found, Identity) else ANONYMOUS


def session_of(scope_or_request: Any) -> Session | None:
    """The dashboard session the request came with (``AccessControl`` put it in the request's state, so a page needs
    no second lookup), or None (a Bearer token, or a route that needs no role)."""
    scope = scope_or_request if isinstance(scope_or_request, dict) else scope_or_request.scope
    found = (scope.get("state") or {}).get("session")
    return found if isinstance(found, Session) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessSettings:
    """How the API lets requests in. ``allowed_hosts``: Host header values accepted (without port); ``cors_origins``:
    browser origins allowed to call it (none: no CORS headers at all); ``mutation_rate``/``mutation_burst``: a
    token's mutating requests per second, sustained and in a burst; ``auth_failures`` failed authentications from
    one address within ``auth_window`` seconds lock that address out for ``lockout`` seconds."""

    private_surface: bool = False
    enforce: bool = True  # False: no access control at all; only ``soulfra bench api`` sets it, to measure its cost
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    cors_origins: tuple[str, ...] = ()
    mutation_rate: float = 20.0
    mutation_burst: int = 100
    auth_failures: int = 10
    auth_window: float = 60.0
    lockout: float = 60.0

    @classmethod
    def for_host(cls, bind_host: str, extra_hosts: Iterable[str] = (), **others: Any) -> AccessSettings:
        """The defaults for a server bound to ``bind_host``: loopback names, the bind host, and ``extra_hosts``."""
        hosts = dict.fromkeys([*LOOPBACK_HOSTS, bind_host.strip("[]").lower(), *(h.lower() for h in extra_hosts)])
        return cls(allowed_hosts=tuple(hosts), **others)


class RateLimits:
    """Token buckets per identity (mutating requests) and failure windows per source address (authentication).
    Kept in this process's memory: a restart forgets them, and several processes count apart."""

    MAX_KEYS = 10_000  # buckets or windows held at once; past it they start again (a flood cannot grow them)

    def __init__(self, settings: AccessSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens left, when counted)
        self._failures: dict[str, deque[float]] = {}
        self._locked: dict[str, float] = {}  # address -> locked until

    def spend(self, name: str) -> None:
        """One mutating request of ``name``: RateLimitedError when its bucket is empty."""
        rate, burst = self.settings.mutation_rate, float(self.settings.mutation_burst)
        now = self._clock()
        with self._lock:
            left, then = self._buckets.get(name, (burst, now))
            left = min(burst, left + (now - then) * rate)
            if left < 1.0:
                self._buckets[name] = (left, now)
                wait = (1.0 - left) / rate
                raise RateLimitedError(f"too many changes from {name!r}: at most {rate:g} a second", retry_after=wait)
            if len(self._buckets) >= self.MAX_KEYS:
                self._buckets.clear()
            self._buckets[name] = (left - 1.0, now)

    def check_source(self, source: str) -> None:
        """RateLimitedError while ``source`` is locked out for failed authentications."""
        with self._lock:
            until = self._locked.get(source)
            now = self._clock()
            if until is not None and until > now:
                raise RateLimitedError(
                    f"too many failed authentications from {source}; try again later", retry_after=until - now
                )

    def failed(self, source: str) -> None:
        """Count a failed authentication from ``source``; lock it out when there were too many lately."""
        now = self._clock()
        with self._lock:
            window = self._failures.get(source)
            if window is None:
                if len(self._failures) >= self.MAX_KEYS:
                    self._failures.clear()
                    self._locked = {k: v for k, v in self._locked.items() if v > now}
                window = self._failures[source] = deque()
            window.append(now)
            while window and window[0] <= now - self.settings.auth_window:
                window.popleft()
            if len(window) >= self.settings.auth_failures:
                self._locked[source] = now + self.settings.lockout
                window.clear()


_Resolved = tuple[str, Policy | None, str | None]  # route template, its policy, the instance it names


@dataclass(slots=True)
class _Reply:
    status: int = 0
    started: bool = False
    authenticated: bool = False
    request_id: str = ""
    https: bool = False
    extra: list[tuple[bytes, bytes]] = field(default_factory=list)


class AccessControl:
    """ASGI middleware: the one enforcement point of ``POLICIES`` (see the module's docstring)."""

    CACHE_LIMIT = 4096  # (method, path) -> route resolutions remembered

    def __init__(
        self,
        app: ASGIApp,
        *,
        tokens: TokenService,
        recorder: AuditRecorder | None,
        settings: AccessSettings,
        limits: RateLimits | None = None,
        sessions: SessionTable | None = None,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.sessions = sessions
        self.recorder = recorder
        self.settings = settings
        self.limits = limits or RateLimits(settings)
        self._hosts = frozenset(h.lower() for h in settings.allowed_hosts)
        self._hosts_seen: set[str | None] = set()  # Host header values already found allowed
        self._checking: dict[str, asyncio.Future[Identity]] = {}  # token hash -> its database check under way
        self._routes: list[BaseRoute] | None = None
        self._resolved: dict[tuple[str, str], _Resolved | None] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        reply = _Reply(request_id=_request_id(scope), https=scope.get("scheme") == "https")
        with bind(request_id=reply.request_id):  # on every record logged while it is handled (soulfra.logs)
            await self._handle(scope, receive, send, reply)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, reply: _Reply) -> None:
        guarded = _decorated(send, reply)
        method = scope["method"]
        resolved = self._resolve(scope)
        template, policy, instance = resolved if resolved is not None else (None, None, None)
        try:
            if template is not None and policy is None:
                log.error("no access policy for %s %s: refused (every route must declare one)", method, template)
                raise SoulfraError(f"the route {method} {template} declares no access policy")
            if policy is None or not policy.mutating or self.recorder is None:
                await self._admit(scope, policy, instance, reply)
                await self.app(scope, receive, guarded)
                return
            async with self.recorder.acting(
                ANONYMOUS, f"{method} {template}", source=_source(scope), request_id=reply.request_id,
                instance_id=instance,
            ) as action:  # fmt: skip
                await self._admit(scope, policy, instance, reply)
                await self.app(scope, receive, guarded)
                if reply.status >= 400 and action.outcome == "ok":
                    action.outcome = f"http_{reply.status}"  # refused inside the app without a Soulfra error
        except SoulfraError as exc:
            if reply.started:
                raise
            page = policy is not None and policy.page and method == "GET" and _bearer(scope) is None
            if isinstance(exc, AuthenticationError) and page:
                await _to_sign_in(guarded)  # a person at a browser, not a client: the form, not a 401
                return
            await _refuse(guarded, exc)

    async def _admit(self, scope: Scope, policy: Policy | None, instance: str | None, reply: _Reply) -> None:
        """Let the request in, or raise the refusal; the identity it came with goes in its state."""
        self._check_host(scope)
        if policy is None:
            return  # no route: the app answers 404 or 405, and nothing runs
        named = _named_instances(scope) if policy.by_query else []
        role = "viewer" if (policy.surface and self.settings.private_surface) or named else policy.role
        if role is None:
            return
        source = _source(scope) or "unknown"
        self.limits.check_source(source)
        identity, session = await self._identify(scope, source)
        scope.setdefault("state", {}).update(identity=identity, session=session)
        note(identity=identity.name)
        reply.authenticated = True
        action = current_action()
        if action is not None and policy.mutating:
            action.identity = identity
        if session is not None and policy.mutating and not session.csrf_matches(_header(scope, CSRF_HEADER.encode())):
            raise CsrfError(f"a change from a dashboard session needs its CSRF token in the {CSRF_HEADER} header")
        if not identity.allows(role):
            raise PermissionDeniedError(f"{identity.name!r} is a {identity.role}; this needs {role} or above")
        if policy.scoped and instance is not None and not identity.sees(instance):
            raise NotFoundError(f"no instance {instance!r}")
        for name in named:
            if not identity.sees(name):
                raise NotFoundError(f"no instance {name!r}")
        if policy.mutating:
            _check_content(scope, policy)
            self.limits.spend(identity.name)

    async def _identify(self, scope: Scope, source: str) -> tuple[Identity, Session | None]:
        """The identity of the Bearer token, or else of the dashboard session's token (with that session)."""
        token = _bearer(scope)
        session = session_id = None
        if token is None and self.sessions is not None:
            cookies = _header(scope, b"cookie")
            session_id = cookie_parser(cookies).get(SESSION_COOKIE) if cookies else None
            session = await off_loop(self.sessions.get, session_id) if session_id else None
        try:
            if token is not None:
                digest = token_hash(token)
            elif session is not None:
                digest = session.token_digest
            elif session_id:  # no guess (session ids are 256 random bits): not counted as a failed authentication,
                # so a browser left open past its session's end does not lock its address out
                raise AuthenticationError("the dashboard session has ended (signed out, expired or revoked)")
            else:
                raise AuthenticationError("this route needs a token: send Authorization: Bearer <token>")
            known = self.tokens.fresh_digest(digest)  # checked a moment ago: no database round trip
            if known is not None:
                return known, session
            # One database check at a time per token: when its cached check goes stale, the requests that arrive
            # meanwhile wait for that one instead of each asking the database.
            pending = self._checking.get(digest)
            if pending is None:
                check = off_loop(self.tokens.authenticate_digest, digest)
                pending = self._checking[digest] = asyncio.ensure_future(check)
                pending.add_done_callback(lambda _: self._checking.pop(digest, None))
            return await asyncio.shield(pending), session
        except AuthenticationError:
            if token is not None or session is not None or not session_id:
                self.limits.failed(source)
            raise

    def _check_host(self, scope: Scope) -> None:
        host = _header(scope, b"host")
        if host in self._hosts_seen:  # the few Host values a server sees, each parsed once
            return
        name = _host_name(host) if host is not None else None
        if name not in self._hosts:
            raise BadHostError(f"the Host {host!r} is not one this server answers to (see --allowed-host)")
        if len(self._hosts_seen) < self.CACHE_LIMIT:
            self._hosts_seen.add(host)

    def _resolve(self, scope: Scope) -> _Resolved | None:
        """The route a request goes to (as the app's router picks it), its policy, and its instance id."""
        key = (scope["method"], scope["path"])
        if key in self._resolved:
            return self._resolved[key]
        if self._routes is None:
            self._routes = routes_of(scope["app"].router.routes)
        found: _Resolved | None = None
        for route in self._routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                template = str(getattr(route, "path", ""))
                params = child.get("path_params", {})
                instance = params.get("instance_id")
                found = (template, policy_for(scope["method"], template), None if instance is None else str(instance))
                break
        if len(self._resolved) >= self.CACHE_LIMIT:
            self._resolved.clear()
        self._resolved[key] = found
        return found


_ID_PREFIX = uuid.uuid4().hex[:12]  # this process's; a counter numbers its requests (no random bytes per request)
_ID_COUNTER = itertools.count(1)


def _request_id(scope: Scope) -> str:
    return checked_request_id(_header(scope, b"x-request-id")) or f"{_ID_PREFIX}{next(_ID_COUNTER):012x}"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _bearer(scope: Scope) -> str | None:
    value = _header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _named_instances(scope: Scope) -> list[str]:
    """Every instance a ``?instance=`` of the request names (a repeated one is checked each time)."""
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    return parse_qs(query).get("instance", []) if "instance" in query else []


def _source(scope: Scope) -> str | None:
    client = scope.get("client")
    return None if not client else str(client[0])


def _host_name(host: str) -> str:
    """``[::1]:8000`` -> ``::1``; ``Example.org:80`` -> ``example.org``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _check_content(scope: Scope, policy: Policy) -> None:
    kind = _header(scope, b"content-type")
    media = None if kind is None else kind.split(";", 1)[0].strip().lower()
    if not policy.content_types:  # DELETE: no body at all
        length = _header(scope, b"content-length")
        if kind is not None or (length not in (None, "0")) or _header(scope, b"transfer-encoding") is not None:
            raise UnsupportedMediaError(f"{scope['method']} takes no body")
        return
    if media not in policy.content_types:
        raise UnsupportedMediaError(
            f"this route takes {' or '.join(policy.content_types)}, not {media or 'a request without a content type'}"
        )


_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
_DEFAULT_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'")
_HSTS = (b"strict-transport-security", b"max-age=31536000")


def _decorated(send: Send, reply: _Reply) -> Send:
    """``send`` with the security headers and the request id added to the reply, and its status noted."""

    async def decorated(message: Message) -> None:
        if message["type"] == "http.response.start":
            reply.started = True
            reply.status = int(message["status"])
            headers = list(message.get("headers", ()))
            names = {key.lower(): value for key, value in headers}
            headers += [h for h in _SECURITY_HEADERS if h[0] not in names]
            headers.append((b"x-request-id", reply.request_id.encode()))
            if b"content-security-policy" not in names:  # the docs page (soulfra.api.docs) brings its own
                headers.append(_DEFAULT_CSP)  # nothing else needs to load anything
            if reply.authenticated and b"cache-control" not in names:
                headers.append((b"cache-control", b"no-store"))
            if reply.https:
                headers.append(_HSTS)
            message = {**message, "headers": headers}
        await send(message)

    return decorated


async def _to_sign_in(send: Send) -> None:
    """303 to the dashboard's sign-in form (``/``)."""
    headers = [(b"location", b"/"), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _refuse(send: Send, error: SoulfraError) -> None:
    from soulfra.api.app import status_for  # noqa: PLC0415 -- the app module imports this one

    status = status_for(error)
    extra: list[tuple[bytes, bytes]] = []
    if isinstance(error, AuthenticationError):
        extra.append((b"www-authenticate", b'Bearer realm="soulfra"'))
    if isinstance(error, RateLimitedError):
        extra.append((b"retry-after", str(max(1, round(error.retry_after + 0.499))).encode()))
    await json_refusal(send, status, error.code, error.detail, extra=extra)
