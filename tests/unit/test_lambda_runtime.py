"""The local Lambda runtime enforces what Lambda enforces, with Lambda's error types."""

from __future__ import annotations

import json
import threading
import time
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pagemill_tools.engine.lambda_runtime import FunctionSpec, LambdaRuntime

HANDLER = textwrap.dedent(
    """
    import os, time

    class Refused(Exception):
        pass

    def echo(event, context):
        return {"event": event, "name": context.function_name, "memory": context.memory_limit_in_mb,
                "setting": os.environ.get("SETTING"), "base": os.environ.get("BASE")}

    def fail(event, context):
        raise Refused("the input is bad")

    def sleep(event, context):
        time.sleep(event["seconds"])
        return "woke"

    def hog(event, context):
        blocks = []
        while True:
            blocks.append(bytearray(50 * 1024 * 1024))
            time.sleep(0.01)

    def die(event, context):
        os.kill(os.getpid(), 9)
    """
)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[LambdaRuntime]:
    (tmp_path / "handler.py").write_text(HANDLER)

    def spec(name: str, handler: str, timeout: float = 10, memory: int = 1024, env: dict | None = None,
             map_item: bool = False) -> FunctionSpec:
        return FunctionSpec(name=name, source_dir=tmp_path, handler=handler, timeout_s=timeout, memory_mb=memory,
                            environment=env or {}, map_item=map_item)

    functions = {
        "Echo": spec("Echo", "handler.echo", env={"SETTING": "on"}),
        "Fail": spec("Fail", "handler.fail"),
        "Sleep": spec("Sleep", "handler.sleep", timeout=1),
        "Late": spec("Late", "handler.sleep", timeout=0.01),
        "Hog": spec("Hog", "handler.hog", memory=300),
        "Die": spec("Die", "handler.die"),
        "Batch": spec("Batch", "handler.sleep", map_item=True),
    }
    rt = LambdaRuntime(functions, workers=1, base_env={"BASE": "yes"})
    yield rt
    rt.close()


def test_returns_the_handler_result_with_context_and_environment(runtime: LambdaRuntime) -> None:
    result = runtime.invoke("arn:aws:lambda:us-east-1:123456789012:function:Echo", b'{"a": 1}')
    assert result.function_error is None
    assert json.loads(result.payload) == {"event": {"a": 1}, "name": "Echo", "memory": 1024, "setting": "on", "base": "yes"}


def test_an_exception_is_reported_with_its_class_as_error_type(runtime: LambdaRuntime) -> None:
    result = runtime.invoke("Fail", b"{}")
    assert result.function_error == "Unhandled"
    body = json.loads(result.payload)
    assert body["errorType"] == "Refused" and body["errorMessage"] == "the input is bad"


def test_a_function_past_its_timeout_is_killed_and_the_pool_recovers(runtime: LambdaRuntime) -> None:
    pid = runtime.worker_pids()[0]
    result = runtime.invoke("Sleep", b'{"seconds": 30}')
    assert result.error_type == "Sandbox.Timedout"
    assert result.seconds < 30  # killed, not left to finish its sleep
    assert runtime.worker_pids() != [pid]
    assert json.loads(runtime.invoke("Sleep", b'{"seconds": 0}').payload) == "woke"


def test_a_result_after_the_timeout_is_a_timeout_even_between_two_looks(runtime: LambdaRuntime) -> None:
    # GIVEN a function that finishes after its timeout, sooner than the runtime looks at its clock
    # WHEN it is invoked THEN its late result is Lambda's timeout, not a success
    result = runtime.invoke("Late", b'{"seconds": 0.03}')
    assert result.error_type == "Sandbox.Timedout"
    assert json.loads(runtime.invoke("Sleep", b'{"seconds": 0}').payload) == "woke"


def test_a_function_over_its_memory_size_is_killed(runtime: LambdaRuntime) -> None:
    result = runtime.invoke("Hog", b"{}")
    assert result.error_type == "Runtime.OutOfMemory"
    assert runtime.invoke("Echo", b"{}").function_error is None


def test_a_crashed_worker_is_an_exit_error_and_is_replaced(runtime: LambdaRuntime) -> None:
    result = runtime.invoke("Die", b"{}")
    assert result.error_type == "Runtime.ExitError"
    assert "signal: kill" in json.loads(result.payload)["errorMessage"]
    assert runtime.invoke("Echo", b"{}").function_error is None


def test_function_environment_does_not_leak_into_other_functions(runtime: LambdaRuntime) -> None:
    runtime.invoke("Echo", b"{}")
    assert json.loads(runtime.invoke("Echo", b"{}").payload)["setting"] == "on"
    other = FunctionSpec(name="Echo2", source_dir=runtime.functions["Echo"].source_dir, handler="handler.echo",
                         timeout_s=5, memory_mb=512)
    runtime.functions["Echo2"] = other
    assert json.loads(runtime.invoke("Echo2", b"{}").payload)["setting"] is None


def test_a_shared_variable_a_function_overrides_comes_back_for_the_next(runtime: LambdaRuntime) -> None:
    # GIVEN a function whose own environment shadows the shared BASE
    shadowing = FunctionSpec(name="Shadow", source_dir=runtime.functions["Echo"].source_dir, handler="handler.echo",
                             timeout_s=5, memory_mb=512, environment={"BASE": "mine"})
    runtime.functions["Shadow"] = shadowing
    # WHEN it runs on the (single) worker, then another function does
    assert json.loads(runtime.invoke("Shadow", b"{}").payload)["base"] == "mine"
    # THEN the other function sees the shared value again
    assert json.loads(runtime.invoke("Echo", b"{}").payload)["base"] == "yes"


def test_closing_while_an_invocation_runs_ends_it_with_an_exit_error(runtime: LambdaRuntime) -> None:
    # GIVEN an invocation in flight on the only worker
    results: list = []
    caller = threading.Thread(target=lambda: results.append(runtime.invoke("Sleep", b'{"seconds": 0.9}')))
    caller.start()
    time.sleep(0.3)
    # WHEN the runtime closes (Ctrl-C), while the caller may be replacing the dead worker too
    runtime.close()
    caller.join(timeout=10)
    # THEN the invocation ends as a worker exit and closing raised nothing
    assert [r.error_type for r in results] in (["Runtime.ExitError"], [None])
    assert runtime.worker_pids() == []


def test_a_waiting_one_off_state_goes_before_waiting_map_items(runtime: LambdaRuntime) -> None:
    # GIVEN the only worker busy with a page batch, and another batch already waiting for it
    done: list[str] = []

    def call(name: str, payload: bytes) -> threading.Thread:
        thread = threading.Thread(target=lambda: (runtime.invoke(name, payload), done.append(name)))
        thread.start()
        return thread

    callers = [call("Batch", b'{"seconds": 1.0}')]
    time.sleep(0.3)
    callers.append(call("Batch", b'{"seconds": 0.1}'))
    time.sleep(0.3)
    # WHEN a one-off state (another document's Write, say) is invoked after them
    callers.append(call("Echo", b"{}"))
    for caller in callers:
        caller.join(timeout=30)
    # THEN it runs as soon as the worker is free, before the batch that waited longer
    assert done == ["Batch", "Echo", "Batch"]


def test_loading_the_function_s_module_does_not_count_against_its_timeout(tmp_path: Path) -> None:
    # GIVEN a function whose module takes longer to load than its 1 s timeout (a cold start)
    source = tmp_path / "slow"
    source.mkdir()
    (source / "handler.py").write_text("import time\ntime.sleep(1.5)\n\ndef quick(event, context):\n    return 'done'\n")
    spec = FunctionSpec(name="Slow", source_dir=source, handler="handler.quick", timeout_s=1, memory_mb=1024)
    rt = LambdaRuntime({"Slow": spec}, workers=1, base_env={})
    try:
        # WHEN it is invoked
        result = rt.invoke("Slow", b"{}")
    finally:
        rt.close()
    # THEN, as on Lambda, the init phase has its own allowance and the handler's second is its own
    assert result.function_error is None and json.loads(result.payload) == "done"
