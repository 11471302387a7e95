"""The text a summary is spoken from: cut to the configured cap at a sentence end, and split into
pieces a speech request accepts."""

from __future__ import annotations

import re

# A sentence ends with . ! ? or … (closing quotes or brackets may follow) before a space or the end.
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]]*(?=\s|$)")


def cap_at_sentence(text: str, max_chars: int) -> tuple[str, bool]:
    """(what is spoken, whether it was cut): ``text`` with its whitespace collapsed, cut after
    the last sentence that ends within ``max_chars``; with no sentence end there, after the last
    whole word."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text, False
    head = text[:max_chars]
    ends = [m.end() for m in _SENTENCE_END.finditer(head)]
    if ends:
        return head[: ends[-1]], True
    if text[max_chars] != " " and " " in head:
        head = head.rsplit(" ", 1)[0]
    return head.rstrip(), True


def pieces(text: str, max_chars: int) -> list[str]:
    """``text`` in consecutive pieces of at most ``max_chars`` characters, each made of whole
    sentences where a sentence fits, joined by a space they give back the text."""
    out: list[str] = []
    rest = " ".join(text.split())
    while rest:
        piece, _ = cap_at_sentence(rest, max_chars)
        piece = piece or rest[:max_chars]  # a single word longer than a piece
        out.append(piece)
        rest = rest[len(piece):].strip()
    return out
