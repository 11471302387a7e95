-- Outcomes beside succeeded / failed / cancelled (DESIGN.md, "Outcomes a document can have"):
--   partial      finished, rows written, something the user expects is missing: `warnings` says
--                what, which pages or images, and how to fill it;
--   interrupted  locally, the run that owned the document is gone (killed, power cut): its lease
--                in local_runs lapsed. Never left `running` for ever.
alter table documents drop constraint documents_status_check;
alter table documents add constraint documents_status_check
    check (status in ('running', 'succeeded', 'partial', 'failed', 'cancelled', 'interrupted'));

-- [{"code": "content_lost", "message": "...", "pages": [3, 4], "images": ["<sha256>", ...]}, ...]
-- (pagemill.records.DocumentWarning); '[]' for a document that is complete.
alter table documents add column warnings jsonb not null default '[]';

-- The local engine renews this while it watches the run (every second or so); a lease that has
-- lapsed means the engine is gone, and its running document is marked interrupted by whoever
-- looks next (`pagemill status`, `pagemill run`). NULL: an engine from before the lease.
alter table local_runs add column lease_until timestamptz;
