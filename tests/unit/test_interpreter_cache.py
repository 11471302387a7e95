"""The local engine's caches over moto's Step Functions interpreter and server
(pagemill_tools.engine.interpreter_cache)."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import pytest
from moto import backends, mock_aws
from moto.stepfunctions.parser.asl.component.program.program import Program
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.credentials import StateCredentials
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser, ASLParserException

from pagemill_tools.engine import interpreter_cache
from pagemill_tools.engine.interpreter_cache import _client_for, interpreter_caches

DEFINITION = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "Result": {"n": 1}, "End": True}}})


def test_task_states_share_one_client_per_region_and_service() -> None:
    with mock_aws():
        first = _client_for("us-east-1", "lambda", StateCredentials(role_arn="arn:aws:iam::1:role/execution"))
        # THEN a second task state gets the same client, whatever role it names (moto signs every
        # client with the same fixed keys); another service or region its own
        assert _client_for("us-east-1", "lambda", StateCredentials(role_arn="arn:aws:iam::1:role/other")) is first
        assert _client_for("us-east-1", "lambda") is first
        assert _client_for("us-east-1", "s3") is not first
        assert _client_for("eu-west-1", "lambda") is not first


@contextmanager
def engine_caches(folder: Path | None) -> Iterator[None]:
    patches = [mock.patch.object(owner, name, new) for owner, name, new in interpreter_caches(folder)]
    for patch in patches:
        patch.start()
    try:
        yield
    finally:
        for patch in patches:
            patch.stop()


def test_the_engine_s_patches_reach_every_module_that_makes_clients_and_the_server_s_router() -> None:
    with engine_caches(None):
        assert lambda_eval_utils.boto_client_for is _client_for
        listed = backends.list_of_moto_modules()
        assert "s3" in listed and "stepfunctions" in listed
        assert backends.list_of_moto_modules() is listed  # listed once


def test_a_definition_parsed_once_is_read_back_by_the_next_engine_without_parsing(tmp_path: Path) -> None:
    interpreter_cache._program.cache_clear()
    with engine_caches(tmp_path):
        first, _ = AmazonStateLanguageParser.parse(DEFINITION)
    assert isinstance(first, Program)
    assert len(list(tmp_path.glob("*.pickle"))) == 1
    # WHEN a new engine (nothing kept in memory) meets the same definition
    interpreter_cache._program.cache_clear()
    with engine_caches(tmp_path), mock.patch.object(interpreter_cache, "ASLParser", side_effect=AssertionError("parsed")):
        # THEN it is read from the folder, and each execution gets components of its own
        again, _ = AmazonStateLanguageParser.parse(DEFINITION)
        also, _ = AmazonStateLanguageParser.parse(DEFINITION)
    assert isinstance(again, Program) and again is not also
    assert again.start_at.start_at_name == first.start_at.start_at_name == "Done"


def test_a_definition_moto_cannot_parse_is_refused_and_nothing_is_kept(tmp_path: Path) -> None:
    interpreter_cache._program.cache_clear()
    with engine_caches(tmp_path), pytest.raises(ASLParserException):
        AmazonStateLanguageParser.parse('{"StartAt": "Nowhere", "States": {"Nowhere": {"Type": "Wat"}}}')
    assert list(tmp_path.iterdir()) == []


def test_a_kept_definition_that_does_not_load_is_parsed_again_and_replaced(tmp_path: Path) -> None:
    interpreter_cache._program.cache_clear()
    with engine_caches(tmp_path):
        AmazonStateLanguageParser.parse(DEFINITION)
    (kept,) = tmp_path.glob("*.pickle")
    # GIVEN the kept file cut short (a full disk, say)
    kept.write_bytes(kept.read_bytes()[:100])
    interpreter_cache._program.cache_clear()
    # WHEN a new engine meets the definition THEN it runs, and the file loads again
    with engine_caches(tmp_path):
        program, _ = AmazonStateLanguageParser.parse(DEFINITION)
    assert isinstance(program, Program)
    assert isinstance(pickle.loads(kept.read_bytes()), Program)
