"""The local engine's corrections to moto's Step Functions interpreter, where it differs from AWS."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.program_state import ProgramError, ProgramRunning, ProgramStopped

from pagemill_tools.engine.containers import error_unless_stopped


def environment(state: object) -> Environment:
    # Only what set_error touches: an interpreter's environment without an execution around it.
    env = Environment.__new__(Environment)
    env._state_mutex = threading.RLock()
    env._program_state = state
    env._frames = []
    env.program_state_event = threading.Event()
    return env


def test_an_error_after_the_stop_leaves_the_execution_stopped() -> None:
    # GIVEN an execution stopped (StopExecution) while a state was still running
    env = environment(ProgramStopped(stop_date=datetime.now(timezone.utc), error="Operator", cause="console"))
    # WHEN that state then fails (a Distributed Map whose children the stop ended)
    error_unless_stopped(env, {"error": "States.ExceedToleratedFailureThreshold"})
    # THEN it stays stopped: it ends ABORTED, as on AWS
    assert isinstance(env.program_state(), ProgramStopped)


def test_an_error_of_a_running_execution_is_recorded() -> None:
    env = environment(ProgramRunning())
    error_unless_stopped(env, {"error": "States.TaskFailed"})
    assert isinstance(env.program_state(), ProgramError)
