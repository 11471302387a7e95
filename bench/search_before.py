"""The search statement before the scale work (pagemill.search.hybrid at commit fe20662), kept as
bench_search_scale's baseline: chunk keyword and chunk vector lists (the bench stores no images)
of that statement, no filters, "any word" matching.

What changed since: its tsqueries came from a CTE, so the planner could not see how many chunks
they match (the transaction turned sequential scans off to keep it on the GIN index), JIT was on,
and each candidate was ranked after the pool was materialised with its tsvector."""

from __future__ import annotations

from typing import Any

from pagemill.search.hybrid import RANK_POOL, _vector_text, chunk_vector

_KEYWORD = (
    "select 'chunk' as kind, document_id, chunk_no as item_no, 'keyword' as list,"
    " row_number() over (order by r desc, document_id, chunk_no) as rank from ("
    " with every_word as materialized (select c.document_id, c.chunk_no, c.tsv, q.tq, q.tq_all"
    " from chunks c join q on q.for_chunks and c.ts_config = q.cfg and c.tsv @@ q.tq_all limit %(pool)s)"
    " select m.document_id, m.chunk_no, ts_rank_cd(m.tsv, m.tq) + (m.tsv @@ m.tq_all)::int as r"
    " from ((select * from every_word) union all (select c.document_id, c.chunk_no, c.tsv, q.tq, q.tq_all"
    " from chunks c join q on q.for_chunks and c.ts_config = q.cfg and c.tsv @@ q.tq"
    " where not c.tsv @@ q.tq_all and (select count(*) from every_word) < %(k)s limit %(pool)s)) m"
    " order by r desc, m.document_id, m.chunk_no limit %(k)s) s"
)
_VECTOR = (
    "select 'chunk', document_id, chunk_no, 'vector', row_number() over (order by dist, document_id, chunk_no)"
    " from (select c.document_id, c.chunk_no, {distance} as dist from chunks c"
    " where c.embedding_model = '{model}' and true order by {distance} limit %(k)s) s"
)
_FUSED = """
with parsed as (
    select cfg, websearch_to_tsquery(cfg, %(q)s) as tq, true as for_chunks
    from (select ts_config as cfg from text_search_configs) as cfgs
),
q as (select cfg, tq as tq_all, replace(tq::text, ' & ', ' | ')::tsquery as tq, for_chunks from parsed),
ranked (kind, document_id, item_no, list, rank) as ({lists}),
fused as (
    select kind, document_id, item_no, sum(1.0 / (60 + rank)) as score from ranked group by kind, document_id, item_no
)
select f.document_id, f.item_no, f.score, ts_headline(c.ts_config, c.text,
       coalesce((select tq from q where q.cfg = c.ts_config), ''::tsquery), 'MaxFragments=2')
from fused f join chunks c on c.document_id = f.document_id and c.chunk_no = f.item_no
order by f.score desc, f.document_id, f.item_no limit %(limit)s
"""


def search_before(conn: Any, text: str, *, mode: str, limit: int, embedder: Any) -> list[Any]:
    k = max(4 * limit, 40)
    lists = []
    if mode in ("hybrid", "keyword"):
        lists.append(_KEYWORD)
    if mode in ("hybrid", "vector"):
        distance = chunk_vector(embedder.dim, "c").as_string() + f" <=> %(v)s::halfvec({embedder.dim})"
        lists.append(_VECTOR.format(distance=distance, model=embedder.model))
    params = {"q": text, "k": k, "pool": RANK_POOL, "limit": limit, "v": _vector_text(embedder.query(text))}
    with conn.transaction():
        conn.execute(
            "select set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', 'relaxed_order', true),"
            " set_config('enable_seqscan', 'off', true)", (str(k),))
        return conn.execute(_FUSED.format(lists=" union all ".join(lists)), params).fetchall()
