"""steps.py on a tiny model: invariances, mesh / micro-batch equivalence, learning.

Compiles are the cost here, so the Steps objects are module-scoped and every
batch is packed to one fixed shape (pad_to), letting each jitted step
compile once for the whole module.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vpd_jax import steps as steps_lib
from vpd_jax.models.config import ModelConfig
from vpd_jax.models.params import init_params
from vpd_jax.packing import Row, pack_rows
from vpd_jax.sharding import make_mesh
from vpd_jax.train_config import TrainConfig

MC = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                 head_dim=8, remat="none")
# adam_eps 1e-5 (not 1e-8): Adam's first update is ~lr * sign(g), so with a
# tiny eps a gradient entry that is pure rounding noise could flip sign
# between two meshes or micro-batchings; 1e-5 bounds d(update)/dg by lr/eps.
TC = TrainConfig(lr=3e-3, weight_decay=0.0, adam_eps=1e-5, topk=8, beta=1.0, lambda_kl=0.01, logit_chunk=8)
SHAPE = (16, 32, 16)  # (Ts, Tt, R) of every batch in this module
ROWS = 8


def _rows(seed=0, same_context=False):
    """Rows whose teacher prompt carries a 'solution' the response copies on positives."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(ROWS):
        prompt = [1] + list(rng.integers(3, 64, 3))
        solution = list(rng.integers(3, 64, 8))
        positive = i % 2 == 0
        response = solution if positive else list(rng.integers(3, 64, 8))
        context = prompt if same_context else prompt + [2] + solution + [2]
        rows.append(Row(prompt, context, response + [2], float(positive), group=i // 4))
    return rows


def _pack(rows):
    return pack_rows(rows, row_multiple=4, pad_to=SHAPE)


@pytest.fixture(scope="module")
def params():
    p = init_params(MC, jax.random.key(0))
    # 3x the usual init scale: a context-sensitive network, so the M- and
    # E-step losses start well away from zero
    scale = lambda path, x: x if "norm" in jax.tree_util.keystr(path) else 3.0 * x
    return jax.tree_util.tree_map_with_path(scale, p)


@pytest.fixture(scope="module")
def steps1():
    return steps_lib.make_steps(MC, TC, make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1]))


@pytest.fixture(scope="module")
def steps8():
    return steps_lib.make_steps(MC, TC, make_mesh({"data": 2, "fsdp": 2, "tensor": 2}))


def _f(metrics):
    return {k: float(v) for k, v in metrics.items()}


def _params_close(p1, p2):
    """Updated params agree to 1e-5 (lr * 3e-3): see the adam_eps note at TC."""
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-5), jax.device_get(p1),
                 jax.device_get(p2))


def _metrics_close(m1, m2):
    assert m1.keys() == m2.keys()
    for k in m1:
        np.testing.assert_allclose(float(m1[k]), float(m2[k]), rtol=1e-4, atol=1e-6, err_msg=k)


def test_mesh8_step_equals_one_device_step(params, steps1, steps8):
    batch = _pack(_rows())
    s1, m1 = steps1.m_step(steps1.init_state(params), batch)
    s8, m8 = steps8.m_step(steps8.init_state(params), batch)
    assert float(m1["m_loss"]) > 1e-3 and float(m1["grad_norm"]) > 1e-3  # a real update happened
    _metrics_close(m1, m8)
    _params_close(s1.params, s8.params)
    # the 8-device state really is sharded: vocab over tensor, embed over fsdp
    emb = s8.params["embed"]
    assert emb.sharding.spec == steps8.param_shardings["embed"].spec
    assert len(emb.addressable_shards) == 8 and emb.addressable_shards[0].data.shape == (32, 16)


def test_micro_batched_accumulation_equals_full_batch(params, steps1):
    """E-step with 2 micro-batches vs 1: rows of both classes split across
    micro-batches, yet BCO means and token means use whole-batch counts."""
    tc = TrainConfig(**{**TC.__dict__, "micro_batches": 2})
    st2 = steps_lib.make_steps(MC, tc, steps1.mesh)
    batch = _pack(_rows())
    s1, m1 = steps1.e_step(steps1.init_state(params), batch)
    s2, m2 = st2.e_step(st2.init_state(params), batch)
    assert float(m1["grad_norm"]) > 1e-3 and 0 < float(m1["bco_accuracy"]) < 1
    _metrics_close(m1, m2)
    _params_close(s1.params, s2.params)
    np.testing.assert_allclose(float(s1.delta), float(s2.delta), rtol=1e-5, atol=1e-7)  # a ~1e-3 mean of log-ratio differences


def test_same_context_gives_zero_m_step_loss_and_gradient(params, steps1):
    state = steps1.init_state(params)
    _, m = steps1.m_step(state, _pack(_rows(same_context=True)))
    assert abs(float(m["m_loss"])) < 1e-6 and float(m["grad_norm"]) < 1e-6
    assert float(m["entropy"]) > 0.1  # the loss ran on real tokens


@pytest.mark.slow  # one more compile; tests/test_losses.py checks the same on logits
def test_e_step_with_beta_and_lambda_zero_has_zero_gradient(params, steps1):
    tc = TrainConfig(**{**TC.__dict__, "beta": 0.0, "lambda_kl": 0.0})
    st = steps_lib.make_steps(MC, tc, steps1.mesh)
    state, m = st.e_step(st.init_state(params), _pack(_rows()))
    assert float(m["grad_norm"]) == 0.0
    np.testing.assert_allclose(float(m["bco_loss"]), 2 * np.log(2.0), rtol=1e-6)  # both classes at sigmoid(0)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), jax.device_get(state.params),
                 jax.device_get(params))


def test_m_steps_toward_fixed_teacher_context_lower_the_loss(params, steps1):
    batch = _pack(_rows(seed=1))
    state = steps1.init_state(params)
    losses = []
    for _ in range(50):
        state, m = steps1.m_step(state, batch)
        losses.append(float(m["m_loss"]))
    losses = np.asarray(losses)
    assert np.all(np.isfinite(losses))
    windows = losses.reshape(5, 10).mean(1)
    # falls and stays down: every later 10-step window is under half the first,
    # and after 20 steps the loss is under a tenth of where it started
    assert np.all(windows[1:] < 0.5 * windows[0]), windows
    assert windows[2:].max() < 0.1 * windows[0] and losses[-1] < 0.1 * losses[0], losses
    assert int(state.step) == 50


def test_e_steps_raise_bco_accuracy_on_separable_batch(params, steps1):
    batch = _pack(_rows(seed=2))
    state = steps1.init_state(params)
    acc, gap = [], []
    for _ in range(25):
        state, m = steps1.e_step(state, batch)
        acc.append(float(m["bco_accuracy"]))
        gap.append(float(m["rho_pos"] - m["rho_neg"]))
    assert acc[-1] == 1.0 and acc[0] < 1.0, acc
    assert gap[-1] > gap[0] + 1.0, gap  # positives' log-ratio separated from negatives'
    assert float(state.delta) != 0.0


def test_grpo_steps_raise_logp_of_rewarded_rows(params, steps1):
    batch = _pack(_rows(seed=3))
    pos = batch["reward"] > 0.5
    mask = batch["response_mask"]

    def seq_logp(p):
        lp = np.asarray(steps1.score(p, batch)["lp_s"])
        return (lp * mask).sum(1) / mask.sum(1)

    state = steps1.init_state(params)
    before = seq_logp(params)
    for _ in range(5):
        state, m = steps1.grpo_step(state, batch)
    after = seq_logp(state.params)
    assert np.isfinite(float(m["grpo_loss"])) and float(m["grad_norm"]) > 0
    assert (after - before)[pos].mean() > (after - before)[~pos].mean() + 0.1


@pytest.mark.slow
@pytest.mark.parametrize("teacher,kl_coef", [("ema", 0.0), ("mix", 0.1)])
def test_sdpo_teachers_and_reference_kl_run_on_the_mesh(params, teacher, kl_coef):
    tc = TrainConfig(**{**TC.__dict__, "sdpo_teacher": teacher, "kl_coef": kl_coef, "micro_batches": 2})
    st = steps_lib.make_steps(MC, tc, make_mesh({"data": 2, "fsdp": 2, "tensor": 2}))
    batch = pack_rows(_rows(), row_multiple=st.row_multiple, pad_to=SHAPE)
    state = st.init_state(params)
    assert (state.ema is not None) == (teacher == "ema") and (state.ref is not None) == (teacher == "mix")
    for _ in range(3):
        state, m = st.m_step(state, batch)
        state, e = st.e_step(state, batch)
        state, g = st.grpo_step(state, batch)
    assert all(np.isfinite(float(v)) for v in {**m, **e, **g}.values())
    if teacher == "ema":  # the EMA teacher trails the weights
        d = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), state.ema, state.params))
        assert max(d) > 0
