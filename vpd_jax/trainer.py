"""The training loop: schedules sampling, grading, the E-step and the M-step.

One iteration (DESIGN.md section 2):

    prompts -> G rollouts each (sampler, current weights)
            -> grades + critiques (feedback server)
            -> teacher contexts -> packed batch
            -> [E-step every F iterations] -> M-step   (vpd)
               M-step only                             (sdpo)
               GRPO step                               (grpo)
            -> metrics, eval every N, checkpoint every k

The math lives in losses.py / steps.py, the data in rollouts.py /
prompts.py; this module only decides what runs when and records it.
"""

from __future__ import annotations

import json
import logging
import os
import time

import jax
import ml_collections
import numpy as np

from vpd_jax import components, distributed, evaluate, plots, prompts, rollouts, warm_start
from vpd_jax.checkpoint import Checkpointer, abstract_state
from vpd_jax.data import ExampleIterator
from vpd_jax.metrics import MetricsLogger, iteration_line, phase_timer, require_wandb
from vpd_jax.rollout_sampler import RolloutSampler
from vpd_jax.steps import make_steps
from vpd_jax.train_config import TrainConfig

log = logging.getLogger(__name__)
RL_ALGORITHMS = ("vpd", "sdpo", "grpo")
ALGORITHMS = RL_ALGORITHMS + ("sft",)  # sft: the warm start alone (vpd_jax/warm_start.py)


def train_config(cfg: ml_collections.ConfigDict) -> TrainConfig:
    """config.train as a TrainConfig; Dr.GRPO's constant normaliser is the rollout budget."""
    try:
        tc = TrainConfig.from_mapping({**cfg.train.to_dict(), "response_budget": cfg.rollout.max_new_tokens})
    except (KeyError, ValueError) as e:
        raise components.ConfigError(f"config.train: {e}") from None
    if cfg.algorithm == "sdpo" or tc.sdpo_teacher == "current":
        return tc
    raise components.ConfigError(f"config.train.sdpo_teacher={tc.sdpo_teacher!r} applies to algorithm=sdpo only")


def feedback_config(cfg: ml_collections.ConfigDict) -> prompts.FeedbackConfig:
    """How teacher contexts are built, from config.feedback (training and the teacher eval alike)."""
    f = cfg.feedback
    # --config.feedback.sources=sibling,env arrives as ("sibling,env",), a
    # config file writes ("sibling", "env"): both mean the same list.
    sources = tuple(s.strip() for n in f.sources for s in str(n).split(",") if s.strip())
    return prompts.FeedbackConfig(sources=sources, combine=f.combine,
                                  max_critique_tokens=f.max_critique_tokens, max_sibling_tokens=f.max_sibling_tokens,
                                  feedback_on_success=f.feedback_on_success)


class Trainer:
    """Owns the run's state; `train()` runs the loop to cfg.total_steps."""

    def __init__(self, cfg: ml_collections.ConfigDict, mesh, model: components.Model, task):
        if cfg.algorithm not in RL_ALGORITHMS:
            raise components.ConfigError(f"config.algorithm={cfg.algorithm!r}; the RL trainer runs {RL_ALGORITHMS} "
                                         "(run_training runs sft)")
        self.cfg, self.mesh, self.task = cfg, mesh, task
        self.model_config, self.tokenizer = model.config, model.tokenizer
        self.workdir = cfg.workdir
        n_proc = jax.process_count()
        if cfg.rollout.prompts_per_step % n_proc:
            raise components.ConfigError(f"rollout.prompts_per_step={cfg.rollout.prompts_per_step} must be a "
                                         f"multiple of the {n_proc} processes")
        self.local_prompts = cfg.rollout.prompts_per_step // n_proc
        if not isinstance(cfg.rollout.oversample, int) or cfg.rollout.oversample < 1:
            raise components.ConfigError(f"rollout.oversample={cfg.rollout.oversample!r} must be an integer >= 1 "
                                         "(1 = train on every sampled group)")
        self.feedback_cfg = feedback_config(cfg)
        self.steps = make_steps(model.config, train_config(cfg), mesh)
        self.sampler = RolloutSampler(model.config, self.tokenizer, mesh, cfg.rollout)
        # Refuse a workdir of another model before anything is written there.
        fingerprint = dict(model.fingerprint, algorithm=cfg.algorithm)
        self.ckpt = Checkpointer(self.workdir, fingerprint=fingerprint, save_every=cfg.checkpoint.every,
                                 max_to_keep=cfg.checkpoint.keep)
        self.client, self.server = components.start_feedback(cfg, task)
        self.data = ExampleIterator(task.train, batch_size=self.local_prompts, seed=cfg.seed)
        # Restore onto an abstract target (shapes + this run's shardings): no
        # second full state is built just to be overwritten.
        target = abstract_state(jax.eval_shape(self.steps.init_state, model.params), self.steps.state_shardings)
        restored = self.ckpt.restore_latest(target)
        self.preempted = False
        if restored is None:  # a fresh run: pretrained weights, init_from, or a warm start run now
            params = warm_start.initial_params(cfg, mesh, model, task)
            self.preempted = params is None
            self.state, self.start_step = None if self.preempted else self.steps.init_state(params), 0
            del params
        else:
            self.state, self.start_step = restored.state, restored.step
            if restored.host_state is None:
                log.warning("checkpoint step %d was written by a different number of processes: the data "
                            "order restarts from the beginning of an epoch", restored.step)
            else:
                self.data.restore(restored.host_state["data"])
            log.info("resumed from %s at step %d", self.ckpt.directory, restored.step)
        model.params = None  # the state holds the only copy from here on
        self.logger = MetricsLogger(self.workdir, total_steps=cfg.total_steps, start_step=self.start_step,
                                    bar_keys=("reward_mean", "m/m_loss", "e/bco_accuracy", "eval/pass@1"),
                                    progress=None if cfg.log.progress else False, tensorboard=cfg.log.tensorboard,
                                    wandb=dict(project=cfg.log.wandb_project, mode=cfg.log.wandb_mode,
                                               config=cfg.to_dict()) if cfg.log.wandb else None)

    # ----------------------------------------------------------------- pieces
    def grade(self, examples, completions) -> list[dict]:
        return self.task.grade(examples, completions, client=self.client)

    def _contexts(self, rolls, step: int, key) -> None:
        self_crit = None
        if "self_critique" in self.feedback_cfg.sources:
            idx, ids = rollouts.self_critique_prompts(rolls, self.task, self.tokenizer)
            texts = self.sampler.texts(self.state.params, ids, key, self.cfg.feedback.self_critique_tokens) if ids \
                else []
            self_crit = [None] * len(rolls)
            for i, t in zip(idx, texts):
                self_crit[i] = t
        rng = np.random.default_rng([self.cfg.seed, step])
        rollouts.attach_contexts(rolls, self.task, self.tokenizer, self.feedback_cfg, rng, self_crit)

    def iteration(self, step: int) -> dict:
        """One rollout batch and its updates; returns the step's metrics."""
        cfg, timings = self.cfg, {}
        key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), step)
        k_sample, k_crit = jax.random.split(key)
        examples = [ex for _ in range(cfg.rollout.oversample) for ex in self.data.next_batch()]
        with phase_timer(timings, "rollout"):
            prompt_ids = rollouts.student_prompts(self.task, self.tokenizer, examples, cfg.rollout.max_prompt_tokens)
            sampled = self.sampler.sample(self.state.params, prompt_ids, k_sample, cfg.rollout.samples_per_prompt)
        with phase_timer(timings, "grading"):
            repeated = [examples[s["prompt_index"]] for s in sampled]
            grades = self.grade(repeated, [s["text"] for s in sampled])
        rolls = [rollouts.Rollout(example=ex, group=s["prompt_index"], prompt_ids=prompt_ids[s["prompt_index"]],
                                  response_ids=s["response_ids"], text=s["text"], logprobs=s["logprobs"],
                                  finish=s["finish"], grade=g) for ex, s, g in zip(repeated, sampled, grades)]
        metrics = rollouts.rollout_stats(rolls)  # everything sampled: the policy's own numbers
        if cfg.rollout.oversample > 1:
            by_group = [[r.reward for r in rolls if r.group == i] for i in range(len(examples))]
            kept = rollouts.select_groups(by_group, self.local_prompts, np.random.default_rng([cfg.seed, step, 1]))
            rolls = [r for r in rolls if r.group in set(kept)]
            metrics["filter/frac_groups_mixed"] = rollouts.rollout_stats(rolls)["frac_groups_mixed"]
        # global group ids, numbered 0..local_prompts-1 on each host after any filtering
        offset, renumber = jax.process_index() * self.local_prompts, {}
        for r in rolls:
            r.group = offset + renumber.setdefault(r.group, len(renumber))
        with phase_timer(timings, "contexts"):
            if cfg.algorithm != "grpo":
                self._contexts(rolls, step, k_crit)
        metrics["frac_with_context"] = rollouts.rollout_stats(rolls)["frac_with_context"]
        batch = self._pack(rollouts.to_rows(rolls))
        if cfg.algorithm == "grpo":
            with phase_timer(timings, "grpo_step"):
                self.state, g = self.steps.grpo_step(self.state, batch)
                metrics.update({f"g/{k}": float(v) for k, v in g.items()})
        else:
            if cfg.algorithm == "vpd" and step % cfg.e_step_every == 0:
                with phase_timer(timings, "e_step"):
                    self.state, e = self.steps.e_step(self.state, batch)
                    metrics.update({f"e/{k}": float(v) for k, v in e.items()})
            with phase_timer(timings, "m_step"):
                self.state, m = self.steps.m_step(self.state, batch)
                metrics.update({f"m/{k}": float(v) for k, v in m.items()})
        metrics["delta"] = float(self.state.delta)
        tokens = metrics["response_tokens"]
        metrics.update({f"time/{k}": v for k, v in timings.items()})
        metrics["rollout_tokens_per_s"] = tokens / max(timings["rollout"], 1e-9)
        self._log_samples(step, rolls)
        return metrics

    def _pack(self, rows) -> dict:
        return distributed.pack_global(rows, self.steps.row_multiple, self.steps.batch_sharding, self.sampler.pad_id,
                                       self.cfg.pack.seq_buckets, self.cfg.pack.response_buckets)

    def _log_samples(self, step: int, rolls) -> None:
        if not self.cfg.log.samples or jax.process_index() != 0:
            return
        with open(os.path.join(self.workdir, "samples.jsonl"), "a") as f:
            for r in rolls[: self.cfg.log.samples]:
                f.write(json.dumps({"step": step, "id": r.example.id, "reward": r.reward,
                                    "verdict": r.grade.get("verdict"), "completion": r.text,
                                    "context": r.context.source if r.context else None}) + "\n")

    def evaluate(self, step: int) -> dict:
        out = run_eval_split(self.cfg, self.task, self.tokenizer, self.sampler, self.state.params, step, self.grade)
        if jax.process_index() == 0:
            os.makedirs(os.path.join(self.workdir, "eval"), exist_ok=True)
            with open(os.path.join(self.workdir, "eval", f"step_{step}.json"), "w") as f:
                json.dump(out, f, indent=1)
        return {f"eval/{k}": v for k, v in out.items() if "pass@" in k or k in ("context_frac", "tests_passed_frac")}

    # ------------------------------------------------------------------ loop
    def train(self) -> None:
        cfg = self.cfg
        step = self.start_step
        if self.preempted:  # during the warm start, which saved its checkpoint
            return
        if step == 0 and cfg.eval.at_start and len(self.task.eval):
            self.logger.write(f"eval at step 0: {len(self.task.eval)} problems x {cfg.eval.num_samples} samples")
            with phase_timer(t := {}, "eval"):
                m = self.evaluate(0)
            row = self.logger.log(0, {**m, "time/eval": t["eval"]})
            self.logger.write(iteration_line(0, cfg.total_steps, row, None))
            self._plot()
        t_loop, first = time.perf_counter(), step
        while step < cfg.total_steps:
            step += 1
            t0 = time.perf_counter()
            metrics = self.iteration(step)
            last = step == cfg.total_steps
            if len(self.task.eval) and ((cfg.eval.every and step % cfg.eval.every == 0) or last):
                with phase_timer(metrics_t := {}, "eval"):
                    metrics.update(self.evaluate(step))
                metrics["time/eval"] = metrics_t["eval"]
            with phase_timer(ck := {}, "checkpoint"):
                self.ckpt.maybe_save(step, self.state, {"data": self.data.state()}, force=last)
            metrics["time/checkpoint"] = ck["checkpoint"]
            metrics["time/iteration"] = time.perf_counter() - t0
            row = self.logger.log(step, metrics)
            per_step = (time.perf_counter() - t_loop) / (step - first)
            self.logger.write(iteration_line(step, cfg.total_steps, row, per_step * (cfg.total_steps - step)))
            if "time/eval" in metrics or last or self.ckpt.preemption_requested:
                self._plot()
            if self.ckpt.preemption_requested:
                self.logger.write(f"preempted: saved step {step}, exiting")
                break

    def _plot(self) -> None:
        if self.cfg.log.plots and jax.process_index() == 0:
            plots.draw_run_safely(self.workdir)

    def close(self) -> None:
        self.ckpt.close()
        self.logger.close()
        if self.server is not None:
            self.server.close()


def run_eval_split(cfg, task, tokenizer, sampler, params, step: int, grade, records: list | None = None) -> dict:
    """pass@k on task.eval with the eval sampling settings; the key depends
    on (seed, step) only, so a training run's eval and launch/eval.py agree.
    With cfg.eval.teacher, also the teacher's pass@1 (see `teacher_eval`)."""
    e = cfg.eval
    records = [] if records is None and e.teacher else records
    sampling = dict(temperature=e.temperature, top_p=e.top_p, max_new_tokens=e.max_new_tokens)

    def rollout_fn(chunk, n):
        ids = rollouts.student_prompts(task, tokenizer, chunk, cfg.rollout.max_prompt_tokens)
        key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed + 1), step)
        return [s["text"] for s in sampler.sample(params, ids, key, n, **sampling)]

    examples = list(task.eval)
    out = evaluate.evaluate(rollout_fn, grade, examples, e.num_samples, tuple(e.pass_k),
                            batch_prompts=e.prompts_per_batch, records=records, progress=f"eval at step {step}",
                            group_by=e.get("group_by", ""))
    if e.teacher:
        out.update(teacher_eval(cfg, task, tokenizer, sampler, params, step, grade, examples, records, sampling))
    return out


def teacher_eval(cfg, task, tokenizer, sampler, params, step: int, grade, examples, records, sampling) -> dict:
    """The teacher q(y|x, C) on the eval split: one sample per student sample.

    Each student sample gets the teacher context training would give it
    (a successful sibling from its group, or the environment's critique of
    it, per cfg.feedback), and the same weights sample once with that
    context in the prompt; a sample with an empty context (e.g. a success
    with no other success to show) is sampled from the plain prompt, where
    the teacher is the student. Returns teacher_pass@1 (mean over all
    samples; compare with pass@1), teacher_pass@1_with_context (over the
    samples that had a context) and context_frac. The teacher's completions
    are added to `records` under "teacher_completion".
    """
    fcfg = feedback_config(cfg)
    by_id = {ex.id: (i, ex) for i, ex in enumerate(examples)}
    rolls = []
    for r in records:
        i, ex = by_id[r["id"]]
        rolls.append(rollouts.Rollout(example=ex, group=i, prompt_ids=[], response_ids=[], text=r["completion"],
                                      logprobs=np.zeros(0, np.float32), finish="",
                                      grade={"reward": r["reward"], "passed": r["passed"], "critique": r["critique"]}))
    rollouts.attach_contexts(rolls, task, tokenizer, fcfg, np.random.default_rng([cfg.seed, step, 7]))
    student_ids = {ex.id: ids for ex, ids in zip(examples, rollouts.student_prompts(
        task, tokenizer, examples, cfg.rollout.max_prompt_tokens))}
    ids = [r.teacher_prompt_ids or student_ids[r.example.id] for r in rolls]
    key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed + 2), step)
    chunk = max(1, cfg.eval.prompts_per_batch * cfg.eval.num_samples)
    passed = []
    for start in range(0, len(rolls), chunk):
        part = rolls[start:start + chunk]
        texts = [s["text"] for s in sampler.sample(params, ids[start:start + chunk], jax.random.fold_in(key, start),
                                                   1, **sampling)]
        grades = grade([r.example for r in part], texts)
        for j, (t, g) in enumerate(zip(texts, grades)):
            passed.append(bool(g["passed"]))
            records[start + j].update(teacher_completion=t, teacher_passed=bool(g["passed"]),
                                      teacher_context=part[j].context.source if part[j].context else "none")
    has_ctx = np.array([r.teacher_prompt_ids is not None for r in rolls], bool)
    passed = np.array(passed, bool)
    return {"teacher_pass@1": float(passed.mean()) if len(passed) else 0.0,
            "teacher_pass@1_with_context": float(passed[has_ctx].mean()) if has_ctx.any() else 0.0,
            "context_frac": float(has_ctx.mean()) if len(has_ctx) else 0.0}


def run_training(cfg: ml_collections.ConfigDict) -> None:
    if cfg.log.wandb:
        require_wandb()
    components.init_distributed(cfg)
    mesh = components.build_mesh(cfg)
    model = components.build_model(cfg, mesh)
    task = components.build_task(cfg)
    if cfg.algorithm == "sft":
        warm_start.run_warm_start(cfg, mesh, model, task, cfg.workdir)
        return
    trainer = Trainer(cfg, mesh, model, task)
    try:
        trainer.train()
    finally:
        trainer.close()


def run_workdir(path: str) -> str:
    """A run's workdir from itself or from its `checkpoints/` folder (what a
    user tab-completes to), local or gs://."""
    trimmed = path.rstrip("/")
    if os.path.basename(trimmed) == "checkpoints" and not os.path.isdir(os.path.join(trimmed, "checkpoints")):
        return os.path.dirname(trimmed) or "."
    return path


def run_eval(cfg: ml_collections.ConfigDict, checkpoint_dir: str = "", step: int | None = None,
             out: str = "") -> dict:
    """pass@k of a checkpoint (or of the base model) on the eval split."""
    components.init_distributed(cfg)
    mesh = components.build_mesh(cfg)
    model = components.build_model(cfg, mesh)
    task = components.build_task(cfg)
    if len(task.eval) == 0:
        raise components.ConfigError(f"task {cfg.task.name} has an empty eval split")
    steps = make_steps(model.config, train_config(cfg), mesh)
    sampler = RolloutSampler(model.config, model.tokenizer, mesh, cfg.rollout)
    params, at = model.params, 0
    if checkpoint_dir:
        checkpoint_dir = run_workdir(checkpoint_dir)
        if "://" not in checkpoint_dir and not os.path.isdir(os.path.join(checkpoint_dir, "checkpoints")):
            raise components.ConfigError(f"--checkpoint_dir={checkpoint_dir}: no checkpoints/ directory there "
                                         "(give the workdir of a training run, or its checkpoints/ folder)")
        ckpt = Checkpointer(checkpoint_dir, fingerprint=dict(model.fingerprint, algorithm=cfg.algorithm),
                            save_every=1, handle_sigterm=False)
        target = abstract_state(jax.eval_shape(steps.init_state, params), steps.state_shardings)
        model.params = params = None
        restored = ckpt.restore_latest(target, step=step)
        ckpt.close()
        if restored is None:
            raise components.ConfigError(f"--checkpoint_dir={checkpoint_dir}: no checkpoint found")
        params, at = restored.state.params, restored.step
    client, server = components.start_feedback(cfg, task)
    records: list = []
    try:
        result = run_eval_split(cfg, task, model.tokenizer, sampler, params, at,
                                lambda ex, c: task.grade(ex, c, client=client), records=records)
    finally:
        if server is not None:
            server.close()
    result.update(step=at, checkpoint_dir=checkpoint_dir or None, model=model.fingerprint["source"])
    if jax.process_index() == 0:
        path = out or os.path.join(checkpoint_dir or cfg.workdir, f"eval_step{at}.json")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
        samples_path = os.path.splitext(path)[0] + "_samples.jsonl"
        with open(samples_path, "w") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        print(f"{'step':>6} {'problems':>9} {'samples':>8} " + " ".join(f"{k:>8}" for k in result if k.startswith("pass@")))
        print(f"{at:>6} {result['num_problems']:>9} {result['num_samples']:>8} "
              + " ".join(f"{v:>8.4f}" for k, v in result.items() if k.startswith("pass@")))
        if "teacher_pass@1" in result:
            print("teacher (feedback in the prompt): " + ", ".join(
                f"{k}={result[k]:.4f}" for k in ("teacher_pass@1", "teacher_pass@1_with_context", "context_frac")))
        print(f"verdicts: {result['verdicts']}\nwrote {path} and {samples_path}")
    return result
