"""A local engine's start-up, as `pagemill run one.pdf` pays it with the synthesis cached and the
database up (migrations applied): seconds from the process start to the first state entered,
broken down by phase, then the first document's own seconds (its cold starts) and the shutdown.

    python -m bench.bench_startup [--pdf FILE] [URL]

Run it twice: the first run may synthesize (node, tens of seconds) into build/bench/home.
"""

from __future__ import annotations

import time

_STARTED = time.perf_counter()
_STARTED_CPU = time.process_time()

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pagemill_tools.cli
from pagemill_tools.startup import import_engine

import_engine()  # as `pagemill run` does first
import pagemill_tools.engine.run  # noqa: F401 - what `pagemill run` imports, timed

_IMPORTED = time.perf_counter()
_IMPORTED_CPU = time.process_time()

from moto.core.models import MockAWS

from bench.bench_e2e import BUILD, document
from bench.inputs import machine
from bench.scratch_db import server
from pagemill.db.migrate import migrate
from pagemill.settings import Settings
from pagemill_tools.engine import engine as engine_module
from pagemill_tools.engine import lambda_runtime
from pagemill_tools.engine.engine import EngineOptions, LocalEngine
from pagemill_tools.scratch_db import scratch_database


class Phases:
    """Wall and CPU seconds (this process's, all its threads) per phase: on a shared machine the
    CPU figure is the steadier one."""

    def __init__(self) -> None:
        self.seconds: dict[str, tuple[float, float]] = {}

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        started, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            wall0, cpu0 = self.seconds.get(name, (0.0, 0.0))
            self.seconds[name] = (wall0 + time.perf_counter() - started, cpu0 + time.process_time() - cpu)

    def wrap(self, owner: Any, attribute: str, name: str) -> Any:
        original: Callable[..., Any] = getattr(owner, attribute)

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.timed(name):
                return original(*args, **kwargs)

        return mock.patch.object(owner, attribute, timed)


def first_state_entered(engine: LocalEngine, execution_arn: str) -> None:
    while not engine.visited_states(execution_arn):
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", default=None, help="PostgreSQL server (default: DATABASE_URL or embedded)")
    parser.add_argument("--pdf", type=Path, default=None, help="the document (default: a generated 1-page one)")
    args = parser.parse_args()
    pdf = args.pdf or document(1, 0)
    phases = Phases()
    with server(args.url or Settings.from_env().database_url) as server_url, scratch_database(server_url) as url:
        migrate(url)  # the database is up and migrated, as on every run after the first
        began = time.perf_counter()
        with phases.timed("migrations (checked, none to apply)"):
            migrate(url)
        options = EngineOptions(home=BUILD / "home", database_url=url, no_captions=True)
        patches = [
            phases.wrap(engine_module, "synthesize", "synthesis cache check"),
            phases.wrap(engine_module, "load_deployment", "template parse"),
            phases.wrap(MockAWS, "start", "moto mock start"),
            phases.wrap(engine_module.boto3, "client", "boto3 clients"),
            phases.wrap(engine_module.RunBook, "__init__", "run book"),
            phases.wrap(engine_module.ThreadedMotoServer, "start", "moto server start"),
            phases.wrap(engine_module, "ensure_test_model", "test CLIP model check"),
            phases.wrap(lambda_runtime, "_Worker", "worker pool spawn"),
            phases.wrap(engine_module.LocalContainers, "__init__", "containers"),
        ]
        for patch in patches:
            patch.start()
        with phases.timed("engine start (all)"):
            engine = LocalEngine(options).__enter__()
        for patch in patches:
            patch.stop()
        try:
            with phases.timed("upload and StartExecution"):
                run = engine.submit(pdf)
            with phases.timed("to the first state entered"):
                first_state_entered(engine, run.execution_arn)
            first_state = time.perf_counter()
            with phases.timed("first document, first state to end (cold starts)"):
                engine.wait([run], poll_seconds=0.05)
        finally:
            with phases.timed("engine shutdown"):
                engine.__exit__(None, None, None)
    print(f"\n{pdf.name}; {machine()['cpus']} CPUs, load {machine()['loadavg']}")
    print(f"  {'phase':<52}{'wall s':>8}{'CPU s':>8}")
    print(f"  {'imports (pagemill_tools.cli, engine)':<52}{_IMPORTED - _STARTED:>8.2f}{_IMPORTED_CPU - _STARTED_CPU:>8.2f}")
    for name, (wall, cpu) in phases.seconds.items():
        print(f"  {name:<52}{wall:>8.2f}{cpu:>8.2f}")
    print(f"  {'process start to the first state entered':<52}{first_state - _STARTED - (began - _IMPORTED):>7.2f} s"
          "  (imports + migrations check + engine start + submit; the scratch database's creation left out)")
    print(f"  execution status {run.status}, {run.seconds:.2f} s")


if __name__ == "__main__":
    main()
