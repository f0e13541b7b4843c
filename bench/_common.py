"""What every benchmark script shares: the machine header and writing the results."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path


def loadavg() -> float:
    """The 1-minute load average, rounded as the result files keep it."""
    return round(os.getloadavg()[0], 2)


def machine_info(**extra) -> dict:
    """The head of every ``bench/results/*.json``: ``{"machine": {...}, "started": ...}``.

    ``machine`` holds the platform, CPU count and Python version, then ``extra``
    (library versions, load averages) in the order given; ``started`` is the
    UTC time of the call.
    """
    return {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            **extra,
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_results(results: dict, table: str, out: str | Path) -> None:
    """Print ``table``, write ``results`` as JSON to ``out`` and say where."""
    print(table)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")


def bar_lines(bars: list[tuple[str, bool, str]]) -> list[str]:
    """The table's closing "Bars:" block: one ``[PASS]``/``[FAIL]`` line per bar."""
    return ["Bars:", *(f"  [{'PASS' if ok else 'FAIL'}] {name}: {text}" for name, ok, text in bars)]
