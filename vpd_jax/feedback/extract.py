"""Finds the program in a model completion.

The last fenced Python block wins: a model that revises its answer writes
the final version last (and a thinking trace comes first). Fences tagged
with another language (```text, ```json) are skipped; an untagged fence
counts as Python, as in LiveCodeBench. A fence left open at the end (a
generation cut at the token limit) still yields its partial body, which
then fails to compile and gets a compile_error critique rather than a
silent no_code. With no fence at all, the whole completion is the program
if it compiles; otherwise there is no code.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*$")
_PYTHON_TAGS = {"", "python", "python3", "py", "py3", "python2"}


def _blocks(text: str) -> list[tuple[str, str]]:
    """(language tag, body) of every fenced block, in order."""
    blocks, lines = [], text.split("\n")
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, tag = opening.group(1), opening.group(2).lower()
        body, i = [], i + 1
        while i < len(lines):
            closing = _FENCE.match(lines[i])
            if (closing and closing.group(1)[0] == fence[0]
                and len(closing.group(1)) >= len(fence) and not closing.group(2)):
                break
            body.append(lines[i])
            i += 1
        blocks.append((tag, "\n".join(body)))
        i += 1
    return blocks


def _compiles(text: str) -> bool:
    try:
        compile(text, "<completion>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, OverflowError, MemoryError,
            RecursionError):
        return False
    return True


def extract_code(completion: str) -> str | None:
    """The program to grade, or None when the completion holds no code."""
    if not isinstance(completion, str):
        raise TypeError(f"completion must be str, got {type(completion).__name__}")
    python = [body for tag, body in _blocks(completion) if tag in _PYTHON_TAGS]
    if python:
        code = python[-1]
        return code if code.strip() else None
    if "```" in completion or "~~~" in completion:
        return None  # fenced, but no Python block
    text = completion.strip()
    if text and _compiles(text):
        return completion
    return None
