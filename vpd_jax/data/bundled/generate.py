"""Regenerates the bundled problem set's JSONL files from the Python specs.

    python -m vpd_jax.data.bundled.generate

Writes `train.jsonl` and `eval.jsonl` (LiveCodeBench rows, DESIGN.md section
4) and `solutions.jsonl` (question_id, code) beside this file. Expected
outputs are produced by running each reference solution in this process: the
specs are our own trusted code, and in-process execution keeps the check that
the committed files are current (tests/test_data_bundled.py) fast. Grading
untrusted completions is the feedback server's job, never this module's.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import pathlib
import sys
from typing import Any, Union

from vpd_jax.data.bundled import functional_easy, functional_more
from vpd_jax.data.bundled import stdin_easy, stdin_more
from vpd_jax.data.bundled._spec import FunctionalSpec, StdinSpec, functional_input

Spec = Union[StdinSpec, FunctionalSpec]
HERE = pathlib.Path(__file__).parent
SPLITS = ("train", "eval")
# A fixed date keeps the rows LiveCodeBench-shaped without pretending to be
# from any contest.
CONTEST_DATE = "2026-01-01T00:00:00"
# The example plus this many further tests are public (shown as feedback);
# the rest are private.
NUM_EXTRA_PUBLIC = 1


def all_specs() -> list[Spec]:
    specs = [*stdin_easy.PROBLEMS, *stdin_more.PROBLEMS,
             *functional_easy.PROBLEMS, *functional_more.PROBLEMS]
    ids = [s.question_id for s in specs]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"duplicate question_id in bundled specs: {dup}")
    return specs


def run_stdin(code: str, stdin: str) -> str:
    """Runs a trusted reference program on `stdin`; returns its stdout."""
    out = io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "<reference>", "exec"), {"__name__": "__main__"})
    finally:
        sys.stdin = old_stdin
    return out.getvalue()


def run_functional(code: str, func_name: str, args: tuple[Any, ...]) -> Any:
    namespace: dict[str, Any] = {"__name__": "__reference__"}
    exec(compile(code, "<reference>", "exec"), namespace)
    return getattr(namespace["Solution"](), func_name)(*copy.deepcopy(args))


def _tests(spec: Spec) -> list[dict[str, str]]:
    """All tests of a spec, the statement's example first."""
    if isinstance(spec, StdinSpec):
        stdin, shown = spec.example
        got = run_stdin(spec.solution, stdin)
        if got.strip() != shown.strip():
            raise ValueError(f"{spec.question_id}: reference prints {got!r} on the "
                             f"example, the statement shows {shown!r}")
        return [{"input": s, "output": run_stdin(spec.solution, s), "testtype": "stdin"}
                for s in (stdin, *spec.inputs)]
    args, shown = spec.example
    got = run_functional(spec.solution, spec.func_name, args)
    if got != shown:
        raise ValueError(f"{spec.question_id}: reference returns {got!r} on the "
                         f"example, the statement shows {shown!r}")
    return [{"input": functional_input(a),
             "output": json.dumps(run_functional(spec.solution, spec.func_name, a)),
             "testtype": "functional"}
            for a in (args, *spec.inputs)]


def to_row(spec: Spec) -> dict[str, Any]:
    """One LiveCodeBench-format row (test lists and metadata as JSON strings)."""
    if spec.split not in SPLITS:
        raise ValueError(f"{spec.question_id}: split {spec.split!r} not in {SPLITS}")
    tests = _tests(spec)
    functional = isinstance(spec, FunctionalSpec)
    cut = 1 + NUM_EXTRA_PUBLIC
    return {
        "question_id": spec.question_id,
        "question_title": spec.title,
        "question_content": spec.render_statement(),
        "starter_code": spec.starter_code() if functional else "",
        "platform": "vpd",
        "difficulty": spec.difficulty,
        "contest_date": CONTEST_DATE,
        "public_test_cases": json.dumps(tests[:cut]),
        "private_test_cases": json.dumps(tests[cut:]),
        "metadata": json.dumps({"func_name": spec.func_name} if functional else {}),
    }


def render_files() -> dict[str, str]:
    """File name -> JSONL text, exactly what `main` writes."""
    specs = all_specs()
    texts = {}
    for split in SPLITS:
        rows = [to_row(s) for s in specs if s.split == split]
        texts[f"{split}.jsonl"] = "".join(json.dumps(r) + "\n" for r in rows)
    texts["solutions.jsonl"] = "".join(
        json.dumps({"question_id": s.question_id, "code": s.solution}) + "\n"
        for s in specs)
    return texts


def main() -> None:
    for name, text in render_files().items():
        (HERE / name).write_text(text)
        print(f"wrote {HERE / name} ({text.count(chr(10))} rows)")


if __name__ == "__main__":
    main()
