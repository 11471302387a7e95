"""pagemill: PDFs in S3 to pages, chunks and images in PostgreSQL."""
