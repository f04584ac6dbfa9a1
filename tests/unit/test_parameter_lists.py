"""No long parameter lists in the grading and ingest steps (issue 13): they take a value object instead.

The grade night and prepare take a `Night` (gradeflow.grading.context: institution, day, connection, S3 client,
provider, settings, deadline), the ingest steps an `IncomingFile` (gradeflow.intake.incoming: institution, S3
object, parsed key, day, checksum, bytes, file id). Before them the same values were threaded through functions of up to
9 parameters (`advance`, `_write_job`; `_ingest_spooled` and three more of ingest had 7). A function that needs
more than MAX_PARAMETERS again wants a field on the value object, not another argument.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "plugins" / "gradeflow"
MODULES = ("grading/night.py", "grading/prepare.py", "grading/context.py", "intake/ingest.py", "intake/incoming.py",
           "intake/review_files.py")
MAX_PARAMETERS = 6


def long_parameter_lists(path: Path, limit: int = MAX_PARAMETERS) -> list[str]:
    """`module:line name (n)` of every function (methods without self/cls) with more than `limit` parameters."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
            if names[:1] in (["self"], ["cls"]):
                names = names[1:]
            if len(names) > limit:
                found.append(f"{path.name}:{node.lineno} {node.name} ({len(names)})")
    return found


def test_grading_and_ingest_steps_take_a_value_object_not_a_long_parameter_list():
    found = [f for module in MODULES for f in long_parameter_lists(PKG / module)]
    assert not found, f"more than {MAX_PARAMETERS} parameters: {found}"


def test_the_count_finds_a_long_list(tmp_path):
    """The checker itself: yesterday's `advance` signature is reported, a method's self is not counted."""
    module = tmp_path / "night.py"
    module.write_text("def advance(conn, s3, provider, inst, night, deadline=None, now=None, recheck_seconds=300.0,\n"
                      "            settings=None):\n    pass\n\n"
                      "class Step:\n    def __init__(self, a, b, c, d, e, f):\n        pass\n")
    assert long_parameter_lists(module) == ["night.py:1 advance (9)"]
