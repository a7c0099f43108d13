"""Packs rollouts into the padded, aligned arrays the train steps take.

A rollout's response y is scored twice: after the student prompt x and after
the teacher prompt reprompt(x, C). The two prompts have different lengths,
so the same response token sits at different positions in the two
sequences. Packing right-pads both sequences and records, for every response
token j, the position of the hidden state that predicts it on each side:

    student_tokens[b] = x_b + y_b + pad          [B, Ts]
    teacher_tokens[b] = c_b + y_b + pad          [B, Tt]
    student_index[b, j] = len(x_b) + j - 1       [B, R]  hidden predicting y_b[j]
    teacher_index[b, j] = len(c_b) + j - 1       [B, R]
    targets[b, j] = y_b[j], response_mask[b, j] = j < len(y_b)

Lengths are rounded up to buckets and the row count to a multiple (mesh
batch shards x micro-batches), so a training run compiles each step for a
handful of shapes instead of one per batch. Padding rows have row_mask 0 and
contribute to no loss, count or group.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

DEFAULT_BUCKETS = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


@dataclasses.dataclass
class Row:
    """One graded rollout, as token ids (host side)."""

    student_prompt: Sequence[int]  # x, the prompt the rollout was sampled from
    teacher_prompt: Sequence[int] | None  # reprompt(x, C); None / empty: no feedback context
    response: Sequence[int]  # y, scored identically under both prompts
    reward: float = 0.0  # 1.0 if every test passed
    group: int = 0  # rollouts of the same prompt share a group (GRPO baseline)
    old_logp: Sequence[float] | None = None  # sampler log-probs of y (importance ratio), optional
    trained: bool = True  # False: packed like a padding row (row_mask 0), in no loss, count or group


def bucket(n: int, buckets: Sequence[int] = DEFAULT_BUCKETS) -> int:
    """Smallest bucket >= n; past the largest, the next multiple of it."""
    for b in sorted(buckets):
        if n <= b:
            return int(b)
    top = max(buckets)
    return int(-(-n // top) * top)


def pack_rows(rows: Sequence[Row], pad_id: int = 0, row_multiple: int = 1,
              buckets: Sequence[int] = DEFAULT_BUCKETS, with_old_logp: bool | None = None,
              pad_to: tuple[int, int, int] | None = None) -> dict:
    """Rows -> dict of numpy arrays, the batch every step in steps.py takes.

    Keys: student_tokens, student_mask [B, Ts]; teacher_tokens, teacher_mask
    [B, Tt]; student_index, teacher_index, targets, response_mask [B, R];
    reward, group, has_context, row_mask [B]; old_logp [B, R] when every row
    has it (or with_old_logp=True). Group ids are renumbered 0..G-1 and each
    padding row gets its own. A row without a teacher prompt is scored with
    its student prompt as teacher (has_context 0), so it adds nothing to the
    M- or E-step losses but still counts for GRPO. pad_to = (Ts, Tt, R) fixes
    the three lengths instead of bucketing (one compiled shape for a run).
    """
    if not rows:
        raise ValueError("pack_rows: no rows to pack")
    if row_multiple < 1:
        raise ValueError(f"pack_rows: row_multiple must be >= 1, got {row_multiple}")
    for i, r in enumerate(rows):
        if len(r.student_prompt) == 0:
            raise ValueError(f"row {i}: empty student_prompt; a response needs at least one prompt token "
                             "(e.g. BOS) whose hidden state predicts its first token")
        if r.old_logp is not None and len(r.old_logp) != len(r.response):
            raise ValueError(f"row {i}: old_logp has {len(r.old_logp)} entries for {len(r.response)} "
                             "response tokens")
    if with_old_logp is None:
        with_old_logp = all(r.old_logp is not None for r in rows)
    elif with_old_logp and any(r.old_logp is None for r in rows):
        raise ValueError("pack_rows: with_old_logp=True but some rows have no old_logp")

    contexts = [list(r.teacher_prompt) if r.teacher_prompt else list(r.student_prompt) for r in rows]
    B = -(-len(rows) // row_multiple) * row_multiple
    need = (max(len(r.student_prompt) + len(r.response) for r in rows),  # Ts
            max(len(c) + len(r.response) for c, r in zip(contexts, rows)),  # Tt
            max(len(r.response) for r in rows))  # R
    if pad_to is None:
        Ts, Tt, R = (bucket(n, buckets) for n in need)
    else:
        for name, n, fixed in zip(("Ts", "Tt", "R"), need, pad_to):
            if n > fixed:
                raise ValueError(f"pack_rows: rows need {name} = {n} but pad_to fixes it at {fixed}")
        Ts, Tt, R = pad_to

    out = {
        "student_tokens": np.full((B, Ts), pad_id, np.int32), "student_mask": np.zeros((B, Ts), np.int32),
        "teacher_tokens": np.full((B, Tt), pad_id, np.int32), "teacher_mask": np.zeros((B, Tt), np.int32),
        "student_index": np.zeros((B, R), np.int32), "teacher_index": np.zeros((B, R), np.int32),
        "targets": np.full((B, R), pad_id, np.int32), "response_mask": np.zeros((B, R), np.float32),
        "reward": np.zeros((B,), np.float32), "group": np.zeros((B,), np.int32),
        "has_context": np.zeros((B,), np.float32), "row_mask": np.zeros((B,), np.float32),
    }
    if with_old_logp:
        out["old_logp"] = np.zeros((B, R), np.float32)
    group_ids: dict = {}
    for b, (r, ctx) in enumerate(zip(rows, contexts)):
        y = np.asarray(r.response, np.int32)
        n = len(y)
        for side, prompt in (("student", list(r.student_prompt)), ("teacher", ctx)):
            seq = np.concatenate([np.asarray(prompt, np.int32), y])
            out[f"{side}_tokens"][b, :len(seq)] = seq
            out[f"{side}_mask"][b, :len(seq)] = 1
            out[f"{side}_index"][b, :n] = len(prompt) + np.arange(n) - 1  # hidden that predicts y[j]
        out["targets"][b, :n] = y
        out["response_mask"][b, :n] = 1.0
        out["reward"][b] = float(r.reward)
        out["group"][b] = group_ids.setdefault(r.group, len(group_ids)) if r.trained else len(rows) + B + b
        out["has_context"][b] = 1.0 if r.teacher_prompt and r.trained else 0.0
        out["row_mask"][b] = 1.0 if r.trained else 0.0
        if with_old_logp:
            out["old_logp"][b, :n] = np.asarray(r.old_logp, np.float32)
    for b in range(len(rows), B):  # padding rows: their own groups, no tokens
        out["group"][b] = len(group_ids) + b
    return out
