"""Hybrid search: full-text and vector rankings of chunks and images, fused by reciprocal rank
(pagemill.search.fusion), in one SQL statement.

Up to four ranked lists, each cut to ``candidates`` items:
  chunk keyword  chunks.tsv @@ the query, parsed with each chunk's own text search configuration
  chunk vector   the query embedded by the chunks' model (only chunks of that model are compared),
                 served by that model's HNSW expression index on embedding::halfvec(dim)
  image keyword  images.caption_tsv @@ the query (captions are English)
  image vector   CLIP text → image similarity on images.embedding
"keyword" mode uses the two keyword lists, "vector" the two vector lists, "hybrid" all four.
Chunks and images share one fused ranking: RRF scores depend on ranks only, so they compare.

Round trips: one to set the scan options for this transaction and read the query's words per
text search configuration chunks use, with their shares of chunks; one for the search.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from psycopg import sql

from pagemill.errors import InputError
from pagemill.search.fusion import RRF_K

if TYPE_CHECKING:
    from pagemill.text_embed.embedder import TextEmbedder

MODES = ("hybrid", "keyword", "vector")
# "all": a chunk must hold every word of the query (websearch_to_tsquery's AND); "any": it must
# hold one, ranked by how many and how close (ts_rank_cd). Questions in a person's words rarely
# have all their words in one chunk: bench/bench_retrieval.py measures both.
MATCHES = ("any", "all")
# Chunks ranked per keyword list at most (see _chunk_keyword). Ranking costs about 20-40 us a
# chunk on this machine; with the rarest-words candidates, 250 kept hit@5 and MRR of every mode
# at or above those of 1,000 first-found candidates, and 100 lowered hybrid MRR
# (bench/RESULTS.md, search latency at scale).
RANK_POOL = 250
# Chunks holding a question's rarest words that are read to see whether they hold all of them, at
# most (by the statistics; see _required). Finding the chunks that hold every word through the GIN
# index alone reads the posting list of every word, common ones too: 20 ms at 1M chunks.
CHECK_POOL = 1_000
CAPTION_CONFIG = "english"
_HEADLINE = "StartSel=«, StopSel=», MaxWords=40, MinWords=15, MaxFragments=2, FragmentDelimiter= … "


class SearchUnavailable(InputError):
    """The search asked for cannot run (a vector mode with no embedder, an unknown mode)."""


@dataclass(frozen=True)
class SearchFilters:
    document_id: str | None = None
    first_page: int | None = None  # hits on or after this page
    last_page: int | None = None  # hits on or before this page
    doc_type: str | None = None  # documents.doc_type, as document understanding named it


@dataclass(frozen=True)
class SearchHit:
    kind: str  # "chunk" | "image"
    document_id: str
    score: float  # fused RRF score
    keyword_rank: int | None
    vector_rank: int | None
    chunk_no: int | None = None
    first_page: int | None = None
    last_page: int | None = None
    text: str | None = None  # chunk snippet, matched terms between « and »
    image_no: int | None = None
    page_no: int | None = None
    caption: str | None = None
    s3_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        common = {"kind": self.kind, "document_id": self.document_id, "score": self.score,
                  "keyword_rank": self.keyword_rank, "vector_rank": self.vector_rank}
        if self.kind == "chunk":
            return {**common, "chunk_no": self.chunk_no, "first_page": self.first_page,
                    "last_page": self.last_page, "text": self.text}
        return {**common, "image_no": self.image_no, "page_no": self.page_no, "caption": self.caption,
                "s3_key": self.s3_key}


def chunk_index_name(model: str) -> str:
    """The HNSW index of one embedding model's chunk vectors (names are at most 63 bytes)."""
    return f"chunks_embedding_{hashlib.sha256(model.encode()).hexdigest()[:16]}"


def chunk_vector(dim: int, alias: str | None = None) -> sql.Composed:
    """The expression the chunk HNSW index is built on, which queries must order by."""
    column = sql.Identifier(alias, "embedding") if alias else sql.Identifier("embedding")
    return sql.SQL("({column}::halfvec({dim}))").format(column=column, dim=sql.Literal(dim))


def search(
    conn: Any,
    text: str,
    *,
    mode: str = "hybrid",
    limit: int = 10,
    filters: SearchFilters = SearchFilters(),
    embedder: TextEmbedder | None = None,
    image_query: np.ndarray | None = None,
    candidates: int | None = None,
    rrf_k: int = RRF_K,
    match: str = "any",
) -> list[SearchHit]:
    """Hits for ``text``, best first. ``embedder`` embeds the query for the chunk vector list (the
    configured chunk model); ``image_query`` is the query's CLIP text vector for the image list."""
    if mode not in MODES:
        raise SearchUnavailable(f"search mode must be one of {', '.join(MODES)}, not {mode!r}")
    if match not in MATCHES:
        raise SearchUnavailable(f"match must be one of {', '.join(MATCHES)}, not {match!r}")
    if not text.strip():
        raise SearchUnavailable("nothing to search for: the query is empty")
    if limit < 1:
        raise SearchUnavailable("limit must be at least 1")
    if mode == "vector" and embedder is None and image_query is None:
        raise SearchUnavailable("vector search needs a text embedder: chunk embeddings are off")
    k = candidates or max(4 * limit, 40)
    with conn.transaction():
        words = _prepare(conn, text, k, shares=mode != "vector")
        query, params = _statement(text, mode=mode, limit=limit, filters=filters, embedder=embedder,
                                   image_query=image_query, k=k, rrf_k=rrf_k, match=match, words=words)
        if query is None:
            return []
        rows = conn.execute(query, params).fetchall()
    return [_hit(row) for row in rows]


@dataclass(frozen=True)
class _Words:
    """The query's words as one text search configuration parses them."""

    config: str
    rarest: list[str] | None  # the rarest words, when chunks holding any word are too many to rank
    required: list[str] | None = None  # the rarest words, when few chunks hold them all (_required)


def _prepare(conn: Any, text: str, k: int, *, shares: bool) -> list[_Words]:
    """Set this transaction's scan options; return the query's words per text search configuration
    chunks use (configurations that find no word in it, stop words only, are left out).

    Filtered HNSW scans keep reading the graph until they have k rows (pgvector 0.8). JIT is off:
    the search's plan costs pass jit_above_cost at a few hundred thousand chunks, and compiling
    it takes longer than running it. The configurations are read here, in the same round trip,
    so that the search can write each tsquery as a constant the planner sees: it then knows how
    many chunks a query matches, and picks the GIN index for rare words and a scan that stops at
    the pool's size for common ones (a tsquery read from a table is a black box to it). Each
    word's share of chunks comes from the statistics ANALYZE keeps on chunks.tsv: its most common
    elements, and for a word not among them (a rarer one) the least share among them. Without
    ``shares`` (no keyword list: the words only mark the snippets) only the configurations are read."""
    options = ("select set_config('hnsw.ef_search', %(ef)s, true),"
               " set_config('hnsw.iterative_scan', 'relaxed_order', true), set_config('jit', 'off', true)")
    ef = str(min(max(k, 40), 1000))
    if not shares:
        configs = conn.execute(options + ", array(select ts_config::text from text_search_configs order by 1)",
                               {"ef": ef}).fetchone()[3]
        return [_Words(cfg, None) for cfg in configs]
    parsed, chunks = conn.execute(
        options + ", (select coalesce(json_agg(json_build_array(cfg, words, shares)), '[]')"
        "  from (select cfg, array_agg(word order by share nulls first, word) as words,"
        "   array_agg(coalesce(share, least_share, 0) order by share nulls first, word) as shares"
        "   from (select c.ts_config::text as cfg, w.word, st.freqs[array_position(st.elems, w.word)] as share,"
        # most_common_elem_freqs: one per element, then the least and the greatest of them
        "     st.freqs[array_length(st.elems, 1) + 1] as least_share"
        # the words the query asks for: websearch's "-word" is left out (querytree drops negations)
        "    from text_search_configs c cross join lateral querytree(websearch_to_tsquery(c.ts_config, %(q)s)) asked"
        "    cross join lateral unnest(tsvector_to_array(to_tsvector(c.ts_config, %(q)s))) w(word)"
        "    left join (select s.most_common_elems::text::text[] as elems, s.most_common_elem_freqs as freqs"
        "     from pg_stats s where s.schemaname = current_schema() and s.tablename = 'chunks'"
        "     and s.attname = 'tsv') st on true"
        "    where strpos(asked, '''' || replace(w.word, '''', '''''') || '''') > 0) w"
        "   group by cfg order by cfg) p),"
        " (select reltuples from pg_class where oid = 'chunks'::regclass)",
        {"ef": ef, "q": text},
    ).fetchone()[3:]
    return [_Words(cfg, _rarest(found, shares, chunks), _required(found, shares, chunks))
            for cfg, found, shares in parsed]


def _rarest(words: list[str], shares: list[float], chunks: float) -> list[str] | None:
    """The rarest words (``words`` come rarest first): every word rarer than the most common ones
    ANALYZE lists, then more while all these together are expected in at most RANK_POOL chunks;
    None when that is all of them. Chunks holding one of these are the ones worth ranking among
    those holding some word: a word most chunks hold says little about which of them answers the
    question, and ranking the first RANK_POOL chunks that hold any word would pick them by where
    they lie in the table."""
    chosen: list[str] = []
    none_held = 1.0  # the share of chunks holding none of the chosen words (words independent)
    for word, share in zip(words, shares, strict=True):
        if chosen and chunks * (1 - none_held * (1 - share)) > RANK_POOL and share > shares[0]:
            return chosen
        chosen.append(word)
        none_held *= 1 - share
    return None


def _required(words: list[str], shares: list[float], chunks: float) -> list[str] | None:
    """The fewest rarest words (``words`` come rarest first) that together are expected in at
    most CHECK_POOL chunks; None when that takes all of them. Chunks holding every word are
    found among those holding these: the index reads their posting lists only, and the chunks
    found are read to check the other words."""
    expected = chunks
    for n, share in enumerate(shares, start=1):
        expected *= share
        if expected <= CHECK_POOL:
            return words[:n] if n < len(words) else None
    return None


def _statement(
    text: str,
    *,
    mode: str,
    limit: int,
    filters: SearchFilters,
    embedder: TextEmbedder | None,
    image_query: np.ndarray | None,
    k: int,
    rrf_k: int,
    match: str,
    words: list[_Words],
) -> tuple[sql.Composed | None, dict[str, Any]]:
    """The one statement that ranks, fuses and returns the hits (None: no list to search)."""
    params: dict[str, Any] = {"q": text, "k": k, "rrf_k": rrf_k, "limit": limit, "headline": _HEADLINE,
                              "caption_cfg": CAPTION_CONFIG, "pool": RANK_POOL}
    chunk_where, image_where = _filters(filters, params)
    join_documents = sql.SQL(" join documents d on d.id = c.document_id" if filters.doc_type else "")
    join_documents_i = sql.SQL(" join documents d on d.id = i.document_id" if filters.doc_type else "")
    queries = []  # per configuration chunks use
    for n, found in enumerate(words):
        params[f"cfg{n}"] = found.config
        every = sql.SQL("websearch_to_tsquery({cfg}::regconfig, %(q)s)").format(cfg=sql.Placeholder(f"cfg{n}"))
        rarest = required = None
        if found.rarest:
            params[f"rare{n}"] = " | ".join(_lexeme(word) for word in found.rarest)
            rarest = sql.Placeholder(f"rare{n}")
        if found.required:
            params[f"req{n}"] = " & ".join(_lexeme(word) for word in found.required)
            required = sql.Placeholder(f"req{n}")
        queries.append(_Keyword(sql.Placeholder(f"cfg{n}"), every, _any_word(every, match), rarest, required))
    caption_every = sql.SQL("websearch_to_tsquery(%(caption_cfg)s::regconfig, %(q)s)")
    caption_any = _any_word(caption_every, match)
    lists: list[sql.Composable] = []
    if mode in ("hybrid", "keyword") and queries:
        lists.append(_chunk_keyword(queries, match, join_documents, chunk_where))
    if mode in ("hybrid", "keyword"):
        lists.append(sql.SQL(
            "select 'image', document_id, image_no, 'keyword',"
            " row_number() over (order by r desc, document_id, image_no) from ("
            " select i.document_id, i.image_no, ts_rank_cd(i.caption_tsv, {tq}) + (i.caption_tsv @@ {every})::int as r"
            " from images i{join} where i.caption_tsv @@ {tq} and {where}"
            " order by r desc, i.document_id, i.image_no limit %(k)s) s"
        ).format(tq=caption_any, every=caption_every, join=join_documents_i, where=image_where))
    if mode in ("hybrid", "vector") and embedder is not None:
        params["v"] = _vector_text(embedder.query(text))
        distance = sql.SQL("{expr} <=> %(v)s::halfvec({dim})").format(
            expr=chunk_vector(embedder.dim, "c"), dim=sql.Literal(embedder.dim))
        # The model is a literal, not a parameter: the planner must see it to pick the index
        # whose predicate is "embedding_model = that model".
        lists.append(sql.SQL(
            "select 'chunk', document_id, chunk_no, 'vector', row_number() over (order by dist, document_id, chunk_no)"
            " from (select c.document_id, c.chunk_no, {distance} as dist from chunks c{join}"
            " where c.embedding_model = {model} and {where} order by {distance} limit %(k)s) s"
        ).format(distance=distance, join=join_documents, model=sql.Literal(embedder.model), where=chunk_where))
    if mode in ("hybrid", "vector") and image_query is not None:
        params["iv"] = _vector_text(image_query)
        lists.append(sql.SQL(
            "select 'image', document_id, image_no, 'vector', row_number() over (order by dist, document_id, image_no)"
            " from (select i.document_id, i.image_no, i.embedding <=> %(iv)s::vector as dist from images i{join}"
            " where i.embedding is not null and {where} order by i.embedding <=> %(iv)s::vector limit %(k)s) s"
        ).format(join=join_documents_i, where=image_where))
    if not lists:
        return None, params
    # The snippet marks the words of the query as parsed by the chunk's own configuration.
    headline_query = sql.SQL("case c.ts_config {whens} end").format(whens=sql.SQL(" ").join(
        sql.SQL("when {cfg}::regconfig then {tq}").format(cfg=q.cfg, tq=q.any_word) for q in queries
    )) if queries else sql.SQL("''::tsquery")
    return sql.SQL(_FUSED).format(lists=sql.SQL(" union all ").join(lists), headline_query=headline_query), params


def _any_word(every: sql.Composable, match: str) -> sql.Composable:
    """In "any" mode the AND of the parsed query's terms becomes an OR. The text form holds the
    lexemes already stemmed, and tsquery input does not stem them again; every function here is
    immutable, so the planner folds the whole expression into a constant."""
    if match == "all":
        return every
    return sql.SQL("replace(({every})::text, ' & ', ' | ')::tsquery").format(every=every)


@dataclass(frozen=True)
class _Keyword:
    """One text search configuration's parts of the keyword list, as SQL."""

    cfg: sql.Composable
    every: sql.Composable  # the query: every word
    any_word: sql.Composable  # the query as "any" or "all" match asks
    rarest: sql.Composable | None  # _Words.rarest as a tsquery (OR)
    required: sql.Composable | None  # _Words.required as a tsquery (AND)


def _chunk_keyword(queries: list[_Keyword], match: str, join: sql.Composable, where: sql.Composable) -> sql.Composable:
    """The chunk keyword list. Ranking reads every candidate's tsvector, so the candidates are
    bounded: up to RANK_POOL chunks holding every word; only when fewer than ``k`` do, up to
    RANK_POOL more holding some (in "any" mode), those holding the query's rarest words where
    the chunks holding any word are more (_rarest). A common word at 200k chunks would otherwise
    rank tens of thousands of rows per query. Chunks holding every word get a whole point more
    than their cover density (ts_rank_cd), so they outrank those holding most of the words.

    Only the rarest words go to the GIN index (``tsv @@`` a constant); the rest of each match is
    checked on the rows found, with ts_match_vq (the function behind ``@@``, which the planner
    cannot turn into an index condition): an index condition on a common word reads its whole
    posting list, most of the table."""
    def candidates(every_word: bool) -> sql.Composable:
        branches = []
        for q in queries:
            if every_word and q.required is None:
                matches = sql.SQL("c.tsv @@ {every}").format(every=q.every)
            elif every_word:
                matches = sql.SQL("c.tsv @@ {required}::tsquery and ts_match_vq(c.tsv, {every})").format(
                    required=q.required, every=q.every)
            elif q.rarest is None:
                matches = sql.SQL("c.tsv @@ {tq} and not c.tsv @@ {every}").format(tq=q.any_word, every=q.every)
            else:
                matches = sql.SQL(
                    "c.tsv @@ {rarest}::tsquery and ts_match_vq(c.tsv, {tq}) and not ts_match_vq(c.tsv, {every})"
                ).format(rarest=q.rarest, tq=q.any_word, every=q.every)
            branches.append(sql.SQL(
                "(select c.document_id, c.chunk_no, ts_rank_cd(c.tsv, {tq}) + {bonus} as r from chunks c{join}"
                " where c.ts_config = {cfg}::regconfig and {matches} and {where} limit %(pool)s)"
            ).format(tq=q.any_word, bonus=sql.SQL("1" if every_word else "0"), join=join, cfg=q.cfg,
                     matches=matches, where=where))
        return sql.SQL(" union all ").join(branches)
    some_words = sql.SQL(
        " union all select * from ({some}) s where (select count(*) from every_word) < %(k)s"
    ).format(some=candidates(False)) if match == "any" else sql.SQL("")
    return sql.SQL(
        "select 'chunk' as kind, document_id, chunk_no as item_no, 'keyword' as list,"
        " row_number() over (order by r desc, document_id, chunk_no) as rank from ("
        " with every_word as materialized ({every})"
        " select * from ((select * from every_word){some_words}) m"
        " order by r desc, m.document_id, m.chunk_no limit %(k)s) s"
    ).format(every=candidates(True), some_words=some_words)


def _lexeme(word: str) -> str:
    """A lexeme as tsquery input writes it: quoted, so that no character in it is an operator."""
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


_FUSED = """
with ranked (kind, document_id, item_no, list, rank) as ({lists}),
fused as (
    select kind, document_id, item_no, sum(1.0 / (%(rrf_k)s + rank)) as score,
           min(rank) filter (where list = 'keyword') as keyword_rank,
           min(rank) filter (where list = 'vector') as vector_rank
    from ranked group by kind, document_id, item_no
)
select f.kind, f.document_id, f.score, f.keyword_rank, f.vector_rank, f.item_no,
       c.first_page, c.last_page,
       case when f.kind = 'chunk' then ts_headline(
           c.ts_config, c.text, coalesce({headline_query}, ''::tsquery), %(headline)s)
       end,
       i.page_no, i.caption, i.s3_key
from fused f
left join chunks c on f.kind = 'chunk' and c.document_id = f.document_id and c.chunk_no = f.item_no
left join images i on f.kind = 'image' and i.document_id = f.document_id and i.image_no = f.item_no
order by f.score desc, f.kind, f.document_id, f.item_no
limit %(limit)s
"""


def _vector_text(vector: np.ndarray) -> str:
    """pgvector's text form: the query needs no vector adapter on the caller's connection."""
    return "[" + ",".join(f"{x:.7g}" for x in np.asarray(vector, dtype=np.float32).ravel()) + "]"


def _filters(filters: SearchFilters, params: dict[str, Any]) -> tuple[sql.Composable, sql.Composable]:
    chunk: list[sql.Composable] = [sql.SQL("true")]
    image: list[sql.Composable] = [sql.SQL("true")]
    if filters.document_id:
        params["document_id"] = filters.document_id
        chunk.append(sql.SQL("c.document_id = %(document_id)s"))
        image.append(sql.SQL("i.document_id = %(document_id)s"))
    if filters.first_page is not None:
        params["first_page"] = filters.first_page
        chunk.append(sql.SQL("c.last_page >= %(first_page)s"))
        image.append(sql.SQL("i.page_no >= %(first_page)s"))
    if filters.last_page is not None:
        params["last_page"] = filters.last_page
        chunk.append(sql.SQL("c.first_page <= %(last_page)s"))
        image.append(sql.SQL("i.page_no <= %(last_page)s"))
    if filters.doc_type:
        params["doc_type"] = filters.doc_type
        chunk.append(sql.SQL("d.doc_type = %(doc_type)s"))
        image.append(sql.SQL("d.doc_type = %(doc_type)s"))
    return sql.SQL(" and ").join(chunk), sql.SQL(" and ").join(image)


def _hit(row: Sequence[Any]) -> SearchHit:
    kind, document_id, score, keyword_rank, vector_rank, item_no, first, last, snippet, page_no, caption, s3_key = row
    common = {"kind": kind, "document_id": document_id, "score": round(float(score), 6),
              "keyword_rank": keyword_rank, "vector_rank": vector_rank}
    if kind == "chunk":
        return SearchHit(**common, chunk_no=item_no, first_page=first, last_page=last, text=snippet)
    return SearchHit(**common, image_no=item_no, page_no=page_no, caption=caption, s3_key=s3_key)
