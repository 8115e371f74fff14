"""A byte-count progress bar on stderr, shown only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType


class ProgressBar:
    def __init__(self, total: int, label: str) -> None:
        self.total = max(total, 1)
        self.label = label
        self.done = 0
        self.enabled = sys.stderr.isatty()
        self._start = time.monotonic()
        self._last = 0.0

    def __enter__(self) -> Callable[[int], None] | None:
        return self.advance if self.enabled else None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.enabled:
            self._render(final=True)
            sys.stderr.write("\n")
            sys.stderr.flush()

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= 0.1:
            self._last = now
            self._render()

    def _render(self, final: bool = False) -> None:
        fraction = min(self.done / self.total, 1.0)
        width = 30
        filled = int(width * fraction)
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = self.done / elapsed / 1e9
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(f"\r{self.label} [{bar}] {fraction:6.1%} {rate:5.2f} GB/s")
        sys.stderr.flush()


def total_size(path: str) -> int:
    import os

    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total
