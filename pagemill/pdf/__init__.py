"""Reading PDFs: open and validate (document), page markdown (markdown), a batch of pages into
records (pages), and chunks (chunks). Pure: no AWS, no database."""
