"""Synthesize the pipeline stack once per session (node/jsii start-up costs seconds), with asset
bundling skipped so no pip runs, and the state machine definition parsed into real JSON."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from aws_cdk.assertions import Template

    from stacks.pipeline_stack import PipelineStack

# Read when jsii starts node (at the first aws_cdk import, inside the fixtures): node 20 is past
# jsii's support window, which is fine for synth.
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

ROOT = Path(__file__).resolve().parents[2]


def pipeline_stack(tmp_path: Path, **context: Any) -> PipelineStack:
    """PipelineStack in an app of its own, configured by cdk.json's context plus ``context``."""
    from aws_cdk import App

    from stacks.config import PipelineConfig
    from stacks.pipeline_stack import PipelineStack

    settings = json.loads((ROOT / "cdk.json").read_text())["context"]
    app = App(
        outdir=str(tmp_path),
        context={**settings, **context, "aws:cdk:bundling-stacks": [], "aws:cdk:enable-asset-metadata": True},
    )
    return PipelineStack(app, "Pagemill", config=PipelineConfig.from_context(app.node))


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
    """The one state machine's ASL, with Ref/GetAtt tokens replaced by placeholders."""
    machines = [r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    assert len(machines) == 1, f"expected one state machine, found {len(machines)}"
    body = machines[0]["Properties"]["DefinitionString"]
    if isinstance(body, str):
        return json.loads(body)
    separator, parts = body["Fn::Join"]
    return json.loads(separator.join(p if isinstance(p, str) else _placeholder(p) for p in parts))


@pytest.fixture(scope="session")
def synthesize() -> Callable[..., Template]:
    """For a test that needs the stack configured otherwise: ``synthesize(tmp_path, key=value)``."""
    return synth


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The template of the stack as cdk.json configures it (no database secret), as JSON.

    Synthesized once per test run: xdist workers share it through the run's temporary folder
    (``--dist loadgroup`` cannot keep this module on one worker: xdist 3.8 sets the group on
    ``item._nodeid``, which pytest 9 no longer reads)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = shared / "pagemill-template.json"
    with open(shared / "pagemill-template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            rendered = json.dumps(synth(tmp_path_factory.mktemp("cdk")).to_json())
            path.with_suffix(".tmp").write_text(rendered)
            path.with_suffix(".tmp").rename(path)
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


@pytest.fixture(scope="session")
def definition(template: dict[str, Any]) -> dict[str, Any]:
    return definition_of(template)
