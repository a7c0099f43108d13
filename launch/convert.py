"""Convert a Hugging Face directory or a GGUF file into a vpd_jax model directory.

    python launch/convert.py --model PATH --out DIR [--dtype float32|bfloat16]

The output (Orbax params + vpd_jax_model.json + tokenizer files) is what pod
runs give as their model path: every host restores only its own shards,
already in vpd_jax's layout, instead of re-reading and dequantizing the
source. The logic lives in vpd_jax.models; this is only the command line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def convert(model: str, out: str, dtype: str = "float32", log=print) -> str:
    from vpd_jax.models import load_pretrained
    from vpd_jax.models.loading import find_tokenizer
    from vpd_jax.models.orbax_params import save_orbax_params
    from vpd_jax.sharding import make_mesh

    t0 = time.time()
    log(f"convert: reading {model} (parameter dtype {dtype})")
    # All local devices on fsdp: no device ever holds the whole model.
    config, params = load_pretrained(model, mesh=make_mesh(), dtype=dtype, param_dtype=dtype)
    log(f"convert: {config.arch}, {config.num_layers} layers, {config.num_params() / 1e6:.1f}M params "
        f"loaded in {time.time() - t0:.1f}s")
    tokenizer = find_tokenizer(model)
    if tokenizer is None:
        log(f"convert: note: {model} has no tokenizer files; the output will have none either")
    save_orbax_params(out, config, params, tokenizer)
    log(f"convert: wrote {out} in {time.time() - t0:.1f}s")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="Hugging Face directory (config.json + safetensors) or .gguf")
    parser.add_argument("--out", required=True, help="output directory (must not hold a converted model yet)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="parameter (master weight) dtype to store")
    args = parser.parse_args(argv)
    if os.path.exists(os.path.join(args.out, "params")):
        parser.error(f"--out {args.out} already holds a converted model; choose a new directory")
    try:
        convert(args.model, args.out, args.dtype)
    except (FileNotFoundError, ValueError, KeyError) as e:  # bad input: say what, not a traceback
        parser.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
