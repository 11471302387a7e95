"""What a person should do about a failed or cancelled document, by its error class (the Step
Functions error name: pagemill.errors' class names, States.*, Cancelled)."""

from __future__ import annotations

_REDRIVE = "Redrive it; if it fails the same way again, look at the execution's history and the function's log."
_BY_CLASS = {
    "NotAPdf": "The file is not a PDF. Upload the PDF itself (not an image, archive or link to it).",
    "EmptyFile": "The file is empty. Check that the copy finished, then upload it again.",
    "EncryptedPdf": "The PDF is password-protected. Save a copy without the password and upload that.",
    "MalformedPdf": "The PDF is damaged. Export or print it to PDF again from where it came from and upload that.",
    "NoPages": "The PDF has no pages: there is nothing to extract.",
    "PageLimitExceeded": "The PDF has more pages than this deployment accepts. Split it into smaller PDFs.",
    "FileTooLarge": "The file is larger than this deployment accepts. Split it into smaller PDFs.",
    "SourceMissing": "The uploaded file was deleted before it was processed. Upload it again.",
    "Cancelled": "It was cancelled. Redrive it to process it again.",
    "Interrupted": "The local run that processed it is gone. Redrive it (`pagemill redrive`), or upload it again.",
    "InternalError": "A defect in pagemill. Redrive it; if it fails again, report it with the execution ARN.",
    "States.Timeout": "A step ran out of time. " + _REDRIVE,
    "States.HeartbeatTimeout": "The GPU worker stopped reporting. " + _REDRIVE,
}


def what_to_do(error_class: str | None) -> str:
    if error_class is None:
        return _REDRIVE
    if error_class in _BY_CLASS:
        return _BY_CLASS[error_class]
    if error_class.endswith("Unavailable"):
        return "A service it needs (database, storage, model API) was unavailable. " + _REDRIVE
    return _REDRIVE
