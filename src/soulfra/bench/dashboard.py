"""``soulfra bench dashboard``: the world page measured in a real browser against a real ``soulfra up``.

Starts ``soulfra up`` on a free loopback port (its own data and home in a temporary directory), drives Debian's
Chromium (``/usr/bin/chromium``) headless through playwright, and prints each figure with its target and
verdict: first meaningful render of the world page at 1,000 agents, page weight of that first load (bytes on the
wire, compressed), tick-to-screen latency (each feed entry's ``data-at``, the runtime's wall clock when its tick was
done, against the browser's clock when the entry entered the DOM: one machine, one clock), and the frame time p95
with 10,000 agents on the canvas while the world ticks. Writes ``benchmarks/dashboard.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer

from soulfra.bench.load import free_port, percentile
from soulfra.errors import ConfigError, OutputError

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

__all__ = ["bench_dashboard", "dashboard_command"]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
BUILTIN_AGENTS = 3
READY_S = 120.0
TARGET_RENDER_MS = 1000.0
TARGET_LATENCY_P95_MS = 500.0
TARGET_FRAME_P95_MS = 33.0
TARGET_WEIGHT_KB = 300.0
POLL_S = 0.01


@dataclass
class _Server:
    proc: subprocess.Popen[bytes]
    url: str
    token: str


@contextlib.contextmanager
def _soulfra_up(root: Path, agents: int, rate: float) -> Iterator[_Server]:
    """``soulfra up`` with ``agents`` agents in the default world, ticking ``rate`` times a second; stopped after."""
    port = free_port()
    home = root / "home"
    env = {k: v for k, v in os.environ.items() if k != "SOULFRA_URL"} | {"SOULFRA_HOME": str(home)}
    command = [
        sys.executable, "-m", "soulfra", "up", "--host", "127.0.0.1", "--port", str(port), "--data",
        str(root / "data"), "--rate", str(rate), "--agents", str(max(0, agents - BUILTIN_AGENTS)),
    ]  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    log = (root / "server.log").open("ab")
    proc = subprocess.Popen(command, stdout=log, stderr=log, env=env)  # noqa: S603 -- our own command
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_S
        with httpx.Client(base_url=url, timeout=2.0) as client:
            while True:
                if proc.poll() is not None:
                    raise ConfigError(f"soulfra up exited with {proc.returncode}: {_tail(root / 'server.log')}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/readyz").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise ConfigError(f"soulfra up was not ready within {READY_S:g} s")
                time.sleep(0.1)
        yield _Server(proc=proc, url=url, token=(home / "token").read_text().strip())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _tail(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else "(no output)"


def _until(page: Page, condition: str, timeout: float = 30.0) -> None:
    """Wait until the JS expression holds (polled with ``evaluate``: the page's CSP forbids playwright's eval)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(condition):
        if time.monotonic() > deadline:
            raise ConfigError(f"the world page did not reach {condition!r} within {timeout:g} s")
        time.sleep(POLL_S)


def _signed_in(browser: Browser, server: _Server) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(server.url + "/")
    page.fill("#token", server.token)
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#instance-table", timeout=30_000)
    page.close()
    return context


def _drawn(agents: int) -> str:
    return f"document.getElementById('agent-count')?.textContent === '{agents}'"


def _first_load(browser: Browser, server: _Server, agents: int) -> dict[str, Any]:
    """One first load of the world page in a fresh signed-in context (nothing cached): the ms from navigation start
    to the agents shown (polled every 10 ms); the bytes moved by the requests made until then (``transferSize``:
    headers and compressed body; the page's next refresh and the live stream, which never ends, are left out); and
    when each resource arrived (to see where the time went)."""
    context = _signed_in(browser, server)
    page = context.new_page()
    page.goto(server.url + "/worlds/world-0", wait_until="commit")
    _until(page, _drawn(agents))
    render_ms = float(page.evaluate("performance.now()"))
    time.sleep(0.5)  # the responses of requests made before the render, if any are still arriving
    entries = page.evaluate(
        """(until) => [performance.getEntriesByType('navigation')[0], ...performance.getEntriesByType('resource')]
            .filter((e) => e.startTime <= until)
            .map((e) => [e.name.replace(location.origin, ''), Math.round(e.startTime), Math.round(e.responseEnd),
                         e.transferSize])""",
        render_ms,
    )
    context.close()
    return {
        "render_ms": render_ms,
        "bytes": sum(int(size) for *_, size in entries),
        "requests": len(entries),
        "timeline": [entry[:3] for entry in entries],
    }


def _latencies(browser: Browser, server: _Server, agents: int, seconds: float, rates: list[float]) -> list[float]:
    """Each feed entry's tick-to-screen latency, in ms, over ``seconds`` of a live page; the ticks a second the page
    saw go to ``rates``."""
    context = _signed_in(browser, server)
    page = context.new_page()
    page.goto(server.url + "/worlds/world-0")
    _until(page, _drawn(agents))
    _until(page, "document.getElementById('stream-state')?.textContent === 'live'")
    page.evaluate(
        """() => {
            window.__lags = [];
            new MutationObserver((records) => {
                const now = Date.now();
                for (const record of records)
                    for (const node of record.addedNodes)
                        if (node.dataset && node.dataset.at) window.__lags.push(now - Number(node.dataset.at));
            }).observe(document.getElementById('feed'), { childList: true });
        }"""
    )
    first = _tick(page)
    time.sleep(seconds)
    lags = [float(x) for x in page.evaluate("window.__lags")]
    rates.append((_tick(page) - first) / seconds)
    context.close()
    return lags


def _frames(
    browser: Browser, server: _Server, agents: int, seconds: float, shot: Path | None, rates: list[float]
) -> list[float]:
    """The time between animation frames, in ms, over ``seconds`` of a live page with ``agents`` on the canvas
    (and a screenshot of it in ``shot``, when given); the ticks a second the page saw go to ``rates``."""
    context = _signed_in(browser, server)
    page = context.new_page()
    page.goto(server.url + "/worlds/world-0")
    _until(page, _drawn(agents), timeout=60.0)
    time.sleep(1.0)
    page.evaluate(
        """() => {
            window.__frames = [];
            let last = performance.now();
            const step = (now) => { window.__frames.push(now - last); last = now; requestAnimationFrame(step); };
            requestAnimationFrame(step);
        }"""
    )
    first = _tick(page)
    time.sleep(seconds)
    frames = [float(x) for x in page.evaluate("window.__frames")]
    rates.append((_tick(page) - first) / seconds)
    if shot is not None:
        page.screenshot(path=str(shot), full_page=True)
    context.close()
    return frames


def _tick(page: Page) -> int:
    text = str(page.evaluate("document.getElementById('tick')?.textContent ?? ''"))
    return int(text) if text.isdigit() else 0


def _figure(name: str, value: float, unit: str, target: str, met: bool, **more: Any) -> dict[str, Any]:
    return {"figure": name, "value": round(value, 1), "unit": unit, "target": target, "met": met, **more}


def _measure(
    sync_playwright: Any, agents: int, canvas_agents: int, rate: float, seconds: float, loads: int, shots: Path | None
) -> list[dict[str, Any]]:
    figures: list[dict[str, Any]] = []
    with sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="soulfra-bench-dash-") as tmp:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            with _soulfra_up(Path(tmp) / "a", agents, rate) as server:
                _first_load(browser, server, agents)  # warm the server's caches and the browser's process
                runs = [_first_load(browser, server, agents) for _ in range(loads)]
                renders = [r["render_ms"] for r in runs]
                weights = [r["bytes"] / 1024 for r in runs]
                slowest = max(runs, key=lambda r: float(r["render_ms"]))
                figures.append(
                    _figure(
                        f"first meaningful render, {agents:,} agents", statistics.median(renders),
                        f"ms (median of {loads} cold loads)", "<= 1000 ms",
                        statistics.median(renders) <= TARGET_RENDER_MS, loads=[round(r, 1) for r in renders],
                        worst=round(max(renders), 1),
                        slowest_timeline_ms=[[name, start, end] for name, start, end in slowest["timeline"]],
                    )
                )  # fmt: skip
                figures.append(
                    _figure(
                        f"page weight, first load, {agents:,} agents", max(weights), "KB on the wire", "<= 300 KB",
                        max(weights) <= TARGET_WEIGHT_KB, requests=runs[0]["requests"],
                    )
                )  # fmt: skip
                rates: list[float] = []
                lags = _latencies(browser, server, agents, seconds, rates)
                if lags:
                    p95 = percentile(sorted(lags), 0.95)
                    figures.append(
                        _figure(
                            "tick-to-screen latency p95", p95, "ms", "<= 500 ms", p95 <= TARGET_LATENCY_P95_MS,
                            events=len(lags), p50=round(percentile(sorted(lags), 0.5), 1), max=round(max(lags), 1),
                            ticks_per_s=round(rates[0], 1),
                        )
                    )  # fmt: skip
            with _soulfra_up(Path(tmp) / "b", canvas_agents, rate) as server:
                shot = None if shots is None else shots / f"world-{canvas_agents}.png"
                seen: list[float] = []
                frames = _frames(browser, server, canvas_agents, seconds, shot, seen)
                p95 = percentile(sorted(frames), 0.95)
                figures.append(
                    _figure(
                        f"frame time p95, {canvas_agents:,} agents, live", p95, "ms", "< 33 ms",
                        p95 < TARGET_FRAME_P95_MS, frames=len(frames), p50=round(percentile(sorted(frames), 0.5), 1),
                        max=round(max(frames), 1), ticks_per_s=round(seen[0], 1),
                    )
                )  # fmt: skip
        finally:
            browser.close()
    return figures


def bench_dashboard(
    *, agents: int, canvas_agents: int, rate: float, seconds: float, loads: int, out: Path, shots: Path | None = None
) -> dict[str, Any]:
    if not CHROMIUM.exists():
        raise ConfigError(f"`soulfra bench dashboard` needs Debian's Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415 -- only this benchmark drives a browser
    except ImportError:
        raise ConfigError("`soulfra bench dashboard` needs playwright (pip install 'soulfra[dev]')") from None
    from playwright.sync_api import Error as BrowserError  # noqa: PLC0415

    try:
        figures = _measure(sync_playwright, agents, canvas_agents, rate, seconds, loads, shots)
    except BrowserError as exc:  # one line, as every CLI error: the browser's own message names what went wrong
        raise ConfigError(f"the browser run failed: {str(exc).splitlines()[0]}") from None
    results = {
        "benchmark": "dashboard",
        "rate": rate,
        "seconds": seconds,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "system": platform.platform(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "chromium": str(CHROMIUM),
        "figures": figures,
    }
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror}") from None
    return results


def dashboard_command(
    agents: Annotated[int, typer.Option(min=BUILTIN_AGENTS, help="Agents for the load, weight and latency.")] = 1000,
    canvas_agents: Annotated[int, typer.Option(min=BUILTIN_AGENTS, help="Agents for the frame time.")] = 10_000,
    rate: Annotated[float, typer.Option(min=0.1, help="Ticks a second while measured.")] = 10.0,
    seconds: Annotated[float, typer.Option(min=1.0, help="Seconds of latency and frame samples.")] = 10.0,
    loads: Annotated[int, typer.Option(min=1, help="First loads measured (after one warm-up load).")] = 5,
    out: Annotated[Path, typer.Option(help="Where to write the JSON results.")] = Path("benchmarks/dashboard.json"),
    shots: Annotated[
        Path | None, typer.Option(help="Keep a screenshot of the world page at the canvas figure's size here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of lines.")] = False,
) -> None:
    """The world page in Chromium: first render, page weight, tick-to-screen latency, frame time at 10,000 agents."""
    results = bench_dashboard(
        agents=agents, canvas_agents=canvas_agents, rate=rate, seconds=seconds, loads=loads, out=out, shots=shots
    )
    if as_json:
        typer.echo(json.dumps(results))
        return
    for figure in results["figures"]:
        verdict = "met" if figure["met"] else "NOT MET"
        keys = ("worst", "p50", "max", "ticks_per_s")
        spread = "".join(f", {key.replace('_', ' ')} {figure[key]}" for key in keys if key in figure)
        typer.echo(
            f"{figure['figure']}: {figure['value']} {figure['unit']}{spread} (target {figure['target']}): {verdict}"
        )
    load = results["machine"]["load_average"]
    typer.echo(f"written to {out} (load average {load[0]} on {results['machine']['cpus']} CPUs: wall-clock figures)")
