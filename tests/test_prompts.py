"""Student / teacher prompts and the choice of feedback context."""

import numpy as np
import pytest

from vpd_jax import prompts


class WordTokenizer:
    """A whitespace tokenizer with a ChatML-like template: enough to check
    budgets and prompt structure without a real vocabulary."""

    def __init__(self):
        self.vocab = {}

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        text = "".join(f"<|{m['role']}|> {m['content']} <|end|> " for m in messages)
        return text + ("<|assistant|> " if add_generation_prompt else "")

    def encode(self, text, add_special_tokens=False):
        return [self.vocab.setdefault(w, len(self.vocab)) for w in text.split()]

    def decode(self, ids, skip_special_tokens=False):
        inv = {v: k for k, v in self.vocab.items()}
        return " ".join(inv[i] for i in ids)


def test_teacher_text_shape_follows_sdpo():
    text = prompts.teacher_user_text("Q?", "print(1)", "wrong answer")
    assert text.index("Q?") < text.index(prompts.SIBLING_HEADER) < text.index(prompts.FEEDBACK_HEADER)
    assert text.endswith(prompts.RESOLVE_LINE)
    assert prompts.teacher_user_text("Q?", None, None) == "Q?\n\n" + prompts.RESOLVE_LINE


def test_siblings_are_successful_and_never_self():
    rewards = [1, 0, 1, 0, 0, 1]
    groups = [0, 0, 0, 1, 1, 1]
    rng = np.random.default_rng(0)
    for _ in range(20):
        sib = prompts.choose_siblings(rewards, groups, rng)
        assert sib[0] == 2 and sib[2] == 0  # the only other success of group 0
        assert sib[1] in (0, 2)
        assert sib[5] is None  # its group's only success is itself
        assert sib[3] == 5 and sib[4] == 5


def test_contexts_prefer_sibling_then_env_and_truncate():
    tok = WordTokenizer()
    cfg = prompts.FeedbackConfig(sources=("sibling", "env"), max_critique_tokens=3)
    ctx = prompts.build_contexts(cfg, tok, ["a", "b", "c"], ["code_a", "code_b", "code_c"], [1, 0, 0],
                                 [0, 0, 1], ["ok", "one two three four five", "x y"], None,
                                 np.random.default_rng(0))
    assert ctx[0].empty  # success without a successful sibling: no context (env only on failures)
    assert ctx[1].sibling == "code_a" and ctx[1].critique is None  # first available source only
    assert ctx[2].critique == "x y"
    combined = prompts.build_contexts(prompts.FeedbackConfig(combine=True, max_critique_tokens=3), tok,
                                      ["a", "b"], ["A", "B"], [1, 0], [0, 0], ["", "one two three four five"],
                                      None, np.random.default_rng(0))
    assert combined[1].sibling == "A"
    assert combined[1].critique.startswith("one two three") and "truncated" in combined[1].critique
    assert "four" not in combined[1].critique


def test_combine_joins_env_and_self_critique_and_success_feedback_is_opt_in():
    tok = WordTokenizer()
    cfg = prompts.FeedbackConfig(sources=("env", "self_critique"), combine=True)
    ctx = prompts.build_contexts(cfg, tok, ["a", "b"], ["A", "B"], [0, 1], [0, 1], ["env says", "all passed"],
                                 ["i think", "fine"], np.random.default_rng(0))
    assert ctx[0].critique == "env says\n\ni think"  # both, in source order: neither overwrites the other
    assert ctx[1].empty  # a success gets no critique of either kind by default
    on = prompts.build_contexts(prompts.FeedbackConfig(sources=("env",), feedback_on_success=True), tok, ["b"],
                                ["B"], [1], [1], ["all passed"], None, np.random.default_rng(0))
    assert on[0].critique == "all passed"


def test_trainer_passes_every_feedback_field_from_the_config():
    import dataclasses

    from vpd_jax.configs import base
    from vpd_jax.trainer import feedback_config

    cfg = base.get_config()
    cfg.feedback.feedback_on_success, cfg.feedback.combine = True, True
    fc = feedback_config(cfg)
    assert fc.feedback_on_success and fc.combine
    for field in dataclasses.fields(prompts.FeedbackConfig):  # none left at its default silently
        assert field.name in cfg.feedback, f"config.feedback has no {field.name}"


def test_feedback_sources_from_a_command_line_string():
    """--config.feedback.sources=sibling,env arrives as ("sibling,env",)
    (ml_collections' flag parser): the same ordered list a config file writes."""
    from vpd_jax.configs import base
    from vpd_jax.trainer import feedback_config

    cfg = base.get_config()
    for value, want in ((("sibling",), ("sibling",)), (("sibling, env",), ("sibling", "env")),
                        (("env", "sibling"), ("env", "sibling"))):
        cfg.feedback.sources = value
        assert feedback_config(cfg).sources == want
    cfg.feedback.sources = ("sibling,oracle",)
    with pytest.raises(ValueError, match="feedback sources"):
        feedback_config(cfg)


def test_bad_source_is_rejected():
    with pytest.raises(ValueError, match="feedback sources"):
        prompts.FeedbackConfig(sources=("oracle",))


def test_chat_prompt_ends_with_assistant_header():
    tok = WordTokenizer()
    ids = prompts.chat_prompt_ids(tok, "hello there")
    assert tok.decode(ids).endswith("<|assistant|>")
