"""cdk-nag's AWS Solutions rules over the whole stack: every finding is either fixed in the stack
or accepted with a written reason in stacks/nag.py. A new finding fails here with its path."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.infrastructure.conftest import pipeline_stack
from tests.infrastructure.queries import as_list

RULES = "AwsSolutions-.*"


@dataclass(frozen=True)
class Checked:
    errors: list[str]
    warnings: list[str]
    ignored: list[str]
    template: dict[str, Any]


def _findings(messages: list[Any]) -> list[str]:
    """'<construct path>  <rule[applies to]>' per message (the explanation after ': ' left out)."""
    return sorted(f"{m.id}  {str(m.entry.data).split(': ', 1)[0]}" for m in messages)


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> Checked:
    """One synthesis of the stack with the checks the app applies (plus the accepted findings
    logged as info, to see that the checks ran)."""
    from aws_cdk import Aspects
    from aws_cdk.assertions import Annotations, Match, Template
    from cdk_nag import AwsSolutionsChecks

    stack = pipeline_stack(tmp_path_factory.mktemp("nag"))
    Aspects.of(stack.node.root).add(AwsSolutionsChecks(verbose=True, log_ignores=True))
    annotations = Annotations.from_stack(stack)
    rules = Match.string_like_regexp(RULES)
    return Checked(
        errors=_findings(annotations.find_error("*", rules)),
        warnings=_findings(annotations.find_warning("*", rules)),
        ignored=[f"{m.id}  {m.entry.data}" for m in annotations.find_info("*", rules)],
        template=Template.from_stack(stack).to_json(),
    )


def test_no_unaccepted_errors(checked: Checked) -> None:
    assert not checked.errors, (
        f"{len(checked.errors)} AwsSolutions errors: fix them in the stack or accept them with a reason in "
        "stacks/nag.py:\n" + "\n".join(checked.errors)
    )


def test_no_unaccepted_warnings(checked: Checked) -> None:
    assert not checked.warnings, (
        f"{len(checked.warnings)} AwsSolutions warnings: fix them in the stack or accept them with a reason in "
        "stacks/nag.py:\n" + "\n".join(checked.warnings)
    )


def test_the_checks_ran_and_saw_the_accepted_findings(checked: Checked) -> None:
    # GIVEN the bucket without access logs, accepted in stacks/nag.py
    # THEN the checks reported it, as ignored with the reason
    suppressed = "AwsSolutions-S1 was triggered but suppressed"
    assert any(f.startswith("/Pagemill/Storage/Bucket/") and suppressed in f for f in checked.ignored), (
        "cdk-nag did not report the accepted S1 finding: did the checks run at all?\n" + "\n".join(checked.ignored)
    )


def _statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents = [properties["PolicyDocument"]]
        elif resource["Type"] == "AWS::IAM::Role":
            documents = [p["PolicyDocument"] for p in properties.get("Policies", [])]
        else:
            continue
        for document in documents:
            for statement in document["Statement"]:
                yield logical_id, statement


def test_statements_on_every_resource_grant_only_actions_that_need_it(checked: Checked) -> None:
    """The IAM5 ``Resource::*`` acceptances hold only while each statement on "*" grants actions
    that AWS authorizes on "*" alone (or that stacks/nag.py explains)."""
    from stacks.nag import WILDCARD_RESOURCE_ACTIONS

    unexplained = [
        f"{logical_id}: {action}"
        for logical_id, statement in _statements(checked.template)
        if statement.get("Effect") == "Allow" and "*" in as_list(statement.get("Resource"))
        for action in as_list(statement["Action"])
        if action not in WILDCARD_RESOURCE_ACTIONS
    ]
    assert not unexplained, (
        "granted on Resource '*' but not in stacks/nag.py WILDCARD_RESOURCE_ACTIONS: scope them to resources, "
        "or add them there with the reason:\n" + "\n".join(unexplained)
    )

