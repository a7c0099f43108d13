"""Host <-> global-array plumbing for multi-host runs.

Every host samples, grades and packs its own rollouts; the train step takes
one global batch. Hosts must agree on padded shapes before building it, and
the sampler (one collective jitted program) must see the same prompt list
on every host. These helpers do that agreement with small all-gathers; on a
single process they are plain copies.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils


def allgather_objects(obj: Any) -> list:
    """JSON-able object of each host -> list over hosts (same on all)."""
    if jax.process_count() == 1:
        return [obj]
    data = np.frombuffer(json.dumps(obj).encode(), np.uint8)
    sizes = multihost_utils.process_allgather(np.array([len(data)], np.int32))
    padded = np.zeros((int(np.max(sizes)),), np.uint8)
    padded[:len(data)] = data
    every = multihost_utils.process_allgather(padded)  # [P, max]
    return [json.loads(bytes(every[p, :int(sizes[p][0])]).decode()) for p in range(jax.process_count())]


def agree_max(values: Sequence[int]) -> list[int]:
    """Elementwise max of per-host integer lists (e.g. padded lengths)."""
    if jax.process_count() == 1:
        return [int(v) for v in values]
    every = multihost_utils.process_allgather(np.asarray(values, np.int64))
    return [int(v) for v in np.max(every.reshape(jax.process_count(), -1), axis=0)]


_LAST_AXIS = {"student_tokens": "Ts", "student_mask": "Ts", "teacher_tokens": "Tt", "teacher_mask": "Tt",
              "student_index": "R", "teacher_index": "R", "targets": "R", "response_mask": "R", "old_logp": "R"}


def pad_batch(batch: dict, sizes: dict[str, int], pad_ids: dict[str, int]) -> dict:
    """Right-pads the last axis of the packed arrays to the agreed sizes."""
    out = dict(batch)
    for key, x in batch.items():
        dim = _LAST_AXIS.get(key)
        if dim is None or x.shape[-1] == sizes[dim]:
            continue
        widths = [(0, 0)] * (x.ndim - 1) + [(0, sizes[dim] - x.shape[-1])]
        out[key] = np.pad(x, widths, constant_values=pad_ids.get(key, 0))
    return out


def global_batch(local: dict, sharding, pad_id: int) -> dict:
    """Per-host packed arrays -> global jax.Arrays sharded by rows.

    Rows of host p land in its addressable shards
    (`make_array_from_process_local_data`); shapes are first padded to the
    max over hosts so every host builds the same global shape.
    """
    sizes = dict(zip(("Ts", "Tt", "R", "B"), agree_max([local["student_tokens"].shape[1],
                                                        local["teacher_tokens"].shape[1],
                                                        local["targets"].shape[1], local["targets"].shape[0]])))
    if any(v.shape[0] != sizes["B"] for v in local.values()):
        raise ValueError(f"hosts packed different row counts ({sizes['B']} max): give every host the same "
                         "number of prompts")
    local = pad_batch(local, sizes, {"student_tokens": pad_id, "teacher_tokens": pad_id, "targets": pad_id})
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()}


def pack_global(rows, row_multiple: int, sharding, pad_id: int, seq_buckets, response_buckets) -> dict:
    """This host's rows -> the global batch of a train step.

    Lengths are rounded up to the configured buckets (agreed across hosts),
    so the steps rarely recompile; each host packs row_multiple / hosts rows
    at a time. Group ids are offset per host so GRPO groups never mix hosts.
    """
    from vpd_jax.packing import bucket, pack_rows

    local_rows = max(1, row_multiple // jax.process_count())
    batch = pack_rows(rows, pad_id=pad_id, row_multiple=local_rows, buckets=(1,))  # exact sizes
    seq, resp = tuple(seq_buckets), tuple(response_buckets)
    sizes = {"Ts": bucket(batch["student_tokens"].shape[1], seq), "Tt": bucket(batch["teacher_tokens"].shape[1], seq),
             "R": bucket(batch["targets"].shape[1], resp)}
    batch = pad_batch(batch, sizes, {"student_tokens": pad_id, "teacher_tokens": pad_id, "targets": pad_id})
    batch["group"] = batch["group"] + jax.process_index() * batch["group"].shape[0]
    return global_batch(batch, sharding, pad_id)


def to_numpy(x: jax.Array) -> np.ndarray:
    """The full value of a (possibly multi-host sharded) array on every host."""
    if jax.process_count() == 1 or x.is_fully_addressable:
        return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))

