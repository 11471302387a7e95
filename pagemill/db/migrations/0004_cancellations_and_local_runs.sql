-- Operating the pipeline (pagemill status / cancel / redrive).

-- A document whose execution was stopped on purpose is 'cancelled', with the reason in error.
alter table documents drop constraint documents_status_check;
alter table documents add constraint documents_status_check
    check (status in ('running', 'succeeded', 'failed', 'cancelled'));

-- Executions that were cancelled. A stopped execution's Lambdas already in flight still run to
-- the end: Plan and Write read this table (under an advisory lock on the execution ARN) so that
-- late work of a cancelled execution never revives or completes its document. A redrive is a new
-- execution, which is not in here. The local engine also polls it to stop its own executions.
create table cancellations (
    execution_arn text primary key,
    reason        text not null,
    requested_at  timestamptz not null default now()
);

-- Runs of the local engine (`pagemill run`), so that another process can see their progress,
-- tell a live run from one that died, and find the file to redrive. No foreign key: a run is
-- recorded when it is submitted, before Plan registers its document.
create table local_runs (
    execution_arn text primary key,
    document_id   text not null,
    path          text not null,      -- the local file that was uploaded
    host          text not null,
    pid           int not null,       -- the engine's process
    status        text not null,      -- the execution's status, as the engine last saw it
    current_state text,
    page_count    int,
    pages_done    int not null default 0,
    started_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
create index local_runs_document_idx on local_runs (document_id, started_at desc);
