"""Parse once what moto's Step Functions interpreter parses again and again (local only: on AWS the
service does its own parsing, none of it on our clock).

moto lexes and parses the whole state machine definition with ANTLR for every execution (and once
more at CreateStateMachine), about 0.2 CPU-seconds each here; and it builds a new JSONPath parser
(ply reads its tables again) for every path it evaluates. With many small documents that was a
good part of the engine's own CPU per document (bench/RESULTS.md, "issue 16").

The ANTLR parse tree is kept per definition and only the evaluation components are built anew
for each execution (the preprocessor reads the tree, it does not change it; an execution's state
lives in its components and environment). Parsed JSONPath expressions are immutable: one per
path serves every evaluation.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from antlr4 import CommonTokenStream, InputStream, ParserRuleContext
from jsonpath_ng import parse as jsonpath_parse
from jsonpath_ng.ext import parse as jsonpath_ext_parse
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
from moto.stepfunctions.parser.asl.utils import json_path

_KEEP_DEFINITIONS = 16
_trees_lock = threading.Lock()


@functools.lru_cache(maxsize=_KEEP_DEFINITIONS)
def _parse_tree(definition: str) -> tuple[ParserRuleContext, tuple[str, ...]]:
    """moto's own lexing and parsing (asl_parser.AmazonStateLanguageParser.parse), kept."""
    listener = SyntaxErrorListener()
    parser = ASLParser(CommonTokenStream(ASLLexer(InputStream(definition))))
    parser.removeErrorListeners()
    parser.addErrorListener(listener)
    return parser.state_machine(), tuple(listener.errors)


def _parse(definition: str) -> tuple[EvalComponent, ParserRuleContext]:
    # One thread parses a definition at a time: executions started together wait for the first.
    with _trees_lock:
        tree, errors = _parse_tree(definition)
    if errors:
        raise ASLParserException(errors=list(errors))
    return Preprocessor().visit(tree), tree


# (owner, attribute, replacement), started and stopped with the engine like its other patches.
INTERPRETER_CACHES: tuple[tuple[Any, str, Any], ...] = (
    (AmazonStateLanguageParser, "parse", staticmethod(_parse)),
    (json_path, "parse", functools.lru_cache(maxsize=1024)(jsonpath_ext_parse)),
    (result_path, "parse", functools.lru_cache(maxsize=1024)(jsonpath_parse)),
)
