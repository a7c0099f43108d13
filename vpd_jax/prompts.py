"""Student prompts, teacher reprompts and the choice of feedback context.

The student sees the problem; the teacher is the same model with feedback C
inserted into the user turn (SDPO's reprompt shape). Both score the SAME
response tokens: the response is appended unchanged after the assistant
header of either prompt, so only the prompt part differs. Budgets cut the
feedback (critique, sibling solution), never the response.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

SOURCES = ("env", "sibling", "self_critique")

SIBLING_HEADER = "Correct solution:\n\n"
FEEDBACK_HEADER = "The following is feedback from your unsuccessful earlier attempt:\n\n"
RESOLVE_LINE = "Correctly solve the original question."
SELF_CRITIQUE_ASK = (
    "Here is an attempt at the problem above:\n\n{attempt}\n\n"
    "It is not correct. Point out concisely what is wrong with it and how to fix it. Do not write the full solution."
)


@dataclasses.dataclass(frozen=True)
class FeedbackConfig:
    """Which feedback reaches the teacher, and how much of it."""

    sources: tuple[str, ...] = ("sibling", "env")  # in order of preference
    combine: bool = False  # True: every available source; False: the first available
    max_critique_tokens: int = 512  # env / self-critique text budget (truncated)
    max_sibling_tokens: int = 1024  # sibling solution budget (truncated)
    feedback_on_success: bool = False  # env critique also for passing rollouts

    def __post_init__(self):
        bad = [s for s in self.sources if s not in SOURCES]
        if bad or not self.sources:
            raise ValueError(f"feedback sources {list(self.sources)}: each must be one of {SOURCES}")


def chat_prompt_ids(tokenizer, user_text: str, system: str | None = None) -> list[int]:
    """Token ids of a chat prompt ending with the assistant header."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user_text}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return list(tokenizer.encode(text, add_special_tokens=False))


def truncate_tokens(tokenizer, text: str, max_tokens: int) -> str:
    """`text` cut to at most max_tokens tokens, marked when cut."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens]) + "\n[... truncated]"


def teacher_user_text(user_text: str, sibling: str | None, critique: str | None) -> str:
    """The reprompt: original question, then the feedback, then the ask."""
    parts = [user_text]
    if sibling:
        parts.append(SIBLING_HEADER + sibling)
    if critique:
        parts.append(FEEDBACK_HEADER + critique)
    parts.append(RESOLVE_LINE)
    return "\n\n".join(parts)


def choose_siblings(rewards: Sequence[float], groups: Sequence[int], rng: np.random.Generator) -> list[int | None]:
    """For each rollout, the index of a successful rollout of the same prompt,
    never itself (None when no other rollout of its group succeeded)."""
    rewards, groups = np.asarray(rewards), np.asarray(groups)
    out: list[int | None] = []
    for i in range(len(rewards)):
        pool = np.flatnonzero((groups == groups[i]) & (rewards > 0.5))
        pool = pool[pool != i]
        out.append(int(rng.choice(pool)) if len(pool) else None)
    return out


@dataclasses.dataclass
class TeacherContext:
    """What the teacher of one rollout sees beyond the question."""

    sibling: str | None = None
    critique: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.sibling or self.critique)

    @property
    def source(self) -> str:
        return "+".join(k for k, v in (("sibling", self.sibling), ("critique", self.critique)) if v) or "none"


def build_contexts(cfg: FeedbackConfig, tokenizer, responses: Sequence[str], sibling_code: Sequence[str | None],
                   rewards: Sequence[float], groups: Sequence[int], critiques: Sequence[str],
                   self_critiques: Sequence[str | None] | None, rng: np.random.Generator) -> list[TeacherContext]:
    """One TeacherContext per rollout, following cfg.sources.

    `sibling_code[i]` is the text to show when rollout i serves as another's
    sibling (its extracted program, or the raw response). `critiques` are the
    feedback server's; `self_critiques` the model's own (when that source is on).
    """
    siblings = choose_siblings(rewards, groups, rng)
    contexts = []
    for i in range(len(responses)):
        ctx = TeacherContext()
        for src in cfg.sources:
            if src == "sibling" and siblings[i] is not None:
                ctx.sibling = truncate_tokens(tokenizer, sibling_code[siblings[i]] or responses[siblings[i]],
                                              cfg.max_sibling_tokens)
            elif src == "env" and critiques[i] and (rewards[i] < 0.5 or cfg.feedback_on_success):
                ctx.critique = _join(ctx.critique, truncate_tokens(tokenizer, critiques[i], cfg.max_critique_tokens))
            elif src == "self_critique" and self_critiques and self_critiques[i] and rewards[i] < 0.5:
                ctx.critique = _join(ctx.critique, truncate_tokens(tokenizer, self_critiques[i],
                                                                   cfg.max_critique_tokens))
            else:
                continue
            if not cfg.combine:
                break
        contexts.append(ctx)
    return contexts


def _join(critique: str | None, more: str) -> str:
    """With combine=True both critiques reach the teacher, in source order."""
    return f"{critique}\n\n{more}" if critique else more


def self_critique_user_text(user_text: str, attempt: str) -> str:
    """The extra generation pass's prompt: the model critiques its own attempt."""
    return user_text + "\n\n" + SELF_CRITIQUE_ASK.format(attempt=attempt)
