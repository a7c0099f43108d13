"""Every field of a vpd_jax run, with its default and meaning.

The other presets import this and change what differs; launch scripts
accept `--config.key=value` overrides on top of any of them.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.workdir = "runs/default"  # checkpoints, metrics.jsonl, TensorBoard events, eval JSON
    c.seed = 0  # params init (random models), sampling keys, data order, sibling choice
    c.algorithm = "vpd"  # vpd | sdpo | grpo | sft (the warm start alone)
    c.total_steps = 100  # training iterations (one rollout batch each)

    c.model = ml_collections.ConfigDict()
    c.model.path = ""  # HF dir, .gguf file, launch/convert.py output, or package:NAME
    c.model.preset = ""  # with path == "": a random model of this preset (tests, benchmarks)
    c.model.overrides = ml_collections.ConfigDict()  # ModelConfig fields for a random preset (e.g. num_layers)
    c.model.init_from = ""  # warm-start dir (algorithm=sft workdir or <workdir>/warm_start): its params start a fresh run
    c.model.tokenizer = ""  # tokenizer source when the model has none (random models): a path
    c.model.param_dtype = "float32"  # master weights
    c.model.compute_dtype = "float32"  # matmul dtype: bfloat16 on TPU/GPU
    c.model.remat = "full"  # backward recomputation: none | full | save_dots
    c.model.attention = "auto"  # training attention kernel: auto (cuDNN flash on GPU, bf16) | xla | cudnn

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = 1  # pure data parallelism (replicated weights)
    c.mesh.fsdp = -1  # ZeRO-3 weight sharding; -1 = all remaining devices
    c.mesh.tensor = 1  # tensor parallelism over heads / MLP width / vocab

    c.distributed = ml_collections.ConfigDict()
    c.distributed.coordinator_address = ""  # "host:port" for CPU/GPU clusters; auto on Cloud TPU
    c.distributed.num_processes = 0  # with coordinator_address
    c.distributed.process_id = -1  # with coordinator_address
    c.distributed.local_device_count = 0  # CPU only: fake devices per process (0 = leave as is)

    c.task = ml_collections.ConfigDict()
    c.task.name = "vpd_problems"  # vpd_problems | livecodebench | sciknoweval
    c.task.options = ml_collections.ConfigDict()  # load_task(**options): data_dir, manual_dir, release, ...
    c.task.max_train_examples = 0  # 0 = all; else the first N (debug runs)
    c.task.max_eval_examples = 0  # 0 = all

    c.rollout = ml_collections.ConfigDict()
    c.rollout.prompts_per_step = 8  # prompts per iteration (global, over all hosts)
    c.rollout.samples_per_prompt = 8  # G rollouts per prompt (the GRPO group)
    # Group filtering (DAPO's dynamic sampling, at a fixed batch shape): sample
    # oversample x prompts_per_step groups, train on the prompts_per_step whose
    # rewards differ first (the rest at random). 1 = off: every sampled group trains.
    c.rollout.oversample = 1
    c.rollout.max_prompt_tokens = 1024  # longer student prompts are refused with an error
    c.rollout.max_new_tokens = 512  # response budget
    c.rollout.temperature = 1.0
    c.rollout.top_p = 1.0
    c.rollout.top_k = 0  # 0 = off
    # Sampler (rollouts and eval) weights: "compute" (the trainer's numerics),
    # "bfloat16" or "int8" (faster / smaller; log-probs then differ from the
    # trainer's, bounded by train.importance_clip: docs/PERFORMANCE.md).
    c.rollout.weights = "compute"

    c.feedback = ml_collections.ConfigDict()
    c.feedback.server_address = ""  # "host:port" of a running server; "" = start one per host
    c.feedback.workers = 0  # server worker processes; 0 = one per core
    c.feedback.timeout_s = 600.0  # client timeout for one batch request
    c.feedback.allow_weak_sandbox = False  # True: train even when grading falls back to the weaker, non-bwrap sandbox
    c.feedback.sources = ("sibling", "env")  # teacher context, in preference order (env | sibling | self_critique)
    c.feedback.combine = False  # True: all available sources together (critiques joined, env first)
    c.feedback.feedback_on_success = False  # env critique also for passing rollouts (teacher context on successes)
    c.feedback.max_critique_tokens = 512  # env / self-critique budget (truncated)
    c.feedback.max_sibling_tokens = 1024  # sibling solution budget (truncated)
    c.feedback.self_critique_tokens = 256  # generation budget of the self-critique pass

    # Packed train batches: sequence lengths (student / teacher prompt + response)
    # and response lengths are rounded up to these sizes, so the jitted steps
    # compile once per size instead of once per batch.
    c.pack = ml_collections.ConfigDict()
    c.pack.seq_buckets = (256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288, 16384)
    c.pack.response_buckets = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)

    # Supervised warm start (vpd_jax/warm_start.py): SFT on the task's reference
    # solutions before RL, in <workdir>/warm_start (reused when complete), or
    # alone with algorithm=sft.
    c.warm_start = ml_collections.ConfigDict()
    c.warm_start.steps = 0  # SFT steps; 0 = no warm start
    c.warm_start.batch_size = 8  # reference solutions per step (global)
    c.warm_start.lr = 5e-5  # peak lr, cosine to 0.1x over the steps
    c.warm_start.warmup_steps = 2
    c.warm_start.weight_decay = 0.0
    c.warm_start.checkpoint_every = 0  # 0: only the final step (and on SIGTERM)

    c.e_step_every = 5  # VPD: an E-step every F iterations (F=5 reported best; F=1 and 10 worse)

    # vpd_jax.train_config.TrainConfig fields (optimizer and losses of the jitted steps).
    c.train = ml_collections.ConfigDict()
    c.train.lr = 1e-6  # AdamW peak learning rate (SDPO's LCB setting)
    c.train.weight_decay = 0.01  # decoupled, matrices only
    c.train.clip_norm = 1.0  # global gradient-norm clip
    c.train.warmup_steps = 0  # iterations of linear warmup
    c.train.schedule = "constant"  # constant | cosine (after warmup); schedules count iterations, not updates
    c.train.total_steps = 100  # cosine horizon in iterations (set to total_steps)
    c.train.micro_batches = 1  # gradient accumulation inside the jitted step
    c.train.logit_chunk = 128  # response tokens per LM-head chunk (memory vs speed)
    c.train.divergence = "reverse_kl"  # M-step D: reverse_kl | forward_kl | jsd
    c.train.jsd_alpha = 0.5
    c.train.topk = 20  # divergence support: top-k + tail bucket; 0 = full vocabulary
    c.train.importance_clip = 2.0  # M-step: truncation of the prefix ratio prod_{s<t} pi/pi_old (sampler log-probs as old); 0 = off
    # M-step gate: "agree" distills a rollout only when the teacher ranks it as
    # its verdict does (sum_t log q - log pi > 0 on a pass, < 0 on a fail);
    # "none" distills every rollout with a context (the paper's M-step).
    c.train.m_gate = "none"
    c.train.beta = 0.1  # E-step implicit reward scale
    c.train.lambda_kl = 0.1  # E-step token-level trust-region KL weight
    c.train.length_normalize = False  # E-step: rho summed (False) or averaged over tokens
    c.train.delta_momentum = 0.9  # running average of the BCO reward shift
    c.train.clip_low = 0.2  # GRPO clipped surrogate
    c.train.clip_high = 0.28
    c.train.dr_grpo = False  # Dr.GRPO: no std normalisation, constant normaliser rows x rollout.max_new_tokens
    c.train.kl_coef = 0.0  # GRPO KL to the initial (reference) weights; 0 = no reference copy
    c.train.sdpo_teacher = "current"  # SDPO teacher: current | ema | mix
    c.train.ema_decay = 0.99
    c.train.mix_coef = 0.5  # SDPO "mix": weight of the current logits vs reference

    c.eval = ml_collections.ConfigDict()
    c.eval.every = 20  # iterations between evaluations (0 = only at the end)
    c.eval.at_start = True  # evaluate the base model before training
    c.eval.num_samples = 4  # samples per problem
    c.eval.pass_k = (1,)  # reported pass@k
    c.eval.temperature = 0.6  # SDPO's eval setting
    c.eval.top_p = 0.95
    c.eval.max_new_tokens = 512
    c.eval.prompts_per_batch = 8
    c.eval.group_by = "held_out"  # also pass@1 per value of this example-metadata key ("" = off)
    c.eval.teacher = False  # VPD diagnostics: one teacher sample (feedback in the prompt) per eval sample -> teacher_pass@1; doubles eval time

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every = 10  # iterations between saves (and one at the end / on SIGTERM)
    c.checkpoint.keep = 3  # most recent checkpoints kept

    c.log = ml_collections.ConfigDict()
    c.log.progress = True  # console progress bar (TTY only)
    c.log.tensorboard = True
    c.log.plots = True  # figures from metrics.jsonl in <workdir>/plots/ at every eval and at the end
    c.log.wandb = False  # Weights & Biases beside TensorBoard (needs `pip install "vpd-jax[wandb]"`)
    c.log.wandb_project = "vpd_jax"
    c.log.wandb_mode = ""  # online | offline (no network; `wandb sync` later) | disabled; "" = WANDB_MODE or online
    c.log.samples = 2  # completions printed to samples.jsonl per iteration
    return c
