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
