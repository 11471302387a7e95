"""Turn the synthesized CloudFormation template into what the local engine deploys: the state
machine definition exactly as synthesized with its ``Ref``/``Fn::GetAtt`` tokens resolved to local
names, and the Lambda functions with their handler, timeout, memory and environment (zip and
container-image functions alike run from their handler folder)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pagemill_tools.engine.lambda_runtime import FunctionSpec, function_name

REGION = "us-east-1"
ACCOUNT = "123456789012"

_PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::NoValue": None,
}


class TemplateError(Exception):
    """The template does not have the shape the local engine needs."""


@dataclass(frozen=True)
class ContainerSpec:
    """An ECS task definition the local engine runs as a process: its entrypoint script is
    ``worker.py`` in the source folder the stack names (metadata ``pagemill:source``)."""

    name: str
    source_dir: Path
    environment: dict[str, str]


@dataclass(frozen=True)
class ExecutionRule:
    """An EventBridge rule on this state machine's "Execution Status Change" events with a Lambda
    target: the local engine delivers the event to ``function`` when an execution ends with one of
    ``statuses``, as EventBridge would (Settle's rule)."""

    statuses: frozenset[str]
    function: str


@dataclass(frozen=True)
class StateMachineSpec:
    name: str
    definition: dict[str, Any]
    role_arn: str


@dataclass(frozen=True)
class LocalDeployment:
    stack_name: str
    definition: dict[str, Any]
    state_machine_name: str
    role_arn: str
    bucket_name: str
    functions: dict[str, FunctionSpec]
    containers: dict[str, ContainerSpec]
    # DynamoDB tables: name → partition key attribute (string keys; the only kind the stack makes).
    tables: dict[str, str]
    execution_rules: tuple[ExecutionRule, ...] = ()
    # `pagemill reembed --aws`'s state machine (None: chunk embeddings are off).
    reembed: StateMachineSpec | None = None


class _Resolver:
    def __init__(self, template: dict[str, Any], stack_name: str) -> None:
        self.resources: dict[str, Any] = template.get("Resources", {})
        self.parameters: dict[str, Any] = template.get("Parameters", {})
        self.stack_name = stack_name

    def physical_name(self, logical_id: str) -> str:
        kind = self._type(logical_id)
        if kind == "AWS::S3::Bucket":
            return f"pagemill-local-{logical_id.lower()}"[:63]
        if kind == "AWS::StepFunctions::StateMachine":
            return self.arn(logical_id)  # Ref of a state machine is its ARN
        if kind in ("AWS::SQS::Queue",):
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{logical_id}"
        if kind in ("AWS::SNS::Topic",):
            return self.arn(logical_id)
        return logical_id

    def arn(self, logical_id: str) -> str:
        kind = self._type(logical_id)
        if kind == "AWS::Lambda::Function":
            return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical_id}"
        if kind == "AWS::StepFunctions::StateMachine":
            return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{logical_id}"
        if kind == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{self.physical_name(logical_id)}"
        if kind == "AWS::IAM::Role":
            return f"arn:aws:iam::{ACCOUNT}:role/{logical_id}"
        service = kind.split("::")[1].lower() if kind.count("::") == 2 else "local"
        return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{logical_id}"

    def _type(self, logical_id: str) -> str:
        try:
            return self.resources[logical_id]["Type"]
        except KeyError:
            raise TemplateError(f"the template has no resource {logical_id!r}") from None

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref":
                if arg in _PSEUDO:
                    return _PSEUDO[arg]
                if arg == "AWS::StackName":
                    return self.stack_name
                if arg in self.parameters:
                    return self.parameters[arg].get("Default")
                return self.physical_name(arg)
            if fn == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                if attribute == "Arn":
                    return self.arn(logical_id)
                if attribute == "Name":
                    return logical_id
                return self.physical_name(logical_id)
            if fn == "Fn::Join":
                separator, parts = arg
                return separator.join(str(self.resolve(p)) for p in parts)
            if fn == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(index)]
            if fn == "Fn::Split":
                separator, text = arg
                return str(self.resolve(text)).split(separator)
        return {k: self.resolve(v) for k, v in value.items()}


def load_deployment(template_path: Path, stack_name: str, root: Path) -> LocalDeployment:
    template = json.loads(template_path.read_text())
    resolver = _Resolver(template, stack_name)
    documents = _marked_state_machines(template, "documents")
    if len(documents) != 1:
        raise TemplateError(f"expected one document state machine in {template_path}, found {len(documents)}")
    ((machine_id, machine),) = documents.items()
    document_machine = _state_machine_spec(machine_id, machine, resolver)
    # `pagemill reembed --aws`'s, on the same functions (at most one; none when embeddings are off).
    reembed = [_state_machine_spec(name, m, resolver) for name, m in _marked_state_machines(template, "reembed").items()]
    buckets = _of_type(template, "AWS::S3::Bucket")
    if len(buckets) != 1:
        raise TemplateError(f"expected one bucket in {template_path}, found {len(buckets)}")
    map_items = _map_item_functions(document_machine.definition["States"])
    functions = {
        logical_id: _function_spec(logical_id, resource, resolver, template_path.parent, root,
                                   map_item=logical_id in map_items)
        for logical_id, resource in _of_type(template, "AWS::Lambda::Function").items()
        if {"aws:asset:path", "pagemill:source"} & set(resource.get("Metadata", {}))
    }
    containers = {
        resource["Properties"].get("Family", logical_id): ContainerSpec(
            name=resource["Properties"].get("Family", logical_id),
            source_dir=root / resource["Metadata"]["pagemill:source"],
            environment={
                e["Name"]: str(e["Value"])
                for e in resolver.resolve(resource["Properties"]["ContainerDefinitions"][0].get("Environment", []))
            },
        )
        for logical_id, resource in _of_type(template, "AWS::ECS::TaskDefinition").items()
        if "pagemill:source" in resource.get("Metadata", {})
    }
    tables = {
        resolver.physical_name(logical_id): next(
            k["AttributeName"] for k in resource["Properties"]["KeySchema"] if k["KeyType"] == "HASH"
        )
        for kind in ("AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable")
        for logical_id, resource in _of_type(template, kind).items()
    }
    return LocalDeployment(
        stack_name=stack_name,
        definition=document_machine.definition,
        state_machine_name=document_machine.name,
        role_arn=document_machine.role_arn,
        bucket_name=resolver.physical_name(next(iter(buckets))),
        functions=functions,
        containers=containers,
        tables=tables,
        execution_rules=_execution_rules(template, machine_id, functions),
        reembed=reembed[0] if reembed else None,
    )


def _state_machine_spec(name: str, machine: dict[str, Any], resolver: _Resolver) -> StateMachineSpec:
    props = machine["Properties"]
    return StateMachineSpec(name, _with_moto_number_syntax(json.loads(resolver.resolve(props["DefinitionString"]))),
                            resolver.resolve(props["RoleArn"]))


def _map_item_functions(states: dict[str, Any], in_map: bool = False) -> set[str]:
    """The functions that the Task states inside Map states invoke, by name."""
    found: set[str] = set()
    for state in states.values():
        if state.get("Type") == "Map":
            processor = state.get("ItemProcessor") or state.get("Iterator") or {}
            found |= _map_item_functions(processor.get("States", {}), True)
        elif state.get("Type") == "Parallel":
            for branch in state.get("Branches", []):
                found |= _map_item_functions(branch.get("States", {}), in_map)
        elif in_map and state.get("Type") == "Task":
            name = (state.get("Parameters") or {}).get("FunctionName")
            if isinstance(name, str):
                found.add(function_name(name))
    return found


def _marked_state_machines(template: dict[str, Any], role: str) -> dict[str, Any]:
    """The state machines the stack marks as ``role`` (``pagemill:state-machine`` metadata)."""
    return {k: v for k, v in _of_type(template, "AWS::StepFunctions::StateMachine").items()
            if v.get("Metadata", {}).get("pagemill:state-machine") == role}


def _execution_rules(
    template: dict[str, Any], machine_id: str, functions: dict[str, FunctionSpec]
) -> tuple[ExecutionRule, ...]:
    rules = []
    for resource in _of_type(template, "AWS::Events::Rule").values():
        pattern = resource["Properties"].get("EventPattern", {})
        detail = pattern.get("detail", {})
        if pattern.get("source") != ["aws.states"] or detail.get("stateMachineArn") != [{"Ref": machine_id}]:
            continue
        if set(detail) != {"stateMachineArn", "status"}:
            continue  # patterns on the output (the partial alarm) go to SNS, not to a function
        for target in resource["Properties"].get("Targets", []):
            arn = target.get("Arn", {})
            logical_id = arn.get("Fn::GetAtt", [None])[0] if isinstance(arn, dict) else None
            if logical_id in functions:
                rules.append(ExecutionRule(frozenset(detail["status"]), logical_id))
    return tuple(rules)


def _with_moto_number_syntax(value: Any) -> Any:
    """The same definition, with ``ToleratedFailurePercentage`` written as 100.0 where CDK wrote
    100: the same JSON number, but moto 5.2.5's ASL grammar accepts only the decimal spelling
    there (AWS takes both)."""
    if isinstance(value, list):
        return [_with_moto_number_syntax(v) for v in value]
    if not isinstance(value, dict):
        return value
    return {
        k: float(v) if k == "ToleratedFailurePercentage" and type(v) is int else _with_moto_number_syntax(v)
        for k, v in value.items()
    }


def _of_type(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v for k, v in template.get("Resources", {}).items() if v.get("Type") == kind}


def _function_spec(
    logical_id: str, resource: dict[str, Any], resolver: _Resolver, assembly_dir: Path, root: Path, *, map_item: bool
) -> FunctionSpec:
    """pagemill's functions, zip or container image (ExtractBatch with OCR), run from the handler
    folder the stack names (``pagemill:source``) with this machine's libraries, as the ECS tasks
    do: an image function's asset is a Docker build context, not a folder to import from. CDK's
    own functions run from their staged asset."""
    props, metadata = resource["Properties"], resource["Metadata"]
    variables = resolver.resolve(props.get("Environment", {}).get("Variables", {}))
    source = metadata.get("pagemill:source")
    if props.get("PackageType") == "Image":
        if source is None:
            raise TemplateError(f"image function {logical_id} has no pagemill:source metadata to run it from")
        handler = props.get("ImageConfig", {}).get("Command", [None])[0]
    else:
        handler = props.get("Handler")
    if not handler:
        raise TemplateError(f"function {logical_id} names no handler (Handler, or ImageConfig.Command)")
    return FunctionSpec(
        name=logical_id,
        source_dir=root / source if source else (assembly_dir / metadata["aws:asset:path"]).resolve(),
        handler=handler,
        timeout_s=float(props.get("Timeout", 3)),
        memory_mb=int(props.get("MemorySize", 128)),
        environment={k: str(v) for k, v in variables.items() if v is not None},
        map_item=map_item,
    )
