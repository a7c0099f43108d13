"""Deterministic, sharded, resumable batches over a source of Examples.

Epoch e visits the source in the order of a permutation drawn from
(seed, e): every host draws the same permutation and keeps every
`shard_count`-th element starting at `shard_index`, so the host shards of an
epoch are disjoint and together cover the source. A host's stream is its
shards of epochs 0, 1, 2, ... back to back; batches may straddle an epoch
boundary, so every host always yields full batches and stays in step with
the others even when the source size is not a multiple of the host count.
The whole position is two integers, saved in checkpoints as JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vpd_jax.data.example import Example


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The global visiting order of one epoch: same on every host."""
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def host_shard(num_examples: int, shard_index: int, shard_count: int) -> range:
    """Indices of the host's unshuffled shard (for evaluation passes)."""
    return range(shard_index, num_examples, shard_count)


def _default_shard() -> tuple[int, int]:
    import jax  # imported late: data loading alone should not start a backend
    return jax.process_index(), jax.process_count()


class ExampleIterator:
    """Yields `batch_size` Examples per call from this host's shard.

    `batch_size` is this host's share of the global prompt batch (global
    prompts per step / process count); the trainer repeats each prompt for
    its G samples.
    """

    def __init__(self, source: Sequence[Example], batch_size: int, seed: int = 0,
                 shard_index: int | None = None, shard_count: int | None = None):
        if (shard_index is None) != (shard_count is None):
            raise ValueError("give both shard_index and shard_count, or neither "
                             "(then jax.process_index()/process_count() are used)")
        if shard_index is None:
            shard_index, shard_count = _default_shard()
        if not 0 <= shard_index < shard_count:
            raise ValueError(f"shard_index {shard_index} not in [0, {shard_count})")
        if len(source) < shard_count:
            raise ValueError(f"source of {len(source)} examples cannot give each of "
                             f"{shard_count} hosts at least one")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.source = source
        self.batch_size = batch_size
        self.seed = seed
        self.shard_index = shard_index
        self.shard_count = shard_count
        self._epoch = 0
        self._position = 0  # next index into this host's shard of the epoch
        self._order = self._shard_order(0)

    def _shard_order(self, epoch: int) -> np.ndarray:
        order = epoch_order(len(self.source), self.seed, epoch)
        return order[self.shard_index::self.shard_count]

    def next_batch(self) -> list[Example]:
        batch = []
        while len(batch) < self.batch_size:
            if self._position == len(self._order):
                self._epoch += 1
                self._position = 0
                self._order = self._shard_order(self._epoch)
            take = min(self.batch_size - len(batch), len(self._order) - self._position)
            for i in self._order[self._position:self._position + take]:
                batch.append(self.source[int(i)])
            self._position += take
        return batch

    def __iter__(self):
        while True:
            yield self.next_batch()

    @property
    def epoch(self) -> int:
        return self._epoch

    def state(self) -> dict[str, Any]:
        """JSON-able position; `restore` checks it belongs to this iterator."""
        return {"epoch": self._epoch, "position": self._position,
                "seed": self.seed, "num_examples": len(self.source),
                "shard_index": self.shard_index, "shard_count": self.shard_count}

    def restore(self, state: dict[str, Any]) -> None:
        """Continues exactly where the iterator that wrote `state` stopped."""
        mine = self.state()
        for key in ("seed", "num_examples", "shard_index", "shard_count"):
            if key in state and state[key] != mine[key]:
                raise ValueError(
                    f"iterator state is for {key}={state[key]}, this iterator has "
                    f"{key}={mine[key]}: restoring it would replay other examples")
        epoch, position = int(state["epoch"]), int(state["position"])
        order = self._shard_order(epoch)
        if not 0 <= position <= len(order):
            raise ValueError(f"iterator state position {position} outside the epoch's "
                             f"{len(order)} examples")
        self._epoch, self._position, self._order = epoch, position, order
