"""ExampleIterator: seeded order, disjoint host shards, exact resumption."""

import json

import numpy as np
import pytest

from vpd_jax.data import Example, ExampleIterator, epoch_order, host_shard, in_memory
from vpd_jax.feedback.problems import Problem, TestCase


def _source(n):
    problem = Problem("p", "", "", "", "", "", "", [TestCase("1", "1", "stdin")], [], None, {})
    return in_memory([Example(id=f"q{i}", question=f"question {i}", kind="code",
                              problem=problem) for i in range(n)], "fake")


def _ids(batch):
    return [ex.id for ex in batch]


@pytest.mark.parametrize("n, hosts", [(10, 1), (10, 2), (10, 3), (7, 4)])
def test_host_shards_are_disjoint_and_cover_each_epoch(n, hosts):
    source = _source(n)
    for epoch in range(3):
        shards = []
        for host in range(hosts):
            it = ExampleIterator(source, batch_size=1, seed=5, shard_index=host,
                                 shard_count=hosts)
            it.restore({"epoch": epoch, "position": 0})
            size = len(range(host, n, hosts))
            shards.append(_ids(sum((it.next_batch() for _ in range(size)), [])))
        flat = [i for shard in shards for i in shard]
        assert len(flat) == len(set(flat)) == n  # disjoint and complete


def test_order_is_a_seeded_permutation_that_changes_per_epoch():
    np.testing.assert_array_equal(epoch_order(50, 1, 0), epoch_order(50, 1, 0))
    assert sorted(epoch_order(50, 1, 0)) == list(range(50))
    assert not np.array_equal(epoch_order(50, 1, 0), epoch_order(50, 1, 1))
    assert not np.array_equal(epoch_order(50, 1, 0), epoch_order(50, 2, 0))
    a = ExampleIterator(_source(20), 6, seed=9, shard_index=0, shard_count=1)
    b = ExampleIterator(_source(20), 6, seed=9, shard_index=0, shard_count=1)
    assert [_ids(a.next_batch()) for _ in range(7)] == [_ids(b.next_batch()) for _ in range(7)]


def test_batches_straddle_epochs_and_stay_full():
    it = ExampleIterator(_source(5), batch_size=3, seed=0, shard_index=0, shard_count=1)
    batches = [_ids(it.next_batch()) for _ in range(5)]  # 15 items = 3 epochs
    assert all(len(b) == 3 for b in batches)
    flat = sum(batches, [])
    for e in range(3):
        assert sorted(flat[5 * e:5 * e + 5]) == [f"q{i}" for i in range(5)]
        assert flat[5 * e:5 * e + 5] == [f"q{i}" for i in epoch_order(5, 0, e)]
    assert it.epoch == 2


def test_resume_continues_exactly():
    source = _source(13)
    it = ExampleIterator(source, batch_size=4, seed=3, shard_index=1, shard_count=2)
    for _ in range(5):  # crosses an epoch boundary (shard of 6 per epoch)
        it.next_batch()
    saved = json.loads(json.dumps(it.state()))  # what a checkpoint holds
    expected = [_ids(it.next_batch()) for _ in range(6)]
    resumed = ExampleIterator(source, batch_size=4, seed=3, shard_index=1, shard_count=2)
    resumed.restore(saved)
    assert [_ids(resumed.next_batch()) for _ in range(6)] == expected


@pytest.mark.parametrize("change", [{"seed": 4}, {"shard_index": 0}, {"num_examples": 12}])
def test_restore_refuses_a_state_from_another_iterator(change):
    it = ExampleIterator(_source(13), batch_size=2, seed=3, shard_index=1, shard_count=2)
    state = {**it.state(), **change}
    with pytest.raises(ValueError, match=next(iter(change))):
        it.restore(state)


def test_default_shard_is_the_jax_process():
    import jax
    it = ExampleIterator(_source(4), batch_size=2)
    assert (it.shard_index, it.shard_count) == (jax.process_index(), jax.process_count())


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="both"):
        ExampleIterator(_source(4), 2, shard_index=0)
    with pytest.raises(ValueError, match="shard_index"):
        ExampleIterator(_source(4), 2, shard_index=2, shard_count=2)
    with pytest.raises(ValueError, match="batch_size"):
        ExampleIterator(_source(4), 0, shard_index=0, shard_count=1)
    with pytest.raises(ValueError, match="hosts"):
        ExampleIterator(_source(2), 1, shard_index=0, shard_count=3)


def test_host_shard_for_evaluation():
    shards = [list(host_shard(11, h, 3)) for h in range(3)]
    assert sorted(sum(shards, [])) == list(range(11))
