"""Export a training run's checkpoint as a Hugging Face model directory.

    python launch/export.py --checkpoint_dir WORKDIR [--step N] --out DIR [--dtype bfloat16|float32]

The output (config.json, safetensors shards + index, tokenizer files,
generation_config.json) loads in transformers, vLLM, SGLang, and llama.cpp's
convert_hf_to_gguf.py. Only the params are read, never the optimizer state.
On a pod run it on every host (as training runs): each host reads its own
shards, and the weight files are written in turn by every host (give an
--out every host sees, e.g. a gcsfuse mount) or, with --one_writer, by host
0. The logic lives in vpd_jax.export; this is only the command line.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint_dir", required=True, help="a training run's workdir (holding checkpoints/)")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    parser.add_argument("--out", required=True, help="output directory (must not hold a model yet)")
    parser.add_argument("--dtype", default=None, choices=("float32", "bfloat16"),
                        help="stored weight dtype (default: the dtype the params were trained in)")
    parser.add_argument("--tokenizer", default="",
                        help="tokenizer source (default: the run's weight source, as the checkpoint records it)")
    parser.add_argument("--max_shard_gb", type=float, default=5.0, help="largest safetensors file, GiB")
    parser.add_argument("--one_writer", action="store_true",
                        help="multi-host without a shared --out filesystem: host 0 writes every file")
    parser.add_argument("--coordinator_address", default="", help="multi-host (non-TPU): jax.distributed coordinator")
    parser.add_argument("--num_processes", type=int, default=1)
    parser.add_argument("--process_id", type=int, default=0)
    args = parser.parse_args(argv)

    import ml_collections

    from vpd_jax import components
    from vpd_jax.checkpoint import CheckpointMismatchError
    from vpd_jax.export import export_checkpoint

    components.init_distributed(ml_collections.ConfigDict({"distributed": dict(
        coordinator_address=args.coordinator_address, num_processes=args.num_processes,
        process_id=args.process_id, local_device_count=0)}))
    try:
        export_checkpoint(args.checkpoint_dir, args.out, step=args.step, dtype=args.dtype,
                          tokenizer=args.tokenizer, max_shard_bytes=int(args.max_shard_gb * 2**30),
                          spread=not args.one_writer)
    except (FileNotFoundError, FileExistsError, ValueError, CheckpointMismatchError) as e:
        parser.error(str(e))  # bad input: say what, not a traceback
    return 0


if __name__ == "__main__":
    sys.exit(main())
