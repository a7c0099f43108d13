"""The supervised warm start on the tiny config: data, training, hand-off to RL.

In process (one tiny model, one compiled SFT step for the module); the loss
itself is checked against NumPy in tests/test_steps.py.
"""

import json
import os

import jax
import numpy as np
import pytest

from vpd_jax import components, warm_start
from vpd_jax.configs import tiny
from vpd_jax.sharding import make_mesh


def _cfg(workdir, **warm):
    c = tiny.get_config()
    c.workdir = str(workdir)
    c.log.progress = False
    c.log.tensorboard = False
    c.warm_start.steps = 4
    c.warm_start.batch_size = 4
    c.warm_start.lr = 3e-3
    c.warm_start.warmup_steps = 0
    c.train.micro_batches = 1
    c.pack.seq_buckets = (512,)  # one compiled shape
    c.pack.response_buckets = (256,)
    for k, v in warm.items():
        setattr(c.warm_start, k, v)
    return c


@pytest.fixture(scope="module")
def setup():
    cfg = _cfg("/nonexistent")
    mesh = make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
    return mesh, components.build_model(cfg, mesh), components.build_task(cfg)


def _same(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def test_rows_are_prompt_then_reference_then_stop_token(setup):
    _, model, task = setup
    examples = list(task.train)[:3]
    eos = model.config.eos_token_ids[0]
    rows = warm_start.sft_rows(task, model.tokenizer, examples, 512, eos)
    for ex, row in zip(examples, rows):
        text = model.tokenizer.decode(row.response[:-1])
        assert text.startswith("```python\n") and text.rstrip().endswith("```") and row.response[-1] == eos
        assert row.teacher_prompt is None
        assert model.tokenizer.decode(row.student_prompt).rstrip().endswith("assistant")  # the chat prompt


def test_warm_start_trains_hands_off_and_is_reused(setup, tmp_path):
    mesh, model, task = setup
    cfg = _cfg(tmp_path / "sft")
    params = warm_start.run_warm_start(cfg, mesh, model, task, cfg.workdir)
    with open(os.path.join(cfg.workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    nll = [r["sft/nll"] for r in rows]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and np.isfinite(nll).all()
    assert nll[-1] < nll[0] - 0.5, nll  # a random model learns the reference format fast at lr 3e-3
    moved = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(model.params)))
    assert moved > 1e-4
    # model.init_from restores exactly these weights (workdir or its checkpoints/ folder)
    cfg_rl = _cfg(tmp_path / "rl", steps=0)
    cfg_rl.model.init_from = cfg.workdir
    _same(warm_start.initial_params(cfg_rl, mesh, model, task), params)
    _same(warm_start.restore_params(cfg_rl, mesh, model, os.path.join(cfg.workdir, "checkpoints")), params)
    # a second warm start into the same directory reuses it: no new training rows
    again = warm_start.run_warm_start(cfg, mesh, model, task, cfg.workdir)
    _same(again, params)
    with open(os.path.join(cfg.workdir, "metrics.jsonl")) as f:
        assert len(f.readlines()) == 4
    # an RL run with warm_start.steps > 0 trains in <workdir>/warm_start
    cfg_ws = _cfg(tmp_path / "rl2", steps=1)
    warm_start.initial_params(cfg_ws, mesh, model, task)
    assert os.path.isdir(os.path.join(cfg_ws.workdir, warm_start.WARM_DIR, "checkpoints", "1"))


def test_init_from_refuses_another_model_and_empty_dirs(setup, tmp_path):
    mesh, model, task = setup
    cfg = _cfg(tmp_path / "sft", steps=1)
    warm_start.run_warm_start(cfg, mesh, model, task, cfg.workdir)
    other = components.Model(model.config, model.params, model.tokenizer,
                             components.model_fingerprint(model.config, "random:another"))
    with pytest.raises(components.ConfigError, match="not a warm start of this model"):
        warm_start.restore_params(cfg, mesh, other, cfg.workdir)
    with pytest.raises(components.ConfigError, match="no checkpoints/ there"):
        warm_start.restore_params(cfg, mesh, model, str(tmp_path / "nothing"))


def test_a_task_without_references_is_a_clear_error(setup, tmp_path):
    import dataclasses

    mesh, model, task = setup
    bare = dataclasses.replace(task)
    object.__setattr__(bare, "reference_completion", lambda ex: None)
    with pytest.raises(components.ConfigError, match="no reference solutions"):
        warm_start.run_warm_start(_cfg(tmp_path), mesh, model, bare, str(tmp_path))
