"""Each Lambda bundle, built by the deployment's own recipe (stacks/functions.py LocalPythonBundler),
imports its handlers in a clean interpreter that has nothing but the bundle and what Lambda's
Python runtime provides (boto3), fits Lambda's 250 MB, and holds only what its handler imports.

Lambda runs CPython 3.12; where this machine has no 3.12, the same recipe is built for the running
interpreter's version (wheels differ only in their ABI tag). Bundles are cached under build/bundles/,
keyed by the bundler's content hash; the wheels come from the recipe's wheelhouse (build/wheelhouse/).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tempfile
import tomllib
import urllib.request
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest

from tests.infrastructure.conftest import ROOT

# The first run of a clone downloads the bundles' wheels once and builds every bundle from them:
# about 60 s on 2 cores (110 s when each bundle resolved against the index).
pytestmark = pytest.mark.heavy(60)

CACHE = ROOT / "build" / "bundles"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
INDEX_PROBE = "https://pypi.org/simple/boto3/"
# Packages that must stay out of a bundle whose handler has no use for them (the big ones).
ABSENT = {
    "lambdas/trigger": {"pymupdf", "onnxruntime", "numpy", "psycopg", "anthropic", "PIL"},
    "lambdas/caption": {"pymupdf", "onnxruntime", "numpy", "psycopg"},
    "lambdas/write": {"pymupdf", "onnxruntime", "anthropic", "PIL"},
    "lambdas/embed": {"pymupdf", "psycopg", "anthropic"},
    "lambdas/extract": {"anthropic", "tokenizers"},
    "lambdas/migrate": {"pymupdf", "onnxruntime", "numpy", "anthropic", "PIL"},
    "lambdas/speech": {"pymupdf", "onnxruntime", "numpy", "psycopg", "anthropic", "PIL"},
    "lambdas/api": {"pymupdf", "anthropic", "typer", "rich", "moto", "uvicorn"},
    "lambdas/reembed": {"pymupdf", "onnxruntime", "anthropic", "PIL", "fastapi"},
}


def _handlers() -> dict[str, list[str]]:
    """Handler folder -> the handler attributes the stack's functions name (module.function)."""
    from stacks import functions

    specs = [v for v in vars(functions).values() if isinstance(v, functions.HandlerSpec)]
    return {source: sorted({s.handler for s in specs if s.source == source}) for source in {s.source for s in specs}}


HANDLERS = _handlers()
SOURCES = sorted(HANDLERS)


def _pypi_reachable() -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(INDEX_PROBE, method="HEAD"), timeout=15):
            return True
    except OSError:
        return False


def _cached(name: str, build: Callable[[Path], object]) -> Path:
    """build/bundles/<name>, built once (another test run may build the same one meanwhile); older
    builds of the same kind are removed."""
    from stacks.bundling import build_once

    if not (CACHE / name).is_dir() and not _pypi_reachable():
        pytest.skip(f"PyPI is unreachable ({INDEX_PROBE}): cannot download the wheels to build {name}")
    return build_once(CACHE / name, build, older=f"{name.rsplit('-', 1)[0]}-*")


@pytest.fixture(scope="session")
def lambda_runtime() -> Path:
    """What Lambda's Python runtime adds to a bundle: boto3 (and botocore, s3transfer...), at the
    version pyproject pins."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (boto3,) = [d for d in pyproject["project"]["dependencies"] if d.startswith("boto3==")]

    def install(out: Path) -> None:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(out),
             "--only-binary=:all:", boto3],
            check=True, capture_output=True,
        )

    return _cached(f"lambda-runtime-py{PYTHON}-{boto3.split('==')[1]}", install)


@pytest.fixture(scope="session")
def bundles() -> Callable[[str], Path]:
    from stacks.bundling import LocalPythonBundler

    def bundle(source: str) -> Path:
        bundler = LocalPythonBundler(ROOT / source, PYTHON)
        return _cached(f"{Path(source).name}-py{PYTHON}-{bundler.content_hash()[:16]}", bundler.bundle)

    return bundle


_IMPORT_HANDLERS = """
import importlib, json, sys
bundle, runtime, handlers = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path[:] = [bundle, runtime, *(p for p in sys.path if p.startswith(sys.base_prefix) and "-packages" not in p)]
for name in handlers:
    module, attribute = name.rsplit(".", 1)
    if not callable(getattr(importlib.import_module(module), attribute)):
        raise TypeError(f"{name} is not callable")
"""


@pytest.mark.parametrize("source", SOURCES)
def test_bundle_imports_its_handlers_with_nothing_but_the_bundle(
    source: str, bundles: Callable[[str], Path], lambda_runtime: Path
) -> None:
    # GIVEN the bundle built by the deployment's recipe, and boto3 as Lambda's runtime provides it
    bundle = bundles(source)
    # WHEN a clean interpreter (-I: no user site, no PYTHON* variables; -S: no site-packages)
    # imports each handler module and resolves each handler the stack names
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _IMPORT_HANDLERS, str(bundle), str(lambda_runtime),
         json.dumps(HANDLERS[source])],
        capture_output=True, text=True, check=False, cwd=tempfile.gettempdir(),
        env={"AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_SERVICE_NAME": "pagemill"},
    )
    # THEN every handler resolves
    assert proc.returncode == 0, f"{source}: {HANDLERS[source]} do not import from the bundle:\n{proc.stderr[-4000:]}"


@pytest.mark.parametrize("source", SOURCES)
def test_bundle_fits_lambda(source: str, bundles: Callable[[str], Path]) -> None:
    from stacks.bundling import LAMBDA_UNZIPPED_LIMIT_BYTES

    bundle = bundles(source)
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file() and not p.is_symlink())
    print(f"{source}: {size / 1e6:.1f} MB unzipped (Python {PYTHON})")
    assert size < LAMBDA_UNZIPPED_LIMIT_BYTES, f"{source} is {size / 1e6:.0f} MB unzipped, over Lambda's 250 MB"


def _imported_by_our_code(handler_dir: Path) -> set[str]:
    """Top-level names the handler and the pagemill modules it reaches import, anywhere in them
    (function-level imports included): the handler's code closure, read from the source."""
    found: set[str] = set()
    pending, seen = sorted(handler_dir.glob("*.py")), set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            for name in names:
                found.add(name.split(".")[0])
                module = ROOT.joinpath(*name.split("."))
                pending += [p for p in (module.with_suffix(".py"), module / "__init__.py") if p.is_file()]
    return found


def _top_level(dist: metadata.Distribution) -> set[str]:
    """The importable top-level names a distribution installs."""
    # A module's name is its file's up to the first dot: six.py, lameenc.cpython-312-x86_64-linux-gnu.so
    return {Path(f).parts[0].split(".")[0] for f in dist.files or () if ".dist-info" not in Path(f).parts[0]}


# Packages a bundle carries for their data files, which our code reads without importing them:
# wordllama's static embedding weights and tokenizer (pagemill.text_embed.static finds its folder):
# EmbedChunks and ReembedBatch embed chunks with them, the API search queries.
DATA_PACKAGES = {"lambdas/embed": {"wordllama"}, "lambdas/api": {"wordllama"}, "lambdas/reembed": {"wordllama"}}


def _installed_and_imported(bundle: Path, source: str) -> tuple[dict[str, metadata.Distribution], set[str]]:
    """The bundle's distributions by normalized name, and those the handler's code imports (or
    reads the data of)."""
    distributions = {_normalized(d.metadata["Name"]): d for d in metadata.distributions(path=[str(bundle)])}
    imports = _imported_by_our_code(ROOT / source) | DATA_PACKAGES.get(source, set())
    return distributions, {name for name, dist in distributions.items() if _top_level(dist) & imports}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(text: str) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())  # pip's comments
    return [_normalized(re.match(r"[A-Za-z0-9._-]+", line)[0]) for line in lines if line]


@pytest.mark.parametrize("source", SOURCES)
def test_bundle_holds_only_what_its_handler_imports(source: str, bundles: Callable[[str], Path]) -> None:
    bundle = bundles(source)
    distributions, imported = _installed_and_imported(bundle, source)
    required_by_imported = {
        _normalized(re.match(r"[A-Za-z0-9._-]+", r)[0]) for name in imported for r in distributions[name].requires or ()
    }
    # Every requirement is imported by the handler's code, or needed by a package that is
    requirements = _requirement_names((ROOT / source / "requirements.txt").read_text())
    unused = [r for r in requirements if r not in imported | required_by_imported]
    assert not unused, f"{source}/requirements.txt lists packages its handler never imports: {unused}"
    # And the big packages of other stages stay out
    present = {entry.name for entry in bundle.iterdir()} & ABSENT.get(source, set())
    assert not present, f"{source}'s bundle holds {sorted(present)}, which its handler never imports"


# What only the developer harness uses: a module importing any of these must never be deployed.
HARNESS_IMPORTS = {"moto", "typer", "rich", "aws_cdk", "pytest", "pagemill_tools"}


def _imports_of(path: Path) -> set[str]:
    """Top-level names ``path`` imports, anywhere in it (under TYPE_CHECKING and in functions too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("source", SOURCES)
def test_bundle_holds_no_harness_module(source: str, bundles: Callable[[str], Path]) -> None:
    # GIVEN the bundle's own code: the handler modules and the library beside them
    bundle = bundles(source)
    ours = [*bundle.glob("*.py"), *(bundle / "pagemill").rglob("*.py")]
    assert ours and not (bundle / "pagemill_tools").exists()
    # THEN none of it imports the harness (the local engine, the CLI, CDK, test tools)
    harness = {str(p.relative_to(bundle)): sorted(_imports_of(p) & HARNESS_IMPORTS) for p in ours}
    assert not {k: v for k, v in harness.items() if v}, f"{source}'s bundle carries harness modules"


@pytest.mark.parametrize("source", SOURCES)
def test_every_package_in_a_bundle_is_one_its_handler_needs(source: str, bundles: Callable[[str], Path]) -> None:
    # GIVEN the distributions pip installed into the bundle
    distributions, needed = _installed_and_imported(bundles(source), source)
    # WHEN we follow what the handler's code imports, and what those packages require, transitively
    pending = list(needed)
    while pending:
        for requirement in distributions[pending.pop()].requires or ():
            name = _normalized(re.match(r"[A-Za-z0-9._-]+", requirement)[0])
            if name in distributions and name not in needed:
                needed.add(name)
                pending.append(name)
    # THEN nothing else is in the bundle
    assert set(distributions) <= needed, f"{source}'s bundle holds {sorted(set(distributions) - needed)} unneeded"

