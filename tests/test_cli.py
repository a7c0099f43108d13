"""vpd_jax.cli: `--config` by preset name or path, the console-script table,
and the workdir that `--checkpoint_dir` names."""

import importlib
import os
import tomllib

import pytest
from absl import flags

from vpd_jax import cli
from vpd_jax.trainer import run_workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS = ("base", "demo", "tiny", "lcb", "sciknoweval")


def _parse(argv):
    """Parses argv with a fresh FlagValues, as a console script would."""
    fv = flags.FlagValues()
    holder = cli.define_config_flag(flag_values=fv, argv=argv)
    fv(argv)
    return holder.value


def test_shipped_presets_are_the_repository_configs():
    assert set(cli.shipped_configs()) == set(PRESETS)
    # vpd_jax.configs is the top-level configs/ folder itself, not a copy
    assert os.path.realpath(cli.CONFIGS_DIR) == os.path.join(ROOT, "configs")


@pytest.mark.parametrize("name", PRESETS)
def test_a_preset_name_loads_the_same_config_as_its_path(name):
    by_name = _parse(["prog", f"--config={name}"])
    by_path = _parse(["prog", f"--config={os.path.join(ROOT, 'configs', name + '.py')}"])
    reference = importlib.import_module(f"vpd_jax.configs.{name}").get_config()
    assert by_name.to_dict() == reference.to_dict() == by_path.to_dict()


def test_overrides_apply_to_a_preset_and_unknown_keys_fail():
    cfg = _parse(["prog", "--config", "tiny", "--config.total_steps=1", "--config.rollout.temperature=0.5"])
    assert cfg.total_steps == 1 and cfg.rollout.temperature == 0.5
    assert cfg.model.overrides.num_layers == 2  # tiny composes demo: the preset chain resolved
    with pytest.raises((flags.Error, AttributeError), match="nope"):
        _parse(["prog", "--config", "tiny", "--config.nope=1"])


def test_a_local_file_wins_over_a_preset_name_and_may_import_presets(tmp_path, monkeypatch):
    (tmp_path / "mine.py").write_text("from vpd_jax.configs import demo\n\n"
                                      "def get_config():\n    c = demo.get_config()\n    c.workdir = 'runs/mine'\n"
                                      "    return c\n")
    (tmp_path / "demo").write_text("def get_config():\n    return {'local': True}\n")
    monkeypatch.chdir(tmp_path)
    assert _parse(["prog", "--config=mine.py"]).workdir == "runs/mine"
    assert cli.resolve_config("demo") == "demo"  # the file in the working directory
    assert cli.resolve_config("tiny.py") == os.path.join(cli.CONFIGS_DIR, "tiny.py")
    assert cli.resolve_config("lcb:arg") == os.path.join(cli.CONFIGS_DIR, "lcb.py") + ":arg"


def test_an_unknown_config_names_the_presets():
    with pytest.raises(ValueError, match=r"not the name of a shipped config \(base, demo, lcb, sciknoweval, tiny\)"):
        cli.resolve_config("demo2")
    with pytest.raises(flags.Error, match="demo2"):
        _parse(["prog", "--config=demo2"])
    with pytest.raises(ValueError, match="no such file"):
        cli.resolve_config("configs/nope.py")


def test_console_scripts_point_at_callables():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert {"vpd-train", "vpd-eval", "vpd-convert", "vpd-plot", "vpd-feedback-server", "vpd-feedback"} <= set(scripts)
    for name, target in scripts.items():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), name


def test_checkpoint_dir_is_a_workdir_or_its_checkpoints_folder(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    assert run_workdir(str(run)) == str(run)
    assert run_workdir(str(run / "checkpoints")) == str(run)
    assert run_workdir(str(run / "checkpoints") + "/") == str(run)
    assert run_workdir("gs://bucket/runs/lcb/checkpoints") == "gs://bucket/runs/lcb"
    # a workdir that happens to be called "checkpoints" stays itself
    (tmp_path / "checkpoints" / "checkpoints").mkdir(parents=True)
    assert run_workdir(str(tmp_path / "checkpoints")) == str(tmp_path / "checkpoints")
