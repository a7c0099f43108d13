"""Code problems as TFDS features, and back.

Both code builders (`livecodebench`, `vpd_problems`) store the
LiveCodeBench row itself: every field as text, test lists as plain JSON (the
compressed private tests are decoded once, at build time, by the feedback
package's restricted unpickler). Reading a record back goes through
`parse_problem_row`, so a record and a JSONL row are validated by the same
rules.
"""

from __future__ import annotations

from typing import Any

import tensorflow_datasets as tfds

from vpd_jax.feedback.problems import Problem, parse_problem_row

ROW_FIELDS = ("question_id", "question_title", "question_content",
              "starter_code", "platform", "difficulty", "contest_date",
              "public_test_cases", "private_test_cases", "metadata")


def code_features() -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict(
        {name: tfds.features.Text() for name in ROW_FIELDS})


def problem_to_record(problem: Problem) -> dict[str, str]:
    """Problem -> TFDS example (the canonical row, private tests as JSON)."""
    return problem.to_row()


def _text(value: Any) -> str:
    # Without TensorFlow, tfds.data_source returns Text features as bytes.
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def record_to_problem(record: dict[str, Any], source: str,
                      index: int) -> Problem:
    """TFDS example -> Problem; errors name `source`, the index and the field."""
    row = {name: _text(record[name]) for name in ROW_FIELDS if name in record}
    return parse_problem_row(row, source=source, row_index=index)
