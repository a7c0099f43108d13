"""The harness's result record, read as hostile input.

The record comes back from a process that ran model-written code: the
program can find its token and the result fd and write anything there
before it exits. So the grader reads it as it would read a stranger's
upload: at most RECORD_BYTES (a bigger file is refused unread, so a forged
record cannot grow the grader's memory), JSON whose nesting may not crash
the parser, and every field type-checked. A record that fails any check is
a fact about that one program (`Record.error`), never an exception.
"""

from __future__ import annotations

import dataclasses
import json
import os

# Largest record read. A legitimate one is a status, an exception and a
# functional return value in the harness's tagged encoding: 10^5 ints are
# ~2 MB. Parsed JSON costs up to ~20x its size in objects, so this bounds a
# worker's extra memory at ~100 MB.
RECORD_BYTES = 4 << 20
STATUSES = ("ok", "exception", "compile_error", "no_solution", "bad_value")
_TEXT_CHARS = 4096  # exc_type, exc_msg, frame sources: more is cut
_FRAMES = 20


@dataclasses.dataclass
class Record:
    """A checked record: `frame` is None when there is none, `error` says why
    a record that was there was refused."""
    frame: dict | None
    error: str = ""


def _text(value, field: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"field {field!r} is {type(value).__name__}, not str")
    return value[:_TEXT_CHARS]


def _frames(value) -> list:
    if not isinstance(value, list) or len(value) > _FRAMES:
        raise ValueError("field 'frames' is not a list of at most "
                         f"{_FRAMES} frames")
    out = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 3
                and type(item[0]) is int and isinstance(item[1], str)
                and isinstance(item[2], str)):
            raise ValueError("a frame is not [line, function, source]")
        out.append([item[0], item[1][:200], item[2][:200]])
    return out


def check(frame, token: str) -> dict:
    """The frame with only known, typed fields; ValueError if it is not one."""
    if not isinstance(frame, dict):
        raise ValueError(f"record is a {type(frame).__name__}, not an object")
    if frame.get("token") != token:
        raise ValueError("record does not carry this run's token")
    status = frame.get("status")
    if status not in STATUSES:
        raise ValueError(f"unknown status {str(status)[:40]!r}")
    out = {"status": status}
    for field in ("exc_type", "exc_msg"):
        if field in frame:
            out[field] = _text(frame[field], field)
    if "frames" in frame:
        out["frames"] = _frames(frame["frames"])
    if "value" in frame:
        out["value"] = frame["value"]  # decoded defensively by compare.py
    return out


def read(f, token: str) -> Record:
    """The record in the temp file `f` (written by the sandboxed process)."""
    size = os.fstat(f.fileno()).st_size
    if size == 0:
        return Record(None)
    if size > RECORD_BYTES:
        return Record(None, f"result record of {size} bytes is over the "
                            f"{RECORD_BYTES}-byte cap")
    f.seek(0)
    data = f.read(RECORD_BYTES)
    try:
        return Record(check(json.loads(data), token))
    except (ValueError, UnicodeDecodeError, RecursionError, MemoryError) as e:
        return Record(None, f"malformed result record: {str(e)[:200]}")
