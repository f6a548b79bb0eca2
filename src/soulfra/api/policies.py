"""Who may call each route of the API and the dashboard: one table, ``POLICIES``, keyed by (method, route template).
``soulfra.api.access`` enforces it; a route with no entry here fails closed there.

``GET /metrics`` takes a viewer token, not none: Prometheus sends one as a bearer token on each scrape, and the
numbers (instances, ticks, traffic, refusals) describe the installation, which anonymous callers have no need of."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from starlette.routing import BaseRoute

from soulfra.errors import ConfigError

__all__ = ["JSON", "PACKAGE_TYPES", "POLICIES", "Policy", "policy_for", "routes_of"]

JSON = ("application/json",)
PACKAGE_TYPES = ("application/vnd.soulfra.package+zip", "application/octet-stream")


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """Who may call a route. ``role`` None: anyone (``surface``: anyone unless the surface is private, then
    viewers). ``scoped``: the route names an instance (``{instance_id}``), which the caller's token must cover.
    ``mutating``: it changes something, so it is audited, rate limited, and takes only ``content_types``.
    ``by_query``: the route reads the default instance, or the one ``?instance=`` names; naming one takes a viewer
    token that covers it (404 otherwise, as for an instance that does not exist). ``page``: a dashboard page a
    person opens in a browser; asked for without a session, it sends them to the sign-in form instead of a 401."""

    role: str | None
    scoped: bool = False
    mutating: bool = False
    content_types: tuple[str, ...] = ()
    surface: bool = False
    by_query: bool = False
    page: bool = False


def _policies() -> dict[tuple[str, str], Policy]:
    table: dict[tuple[str, str], Policy] = {}

    def add(
        method: str, role: str | None, paths: Iterable[str], types: tuple[str, ...] = JSON, *, by_query: bool = False
    ) -> None:
        mutating = method != "GET"
        for path in paths:
            table[(method, path)] = Policy(
                role=role, scoped="{instance_id}" in path, mutating=mutating,
                content_types=types if method in ("POST", "PUT", "PATCH") else (), surface=role is None,
                by_query=by_query,
            )  # fmt: skip

    instance = "/api/instances/{instance_id}"
    add("GET", None, ["/healthz", "/readyz", "/api/vibe/weather", "/api/agents/echo", "/api/agents/echo/{agent_id}",
                      "/api/ritual/traces", "/api/stream", "/openapi.json", "/docs",
                      "/docs/assets/{name}"])  # fmt: skip
    add("GET", None, ["/api/agents/loop", "/api/ritual/log", "/api/thread/state", "/api/loop/witness",
                      "/api/anomaly/echo", "/api/mirror/complete", "/api/mirror/snapshot/{unified_id}",
                      "/api/system/health"], by_query=True)  # fmt: skip
    add("GET", "viewer", ["/api/instances", "/api/leases", instance] + [instance + tail for tail in (
        "/status", "/vibe/weather", "/agents/echo", "/ritual/traces", "/events", "/agents", "/agents/{agent_id}",
        "/inputs", "/protocol/rules", "/protocol/violations", "/snapshots", "/snapshots/{snapshot_id}",
        "/unified-snapshots", "/unified-snapshots/{unified_id}", "/mirror/anomalies", "/mirror/seeds", "/state",
        "/minds", "/agents/{agent_id}/mind",
    )])  # fmt: skip
    add("GET", "viewer", ["/metrics"])  # a Prometheus scrape sends a viewer token (soulfra.api.metrics says why)
    add("POST", "operator", [instance + tail for tail in (
        "/whispers", "/pause", "/resume", "/override", "/snapshots", "/unified-snapshots", "/protocol/validate",
        "/agents/{agent_id}/possess", "/agents/{agent_id}/act", "/agents/{agent_id}/release",
    )])  # fmt: skip
    gods = ("freeze", "thaw", "clone", "fork", "merge", "possess", "revert", "communicate", "intervene")
    add("POST", "puppet-master", ["/api/god", "/api/instances", *(f"/api/god/{name}" for name in gods)])
    add("POST", "puppet-master", ["/api/god/merge/preview"])  # MERGE_INSTANCES as a dry run: what it would report
    add("GET", "puppet-master", [instance + "/export", "/api/export"])
    add("POST", "puppet-master", ["/api/import"], PACKAGE_TYPES)
    add("GET", "admin", ["/api/tokens", "/api/audit", "/api/audit/verify"])
    add("POST", "admin", ["/api/tokens"])
    add("DELETE", "admin", ["/api/tokens/{name}", instance])
    add("PUT", "admin", [instance + "/protocol/rules"])
    # The dashboard (soulfra.dashboard): its home page (the sign-in form to whoever has no session) and its assets
    # answer anyone; a world page and the fragments read as viewers. Sign-in and sign-out check their own
    # credentials, and are audited.
    for path in ("/", "/static/{asset:path}"):
        table[("GET", path)] = Policy(role=None)
    table[("GET", "/ui/instances")] = Policy(role="viewer")
    table[("GET", "/worlds/{instance_id}")] = Policy(role="viewer", scoped=True, page=True)
    for path in ("/merge", "/packages"):  # the puppet master's pages (soulfra.dashboard.puppet)
        table[("GET", path)] = Policy(role="puppet-master", page=True)
    table[("GET", "/health")] = Policy(role="viewer", page=True)  # soulfra.dashboard.operations
    table[("GET", "/audit")] = Policy(role="admin", page=True)
    for path in ("/login", "/logout"):
        table[("POST", path)] = Policy(role=None, mutating=True, content_types=("application/x-www-form-urlencoded",))
    return table


# (method, route path template) -> policy: every route of the app has one (tests/unit/test_access_policies.py).
POLICIES: dict[tuple[str, str], Policy] = _policies()


def policy_for(method: str, path: str) -> Policy | None:
    """The policy of a route (HEAD is GET's)."""
    return POLICIES.get(("GET" if method == "HEAD" else method, path))


def routes_of(routes: Iterable[BaseRoute]) -> list[BaseRoute]:
    """The routes that answer requests, in the order the router tries them: the routes of included routers in their
    place (FastAPI keeps an included router as one route; ours are included without a prefix)."""
    flat: list[BaseRoute] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            prefix = getattr(getattr(route, "include_context", None), "prefix", "")
            if prefix:
                raise ConfigError(f"a router included with the prefix {prefix!r}: access control cannot match it")
            flat.extend(routes_of(inner.routes))
        else:
            flat.append(route)
    return flat
