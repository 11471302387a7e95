-- Search over what is stored: full text on chunks and image captions, vectors on chunks.

-- The document's language as PostgreSQL names its text search configuration ('english',
-- 'german', ...); 'simple' (no stemming, no stop words) where it is not known.
alter table documents add column ts_config regconfig not null default 'simple';

-- Each chunk is indexed with its document's configuration (copied here because a generated
-- column can read its own row only). to_tsvector(regconfig, text) is immutable, as a generated
-- column needs.
alter table chunks
    add column ts_config regconfig not null default 'simple',
    add column tsv tsvector generated always as (to_tsvector(ts_config, text)) stored,
    -- Dimensions follow the model, so the column has none; the HNSW index is per model, an
    -- expression index on embedding::halfvec(dim) where embedding_model = that model
    -- (pagemill.db.chunk_vectors), built after bulk loads.
    add column embedding vector,
    add column embedding_model text,
    add constraint chunks_embedding_has_model check ((embedding is null) = (embedding_model is null));
create index chunks_tsv_idx on chunks using gin (tsv);

-- Captions are written by the model in English (the caption prompt is English).
alter table images
    add column caption_tsv tsvector generated always as (to_tsvector('english', coalesce(caption, ''))) stored;
create index images_caption_tsv_idx on images using gin (caption_tsv);

-- The configurations chunks are indexed with (Write adds its document's). A search parses the
-- query once per configuration listed here: one that no chunk uses would cost a wasted scan, as
-- the GIN index cannot tell configurations apart.
create table text_search_configs (ts_config regconfig primary key);
