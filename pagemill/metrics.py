"""The custom CloudWatch metrics the functions publish (Powertools EMF) and the dashboard and
alarms read: one list, so a renamed metric fails a test instead of leaving an alarm on nothing."""

from __future__ import annotations

NAMESPACE = "Pagemill"
SERVICE = "pagemill"  # Powertools adds it as the "service" dimension
ERROR_CLASS_DIMENSION = "ErrorClass"

DOCUMENTS_PLANNED = "DocumentsPlanned"
PAGES_PLANNED = "PagesPlanned"
PAGES_EXTRACTED = "PagesExtracted"
IMAGES_EXTRACTED = "ImagesExtracted"
IMAGES_COLLECTED = "ImagesCollected"
IMAGES_EMBEDDED = "ImagesEmbedded"
CHUNKS_EMBEDDED = "ChunksEmbedded"
IMAGES_CAPTIONED = "ImagesCaptioned"
CAPTIONS_SKIPPED = "CaptionsSkipped"
PRODUCTS_FOUND = "ProductsFound"
MODEL_INPUT_TOKENS = "ModelInputTokens"
MODEL_OUTPUT_TOKENS = "ModelOutputTokens"
SUMMARY_SECONDS_SPOKEN = "SummarySecondsSpoken"
SUMMARY_CHARS_SPOKEN = "SummaryCharsSpoken"
DOCUMENTS_SUCCEEDED = "DocumentsSucceeded"
DOCUMENTS_PARTIAL = "DocumentsPartial"  # finished with warnings: something expected is missing
DOCUMENTS_FAILED = "DocumentsFailed"
DOCUMENTS_FAILED_BY_CLASS = "DocumentsFailedByClass"
RUNNING_EXECUTIONS = "RunningExecutions"
OLDEST_RUNNING_EXECUTION_SECONDS = "OldestRunningExecutionSeconds"


def rows_written(kind: str) -> str:
    """PagesWritten, ChunksWritten, ImagesWritten: what Write counted."""
    return f"{kind.capitalize()}Written"
