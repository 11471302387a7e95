"""pagemill: PDFs in S3 to pages, chunks and images in PostgreSQL."""

from pagemill.pdf import layout_deferral as _layout_deferral

# Before any pagemill module imports pymupdf: its layout model loads when a page first needs it.
_layout_deferral.install()
