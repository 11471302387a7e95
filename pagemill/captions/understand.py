"""Document understanding: one call that reads a document's markdown and answers what kind of
document it is, a short summary, and the products it lists (name, attributes, page).

The markdown sent is bounded by a token budget (about 4 characters a token): pages go in order
until the budget; what is left out is said in the prompt and in ``Understanding.truncated``.
The answer is structured output through the ``record_understanding`` tool, forced by
``tool_choice``. Model API trouble never raises: the result is "skipped" with the reason (same
retries, breaker and token budget as captions, see pagemill.captions.client).
"""

from __future__ import annotations

import logging
import random as _random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pagemill.captions.client import (
    MALFORMED_ANSWER,
    RetryPolicy,
    call_tool,
    estimate_text_tokens,
)
from pagemill.records import SKIPPED, UNDERSTOOD, Product, Understanding

if TYPE_CHECKING:
    from pagemill.captions.breaker import CircuitBreaker
    from pagemill.captions.budget import TokenBudget

log = logging.getLogger(__name__)

NO_TEXT = "no text to read"

TOOL_NAME = "record_understanding"
DOCUMENT_TYPES = (
    "product_catalog", "price_list", "datasheet", "manual", "brochure", "report", "invoice", "form",
    "article", "presentation", "other",
)
MAX_SUMMARY_WORDS = 80
MAX_PRODUCTS = 500
MAX_ATTRIBUTES = 30
MAX_OUTPUT_TOKENS = 8192
# What the instructions, the tool schema and the page markers take besides the markdown.
_OVERHEAD_TOKENS = 600

INSTRUCTIONS = (
    "Below is the text of a PDF document as markdown, page by page, each page inside "
    '<page number="N"> tags. Call record_understanding with: document_type, the kind of document; '
    f"summary, what the document is about in at most {MAX_SUMMARY_WORDS} words; language, the ISO 639-1 code "
    "of the language the summary is written in; products, every product "
    "the document lists or describes, each with its name, its attributes as short string values "
    "(e.g. sku, price with currency, dimensions, material, colour) and the page number where it "
    "appears. Use only what the text says; an empty products list when it lists none."
)

UNDERSTANDING_TOOL: dict[str, Any] = {
    "name": TOOL_NAME,
    "description": "Record the document's type, summary and products.",
    "input_schema": {
        "type": "object",
        "properties": {
            "document_type": {"type": "string", "enum": list(DOCUMENT_TYPES)},
            "summary": {"type": "string", "description": f"At most {MAX_SUMMARY_WORDS} words."},
            "language": {"type": "string", "description": "ISO 639-1 code of the summary's language, e.g. en."},
            "products": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "attributes": {"type": "object", "additionalProperties": {"type": "string"}},
                        "page": {"type": "integer", "description": "The page number the product appears on."},
                    },
                    "required": ["name", "attributes", "page"],
                },
            },
        },
        "required": ["document_type", "summary", "products"],
    },
}


def understand_document(
    client: Any,
    model: str,
    *,
    markdown_pages: Sequence[tuple[int, str]],
    token_budget: int,
    page_count: int | None = None,
    breaker: CircuitBreaker,
    budget: TokenBudget | None = None,
    max_attempts: int = 4,
    base_delay: float = 1.0,
    max_delay: float = 20.0,
    max_output_tokens: int = MAX_OUTPUT_TOKENS,
    sleep: Callable[[float], None] = time.sleep,
    time_left: Callable[[], float] | None = None,
    random: Callable[[], float] = _random.random,
) -> Understanding:
    """Ask once (with retries) what the document is. ``markdown_pages`` are (page number,
    markdown; they may stop early once past ``token_budget``, with ``page_count`` saying where
    the document ends); ``token_budget`` bounds the markdown sent; ``budget`` is the document's
    shared token budget, from which the whole call is reserved."""
    text, pages_read, truncated = bounded_markdown(markdown_pages, token_budget - _OVERHEAD_TOKENS)
    if not text.strip():
        return Understanding(None, None, status=SKIPPED, reason=NO_TEXT)
    prompt = INSTRUCTIONS
    if truncated:
        last = page_count or markdown_pages[-1][0]
        prompt += (
            f"\nOnly part of the document fits: the text below stops early (the document ends at page {last}). "
            "Answer from what is shown."
        )
    request = {
        "model": model,
        "max_tokens": max_output_tokens,
        "tools": [UNDERSTANDING_TOOL],
        "tool_choice": {"type": "tool", "name": TOOL_NAME},
        "messages": [{"role": "user", "content": [{"type": "text", "text": f"{prompt}\n\n{text}"}]}],
    }
    reserve = estimate_text_tokens(prompt) + estimate_text_tokens(text) + _OVERHEAD_TOKENS + max_output_tokens
    call = call_tool(
        client, request, tool_name=TOOL_NAME, breaker=breaker, budget=budget, reserve_tokens=reserve,
        policy=RetryPolicy(max_attempts=max_attempts, base_delay=base_delay, max_delay=max_delay),
        sleep=sleep, random=random, time_left=time_left,
    )
    common: dict[str, Any] = {
        "input_tokens": call.input_tokens, "output_tokens": call.output_tokens, "pages_read": pages_read,
        "truncated": truncated,
    }
    if call.tool_input is None:
        result = Understanding(None, None, status=SKIPPED, reason=call.reason or MALFORMED_ANSWER, **common)
    else:
        shown = {page for page, _ in markdown_pages[:pages_read]}
        parsed = parse_understanding(call.tool_input, shown_pages=shown)
        if parsed is None:
            result = Understanding(None, None, status=SKIPPED, reason=MALFORMED_ANSWER, **common)
        else:
            doc_type, summary, products = parsed
            result = Understanding(
                doc_type, summary, products, status=UNDERSTOOD, language=_language(call.tool_input), **common
            )
    log.info("document understanding", extra={
        "status": result.status, "reason": result.reason, "doc_type": result.doc_type,
        "products": len(result.products), "pages_read": pages_read, "truncated": truncated,
        "input_tokens": result.input_tokens, "output_tokens": result.output_tokens,
    })
    return result


def bounded_markdown(pages: Sequence[tuple[int, str]], token_budget: int) -> tuple[str, int, bool]:
    """(text, pages included, truncated): pages in order, each in a <page> tag, until about
    ``token_budget`` tokens; a page that does not fit whole is cut (at a line when it can be)."""
    budget_chars = max(0, token_budget) * 4
    parts: list[str] = []
    used = 0
    for index, (page_no, markdown) in enumerate(pages):
        opening, closing = f'<page number="{page_no}">\n', "\n</page>\n"
        room = budget_chars - used - len(opening) - len(closing)
        body = markdown.strip()
        if len(body) <= room:
            parts.append(f"{opening}{body}{closing}")
            used += len(opening) + len(body) + len(closing)
            continue
        if room >= 200:  # a useful part of the page fits
            cut = body[:room]
            at_line = cut.rfind("\n")
            cut = cut[:at_line] if at_line > room // 2 else cut
            parts.append(f"{opening}{cut}\n[… page continues, cut to fit]{closing}")
            return "".join(parts), index + 1, True
        return "".join(parts), index, True
    return "".join(parts), len(pages), False


def parse_understanding(
    tool_input: Mapping[str, Any], *, shown_pages: set[int]
) -> tuple[str, str, list[Product]] | None:
    """(type, summary, products) from the tool's input, or None when it does not follow the schema."""
    doc_type = tool_input.get("document_type")
    summary = tool_input.get("summary")
    raw_products = tool_input.get("products", [])
    if not isinstance(doc_type, str) or not doc_type.strip() or not isinstance(summary, str):
        return None
    if not isinstance(raw_products, list):
        return None
    doc_type = "_".join(doc_type.strip().lower().replace("-", " ").split())[:40]
    words = summary.split()
    summary = " ".join(words[:MAX_SUMMARY_WORDS]) + ("…" if len(words) > MAX_SUMMARY_WORDS else "")
    products: list[Product] = []
    for item in raw_products[:MAX_PRODUCTS]:
        if not isinstance(item, Mapping):
            continue
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            continue
        attributes: dict[str, str] = {}
        raw_attributes = item.get("attributes")
        if isinstance(raw_attributes, Mapping):
            for key, value in list(raw_attributes.items())[:MAX_ATTRIBUTES]:
                if value is None or isinstance(value, (dict, list)):
                    continue
                attributes[str(key).strip()[:80]] = str(value).strip()[:500]
        page = item.get("page")
        page = page if isinstance(page, int) and not isinstance(page, bool) and page in shown_pages else None
        products.append(Product(" ".join(name.split())[:300], attributes, page))
    return doc_type, summary, products



def _language(tool_input: Mapping[str, Any]) -> str | None:
    """The summary's language as an ISO 639-1 code, or None when the answer gave none that looks like one."""
    value = tool_input.get("language")
    if not isinstance(value, str):
        return None
    code = value.strip().lower().replace("_", "-").split("-")[0]
    return code if 2 <= len(code) <= 3 and code.isalpha() else None
