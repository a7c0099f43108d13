"""Convert a Hugging Face directory or a GGUF file into a vpd_jax model directory.

    python launch/convert.py --model PATH --out DIR [--dtype float32|bfloat16]

Same as `vpd-convert`. The output (Orbax params + vpd_jax_model.json +
tokenizer files) is what pod runs give as their model path; see
`vpd_jax.cli.convert`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a plain checkout

from vpd_jax.cli import convert, convert_main as main  # noqa: F401  (convert: for scripts that import this file)

if __name__ == "__main__":
    sys.exit(main())
