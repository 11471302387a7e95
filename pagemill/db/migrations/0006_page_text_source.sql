-- How each page's text was obtained (ExtractBatch's completeness check and OCR): 'text_layer',
-- a fallback path ('ignore_graphics', 'text_blocks', 'layout'), or 'ocr' with the mean confidence
-- of its recognised lines. Older rows keep NULL: they were extracted before pages were checked.
alter table pages add column text_source text;
alter table pages add column ocr_confidence real;
