"""Telling a PDF by its first bytes, without PyMuPDF (the API checks uploads with it)."""

from __future__ import annotations

# Readers accept a "%PDF-" header anywhere in the first KB (some producers put junk first).
HEADER_WINDOW = 1024


def has_pdf_header(head: bytes) -> bool:
    """``head``: the file's first HEADER_WINDOW bytes (or all of a shorter file)."""
    return b"%PDF-" in head[:HEADER_WINDOW]
