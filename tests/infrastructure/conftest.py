"""Templates to assert on, with asset bundling skipped so no pip runs: one construct (and what it
needs) in an otherwise empty stack, for the tests of that construct; and the whole pipeline stack,
synthesized once per session (node/jsii start-up costs seconds), for the smoke test, the database's
wiring and cdk-nag. The state machine definition is parsed into real JSON."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from aws_cdk import App, Stack
    from aws_cdk import aws_s3 as s3
    from aws_cdk.assertions import Template

    from stacks.config import PipelineConfig
    from stacks.functions import PipelineFunctions
    from stacks.gpu import GpuEmbedding
    from stacks.monitoring import Monitoring
    from stacks.pipeline_stack import PipelineStack
    from stacks.state_machine import DocumentStateMachine
    from stacks.storage import Storage

# Read when jsii starts node (at the first aws_cdk import, inside the fixtures): node 20 is past
# jsii's support window, which is fine for synth.
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

ROOT = Path(__file__).resolve().parents[2]


STACK_NAME = "Pagemill"
BYO_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:pagemill/db-AbCdEf"


def cdk_context() -> dict[str, Any]:
    """The context block of cdk.json: what `cdk deploy` configures the stack with."""
    return json.loads((ROOT / "cdk.json").read_text())["context"]


def _app(tmp_path: Path, context: dict[str, Any]) -> App:
    from aws_cdk import App

    settings = cdk_context()
    return App(
        outdir=str(tmp_path),
        context={**settings, **context, "aws:cdk:bundling-stacks": [], "aws:cdk:enable-asset-metadata": True},
    )


def pipeline_stack(tmp_path: Path, **context: Any) -> PipelineStack:
    """PipelineStack in an app of its own, configured by cdk.json's context plus ``context``."""
    from stacks.config import PipelineConfig
    from stacks.pipeline_stack import PipelineStack

    app = _app(tmp_path, context)
    return PipelineStack(app, STACK_NAME, config=PipelineConfig.from_context(app.node))


def construct_template(tmp_path: Path, build: Callable[[Stack, PipelineConfig], object], **context: Any) -> Template:
    """The template of an empty stack to which ``build`` adds the constructs under test, configured
    by cdk.json's context plus ``context``. Construct ids are the pipeline stack's, so logical ids
    read the same."""
    from aws_cdk import Stack
    from aws_cdk.assertions import Template

    from stacks.config import PipelineConfig

    app = _app(tmp_path, context)
    stack = Stack(app, STACK_NAME)
    build(stack, PipelineConfig.from_context(app.node))
    return Template.from_stack(stack)


# The parts of the pipeline a construct's tests build, each with its collaborators. The database is
# the configured one (BYO_SECRET when not set): its own resources are test_database's.


def storage_part(stack: Stack, config: PipelineConfig) -> Storage:
    from stacks.storage import Storage

    return Storage(stack, "Storage")


def functions_part(stack: Stack, config: PipelineConfig) -> PipelineFunctions:
    return _functions(stack, config, storage_part(stack, config).bucket)


def _functions(stack: Stack, config: PipelineConfig, bucket: s3.IBucket) -> PipelineFunctions:
    from stacks.captions import CaptionState
    from stacks.database import DatabaseAccess
    from stacks.functions import PipelineFunctions

    captions = CaptionState(stack, "Captions", config=config)
    access = DatabaseAccess(secret=config.database_secret_arn or BYO_SECRET)
    return PipelineFunctions(stack, "Functions", bucket=bucket, captions=captions, database=access, config=config)


def gpu_part(stack: Stack, config: PipelineConfig) -> GpuEmbedding:
    from stacks.gpu import GpuEmbedding
    from stacks.network import Network

    bucket = storage_part(stack, config).bucket
    network = Network(stack, "Network", isolated_subnets=False, log_retention=config.log_retention)
    return GpuEmbedding(stack, "Gpu", bucket=bucket, network=network, config=config)


def state_machine_part(stack: Stack, config: PipelineConfig) -> DocumentStateMachine:
    from stacks.gpu import GpuEmbedding
    from stacks.network import Network
    from stacks.state_machine import DocumentStateMachine

    bucket = storage_part(stack, config).bucket
    functions = _functions(stack, config, bucket)
    network = Network(stack, "Network", isolated_subnets=False, log_retention=config.log_retention)
    gpu = GpuEmbedding(stack, "Gpu", bucket=bucket, network=network, config=config)
    return DocumentStateMachine(stack, "Documents", functions=functions, gpu=gpu, bucket=bucket, config=config)


def monitoring_part(stack: Stack, config: PipelineConfig) -> Monitoring:
    from aws_cdk import Duration
    from aws_cdk import aws_stepfunctions as sfn

    from stacks.monitoring import Monitoring

    storage = storage_part(stack, config)
    functions = _functions(stack, config, storage.bucket)
    machine = sfn.StateMachine(
        stack, "StateMachine", definition_body=sfn.DefinitionBody.from_chainable(sfn.Pass(stack, "Watched"))
    )
    return Monitoring(
        stack, "Monitoring", state_machine=machine, dead_letter_queue=storage.dead_letter_queue,
        alarm_email=config.alarm_email, watch=functions.watch,
        stuck_after=Duration.minutes(config.stuck_after_minutes), functions=functions.by_name,
    )


def synth(tmp_path: Path, **context: Any) -> Template:
    """The CloudFormation template of PipelineStack, configured by cdk.json's context plus ``context``."""
    from aws_cdk.assertions import Template

    return Template.from_stack(pipeline_stack(tmp_path, **context))


def _placeholder(token: Any) -> str:
    """A readable stand-in for a CloudFormation intrinsic inside the definition string."""
    (fn, arg), = token.items()
    if fn == "Ref":
        return "aws" if arg == "AWS::Partition" else f"<{arg}>"
    if fn == "Fn::GetAtt":
        return f"<{arg[0]}.{arg[1]}>"
    raise AssertionError(f"unexpected intrinsic in the state machine definition: {token}")


def definition_of(template: dict[str, Any]) -> dict[str, Any]:
    """The document state machine's ASL (or the one state machine's: a test's own), with Ref/GetAtt
    tokens replaced by placeholders."""
    machines = [r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    if len(machines) > 1:
        machines = [r for r in machines if r.get("Metadata", {}).get("pagemill:state-machine") == "documents"]
    assert len(machines) == 1, f"expected one state machine, found {len(machines)}"
    body = machines[0]["Properties"]["DefinitionString"]
    if isinstance(body, str):
        return json.loads(body)
    separator, parts = body["Fn::Join"]
    return json.loads(separator.join(p if isinstance(p, str) else _placeholder(p) for p in parts))


def part_fixture(build: Callable[[Stack, PipelineConfig], object]) -> Any:
    """A module's ``template`` fixture: ``build``'s template as JSON, synthesized once per test run
    (``resources`` and ``definition`` then read it)."""

    @pytest.fixture(scope="module")
    def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
        return _once_per_run(
            tmp_path_factory, build.__name__, lambda: construct_template(tmp_path_factory.mktemp("cdk"), build)
        )

    return template


def _once_per_run(factory: pytest.TempPathFactory, name: str, render: Callable[[], Template]) -> dict[str, Any]:
    """``render()``'s template as JSON, rendered by the first xdist worker that asks and read by the
    others from the run's temporary folder. (``--dist loadgroup`` cannot keep a module on one
    worker: xdist 3.8 sets the group on ``item._nodeid``, which pytest 9 no longer reads.)"""
    base = factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = shared / f"{name}.json"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            path.with_suffix(".tmp").write_text(json.dumps(render().to_json()))
            path.with_suffix(".tmp").rename(path)
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def synthesize() -> Callable[..., Template]:
    """For a test that needs the stack configured otherwise: ``synthesize(tmp_path, key=value)``."""
    return synth


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The template of the stack as cdk.json configures it (no database secret), as JSON,
    synthesized once per test run."""
    return _once_per_run(tmp_path_factory, "pagemill-template", lambda: synth(tmp_path_factory.mktemp("cdk")))


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


@pytest.fixture(scope="module")
def definition(template: dict[str, Any]) -> dict[str, Any]:
    return definition_of(template)
