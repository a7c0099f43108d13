"""Qwen3-8B on SciKnowEval L3 multiple choice: no environment feedback, so
the teacher sees a successful sibling or the model's own critique."""

from vpd_jax.configs import lcb


def get_config():
    c = lcb.get_config()
    c.workdir = "gs://YOUR_BUCKET/vpd/sciknoweval_qwen3_8b"
    c.task.name = "sciknoweval"
    c.task.options = {"data_dir": "/mnt/data/tfds", "manual_dir": "/mnt/data/SciKnowEval/raw_data",
                      "config_name": "l3_mcq"}
    c.feedback.sources = ("sibling", "self_critique")
    c.rollout.max_prompt_tokens = 1024
    c.rollout.max_new_tokens = 2048
    c.eval.max_new_tokens = 2048
    return c
