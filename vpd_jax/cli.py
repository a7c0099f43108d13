"""The command lines: `vpd-train`, `vpd-eval`, `vpd-convert`, `vpd-plot`.

Each console script (pyproject.toml) and its `launch/*.py` twin call the
same `*_main` function here, so the flags are the same whether vpd_jax runs
from a checkout or from an installed wheel. The work itself lives in
trainer.py, models/ and plots.py; this module only reads the command line.

`--config` takes a path to a config file or the name of a shipped preset
(`demo`, `tiny`, `lcb`, `sciknoweval`, `base`): the presets are the
repository's top-level `configs/` folder, which the package reaches as
`vpd_jax.configs` (a symlink in the checkout, real files in the wheel), so an
installed user runs `vpd-train --config demo` with no checkout at all.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from absl import app, flags
from ml_collections import config_flags

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
_CONFIG_HELP = "a config: the name of a shipped preset ({names}) or a path to a .py file defining get_config()"


def shipped_configs() -> list[str]:
    """Names of the presets in vpd_jax.configs (the repo's configs/)."""
    return sorted(f[:-3] for f in os.listdir(CONFIGS_DIR) if f.endswith(".py") and not f.startswith("_"))


def resolve_config(spec: str) -> str:
    """`--config` value -> a config file path (a `:arg` suffix, passed to
    get_config by ml_collections, is kept).

    An existing file wins, so a local `demo.py` is never shadowed by the
    preset of the same name; otherwise the value must name a preset.
    """
    path, sep, arg = spec.partition(":")
    if os.path.isfile(path):
        return spec
    names = shipped_configs()
    name = path[:-3] if path.endswith(".py") and os.sep not in path else path
    if name in names:
        return os.path.join(CONFIGS_DIR, name + ".py") + sep + arg
    raise ValueError(f"--config={spec}: no such file, and not the name of a shipped config ({', '.join(names)}). "
                     "Give a path to a .py file defining get_config(), or one of those names.")


class _PresetNameParser(flags.ArgumentParser):
    """Wraps ml_collections' config-file parser: resolves a preset name
    first, then loads the file exactly as `DEFINE_config_file` would."""

    def __init__(self, file_parser: flags.ArgumentParser):
        self.file_parser = file_parser

    def parse(self, argument):
        return self.file_parser.parse(resolve_config(argument))

    def flag_type(self):
        return self.file_parser.flag_type()


def define_config_flag(flag_values: flags.FlagValues = flags.FLAGS, argv: list[str] | None = None):
    """`--config` (name or path) with ml_collections' `--config.key=value`
    overrides; an unknown key is an error (the config is locked)."""
    holder = config_flags.DEFINE_config_file("config", None, _CONFIG_HELP.format(names=", ".join(shipped_configs())),
                                             flag_values=flag_values, lock_config=True, sys_argv=argv)
    flag = flag_values["config"]
    flag.parser = _PresetNameParser(flag.parser)
    return holder


def _list_in_help(*names: str, flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """absl's `--help` lists the key flags of the main module (the script
    that ran); ours are defined here, so register them for it."""
    for name in names:
        flag_values.register_key_flag_for_module(sys.argv[0], flag_values[name])


def setup(cfg) -> None:
    """Logging, and fake CPU devices when a config asks for them (must run
    before JAX initialises its backends, so nothing above imports jax)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "jax._src", "orbax", "urllib3", "httpx", "tensorflow_datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    n = cfg.distributed.local_device_count if "distributed" in cfg else 0
    if n:
        import jax

        jax.config.update("jax_num_cpu_devices", int(n))


def train_main(argv: list[str] | None = None) -> None:
    """vpd-train / launch/tpu_run.py: train in config.workdir (resuming
    from the latest checkpoint there). On a Cloud TPU pod every host runs the
    same command; jax.distributed is initialised from the TPU metadata."""
    config = define_config_flag(argv=argv)

    def main(args):
        if len(args) > 1:
            raise app.UsageError(f"unexpected arguments {args[1:]}; settings go in --config.key=value")
        setup(config.value)
        from vpd_jax.trainer import run_training

        run_training(config.value)

    flags.mark_flags_as_required(["config"])
    _list_in_help("config")
    app.run(main, argv)


def eval_main(argv: list[str] | None = None) -> None:
    """vpd-eval / launch/eval.py: pass@1 / pass@k of a checkpoint (or of the
    base model) on the eval split; prints a table and writes JSON."""
    config = define_config_flag(argv=argv)
    ckpt = flags.DEFINE_string("checkpoint_dir", "", "a run's workdir or its checkpoints/ folder; empty = base model")
    step = flags.DEFINE_integer("step", None, "checkpoint step (default: the latest)")
    out = flags.DEFINE_string("out", "", "JSON output path (default: in checkpoint_dir or workdir)")

    def main(args):
        if len(args) > 1:
            raise app.UsageError(f"unexpected arguments {args[1:]}")
        setup(config.value)
        from vpd_jax.trainer import run_eval

        run_eval(config.value, checkpoint_dir=ckpt.value, step=step.value, out=out.value)

    flags.mark_flags_as_required(["config"])
    _list_in_help("config", "checkpoint_dir", "step", "out")
    app.run(main, argv)


def convert(model: str, out: str, dtype: str = "float32", log=print) -> str:
    """An HF directory or a GGUF file -> a vpd_jax model directory (Orbax
    params + vpd_jax_model.json + tokenizer files): what pod runs give as
    their model path, so every host restores only its own shards, already in
    vpd_jax's layout, instead of re-reading and dequantizing the source."""
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


def convert_main(argv: list[str] | None = None) -> int:
    """vpd-convert / launch/convert.py."""
    parser = argparse.ArgumentParser(description="Convert a Hugging Face directory or a GGUF file into a vpd_jax "
                                                 "model directory (Orbax params + config + tokenizer).")
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


def export_main(argv: list[str] | None = None) -> int:
    """vpd-export / launch/export.py: a checkpoint as a Hugging Face model directory (see vpd_jax.export)."""
    parser = argparse.ArgumentParser(description="Export a training run's checkpoint as a Hugging Face model directory "
                                                 "(config.json, safetensors shards, tokenizer, generation config).")
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



def plot_main(argv: list[str] | None = None) -> int:
    """vpd-plot / launch/plot.py: a run's figures, or several runs overlaid."""
    parser = argparse.ArgumentParser(description="Figures from metrics.jsonl: one run's (written to "
                                                 "<workdir>/plots/) or several runs overlaid (written to --out).")
    parser.add_argument("--workdir", nargs="+", required=True, help="run workdir(s) holding metrics.jsonl")
    parser.add_argument("--labels", nargs="+", help="legend label per workdir (default: the folder names)")
    parser.add_argument("--out", default="", help="folder for the PNGs (default: <workdir>/plots for one run; "
                                                  "required for several)")
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.workdir):
        parser.error(f"--labels has {len(args.labels)} names for {len(args.workdir)} workdirs")
    if len(args.workdir) > 1 and not args.out:
        parser.error("several workdirs need --out (the folder the overlaid figures go to)")
    from vpd_jax import plots

    labels = args.labels or [os.path.basename(os.path.normpath(w)) for w in args.workdir]
    if len(set(labels)) != len(labels):
        parser.error(f"two workdirs share a label ({labels}); name them with --labels")
    out = args.out or os.path.join(args.workdir[0], plots.PLOTS_DIR)
    try:
        written = plots.draw(dict(zip(labels, args.workdir)), out)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    for path in written:
        print("wrote", path)
    return 0
