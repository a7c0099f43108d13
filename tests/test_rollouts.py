"""rollouts.rollout_stats: the host-side metrics of a batch of graded rollouts."""


def test_rollout_stats_counts_solved_and_mixed_groups():
    import numpy as np

    from vpd_jax.rollouts import Rollout, rollout_stats

    def roll(group, reward, verdict):
        return Rollout(example=None, group=group, prompt_ids=[1], response_ids=[2, 3], text="", logprobs=np.zeros(2),
                       finish="stop", grade={"reward": reward, "verdict": verdict})

    # group 0 all pass, group 1 mixed, group 2 all fail, group 3 mixed
    rolls = [roll(0, 1.0, "accepted"), roll(0, 1.0, "accepted"), roll(1, 1.0, "accepted"), roll(1, 0.0, "wrong_answer"),
             roll(2, 0.0, "wrong_answer"), roll(2, 0.0, "runtime_error"), roll(3, 0.0, "no_code"), roll(3, 1.0, "accepted")]
    stats = rollout_stats(rolls)
    assert stats["frac_groups_solved"] == 0.75 and stats["frac_groups_mixed"] == 0.5
    assert stats["reward_mean"] == 0.5 and stats["verdict/accepted"] == 0.5 and stats["verdict/no_code"] == 0.125


def test_select_groups_keeps_mixed_groups_first_and_fills_at_random():
    import numpy as np
    import pytest

    from vpd_jax.rollouts import select_groups

    groups = [[1, 1], [0, 1], [0, 0], [1, 0], [0, 0], [1, 1]]  # mixed: 1 and 3
    for seed in range(20):
        kept = select_groups(groups, 3, np.random.default_rng(seed))
        assert kept == sorted(kept) and len(set(kept)) == 3 and {1, 3} <= set(kept)
    assert select_groups(groups, 2, np.random.default_rng(0)) == [1, 3]
    fills = {tuple(select_groups(groups, 3, np.random.default_rng(s))) for s in range(50)}
    assert len(fills) == 4  # the third group is any of the four uniform ones
    assert select_groups([[0, 0], [1, 1]], 2, np.random.default_rng(0)) == [0, 1]  # no mixed group: keep what there is
    with pytest.raises(ValueError, match="keep=3"):
        select_groups([[0, 1]], 3, np.random.default_rng(0))
