"""pagemill: PDFs in S3 to pages, chunks and images in PostgreSQL."""

import sys as _sys

# PyMuPDF 2.0 loads its layout model whenever pymupdf is imported (0.4 s of CPU, 50 MB): marked
# absent before any pagemill module imports pymupdf, it is loaded when a page first needs it
# (pagemill.pdf.layout_model). Nothing changes for a process that imported pymupdf already.
if "pymupdf" not in _sys.modules:
    _sys.modules.setdefault("pymupdf.layout", None)  # type: ignore[arg-type]
