-- Captions and document understanding (Claude). A caption that could not be made is a row with
-- caption_status 'skipped' and the reason, never a silent NULL; NULL status: captions not run.

alter table images
    add column tags           text[] not null default '{}',
    add column caption_status text check (caption_status in ('captioned', 'skipped')),
    add column caption_reason text;

alter table documents
    add column doc_type             text,
    add column summary              text,
    add column understanding_status text check (understanding_status in ('understood', 'skipped')),
    add column understanding_reason text,
    -- Tokens the model API billed for this document (captions and understanding together).
    add column input_tokens         int not null default 0,
    add column output_tokens        int not null default 0,
    -- {"captioned": n, "skipped": m, "reasons": {"circuit open: model API failing": m, ...}}
    add column caption_summary      jsonb;

-- Products the document lists, as the model read them from the markdown.
create table products (
    document_id text not null references documents (id) on delete cascade,
    product_no  int not null check (product_no >= 0),
    name        text not null,
    attributes  jsonb not null default '{}',
    page_no     int,   -- NULL when the model named a page it was not shown
    primary key (document_id, product_no)
);
