"""One iteration's host-side data: sample, grade, build teacher contexts.

    examples -> student prompt ids -> sampler (G per prompt)
             -> completions -> task.grade (feedback server)
             -> teacher contexts (sibling / env critique / self-critique)
             -> packing.Row per rollout

Nothing here is jitted; the sampler and the train steps are.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from vpd_jax import prompts
from vpd_jax.evaluate import tests_passed_fraction
from vpd_jax.packing import Row


@dataclasses.dataclass
class Rollout:
    example: Any
    group: int
    prompt_ids: list[int]
    response_ids: list[int]
    text: str
    logprobs: np.ndarray  # [len(response_ids)] sampler log-probs (untempered policy)
    finish: str
    grade: dict
    context: prompts.TeacherContext | None = None
    teacher_prompt_ids: list[int] | None = None

    @property
    def reward(self) -> float:
        return float(self.grade.get("reward", 0.0))


class PromptTooLong(ValueError):
    pass


def student_prompts(task, tokenizer, examples: Sequence, max_tokens: int) -> list[list[int]]:
    ids = []
    for ex in examples:
        p = prompts.chat_prompt_ids(tokenizer, task.user_prompt(ex))
        if len(p) > max_tokens:
            raise PromptTooLong(f"example {ex.id}: the student prompt has {len(p)} tokens, over "
                                f"rollout.max_prompt_tokens={max_tokens}; raise it or drop the example")
        ids.append(p)
    return ids


def sibling_text(r: Rollout) -> str:
    """What a successful rollout shows as a sibling: its program in a python
    block for code tasks (the part the grader ran), else its completion."""
    if getattr(r.example, "kind", None) == "code":
        from vpd_jax.feedback import extract_code

        code = extract_code(r.text)
        if code:
            return f"```python\n{code.rstrip()}\n```"
    return r.text


def attach_contexts(rollouts: list[Rollout], task, tokenizer, cfg: prompts.FeedbackConfig,
                    rng: np.random.Generator, self_critiques: Sequence[str | None] | None = None) -> None:
    """Fills each rollout's teacher context and teacher prompt ids in place."""
    contexts = prompts.build_contexts(
        cfg, tokenizer, [r.text for r in rollouts], [sibling_text(r) for r in rollouts],
        [r.reward for r in rollouts], [r.group for r in rollouts],
        [r.grade.get("critique", "") for r in rollouts], self_critiques, rng)
    for r, ctx in zip(rollouts, contexts):
        r.context = ctx
        if ctx.empty:
            r.teacher_prompt_ids = None
            continue
        user = prompts.teacher_user_text(task.user_prompt(r.example), ctx.sibling, ctx.critique)
        r.teacher_prompt_ids = prompts.chat_prompt_ids(tokenizer, user)


def self_critique_prompts(rollouts: Sequence[Rollout], task, tokenizer) -> tuple[list[int], list[list[int]]]:
    """(indices of failed rollouts, their critique-pass prompt ids)."""
    idx = [i for i, r in enumerate(rollouts) if r.reward < 0.5]
    ids = [prompts.chat_prompt_ids(tokenizer, prompts.self_critique_user_text(task.user_prompt(rollouts[i].example),
                                                                              rollouts[i].text)) for i in idx]
    return idx, ids


def to_rows(rollouts: Sequence[Rollout]) -> list[Row]:
    """Packing rows. A rollout the grader failed on (verdict grading_error:
    the grader's fault, not the program's) is packed untrained: its reward 0
    and its "grading error" critique would teach nothing true."""
    return [Row(student_prompt=r.prompt_ids, teacher_prompt=r.teacher_prompt_ids, response=r.response_ids,
                reward=r.reward, group=r.group, old_logp=r.logprobs,
                trained=r.grade.get("verdict") != "grading_error") for r in rollouts]


def select_groups(group_rewards: Sequence[Sequence[float]], keep: int, rng: np.random.Generator) -> list[int]:
    """Indices (ascending) of the `keep` groups to train on: groups whose
    rewards differ come first, ties in random order.

    Why: a group whose rollouts all pass or all fail gives GRPO no advantage
    and VPD's teacher no successful sibling beside a failure; with rollouts
    cheaper than updates, sampling more groups and training on the
    informative ones buys signal per update (DAPO's dynamic sampling, here
    filling up with uninformative groups so the batch shape never changes).
    """
    if not 0 < keep <= len(group_rewards):
        raise ValueError(f"keep={keep} groups of {len(group_rewards)}")
    mixed = np.array([max(g) - min(g) > 1e-6 for g in group_rewards])  # [P]
    order = rng.permutation(len(group_rewards))
    order = order[np.argsort(~mixed[order], kind="stable")]  # mixed first, random within each kind
    return sorted(int(i) for i in order[:keep])


def rollout_stats(rollouts: Sequence[Rollout]) -> dict:
    """Host-side metrics of one batch of rollouts."""
    rewards = np.array([r.reward for r in rollouts])
    lengths = np.array([len(r.response_ids) for r in rollouts])
    verdicts: dict[str, int] = {}
    for r in rollouts:
        v = r.grade.get("verdict", "?")
        verdicts[v] = verdicts.get(v, 0) + 1
    groups = {}
    for r in rollouts:
        groups.setdefault(r.group, []).append(r.reward)
    n = max(len(rollouts), 1)
    stats = {
        "reward_mean": float(rewards.mean()) if len(rewards) else 0.0,
        "response_len_mean": float(lengths.mean()) if len(lengths) else 0.0,
        "response_tokens": int(lengths.sum()),
        "frac_truncated": float(np.mean([r.finish == "length" for r in rollouts])) if rollouts else 0.0,
        "frac_groups_solved": float(np.mean([max(g) > 0.5 for g in groups.values()])) if groups else 0.0,
        # groups whose rewards differ: the only ones GRPO has an advantage for, and
        # where a successful sibling contrasts with a failure
        "frac_groups_mixed": float(np.mean([max(g) - min(g) > 1e-6 for g in groups.values()])) if groups else 0.0,
        "frac_with_context": float(np.mean([r.teacher_prompt_ids is not None for r in rollouts])) if rollouts else 0.0,
    }
    fractions = [tests_passed_fraction(r.grade) for r in rollouts]
    if rollouts and None not in fractions:  # code tasks: partial credit, a denser signal
        stats["tests_passed_frac"] = float(np.mean(fractions))
    stats.update({f"verdict/{k}": v / n for k, v in sorted(verdicts.items())})
    return stats
