"""Synthesize the CDK app exactly as ``cdk synth`` would, cached by the content of everything
that shapes the template the local engine reads (app.py, cdk.json, stacks/, lambdas/, the
library's contract modules), so a local run pays the node/jsii start-up (several seconds) only
after the infrastructure changed."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The library's contract modules the stack imports (settings' defaults become the functions'
# environment). The rest of pagemill/ and containers/ is left out on purpose: it changes only the
# hash of ExtractBatch's and the GPU worker's image assets, which the local engine never reads (it
# runs every function and task from its source folder), so editing the library costs no synth.
_INPUTS = ("app.py", "cdk.json", "stacks", "lambdas", "pagemill/settings.py", "pagemill/keys.py", "pagemill/metrics.py")
# Syntheses kept in the cache (different context overrides, e.g. tests', are different entries).
_KEEP_SYNTHESES = 6


class SynthError(Exception):
    """The CDK app failed to synthesize."""


def _fingerprint(root: Path, overrides: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(dict(overrides), sort_keys=True).encode())
    for name in _INPUTS:
        path = root / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if "__pycache__" in file.parts or not file.exists():
                continue
            digest.update(str(file.relative_to(root)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:20]


def synthesize(
    cache_dir: Path, root: Path = PROJECT_ROOT, *, context: Mapping[str, Any] | None = None
) -> tuple[Path, str]:
    """Return (template path, stack name) of the synthesized pipeline stack. ``context``
    overrides cdk.json's context like ``cdk synth -c key=value`` does."""
    overrides = dict(context or {})
    out = cache_dir / _fingerprint(root, overrides)
    if not (out / "manifest.json").is_file():
        _run_app(root, out, overrides)
        _prune(cache_dir, keep=out)
    return _stack_template(out)


def _prune(cache_dir: Path, *, keep: Path) -> None:
    """Older syntheses (each holds a copy of the sources) beyond the newest few are removed."""
    entries = sorted(
        (p for p in cache_dir.iterdir() if p.is_dir() and (p / "manifest.json").is_file() and p != keep),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in entries[_KEEP_SYNTHESES - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def _run_app(root: Path, out: Path, overrides: Mapping[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    context = {**json.loads((root / "cdk.json").read_text()).get("context", {}), **overrides}
    # Local runs never deploy, so skip asset bundling (pip for Lambda's platform); asset
    # metadata tells the local engine where each function's handler code was staged.
    context.update({"aws:cdk:bundling-stacks": [], "aws:cdk:enable-asset-metadata": True})
    staging = Path(tempfile.mkdtemp(prefix="synth-", dir=out.parent))
    env = {
        **os.environ,
        "CDK_OUTDIR": str(staging),
        "CDK_CONTEXT_JSON": json.dumps(context),
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    log.info("synthesizing the CDK app", extra={"out": str(out)})
    proc = subprocess.run(
        [sys.executable, "app.py"], cwd=root, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise SynthError(f"cdk synth failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    if out.exists():  # another process synthesized the same inputs meanwhile
        shutil.rmtree(staging, ignore_errors=True)
    else:
        staging.rename(out)


def _stack_template(out: Path) -> tuple[Path, str]:
    manifest = json.loads((out / "manifest.json").read_text())
    stacks = [
        (name, artifact)
        for name, artifact in manifest.get("artifacts", {}).items()
        if artifact.get("type") == "aws:cloudformation:stack"
    ]
    if len(stacks) != 1:
        raise SynthError(f"expected one stack in {out}, found {[n for n, _ in stacks]}")
    name, artifact = stacks[0]
    template = out / artifact["properties"]["templateFile"]
    return template, artifact["properties"].get("stackName", name)
