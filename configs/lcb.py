"""Qwen3-8B on LiveCodeBench v6 with SDPO's hyperparameters, on a TPU pod.

Mesh: a v5p-64 slice is 32 chips on 8 hosts (95 GB HBM each): FSDP over all
32 (`fsdp=-1`) holds the 8B fp32 master weights + AdamW state (~128 GB) at
~4 GB per chip with room for 8k-token activations under full remat. On a
v6e-64 (64 chips, 32 GB each) keep fsdp=-1, or set tensor=4 (then fsdp=16)
when activations of 8k+ responses do not fit. `data` > 1 replicates weights
and only pays off when they are small next to HBM.
"""

from vpd_jax.configs import base


def get_config():
    c = base.get_config()
    c.workdir = "gs://YOUR_BUCKET/vpd/lcb_qwen3_8b"  # any path Orbax can write (local or GCS)
    c.total_steps = 100
    c.model.path = "/mnt/models/qwen3-8b-orbax"  # `launch/convert.py --model Qwen/Qwen3-8B --out ...`
    c.model.compute_dtype = "bfloat16"
    c.model.remat = "full"
    c.mesh.data = 1
    c.mesh.fsdp = -1
    c.mesh.tensor = 1
    c.task.name = "livecodebench"
    c.task.options.release = "v6"  # window by contest_date as in the SDPO / VPD papers
    c.task.options.data_dir = "/mnt/data/tfds"  # where TFDS writes the array_record files
    c.task.options.manual_dir = "/mnt/data/code_generation_lite"  # the LCB JSONL files
    c.task.options.split_feedback_tests = True  # SDPO (train split only): half the private tests give feedback, the other half alone give the reward; eval grades all
    c.rollout.prompts_per_step = 32  # 32 questions x 8 rollouts (SDPO)
    c.rollout.samples_per_prompt = 8
    c.rollout.max_prompt_tokens = 2048
    c.rollout.max_new_tokens = 8192
    c.train.lr = 1e-6
    c.train.weight_decay = 0.01
    c.train.clip_norm = 1.0
    c.train.divergence = "reverse_kl"
    c.train.topk = 20
    c.train.micro_batches = 8
    c.e_step_every = 5
    c.eval.every = 10
    c.eval.num_samples = 4  # SDPO: T=0.6, top-p 0.95, 4 samples
    c.eval.max_new_tokens = 8192
    c.checkpoint.every = 5
    return c
