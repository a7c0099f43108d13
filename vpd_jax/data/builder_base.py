"""The base of our TFDS builders: GeneratorBasedBuilder, minus one probe.

TFDS locates a builder's source file (`code_path`, used to look for
checksums and metadata beside it) through `importlib_resources`, a backport
it only declares as a dependency for Python < 3.9. For a builder that lives
in a regular package that lookup raises ModuleNotFoundError on a clean
Python 3.11 install. The file of the class is what TFDS falls back to
anyway, so we answer with it directly instead of adding a dependency.
"""

from __future__ import annotations

import inspect

import tensorflow_datasets as tfds
from etils import epath


class LocalBuilder(tfds.core.GeneratorBasedBuilder):
    """Abstract (no `_generate_examples`), so TFDS does not register it."""

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(inspect.getfile(cls))
