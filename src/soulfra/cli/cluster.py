"""``soulfra cluster local``: a Ray cluster of N nodes on this machine (loopback only) with Soulfra on it, and the
API served; ``soulfra cluster join``: one more node of this machine joined to it while it runs; and the runner
``soulfra up --ray-address`` shares with them."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from soulfra.cli.options import (
    AgentsOption,
    HostOption,
    HostsPerNodeOption,
    InsecureHttpOption,
    LanguageAgentsOption,
    ModelInFlightOption,
    ModelJsonOption,
    ModelOption,
    ModelTimeoutOption,
    ModelUrlOption,
    NatsCaOption,
    NatsCertOption,
    NatsCredsOption,
    NatsKeyOption,
    NatsPasswordOption,
    NatsTokenOption,
    NatsUrlOption,
    NatsUserOption,
    PortOption,
    SeedOption,
    ServeDbOption,
    TlsCertOption,
    TlsKeyOption,
    WorldOption,
    env,
)
from soulfra.cli.server import (
    CycleOption,
    LogFormatOption,
    LogLevelOption,
    RateOption,
    crash_logged,
    load_settings,
    open_http,
)

if TYPE_CHECKING:
    from soulfra.settings import ClusterSettings

__all__ = ["cluster_app", "join_node", "run_cluster"]

log = logging.getLogger(__name__)

cluster_app = typer.Typer(help="Run Soulfra across the nodes of a Ray cluster.", no_args_is_help=True)


def run_cluster(settings: ClusterSettings, ray_address: str) -> None:
    """Serve the API as the puppet master of the Ray cluster at ``ray_address`` until SIGINT or SIGTERM."""
    from soulfra.cli.runner import load_world_file  # noqa: PLC0415 -- the server stack loads only here
    from soulfra.cluster.system import ClusterOptions, cluster_puppet  # noqa: PLC0415
    from soulfra.services import api_app  # noqa: PLC0415
    from soulfra.serving import listen, serve_app  # noqa: PLC0415
    from soulfra.world import DEFAULT_WORLD  # noqa: PLC0415

    _needs_db(settings)
    tls = open_http(settings, settings.log_level, settings.log_format)
    options = ClusterOptions(
        ray_address=ray_address, db_url=str(settings.db), nats_url=settings.nats_url,
        nats_options=settings.nats_options(), home=settings.home, seed=settings.seed, agents=settings.agents,
        rate=settings.rate or None, cycle_every=settings.cycle_every, minds=settings.mind_settings(),
        hosts_per_node=settings.hosts_on_each_node(),
        spec=settings.world_spec(load_world_file(settings.world) if settings.world is not None else DEFAULT_WORLD),
    )  # fmt: skip
    sock = listen(settings.host, settings.port)
    with crash_logged("cluster"), sock:
        app = api_app(settings, nats_options=options.nats_options, puppet=cluster_puppet(options))
        Console(stderr=True, highlight=False).print(
            f"soulfra: cluster at {ray_address} serving on {'https' if tls else 'http'}://{settings.host}:"
            f"{settings.port}; Ctrl-C stops",
            markup=False,
            soft_wrap=True,
        )
        serve_app(app, sock, tls_cert=settings.tls_cert, tls_key=settings.tls_key)


def _needs_db(settings: ClusterSettings) -> None:
    if settings.db is None:
        from soulfra.errors import ConfigError  # noqa: PLC0415

        raise ConfigError("the cluster needs a PostgreSQL database every node reaches: --db URL, or SOULFRA_DB")


@contextlib.contextmanager
def local_cluster(nodes: int) -> Iterator[str]:
    """A Ray cluster of ``nodes`` nodes on loopback (no dashboard, token authentication), stopped afterwards; its
    address. Each node's id and raylet pid are said on stderr."""
    from soulfra.cluster.ray_hosts import import_ray  # noqa: PLC0415

    import_ray()
    from ray.cluster_utils import Cluster  # noqa: PLC0415

    loopback: dict[str, Any] = {"num_cpus": 1, "node_ip_address": "127.0.0.1"}
    cluster = Cluster(initialize_head=True, head_node_args={**loopback, "include_dashboard": False})
    try:
        for _ in range(nodes - 1):
            cluster.add_node(**loopback)
        say = Console(stderr=True, highlight=False).print
        say(f"soulfra: ray cluster at {cluster.address}", markup=False)  # where a node joins (ray start --address)
        for number, node in enumerate(cluster.list_all_nodes(), 1):  # type: ignore[no-untyped-call]
            raylet = node.all_processes.get("raylet", [None])[0]
            pid = getattr(getattr(raylet, "process", None), "pid", None)
            say(f"soulfra: node {number} {node.node_id[:12]} raylet pid {pid}", markup=False)
        yield cluster.address
    finally:
        cluster.shutdown()  # type: ignore[no-untyped-call]


def join_node(address: str) -> Any:
    """A Ray node of this process's own on loopback joined to the cluster at ``address``, started as ``local_cluster``
    adds its nodes, and said on stderr; its processes end with this one. (``ray start`` cannot do it: with
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which keeps Ray's addresses on loopback, it refuses to start a node that
    joins a cluster, and without it turns 127.0.0.1 into the machine's routable address.)"""
    from soulfra.cluster.ray_hosts import import_ray  # noqa: PLC0415
    from soulfra.errors import ConfigError  # noqa: PLC0415

    token = os.environ.get("RAY_AUTH_TOKEN")
    if not token:
        raise ConfigError("joining a cluster needs its Ray token: set RAY_AUTH_TOKEN as for soulfra cluster local")
    import_ray()
    from ray._private.node import Node  # noqa: PLC0415 -- what ray.cluster_utils.Cluster.add_node starts
    from ray._private.parameter import RayParams  # noqa: PLC0415

    params = RayParams(
        gcs_address=address, node_ip_address="127.0.0.1", num_cpus=1, num_gpus=0,
        object_store_memory=150 * 1024 * 1024, min_worker_port=0, max_worker_port=0, node_manager_port=0,
    )  # fmt: skip
    params.dashboard_agent_listen_port = None  # a free one: the head node's agent has the default
    try:
        node = Node(params, head=False, shutdown_at_exit=True, spawn_reaper=True)
    except Exception as exc:  # Ray's own: the cluster is not there, or refused the token
        raise ConfigError(f"cannot join the Ray cluster at {address}: {type(exc).__name__}: {exc}") from None
    raylet = node.all_processes.get("raylet", [None])[0]
    pid = getattr(getattr(raylet, "process", None), "pid", None)
    Console(stderr=True, highlight=False).print(
        f"soulfra: node {node.node_id[:12]} raylet pid {pid} joined the cluster at {address}; Ctrl-C stops it",
        markup=False,
        soft_wrap=True,
    )
    return node


@cluster_app.command("join")
def join_command(
    address: Annotated[
        str, typer.Option("--address", help="The Ray cluster's address, as soulfra cluster local says it")
    ],
) -> None:
    """Join one more node of this machine (loopback only) to a running soulfra cluster local until SIGINT or
    SIGTERM: the cluster gives it a host, and the next worlds go to it first. Needs the cluster's RAY_AUTH_TOKEN."""
    stop = threading.Event()
    node = join_node(address)
    for sig in (signal.SIGINT, signal.SIGTERM):  # instead of Ray's, which would end this process with an error
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        node.kill_all_processes(check_alive=False, allow_graceful=True)


@cluster_app.command("local")
def local_command(
    ctx: typer.Context,
    nodes: Annotated[int, typer.Option(help="Nodes of the local Ray cluster, 1 to 16" + env("nodes"))] = 2,
    hosts_per_node: HostsPerNodeOption = 0,
    db: ServeDbOption = None,
    nats_url: NatsUrlOption = "nats://127.0.0.1:4222",
    nats_user: NatsUserOption = None,
    nats_password: NatsPasswordOption = None,
    nats_token: NatsTokenOption = None,
    nats_creds: NatsCredsOption = None,
    nats_ca: NatsCaOption = None,
    nats_cert: NatsCertOption = None,
    nats_key: NatsKeyOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    insecure_http: InsecureHttpOption = False,
    seed: SeedOption = 0,
    world: WorldOption = None,
    agents: AgentsOption = 0,
    language_agents: LanguageAgentsOption = False,
    model_url: ModelUrlOption = None,
    model: ModelOption = None,
    model_in_flight: ModelInFlightOption = 8,
    model_timeout: ModelTimeoutOption = 10.0,
    model_json: ModelJsonOption = "auto",
    rate: RateOption = 2.0,
    cycle_every: CycleOption = 0,
    log_level: LogLevelOption = "info",
    log_format: LogFormatOption = "auto",
) -> None:
    """Start a Ray cluster of --nodes nodes on this machine (loopback only) with Soulfra's worlds spread over them,
    and serve the API: to try the cluster topology on one machine. Needs PostgreSQL (--db) and NATS (--nats)."""
    from soulfra.settings import ClusterSettings  # noqa: PLC0415 -- pydantic-settings loads only when a command runs

    settings = load_settings(ctx, ClusterSettings)
    _needs_db(settings)
    with local_cluster(settings.nodes) as address:
        run_cluster(settings, address)
