"""packing.py: the two contexts' response positions line up token by token."""

import numpy as np
import pytest

from vpd_jax.packing import Row, bucket, pack_rows


def _rows():
    return [
        Row([1, 2, 3], [1, 7, 7, 7, 7, 2, 3], [10, 11, 12, 13], 1.0, group=5),
        Row([1, 4], None, [20, 21], 0.0, group=9),  # no feedback context
        Row([1, 2, 3, 4, 5], [1, 8, 2], [30], 1.0, group=5),
    ]


def test_indices_point_at_the_hidden_state_predicting_each_response_token():
    rows = _rows()
    b = pack_rows(rows, pad_id=0, row_multiple=4, buckets=(8, 16))
    assert b["student_tokens"].shape == (4, 8) and b["teacher_tokens"].shape == (4, 16)
    assert b["targets"].shape == (4, 8)
    for i, r in enumerate(rows):
        n = len(r.response)
        for side in ("student", "teacher"):
            tok, idx = b[f"{side}_tokens"][i], b[f"{side}_index"][i, :n]
            np.testing.assert_array_equal(tok[idx + 1], r.response)  # next token after each index is y_j
            assert b[f"{side}_mask"][i].sum() == idx[-1] + 2  # real tokens end right after the response
        np.testing.assert_array_equal(b["targets"][i, :n], r.response)
        assert b["response_mask"][i].sum() == n
    # the no-context row scores the student prompt as teacher and is flagged
    np.testing.assert_array_equal(b["has_context"], [1, 0, 1, 0])
    np.testing.assert_array_equal(b["teacher_tokens"][1, :4], [1, 4, 20, 21])
    np.testing.assert_array_equal(b["row_mask"], [1, 1, 1, 0])
    np.testing.assert_array_equal(b["reward"], [1, 0, 1, 0])
    assert b["group"][0] == b["group"][2] != b["group"][1]
    assert len(set(b["group"].tolist())) == 3  # the padding row has its own group
    assert b["response_mask"][3].sum() == 0 and "old_logp" not in b


def test_old_logp_and_errors():
    rows = [Row([1], [1, 2], [3, 4], old_logp=[-0.5, -1.5])]
    b = pack_rows(rows, buckets=(4,))
    np.testing.assert_allclose(b["old_logp"][0], [-0.5, -1.5, 0, 0])
    with pytest.raises(ValueError, match="empty student_prompt"):
        pack_rows([Row([], [1], [2])])
    with pytest.raises(ValueError, match="old_logp has 1 entries"):
        pack_rows([Row([1], [1], [2, 3], old_logp=[0.0])])
    with pytest.raises(ValueError, match="some rows have no old_logp"):
        pack_rows(rows + [Row([1], None, [2])], with_old_logp=True)


def test_bucket():
    assert bucket(1, (8, 16)) == 8 and bucket(9, (8, 16)) == 16 and bucket(33, (8, 16)) == 48


def test_an_untrained_row_joins_no_loss_count_or_group():
    """A grading error (Row.trained=False) is packed with its tokens but as
    padding: no row_mask, no context, and the GRPO group of its prompt is
    computed from the other rollouts alone."""
    import jax.numpy as jnp

    from vpd_jax import losses

    rows = [Row([1, 5], [1, 7, 7], [3, 4], reward=1.0, group=0), Row([1, 5], [1, 7, 7], [3], reward=0.0, group=0),
            Row([1, 5], [1, 7, 7], [4, 4], reward=0.0, group=0, trained=False)]
    b = pack_rows(rows)
    assert list(b["row_mask"]) == [1, 1, 0] and list(b["has_context"]) == [1, 1, 0]
    assert list(b["targets"][2, :2]) == [4, 4]
    adv = losses.group_advantages(jnp.asarray(b["reward"]), jnp.asarray(b["group"]), jnp.asarray(b["row_mask"]), True)
    assert [float(a) for a in adv] == [0.5, -0.5, 0.0]  # mean over the two graded rollouts only
