"""What makes a document partial on the model's side, and how batch warnings merge."""

from __future__ import annotations

from pagemill.captions.caption import skipped
from pagemill.captions.client import BUDGET_EXHAUSTED, CIRCUIT_OPEN, NO_API_KEY
from pagemill.pipeline.warnings import (
    CAPTIONS_MISSING,
    UNDERSTANDING_MISSING,
    caption_warnings,
    merged,
    understanding_warnings,
)
from pagemill.records import SKIPPED, CaptionResult, DocumentWarning, Understanding


def test_captions_lost_to_the_api_or_the_budget_are_a_warning_that_names_them() -> None:
    results = [
        CaptionResult("a", "captioned", "A chair.", ["chair"]),
        skipped("b", CIRCUIT_OPEN),
        skipped("c", CIRCUIT_OPEN),
        skipped("d", BUDGET_EXHAUSTED),
    ]
    [warning] = caption_warnings("doc1", results)
    assert warning.code == CAPTIONS_MISSING
    assert warning.images == ["b", "c", "d"]
    assert warning.message == (
        f"3 of 4 images were not captioned: {CIRCUIT_OPEN} (2); {BUDGET_EXHAUSTED} (1); "
        "`pagemill redrive doc1` fills them"
    )


def test_no_api_key_is_a_choice_not_a_loss() -> None:
    assert caption_warnings("doc1", [skipped("a", NO_API_KEY)]) == []
    assert understanding_warnings("doc1", Understanding(None, None, status=SKIPPED, reason=NO_API_KEY)) == []
    assert understanding_warnings("doc1", None) == []
    [lost] = understanding_warnings("doc1", Understanding(None, None, status=SKIPPED, reason=CIRCUIT_OPEN))
    assert lost.code == UNDERSTANDING_MISSING and CIRCUIT_OPEN in lost.message


def test_warnings_of_one_code_merge_across_batches() -> None:
    got = merged([
        DocumentWarning("content_lost", "lost", pages=[5, 6]),
        DocumentWarning("image_unreadable", "images", pages=[2]),
        DocumentWarning("content_lost", "lost", pages=[30, 6]),
    ])
    assert [(w.code, w.pages) for w in got] == [("content_lost", [5, 6, 30]), ("image_unreadable", [2])]
