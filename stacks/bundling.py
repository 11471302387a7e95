"""How a function's code is packaged, locally and without Docker.

Each function's asset is its handler folder (``lambdas/<stage>``): pip installs the folder's
requirements.txt for Lambda's platform (x86_64, CPython 3.12) and the handler modules plus the
``pagemill`` package are copied beside them. The library is copied as files; the stack never
imports it beyond its pure contract modules (settings, keys, metrics, errors).

The wheels of every handler folder are downloaded once, in one resolution, into a wheelhouse
under build/ that each bundle then installs from without an index: resolving against the index
is most of pip's time (botocore's page alone lists some 30,000 files), and a change to the
library re-bundles every function.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from stacks.paths import HANDLERS_DIR, LIBRARY_DIR, REPO_ROOT

RUNTIME = lambda_.Runtime.PYTHON_3_12
LAMBDA_PYTHON = RUNTIME.name.removeprefix("python")  # the CPython version the bundles' wheels are for
# PyMuPDF, onnxruntime and numpy publish x86_64 manylinux wheels that fit Lambda; no arm64 here.
ARCHITECTURE = lambda_.Architecture.X86_64
# Lambda's python3.12 runs on Amazon Linux 2023 (glibc 2.34): any of these wheel tags load there.
PIP_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64")
# Required by the BundlingOptions API only: local bundling always succeeds or raises, so Docker is never run.
BUNDLING_IMAGE = DockerImage.from_registry("public.ecr.aws/sam/build-python3.12")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
# Removed from a bundle after pip: what Lambda's Python runtime already provides (boto3 and its
# dependencies, the serverless-python-requirements "noDeploy" list), console scripts, test
# suites, C headers, and onnxruntime's C-API library (the Python binding does not load it).
# Without this the extract bundle is about 300 MB, over Lambda's 250 MB.
PRUNED = (
    "boto3", "boto3-*.dist-info", "botocore", "botocore-*.dist-info", "s3transfer", "s3transfer-*.dist-info",
    "jmespath", "jmespath-*.dist-info", "urllib3", "urllib3-*.dist-info", "dateutil", "python_dateutil-*.dist-info",
    "six.py", "six-*.dist-info", "bin", "**/tests", "pymupdf/mupdf-devel", "onnxruntime/capi/libonnxruntime.so.*",
)
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024


WHEELHOUSE = REPO_ROOT / "build" / "wheelhouse"


def _platform_args(python_version: str) -> list[str]:
    platforms = [arg for platform in PIP_PLATFORMS for arg in ("--platform", platform)]
    return [*platforms, "--only-binary=:all:", "--python-version", python_version, "--implementation", "cp"]


def _pip(verb: str, python_version: str, *args: str) -> list[str]:
    """A pip command for Lambda's platform; ``[3:]`` is the recipe without the interpreter."""
    return [sys.executable, "-m", "pip", verb, "--quiet", "--disable-pip-version-check", *args,
            *_platform_args(python_version)]


def _pip_command(requirements: Path, target: str, python_version: str, wheels: Path) -> list[str]:
    return _pip("install", python_version, "--no-compile", "--no-index", "--find-links", str(wheels),
                "--requirement", str(requirements), "--target", target)


def wheelhouse(python_version: str) -> Path:
    """The wheels every handler folder's requirements need on Lambda's platform, downloaded in one
    resolution into build/wheelhouse/, keyed by the requirements and the platform: downloaded
    once, then shared by every bundle."""
    requirements = sorted((REPO_ROOT / HANDLERS_DIR).glob("*/requirements.txt"))
    digest = hashlib.sha256(" ".join(_platform_args(python_version)).encode())
    for path in requirements:
        digest.update(path.read_bytes())
    requirement_args = [arg for path in requirements for arg in ("--requirement", str(path))]
    return build_once(
        WHEELHOUSE / f"py{python_version}-{digest.hexdigest()[:16]}",
        lambda staging: _run_pip(_pip("download", python_version, *requirement_args, "--dest", str(staging)),
                                 "downloading the Lambda bundles' wheels"),
        older=f"py{python_version}-*",
    )


def build_once(target: Path, build: Callable[[Path], object], *, older: str) -> Path:
    """``target``, unless it exists, built by ``build`` into a temporary folder beside it and
    renamed into place: a concurrent build of the same folder (another process) costs only its
    time. Other folders beside it that match the glob ``older`` (its outdated builds) are removed."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(staging)
        staging.rename(target)
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for old in target.parent.glob(older):
        if old != target and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return target


def _run_pip(command: list[str], what: str) -> None:
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed: pip exited with {proc.returncode}\n{proc.stderr[-3000:]}")


@jsii.implements(ILocalBundling)
class LocalPythonBundler:
    """Builds a function's deployment folder on this machine: platform wheels + handler + library.

    ``python_version`` is Lambda's CPython; another version builds the same bundle for that
    interpreter (the bundle tests import it on this machine's Python)."""

    def __init__(self, source: Path, python_version: str = LAMBDA_PYTHON) -> None:
        self.source = source
        self.python_version = python_version

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        self.bundle(Path(output_dir))
        return True

    def bundle(self, out: Path) -> int:
        """Build the bundle into ``out``; returns its unzipped size in bytes."""
        command = _pip_command(self.source / "requirements.txt", str(out), self.python_version,
                               wheelhouse(self.python_version))
        _run_pip(command, f"bundling {self.source.relative_to(REPO_ROOT)}")
        _prune(out)
        for module in sorted(self.source.glob("*.py")):
            shutil.copy2(module, out / module.name)
        shutil.copytree(REPO_ROOT / LIBRARY_DIR, out / LIBRARY_DIR, ignore=_IGNORED, dirs_exist_ok=True)
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and not p.is_symlink())
        if size > LAMBDA_UNZIPPED_LIMIT_BYTES:
            raise RuntimeError(
                f"the bundle of {self.source.relative_to(REPO_ROOT)} is {size / 2**20:.0f} MiB unzipped, over "
                f"Lambda's {LAMBDA_UNZIPPED_LIMIT_BYTES / 2**20:.0f} MiB: trim {self.source.name}/requirements.txt"
            )
        return size

    def content_hash(self) -> str:
        """Everything that goes into the bundle: the handler folder, the library and the pip recipe.
        CDK re-bundles exactly when this changes (the default would hash the handler folder alone
        and miss changes to the library)."""
        recipe = _pip_command(Path("requirements.txt"), "out", self.python_version, Path("wheels"))[3:]
        digest = hashlib.sha256(" ".join([*recipe, *PRUNED]).encode())
        for root in (self.source, REPO_ROOT / LIBRARY_DIR):
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                if "__pycache__" in path.parts or path.suffix == ".pyc":
                    continue
                digest.update(str(path.relative_to(REPO_ROOT)).encode())
                digest.update(path.read_bytes())
        return digest.hexdigest()


def _prune(bundle: Path) -> None:
    for pattern in PRUNED:
        for path in sorted(bundle.glob(pattern), reverse=True):  # deepest first
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()


def bundled_code(source: str) -> lambda_.Code:
    """The asset of the handler folder ``source`` (relative to the repository root)."""
    bundler = LocalPythonBundler(REPO_ROOT / source)
    return lambda_.Code.from_asset(
        str(bundler.source),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=bundler.content_hash(),
        bundling=BundlingOptions(image=BUNDLING_IMAGE, local=bundler),
    )
