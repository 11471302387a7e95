"""Questions the infrastructure tests ask of a synthesized template."""

from __future__ import annotations

from typing import Any


def of_type(resources: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in resources.items() if v["Type"] == kind}


def role_statements(resources: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    """Every statement of the policies attached to the role ``role_id``."""
    return [
        s
        for policy in of_type(resources, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def as_list(value: Any) -> list[Any]:
    """An IAM field that may hold one value or a list of them, as a list."""
    return value if isinstance(value, list) else [value]


class Context:
    """The ``node.try_get_context`` that PipelineConfig.from_context reads, from keyword values."""

    def __init__(self, **values: Any) -> None:
        self.values = values

    def try_get_context(self, key: str) -> Any:
        return self.values.get(key)
