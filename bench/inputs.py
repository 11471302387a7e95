"""Measured inputs of the scale model: each benchmark records its figures under one key of
build/bench/measured.json, with the machine's load when they were taken, and
bench/scale_model.py reads them back."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

MEASURED = Path(__file__).resolve().parents[1] / "build" / "bench" / "measured.json"


def machine() -> dict[str, Any]:
    """What a reader needs to judge a figure taken on a shared machine."""
    with open("/proc/loadavg", encoding="ascii") as f:
        load = f.read().split()[:3]
    return {"cpus": os.cpu_count(), "loadavg": " ".join(load), "at": time.strftime("%Y-%m-%d %H:%M:%S")}


def peak_rss_bytes() -> int:
    """This process's own peak RSS (VmHWM). Not ru_maxrss: it survives exec, so a process started
    by one that had grown large (the engine, a PDF generator) would report that one's peak."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) * 1024


def record(key: str, values: dict[str, Any]) -> None:
    """Merge ``values`` (plus the machine's load) under ``key``, keeping other benchmarks' keys."""
    MEASURED.parent.mkdir(parents=True, exist_ok=True)
    data = load()
    data[key] = {**values, "machine": machine()}
    tmp = MEASURED.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(MEASURED)


def load() -> dict[str, Any]:
    if not MEASURED.exists():
        return {}
    return json.loads(MEASURED.read_text())
