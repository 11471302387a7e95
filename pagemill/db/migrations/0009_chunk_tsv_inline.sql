-- Keep each chunk's tsvector in its row. A 1-1.5 KB chunk's tsvector is 1.3-2 KB and barely
-- compresses, so with the default (extended) storage the row passes the 2 KB TOAST threshold and
-- the tsvector, the larger column, goes out of line: every row a keyword search checks or ranks
-- then costs a TOAST index lookup and a copy, once per function that reads it (the match and the
-- rank). With 'main' the text, read only for the 10 snippets, goes out of line first.
-- (bench/RESULTS.md, search latency at scale.) Rows written before keep their storage until they
-- are rewritten (VACUUM FULL chunks).
alter table chunks alter column tsv set storage main;
