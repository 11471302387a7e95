"""The API's pure helpers: upload names safe in a key and an execution name, and what a person
should do about each kind of failure."""

from __future__ import annotations

import pytest

from pagemill.api.service import safe_file_name
from pagemill.errors import input_error_names
from pagemill.operate.advice import what_to_do


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Spring Catalog.pdf", "Spring Catalog.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\scan (1).pdf", "scan -1-.pdf"),
        ("über$katalog?.pdf", "über-katalog-.pdf"),
        ("", "upload.pdf"),
        ("...", "upload.pdf"),
        (None, "upload.pdf"),
    ],
)
def test_safe_file_name(given: str | None, expected: str) -> None:
    assert safe_file_name(given) == expected


def test_every_input_error_has_its_own_advice() -> None:
    generic = what_to_do("SomethingElse")
    for name in set(input_error_names()) - {"InputError"}:
        assert what_to_do(name) != generic, name


def test_unavailable_services_and_unknown_classes_say_redrive() -> None:
    assert "unavailable" in what_to_do("DatabaseUnavailable") and "Redrive" in what_to_do("DatabaseUnavailable")
    assert what_to_do(None).startswith("Redrive")
