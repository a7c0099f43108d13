"""Builds a task's array_record files and shows what the trainer will see.

    python -m vpd_jax.data livecodebench data_dir=/mnt/data/tfds \
        manual_dir=/mnt/data/code_generation_lite release=v6
    python -m vpd_jax.data vpd_problems
    python -m vpd_jax.data vpd_generated num_train=4000 num_eval=60 seed=0 use_tfds=true \
        data_dir=/mnt/data/tfds

Options are `load_task`'s keyword arguments as key=value (true/false and
integers are converted). On a pod whose hosts share one data_dir, run this
once before launching, so the hosts read the files instead of all racing to
write them.
"""

from __future__ import annotations

import argparse
import collections
import sys

from vpd_jax.data.tasks import load_task


def _value(text: str):
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vpd_jax.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", help="vpd_problems | vpd_generated | livecodebench | sciknoweval")
    parser.add_argument("options", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    options = {}
    for item in args.options:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"option {item!r} is not key=value")
        options[key] = _value(value)
    task = load_task(args.task, **options)
    for split in ("train", "eval"):
        source = getattr(task, split)
        kinds = collections.Counter(
            "functional" if ex.starter_code else ex.kind if ex.kind == "choice" else "stdin"
            for ex in source)
        print(f"{task.name} {split}: {len(source)} examples {dict(kinds)}")
    if len(task.train):
        print("\nfirst train prompt:\n" + task.user_prompt(task.train[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
