"""How far a long computation has got: a bar with the time left on a terminal, one plain line
a minute in a log, nothing when asked to be quiet.

Library code never prints. A function with a long loop takes ``progress``, a
:data:`Progress`: ``progress(desc, total, unit)`` opens a :class:`Task` for one stage of the
work (``total`` units long), and the loop says what it has done with ``task.update(n)``.
The default, :func:`silent`, counts nothing and costs nothing. The command line passes a
:class:`Reporter`, which shows the stages on stderr; it also estimates each stage's length
from its first second of work, so that a command can say how long it will take, and what
would be quicker, before the user has waited for it.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

from tqdm import tqdm

from .errors import VaelabError

EVERY = 60.0  # seconds between plain progress lines when stderr is not a terminal
EVERY_VARIABLE = "VAELAB_PROGRESS_EVERY"  # overrides EVERY (a test sets a fraction of a second)
LONG = 20.0  # a stage expected to last longer (or longer than `every`) announces its time
PROBE = 1.0  # seconds of work (at most `every`) the estimate of a stage's length is made from


class Task:
    """One stage of work in progress. This one is silent: the library's default."""

    def update(self, n: float = 1) -> None:
        """``n`` more units of the stage are done."""

    def close(self) -> None:
        """The stage is over (also on leaving a ``with`` block)."""

    def __enter__(self) -> Task:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# progress(desc, total, unit="it") -> Task: what a long library function takes
Progress = Callable[..., Task]


def silent(desc: str, total: float, unit: str = "it") -> Task:
    """The :data:`Progress` that shows nothing."""
    return Task()


def prefixed(progress: Progress, prefix: str) -> Progress:
    """``progress`` with every stage's name preceded by ``prefix`` (a function that runs the
    same estimator twice names the two runs apart)."""

    def opened(desc: str, total: float, unit: str = "it") -> Task:
        return progress(prefix + desc, total, unit)

    return opened


def interval() -> float:
    """Seconds between plain progress lines: ``$VAELAB_PROGRESS_EVERY``, else :data:`EVERY`."""
    text = os.environ.get(EVERY_VARIABLE, "")
    if not text:
        return EVERY
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise VaelabError(
            f"{EVERY_VARIABLE}={text!r} is not a number of seconds > 0; set it to one "
            f"(e.g. 60) or unset it"
        )
    return seconds


def duration(seconds: float) -> str:
    """A time for a person: ``"8 s"``, ``"6 min"``, ``"1.5 h"``."""
    if not math.isfinite(seconds):
        return "an unknown time"
    if seconds < 59.5:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 3570:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# announce(desc, seconds, total) -> a line to print, or None: told a stage's expected length
# in seconds and in units (seconds / total: the time per unit, to price a quicker option)
Announce = Callable[[str, float, float], "str | None"]


class Reporter:
    """The command line's :data:`Progress`.

    On a terminal each stage is a tqdm bar with the time left (as the training loop's, on
    stderr); elsewhere (a log file, a pipe) one plain line every ``every`` seconds, and one
    when a stage that printed any ends; nothing at all when not ``enabled`` (``--quiet``, or
    a process other than rank 0 of a torchrun launch).

    Once a stage has worked for ``min(PROBE, every)`` seconds, its length is estimated from
    its rate so far: elapsed * total / done. If that is longer than ``min(LONG, every)``
    seconds, ``announce(desc, seconds, total)`` is asked for a line (the expected time and a
    quicker option, say) and the line is printed once, before the stage goes on.
    """

    def __init__(
        self,
        enabled: bool = True,
        every: float = EVERY,
        announce: Announce | None = None,
        file: TextIO | None = None,
    ):
        self.enabled, self.every, self.announce, self.file = enabled, every, announce, file

    def __call__(self, desc: str, total: float, unit: str = "it") -> Task:
        if not self.enabled:
            return Task()
        file = self.file or sys.stderr  # looked up now: tests and pytest swap sys.stderr
        isatty = getattr(file, "isatty", None)
        shown = _Bar if isatty is not None and isatty() else _Lines
        return shown(self, desc, total, unit, file)


class _Shown(Task):
    """What the bar and the plain lines share: the count, the clock, the announcement."""

    def __init__(self, reporter: Reporter, desc: str, total: float, unit: str, file: TextIO):
        self.reporter, self.desc, self.total, self.unit, self.file = (
            reporter, desc, total, unit, file
        )  # fmt: skip
        self.done = 0.0
        self.start = time.perf_counter()
        self.announced = reporter.announce is None

    def update(self, n: float = 1) -> None:
        self.done += n
        if self.announced:
            return
        elapsed = time.perf_counter() - self.start
        if elapsed < min(PROBE, self.reporter.every) or self.done <= 0:
            return
        self.announced = True
        expected = elapsed * self.total / self.done
        if expected > min(LONG, self.reporter.every) and self.done < self.total:
            line = self.reporter.announce(self.desc, expected, self.total)
            if line:
                self.write(line)

    def write(self, line: str) -> None:
        print(line, file=self.file, flush=True)


class _Bar(_Shown):
    """A tqdm bar on a terminal: done / total, elapsed < left, the rate."""

    def __init__(self, *args):
        super().__init__(*args)
        self.bar = tqdm(
            total=self.total, desc=self.desc, unit=self.unit, unit_scale=True,
            file=self.file, dynamic_ncols=True,
        )  # fmt: skip

    def update(self, n: float = 1) -> None:
        super().update(n)
        self.bar.update(n)

    def write(self, line: str) -> None:
        self.bar.write(line, file=self.file)  # above the bar, which is drawn again below

    def close(self) -> None:
        self.bar.close()


class _Lines(_Shown):
    """Plain lines for a log: one every ``every`` seconds, with the time so far and left."""

    def __init__(self, *args):
        super().__init__(*args)
        self.last = self.start
        self.printed = False

    def update(self, n: float = 1) -> None:
        super().update(n)
        now = time.perf_counter()
        if now - self.last < self.reporter.every:
            return
        self.last = now
        elapsed = now - self.start
        left = elapsed * (self.total - self.done) / self.done if self.done > 0 else math.inf
        share = 100 * self.done / self.total if self.total else 100.0
        self.write(
            f"{self.desc}: {_count(self.done)} of {_count(self.total)} {self.unit} "
            f"({share:.0f}%), "
            f"{duration(elapsed)} so far, about {duration(left)} left"
        )
        self.printed = True

    def close(self) -> None:
        if self.printed:  # a stage that showed life in the log says when it ended
            elapsed = time.perf_counter() - self.start
            self.write(f"{self.desc}: done in {duration(elapsed)}")
            self.printed = False


def _count(n: float) -> str:
    """``"4,096"``, ``"2.5M"``: a count of units for a log line."""
    return f"{n:,.0f}" if n < 1e6 else f"{n / 1e6:,.1f}M"
