"""Where the stack finds what it packages: the repository, the library, the handler folders,
the container images' folders and the migrations."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LIBRARY_DIR = "pagemill"  # the runtime library every Lambda bundle and the GPU image carry
HANDLERS_DIR = "lambdas"  # one folder per Lambda bundle: its handler modules and requirements.txt
CONTAINER_SOURCE = "containers/clip-gpu"
EXTRACT_IMAGE_SOURCE = "containers/extract"  # ExtractBatch's image: the extract handler plus OCR
MIGRATIONS_DIR = REPO_ROOT / LIBRARY_DIR / "db" / "migrations"


def build_context_exclude(*folders: str) -> list[str]:
    """A Docker build context of the repository root that holds only ``folders`` (relative to
    it): everything else stays out, so staging and hashing the image asset does not walk .venv,
    node_modules, cdk.out, build, tests... Docker's ignore syntax: exclude all, then re-include."""
    return ["*", *(f"!{folder}" for folder in folders), "**/__pycache__", "**/*.pyc", "**/.*"]
