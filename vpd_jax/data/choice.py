"""Grading multiple-choice completions: `<answer>X</answer>` against the key.

SciKnowEval has no environment to run, so the only feedback is whether the
answer was well formed and whether it was right. The critique never names
the right choice: it becomes teacher context, and a teacher that is told the
key would teach copying it rather than reasoning towards it.
"""

from __future__ import annotations

import re

from vpd_jax.data.example import Example

ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
# "B", "(B)", "B.", "B) text", "B: text": the label, then nothing or a separator.
LEADING_LABEL = re.compile(r"^\(?([A-Za-z0-9]{1,3})\)?(?:[.):]|\s|$)")


def extract_choice(completion: str, labels: tuple[str, ...]) -> str | None:
    """The label inside the last `<answer>` tag, or None when there is none.

    The last tag counts, so a model that restates the format instructions
    before answering is not graded on the example in them.
    """
    tags = ANSWER_TAG.findall(completion)
    if not tags:
        return None
    inner = tags[-1].strip()
    if inner in labels:
        return inner
    if inner.upper() in labels:
        return inner.upper()
    match = LEADING_LABEL.match(inner)
    if match:
        label = match.group(1)
        for candidate in (label, label.upper()):
            if candidate in labels:
                return candidate
    return inner  # well formed but not a label: graded as an invalid choice


def grade_choice(example: Example, completion: str) -> dict:
    """`reward, passed, verdict, critique` for one multiple-choice completion."""
    labels = tuple(label for label, _ in example.choices)
    listed = ", ".join(labels)
    picked = extract_choice(completion, labels)
    if picked is None:
        verdict = "no_answer"
        critique = ("The response did not give an answer in the required format. "
                    f"End with the letter of one choice ({listed}) inside "
                    "<answer></answer> tags, e.g. <answer>" + labels[0] + "</answer>.")
    elif picked not in labels:
        verdict = "invalid_choice"
        critique = (f"The answer {picked[:40]!r} is not one of the choice labels "
                    f"({listed}). Give exactly one label inside <answer></answer>.")
    elif picked != example.answer:
        verdict = "wrong_answer"
        critique = (f"The answer format was valid, but choice {picked} is "
                    "incorrect. Reconsider the question and the other choices.")
    else:
        verdict = "accepted"
        critique = "The answer format was valid and the choice is correct."
    passed = verdict == "accepted"
    return {"question_id": example.id, "reward": float(passed), "passed": passed,
            "verdict": verdict, "critique": critique, "extracted": picked}
