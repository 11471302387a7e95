-- pagemill schema, version 1. PostgreSQL 15+ with pgvector.
-- No vector index here: rows go into an HNSW-indexed table at about 150 rows/s, so the index
-- comes in a later migration, built once over loaded data.

create extension if not exists vector;

-- One row per distinct content (id = first 32 hex digits of its sha256), whatever it was
-- uploaded as. status is what on-call and the pipeline read: a failed document always says why.
create table documents (
    id            text primary key,
    sha256        text not null unique,
    size_bytes    bigint,
    page_count    int,
    status        text not null check (status in ('running', 'succeeded', 'failed')),
    error_class   text,           -- the Step Functions error name, e.g. EncryptedPdf, States.Timeout
    error         text,           -- one line a person understands
    cause         text,           -- the full cause, for whoever digs further
    failed_state  text,           -- the state that failed, e.g. ExtractPages
    execution_arn text,
    timings       jsonb not null default '{}',
    stats         jsonb not null default '{}',
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
-- "What is failed / stuck running since when": the questions on-call asks.
create index documents_status_updated_idx on documents (status, updated_at);

-- Every uploaded object version, and the content it turned out to be.
create table sources (
    bucket      text not null,
    key         text not null,
    version_id  text not null default '',   -- '' for unversioned buckets: primary keys cannot hold NULL
    document_id text not null references documents (id) on delete cascade,
    first_seen  timestamptz not null default now(),
    primary key (bucket, key, version_id)
);
create index sources_document_id_idx on sources (document_id);

create table pages (
    document_id text not null references documents (id) on delete cascade,
    page_no     int not null check (page_no >= 1),
    markdown    text not null,
    char_count  int not null,
    width       real,
    height      real,
    image_count int not null default 0,
    primary key (document_id, page_no)
);

create table chunks (
    document_id text not null references documents (id) on delete cascade,
    chunk_no    int not null check (chunk_no >= 0),
    first_page  int not null,
    last_page   int not null,
    text        text not null,
    primary key (document_id, chunk_no),
    check (first_page <= last_page)
);

-- One row per distinct image of a document: a logo drawn on every page is one row whose
-- page_nos lists every page; page_no and bbox are its first occurrence.
create table images (
    document_id text not null references documents (id) on delete cascade,
    image_no    int not null check (image_no >= 0),
    page_no     int not null,
    page_nos    int[] not null check (cardinality(page_nos) >= 1),
    bbox        real[] check (cardinality(bbox) = 4),
    width       int,
    height      int,
    sha256      text not null,
    ext         text,
    s3_key      text not null,
    size_bytes  int,
    caption     text,
    embedding   vector(512),
    primary key (document_id, image_no),
    unique (document_id, sha256)
);
