"""``python benchmarks/peak.py ARGS``: run ``vaelab ARGS``, then report the process's own
peak resident memory, for benchmarks and tests that measure memory.

The child prints ``peak-kib N`` (VmHWM of its own address space) as the last line of its
stderr. A parent cannot take ru_maxrss from wait4 instead: it would start at the parent's
own peak, since subprocess spawns with vfork and exec inherits the mark.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from vaelab.cli import main as vaelab


def peak_kib() -> int:
    """This process's peak resident set size in KiB (Linux's VmHWM)."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1))


def run(args: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    """``vaelab ARGS`` in a child process: ``(its peak RSS in GiB, the completed process)``
    (``nan`` when it did not report, e.g. it was killed). Output is captured as text."""
    result = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, **kwargs
    )
    lines = [line for line in result.stderr.splitlines() if line.startswith("peak-kib ")]
    return (int(lines[-1].split()[1]) / 2**20 if lines else float("nan")), result


def main(argv: list[str]) -> int:
    code = vaelab(argv)
    print(f"peak-kib {peak_kib()}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
