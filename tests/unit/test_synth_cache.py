"""The local engine's synth cache: redone when what shapes the template changes, kept otherwise."""

from __future__ import annotations

from pathlib import Path

from pagemill_tools.engine.synth import _fingerprint


def _project(root: Path) -> Path:
    for name, text in {
        "app.py": "app", "cdk.json": "{}", "stacks/functions.py": "stack", "lambdas/extract/handler.py": "handler",
        "pagemill/settings.py": "batch_pages = 25", "pagemill/pdf/ocr.py": "ocr",
        "containers/extract/Dockerfile": "FROM base",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_settings_default_resynthesizes_and_library_code_does_not(tmp_path: Path) -> None:
    root = _project(tmp_path)
    before = _fingerprint(root, {})
    # GIVEN a change to the library's code and to ExtractBatch's Dockerfile: only the image
    # asset's hash moves, which the local engine never reads (it runs functions from source)
    (root / "pagemill/pdf/ocr.py").write_text("better ocr")
    (root / "containers/extract/Dockerfile").write_text("FROM other")
    assert _fingerprint(root, {}) == before
    # WHEN a setting's default changes (it becomes a function's environment)
    (root / "pagemill/settings.py").write_text("batch_pages = 10")
    # THEN the template is synthesized again, as for a change to the stack or a context override
    after = _fingerprint(root, {})
    assert after != before
    (root / "stacks/functions.py").write_text("stack 2")
    assert len({after, _fingerprint(root, {}), _fingerprint(root, {"batch_pages": 5})}) == 3
