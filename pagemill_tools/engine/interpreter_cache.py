"""Parse once what moto's Step Functions interpreter parses again and again (local only: on AWS the
service does its own parsing, none of it on our clock).

moto lexes and parses the whole state machine definition with ANTLR for every execution (and once
more at CreateStateMachine), about 0.2 CPU-seconds each here; and it builds a new JSONPath parser
(ply reads its tables again) for every path it evaluates. With many small documents that was a
good part of the engine's own CPU per document (bench/RESULTS.md, "issue 16").

Each definition's evaluation components are kept pickled, in memory and in a folder, and every
execution unpickles its own copy (an execution's state lives in its components and environment;
1 ms against 20 ms to build them from the parse tree again). The folder makes a later engine's
start-up skip the parse too: moto's ANTLR runtime is pure Python and its first parse in a process
is its slowest (0.15-0.3 s for the document state machine; bench/RESULTS.md, "engine start-up").
Parsed JSONPath expressions are immutable: one per path serves every evaluation.

Two costs per request the engine pays where AWS has none (bench/RESULTS.md, "fixed costs" of
issue 16, py-spy on 40 one-page documents): moto's interpreter builds a new boto3 client for
every task state it runs (botocore copies its event hooks and builds the client class: about a
tenth of the engine's busy time), and moto's server lists its own package folder, a stat per
service, for every request it routes (another tenth). Clients are kept per region and service
(boto3 clients are thread-safe; a state with its own credentials still gets a new one), and the
folder is listed once.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pickle
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import moto
from antlr4 import CommonTokenStream, InputStream
from jsonpath_ng import parse as jsonpath_parse
from jsonpath_ng.ext import parse as jsonpath_ext_parse
from moto import backends
from moto.core.models import botocore_stubber
from moto.settings import moto_server_port
from moto.stepfunctions.parser.asl.antlr.runtime.ASLLexer import ASLLexer
from moto.stepfunctions.parser.asl.antlr.runtime.ASLParser import ASLParser
from moto.stepfunctions.parser.asl.component.common.path import result_path
from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
from moto.stepfunctions.parser.asl.parse.asl_parser import (
    AmazonStateLanguageParser,
    ASLParserException,
    SyntaxErrorListener,
)
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor
from moto.stepfunctions.parser.asl.utils import boto_client, json_path

log = logging.getLogger(__name__)

_KEEP_DEFINITIONS = 16
# What makes a pickle readable: the interpreter's classes (moto's version) and pickle's own.
_PROGRAM_FORMAT = f"moto-{moto.__version__}-pickle-{pickle.HIGHEST_PROTOCOL}"
_programs_lock = threading.Lock()


@functools.lru_cache(maxsize=_KEEP_DEFINITIONS)
def _program(definition: str, folder: Path | None) -> bytes:
    """The definition's evaluation components, pickled: from the folder when an earlier engine
    parsed it, else parsed here (moto's asl_parser.AmazonStateLanguageParser.parse) and saved."""
    path = None
    if folder is not None:
        key = hashlib.sha256(f"{_PROGRAM_FORMAT}\n{definition}".encode()).hexdigest()
        path = folder / f"{key}.pickle"
        kept = _read_kept(path)
        if kept is not None:
            return kept
    listener = SyntaxErrorListener()
    parser = ASLParser(CommonTokenStream(ASLLexer(InputStream(definition))))
    parser.removeErrorListeners()
    parser.addErrorListener(listener)
    tree = parser.state_machine()
    if listener.errors:
        raise ASLParserException(errors=list(listener.errors))
    program = pickle.dumps(Preprocessor().visit(tree), protocol=pickle.HIGHEST_PROTOCOL)
    if path is not None:
        _save(path, program)
    return program


def _read_kept(path: Path) -> bytes | None:
    """The pickle an earlier engine saved, if there is one that loads (a file cut short or from
    other code is parsed again and replaced, never a run's failure)."""
    try:
        program = path.read_bytes()
        pickle.loads(program)
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - whatever unpickling raises, the definition is parsed again
        log.warning("a kept state machine definition does not load; parsing it again",
                    extra={"path": str(path), "error": repr(exc)})
        return None
    return program


def _save(path: Path, program: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_bytes(program)
    partial.replace(path)  # atomic: engines starting together never read half a file
    kept = sorted(path.parent.glob("*.pickle"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in kept[_KEEP_DEFINITIONS:]:
        stale.unlink(missing_ok=True)


def _parser(folder: Path | None) -> Callable[[str], tuple[EvalComponent, None]]:
    def parse(definition: str) -> tuple[EvalComponent, None]:
        # One thread parses a definition at a time: executions started together wait for the first.
        with _programs_lock:
            program = _program(definition, folder)
        # moto's callers read the components only; the parse tree is for LocalStack's static
        # analysers, which moto's backend does not call.
        return pickle.loads(program), None

    return parse


_new_client = boto_client.boto_client_for
_list_moto_modules = backends.list_of_moto_modules


@functools.lru_cache(maxsize=64)
def _kept_client(region: str, service: str, intercepted: bool, port: int) -> Any:
    # intercepted and port: what moto's own function reads to point the client (in-process or
    # at the server), so a client is never reused across a change of either.
    return _new_client(region, service)


def _client_for(region: str, service: str, state_credentials: Any = None) -> Any:
    # Every task state passes its execution role's credentials, and moto's function makes every
    # client with the same fixed keys whatever they are: they do not tell clients apart.
    return _kept_client(region, service, botocore_stubber.enabled, moto_server_port())


# The interpreter's modules each import moto's function by name: each of them is patched.
_CLIENT_USERS = tuple(module for name, module in sorted(sys.modules.items())
                      if name.startswith("moto.stepfunctions.") and getattr(module, "boto_client_for", None) is _new_client)


_PROCESS_CACHES: tuple[tuple[Any, str, Any], ...] = (
    (json_path, "parse", functools.lru_cache(maxsize=1024)(jsonpath_ext_parse)),
    (result_path, "parse", functools.lru_cache(maxsize=1024)(jsonpath_parse)),
    *((module, "boto_client_for", _client_for) for module in _CLIENT_USERS),
    (backends, "list_of_moto_modules", functools.lru_cache(maxsize=1)(lambda: tuple(_list_moto_modules()))),
)


def interpreter_caches(folder: Path | None) -> tuple[tuple[Any, str, Any], ...]:
    """(owner, attribute, replacement), started and stopped with the engine like its other
    patches; parsed definitions are kept in ``folder`` (None: in this process only)."""
    return (
        (AmazonStateLanguageParser, "parse", staticmethod(_parser(folder))),
        *_PROCESS_CACHES,
    )
