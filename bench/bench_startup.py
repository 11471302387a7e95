"""A local engine's start-up, as `pagemill run one.pdf` pays it with the synthesis cached and the
database up (migrations applied): seconds from the process start to the first state entered,
broken down by phase, then the first document's own seconds (its cold starts) and the shutdown.

    python -m bench.bench_startup [--pdf FILE] [URL]

Run it twice: the first run may synthesize (node, tens of seconds) into build/bench/home.
"""

from __future__ import annotations

import time

_STARTED = time.perf_counter()

import argparse  # noqa: E402 - the clock starts before the imports it measures
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402
from unittest import mock  # noqa: E402

import pagemill_tools.cli  # noqa: E402,F401 - what `pagemill run` imports first
import pagemill_tools.engine.run  # noqa: E402,F401

_IMPORTED = time.perf_counter()

from bench.bench_e2e import BUILD, document  # noqa: E402
from bench.inputs import machine  # noqa: E402
from bench.scratch_db import server  # noqa: E402
from pagemill.db.migrate import migrate  # noqa: E402
from pagemill.settings import Settings  # noqa: E402
from pagemill_tools.engine import engine as engine_module  # noqa: E402
from pagemill_tools.engine import lambda_runtime  # noqa: E402
from pagemill_tools.engine.engine import EngineOptions, LocalEngine  # noqa: E402
from pagemill_tools.scratch_db import scratch_database  # noqa: E402


class Phases:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

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
            phases.wrap(engine_module, "mock_aws", "moto set-up"),
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
    print(f"  {'imports (pagemill_tools.cli, engine)':<52}{_IMPORTED - _STARTED:>7.2f} s")
    for name, seconds in phases.seconds.items():
        print(f"  {name:<52}{seconds:>7.2f} s")
    print(f"  {'process start to the first state entered':<52}{first_state - _STARTED - (began - _IMPORTED):>7.2f} s"
          "  (imports + migrations check + engine start + submit; the scratch database's creation left out)")
    print(f"  execution status {run.status}, {run.seconds:.2f} s")


if __name__ == "__main__":
    main()
