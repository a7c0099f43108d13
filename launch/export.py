"""Export a training run's checkpoint as a Hugging Face model directory.

    python launch/export.py --checkpoint_dir WORKDIR [--step N] --out DIR [--dtype bfloat16|float32]

The output (config.json, safetensors shards + index, tokenizer files,
generation_config.json) loads in transformers, vLLM, SGLang, and llama.cpp's
convert_hf_to_gguf.py. Only the params are read, never the optimizer state.
On a pod run it on every host (as training runs): each host reads its own
shards, and the weight files are written in turn by every host (give an
--out every host sees, e.g. a gcsfuse mount) or, with --one_writer, by host
0. Same as `vpd-export`; the logic lives in vpd_jax.export.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a plain checkout

from vpd_jax.cli import export_main as main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
