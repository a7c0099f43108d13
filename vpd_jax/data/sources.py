"""Random-access sources of Examples: TFDS array_record or in memory.

Both kinds are plain sequences (`len`, `[i]`), which is all the iterator
needs for seeded shuffling and per-host sharding. TFDS sources decode a
record only when it is asked for, so a host touches only its own shard.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow_datasets as tfds

from vpd_jax.data.example import Example


class ExampleSource(Sequence):
    """`records[i]` decoded into an Example by `decode(record, index)`."""

    def __init__(self, records: Sequence[Any],
                 decode: Callable[[Any, int], Example], name: str):
        self._records = records
        self._decode = decode
        self.name = name

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range [0, {len(self)})")
        index %= len(self)
        return self._decode(self._records[index], index)

    def __repr__(self) -> str:
        return f"ExampleSource({self.name!r}, {len(self)} examples)"


def in_memory(examples: Sequence[Example], name: str) -> ExampleSource:
    return ExampleSource(list(examples), lambda example, _: example, name)


def tfds_records(name: str, split: str, *, data_dir: str,
                 manual_dir: str | None = None,
                 config: tfds.core.BuilderConfig | None = None) -> Sequence[Any]:
    """Builds the array_record files on first use, then reads one split.

    `tfds.data_source` reads with array_record's random access and needs no
    TensorFlow. Building also runs without TensorFlow for these builders
    (plain Python generators, no Beam).
    """
    builder_kwargs: dict[str, Any] = {"file_format": "array_record"}
    if config is not None:
        builder_kwargs["config"] = config
    prepare_kwargs = {}
    if manual_dir is not None:
        prepare_kwargs["download_config"] = tfds.download.DownloadConfig(
            manual_dir=str(manual_dir))
    return tfds.data_source(name, split=split, data_dir=str(data_dir),
                            builder_kwargs=builder_kwargs,
                            download_and_prepare_kwargs=prepare_kwargs)
