"""The language of a document's text, as the PostgreSQL text search configuration that stems it.

Counting the most common function words of each language is enough to tell a page of prose
apart; a text where no language clearly leads (tables of numbers, a parts list, a language not
listed) gets 'simple', which indexes words as written: stemming with the wrong language's rules
would do worse than none."""

from __future__ import annotations

import re
from collections import Counter

SIMPLE = "simple"
_STOP_WORDS = {
    "english": "the of and to in is that for it with as was on be by are this which from or have not",
    "german": "der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als auch",
    "french": "le la les de des et est un une du en que qui dans pour pas sur au avec par",
    "spanish": "el la los las de y que en un una es por con para del se no al como",
    "italian": "il di che la è e per un una non sono del della le gli con si da al",
    "portuguese": "o a os as de que e do da em um uma para com não no na por se",
    "dutch": "de het een en van in is dat op te zijn met voor niet aan er als bij",
}
_WORDS = {lang: frozenset(words.split()) for lang, words in _STOP_WORDS.items()}
_TOKEN = re.compile(r"[^\W\d_]+")
# A language must account for this share of the words and lead the next by this factor.
_MIN_SHARE = 0.08
_MIN_LEAD = 1.5


def text_search_config(text: str) -> str:
    words = [w.lower() for w in _TOKEN.findall(text[:50_000])]
    if len(words) < 50:
        return SIMPLE
    hits = Counter({lang: sum(w in stop for w in words) for lang, stop in _WORDS.items()})
    (best, top), (_, second) = hits.most_common(2)
    if top < _MIN_SHARE * len(words) or top < _MIN_LEAD * second:
        return SIMPLE
    return best
