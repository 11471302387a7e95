"""Questions the infrastructure tests ask of a synthesized template."""

from __future__ import annotations

from collections.abc import Iterator
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


def states_of(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, including those inside a Map's ItemProcessor and a Parallel's branches."""
    for name, state in states.items():
        yield name, state
        if "ItemProcessor" in state:
            yield from states_of(state["ItemProcessor"]["States"])
        for branch in state.get("Branches", []):
            yield from states_of(branch["States"])


def tasks_of(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in states_of(definition["States"]) if s["Type"] == "Task"}


def pagemill_functions(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """pagemill's own functions (not CDK's custom-resource provider), by their source metadata."""
    return {
        k: v for k, v in of_type(resources, "AWS::Lambda::Function").items() if "pagemill:source" in v["Metadata"]
    }


def handler_of(function: dict[str, Any]) -> str | None:
    """A function's handler: its Handler, or the command of a container-image function (ExtractBatch)."""
    props = function["Properties"]
    return props.get("Handler") or props.get("ImageConfig", {}).get("Command", [None])[0]


def function_with(resources: dict[str, Any], handler: str) -> dict[str, Any]:
    matches = [r for r in of_type(resources, "AWS::Lambda::Function").values() if handler_of(r) == handler]
    assert len(matches) == 1, f"expected one function with handler {handler}, found {len(matches)}"
    return matches[0]


def actions_of(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


def object_suffixes(statement: dict[str, Any]) -> list[str]:
    """The object part of each bucket-ARN Fn::Join in a statement's Resource."""
    targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    return [t["Fn::Join"][1][-1] for t in targets if isinstance(t, dict) and "Fn::Join" in t]


def the_one(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    """The properties of the one resource of ``kind``."""
    (resource,) = of_type(resources, kind).values()
    return resource["Properties"]


def documents_machine_id(resources: dict[str, Any]) -> str:
    """The document state machine's logical id (a stack also has the reembed state machine; a
    construct's template may have one state machine of its own)."""
    machines = of_type(resources, "AWS::StepFunctions::StateMachine")
    if len(machines) > 1:
        machines = {k: v for k, v in machines.items()
                    if v.get("Metadata", {}).get("pagemill:state-machine") == "documents"}
    (machine_id,) = machines
    return machine_id
