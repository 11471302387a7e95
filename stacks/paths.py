"""Where the stack finds what it packages: the repository, the library, the handler folders,
the GPU worker and the migrations."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LIBRARY_DIR = "pagemill"  # the runtime library every Lambda bundle and the GPU image carry
CONTAINER_SOURCE = "containers/clip-gpu"
MIGRATIONS_DIR = REPO_ROOT / LIBRARY_DIR / "db" / "migrations"
