"""Finding the program in a completion."""

import pytest

from vpd_jax.feedback import extract_code


def test_last_python_block_wins():
    completion = ("First try:\n```python\nprint(1)\n```\nBetter:\n"
                  "```python\nprint(2)\n```\nDone.")
    assert extract_code(completion) == "print(2)"


def test_untagged_and_py_fences_count_other_languages_do_not():
    assert extract_code("```\nprint(1)\n```") == "print(1)"
    assert extract_code("```py\nx = 1\n```") == "x = 1"
    completion = "```python\nprint(1)\n```\nOutput:\n```text\n1\n```"
    assert extract_code(completion) == "print(1)"
    assert extract_code("```json\n{\"a\": 1}\n```") is None


def test_thinking_then_answer():
    completion = ("<think>maybe\n```python\nprint('draft')\n```\n</think>\n"
                  "```python\nimport sys\nprint(sys.stdin.read())\n```")
    assert extract_code(completion) == "import sys\nprint(sys.stdin.read())"


def test_unclosed_fence_yields_partial_body():
    assert extract_code("```python\nfor i in range(3):\n") == (
        "for i in range(3):\n")


def test_plain_code_without_fence_if_it_compiles():
    assert extract_code("a, b = 1, 2\nprint(a + b)\n") == (
        "a, b = 1, 2\nprint(a + b)\n")
    assert extract_code("I think the answer is to add them.") is None
    assert extract_code("") is None
    assert extract_code("```python\n\n```") is None


def test_rejects_non_string():
    with pytest.raises(TypeError):
        extract_code(None)
