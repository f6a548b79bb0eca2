"""Progress bars on stderr for the long local commands (writing, reading or downloading a package; replaying a
history: ``verify``, ``import``, ``package edit``): drawn only when stderr is a terminal, one at a time, a command's
next phase ending the bar of the one before. Rich loads only when a bar is drawn."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["Bars", "bars"]

Update = Callable[[int, int], None]  # (done, total); a total of 0 is not known yet


class Bars:
    """The bars of one command: each phase's callback draws its bar from its first call on."""

    def __init__(self, *, enabled: bool = True) -> None:
        self._console = Console(stderr=True)
        self.enabled = enabled and self._console.is_terminal
        self._shown: Progress | None = None

    def bytes(self, label: str) -> Update:
        """A bar of bytes (written, read, downloaded), with the speed."""
        from rich.progress import DownloadColumn, TransferSpeedColumn  # noqa: PLC0415

        return self._phase(label, lambda: (DownloadColumn(), TransferSpeedColumn()))

    def ticks(self, label: str = "replaying") -> Update:
        """A bar of ticks (replayed), with the time left."""
        from rich.progress import MofNCompleteColumn, TimeRemainingColumn  # noqa: PLC0415

        return self._phase(label, lambda: (MofNCompleteColumn(), TimeRemainingColumn()))

    def close(self) -> None:
        if self._shown is not None:
            self._shown.stop()
            self._shown = None

    def _phase(self, label: str, columns: Callable[[], tuple[Any, ...]]) -> Update:
        if not self.enabled:
            return _ignored
        from rich.progress import BarColumn, Progress, TaskID, TextColumn  # noqa: PLC0415

        drawn: list[tuple[Progress, TaskID]] = []

        def update(done: int, total: int) -> None:
            if not drawn:
                self.close()
                progress = Progress(TextColumn(label), BarColumn(), *columns(), console=self._console, transient=True)
                progress.start()
                self._shown = progress
                drawn.append((progress, progress.add_task(label, total=None)))
            progress, task = drawn[0]
            progress.update(task, completed=done, total=total or None)

        return update


def _ignored(done: int, total: int) -> None:
    del done, total


@contextlib.contextmanager
def bars(*, enabled: bool = True) -> Iterator[Bars]:
    """The bars of a command (none when ``enabled`` is false or stderr is no terminal), all gone when it ends."""
    shown = Bars(enabled=enabled)
    try:
        yield shown
    finally:
        shown.close()
