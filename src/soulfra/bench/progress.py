"""The progress display of the long benchmarks: what each phase has done, its bar, and the time so far, on the
console given (stderr where ``--json`` keeps stdout to the figures), gone once the run ends."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["bench_progress"]


def bench_progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    )  # fmt: skip
