"""Does a page's markdown hold every word of its text layer?

Words are compared as multisets after NFKC folding (ligatures such as "ﬁ" become "fi") and
case folding, split on anything that is not a letter or digit, so markdown syntax (``**``,
``|``, ``#``) and punctuation count for nothing on either side. A word hyphenated at a line
break in the text layer ("ef-\nficient") counts as found when the markdown holds it joined
(pymupdf4llm joins such words) or as its two parts.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

_WORD = re.compile(r"[^\W_]+")
_HYPHEN_BREAK = re.compile(r"([^\W_]+)-[ \t]*\n\s*([^\W_]+)")

# Lost words a page may have before it needs another extraction path: markdown rewrites a
# little text on purpose (a table cell's "<br>", a repeated header made one heading), and the
# tolerance must not trip on that, yet a lost paragraph is always over it.
TOLERATED_WORDS = 2
TOLERATED_FRACTION = 0.01


@dataclass(frozen=True)
class WordLoss:
    missing: int  # words of the text layer that the markdown lacks (counted with multiplicity)
    total: int  # words of the text layer

    @property
    def fraction(self) -> float:
        return self.missing / self.total if self.total else 0.0

    @property
    def acceptable(self) -> bool:
        return self.missing <= max(TOLERATED_WORDS, TOLERATED_FRACTION * self.total)


def words(text: str) -> Counter[str]:
    return Counter(_WORD.findall(_fold(text)))


def word_loss(text_layer: str, markdown: str) -> WordLoss:
    parts: dict[str, tuple[str, str]] = {}  # joined word -> its two halves

    def join(match: re.Match[str]) -> str:
        head, tail = match.group(1), match.group(2)
        parts[head + tail] = (head, tail)
        return head + tail

    reference = words(_HYPHEN_BREAK.sub(join, _fold(text_layer)))
    found = words(markdown)
    missing = reference - found
    for word in [w for w in missing if w in parts]:
        head, tail = parts[word]
        kept = min(missing[word], found[head], found[tail])
        missing[word] -= kept
    return WordLoss(missing=sum(missing.values()), total=sum(reference.values()))


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()
