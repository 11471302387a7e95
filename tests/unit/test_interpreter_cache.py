"""The local engine's caches over moto's Step Functions interpreter and server
(pagemill_tools.engine.interpreter_cache)."""

from __future__ import annotations

from unittest import mock

from moto import backends, mock_aws
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

from pagemill_tools.engine.interpreter_cache import INTERPRETER_CACHES, _client_for


def test_task_states_share_one_client_per_region_and_service() -> None:
    with mock_aws():
        first = _client_for("us-east-1", "lambda")
        # THEN a second task state gets the same client; another service or region its own; a
        # state with credentials of its own a new one
        assert _client_for("us-east-1", "lambda") is first
        assert _client_for("us-east-1", "s3") is not first
        assert _client_for("eu-west-1", "lambda") is not first
        assert _client_for("us-east-1", "lambda", {"RoleArn": "arn:aws:iam::1:role/r"}) is not first


def test_the_engine_s_patches_reach_every_module_that_makes_clients_and_the_server_s_router() -> None:
    patches = [mock.patch.object(owner, name, new) for owner, name, new in INTERPRETER_CACHES]
    for patch in patches:
        patch.start()
    try:
        assert lambda_eval_utils.boto_client_for is _client_for
        listed = backends.list_of_moto_modules()
        assert "s3" in listed and "stepfunctions" in listed
        assert backends.list_of_moto_modules() is listed  # listed once
    finally:
        for patch in patches:
            patch.stop()
