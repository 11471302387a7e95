"""The HTTP API in the template: IAM on every route, throttled and logged stage, alarms, CORS for
the console's origins only, and the API function's least privilege."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.infrastructure.queries import (
    as_list,
    documents_machine_id,
    of_type,
    role_statements,
)


def _api_role(resources: dict[str, Any]) -> str:
    (function,) = [f for f in of_type(resources, "AWS::Lambda::Function").values()
                   if f.get("Metadata", {}).get("pagemill:source") == "lambdas/api"]
    return function["Properties"]["Role"]["Fn::GetAtt"][0]


def test_every_route_needs_iam(resources: dict[str, Any]) -> None:
    routes = of_type(resources, "AWS::ApiGatewayV2::Route")
    assert routes
    assert {r["Properties"]["AuthorizationType"] for r in routes.values()} == {"AWS_IAM"}


def test_stage_throttles_and_logs_every_request(resources: dict[str, Any]) -> None:
    (stage,) = of_type(resources, "AWS::ApiGatewayV2::Stage").values()
    settings = stage["Properties"]["DefaultRouteSettings"]
    assert settings["ThrottlingRateLimit"] > 0 and settings["ThrottlingBurstLimit"] > 0
    log_format = json.loads(stage["Properties"]["AccessLogSettings"]["Format"])
    assert {"requestId", "caller", "status", "latencyMs"} <= set(log_format)


def test_alarms_on_5xx_and_latency(resources: dict[str, Any]) -> None:
    metrics = {a["Properties"].get("MetricName") for a in of_type(resources, "AWS::CloudWatch::Alarm").values()}
    assert {"5xx", "Latency"} <= metrics


def test_no_cors_unless_origins_are_given(resources: dict[str, Any], synthesize: Callable[..., Any],
                                          tmp_path: Any) -> None:
    (api,) = of_type(resources, "AWS::ApiGatewayV2::Api").values()
    assert "CorsConfiguration" not in api["Properties"]
    template = synthesize(tmp_path, api_cors_origins="https://console.example.com").to_json()
    (api,) = of_type(template["Resources"], "AWS::ApiGatewayV2::Api").values()
    assert api["Properties"]["CorsConfiguration"]["AllowOrigins"] == ["https://console.example.com"]


def test_a_wildcard_origin_is_refused(synthesize: Callable[..., Any], tmp_path: Any) -> None:
    from stacks.config import ConfigError

    with pytest.raises(ConfigError, match="api_cors_origins"):
        synthesize(tmp_path, api_cors_origins="*")


def test_api_function_least_privilege(resources: dict[str, Any]) -> None:
    statements = role_statements(resources, _api_role(resources))
    by_action: dict[str, list[Any]] = {}
    for s in statements:
        for action in as_list(s["Action"]):
            by_action.setdefault(action, []).extend(as_list(s["Resource"]))
    # Objects are put under uploads/ only.
    put = [json.dumps(r) for r in by_action["s3:PutObject"]]
    assert put and all("/uploads/*" in r for r in put)
    # Executions are stopped and redriven on this state machine only, started on it only.
    for action in ("states:StopExecution", "states:RedriveExecution"):
        (resource,) = by_action[action]
        assert ":execution:" in json.dumps(resource) and "DocumentsStateMachine" in json.dumps(resource)
    (start,) = by_action["states:StartExecution"]
    assert start == {"Ref": documents_machine_id(resources)}
    assert not any(a.startswith(("s3:Delete", "states:Delete", "states:Create")) for a in by_action)
    # The database through the proxy (its endpoint in the environment, the secret readable).
    (function,) = [f for f in of_type(resources, "AWS::Lambda::Function").values()
                   if f.get("Metadata", {}).get("pagemill:source") == "lambdas/api"]
    assert "PAGEMILL_DATABASE_HOST" in function["Properties"]["Environment"]["Variables"]
    assert "secretsmanager:GetSecretValue" in by_action


def test_api_puts_uploads_where_the_trigger_listens(resources: dict[str, Any]) -> None:
    import fnmatch

    from pagemill import keys
    from tests.infrastructure.test_functions import put_targets

    # GIVEN the key POST /documents writes (pagemill.api.service: uploads/<file name>)
    key = f"{keys.UPLOADS_PREFIX}Spring Catalog.pdf"
    # THEN the API's role may put it, and nothing outside uploads/
    patterns = put_targets(resources, "handler.api")
    assert patterns == ["/uploads/*"] and fnmatch.fnmatchcase(f"/{key}", patterns[0])
