"""steps.py on a tiny model: invariances, mesh / micro-batch equivalence, learning.

Compiles are the cost here, so the Steps objects are module-scoped and every
batch is packed to one fixed shape (pad_to), letting each jitted step
compile once for the whole module.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vpd_jax import losses as losses_lib
from vpd_jax import steps as steps_lib
from vpd_jax.models.config import ModelConfig
from vpd_jax.models.params import init_params
from vpd_jax.packing import Row, pack_rows
from vpd_jax.sharding import make_mesh
from vpd_jax.train_config import TrainConfig, learning_rate

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
    # one context, one distribution: both roles' entropies are the same number
    np.testing.assert_allclose(float(m["teacher_entropy"]), float(m["entropy"]), rtol=1e-5)


def test_agree_gate_distills_only_the_rows_the_teacher_ranks_as_their_verdict(params, steps1):
    """m_gate="agree" is the plain M-step loss on the rows whose sequence
    log-ratio sum(log q - log pi) has the verdict's sign, under the same
    normaliser (eager, no extra compile)."""
    import dataclasses

    batch = {k: jnp.asarray(v) for k, v in _pack(_rows()).items()}
    st = steps1.score(params, batch)
    mask = np.asarray(batch["response_mask"])
    rho = np.sum(mask * (np.asarray(st["lp_t"]) - np.asarray(st["lp_s"])), axis=1)  # [B]
    reward, ctx = np.asarray(batch["reward"]), np.asarray(batch["has_context"] * batch["row_mask"])
    agree = np.where(reward > 0.5, rho > 0, rho < 0).astype(np.float32)
    assert 0 < np.sum(ctx * agree) < np.sum(ctx)  # the gate keeps some rows and drops others
    norms = steps_lib.batch_norms(batch, TC)
    gated, gm = steps_lib.m_loss(MC, dataclasses.replace(TC, m_gate="agree"), params, None, None, batch, norms)
    kept = dict(batch, has_context=batch["has_context"] * agree)
    plain, _ = steps_lib.m_loss(MC, TC, params, None, None, kept, norms)
    np.testing.assert_allclose(float(gated), float(plain), rtol=1e-5)
    np.testing.assert_allclose(float(gm["gate_kept"]), np.sum(ctx * agree) / np.sum(ctx), rtol=1e-6)


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


# ------------------------------------------- losses from plain forward() logits
# An independent derivation of every loss, written once over an array module
# (`xp` = numpy in float64 for the values, jax.numpy for the gradients) from
# `forward()` logits of whole sequences: no chunking, no index gather by the
# code under test, no losses.py. The batch has teacher prompts longer than
# the student's, a row without context, both rewards and sampler log-probs.
def _ref_batch():
    rows = _rows(seed=5)
    rows[3] = Row(rows[3].student_prompt, None, rows[3].response, rows[3].reward, rows[3].group)
    return rows


def _logsoftmax(xp, x):
    x = x - xp.max(x, axis=-1, keepdims=True)
    return x - xp.log(xp.sum(xp.exp(x), axis=-1, keepdims=True))


def _response_logits(logits, index):
    """[B, T, V] at the positions that predict each response token -> [B, R, V]."""
    return np.take_along_axis(logits, index[:, :, None], axis=1) if isinstance(logits, np.ndarray) else \
        jnp.take_along_axis(logits, jnp.asarray(index)[:, :, None], axis=1)


def _topk_tail(xp, lp, idx):
    """Top-k log-probs plus the tail bucket log(1 - sum p), [B, R, k + 1]."""
    top = xp.take_along_axis(lp, idx, axis=-1)
    return xp.concatenate([top, xp.log(1.0 - xp.sum(xp.exp(top), axis=-1, keepdims=True))], axis=-1)


def _kl(xp, a, b):
    return xp.sum(xp.exp(a) * (a - b), axis=-1)


def ref_losses(xp, s_logits, t_logits, batch, tc, delta, sg=lambda x: x):
    """(m_loss, e_loss, grpo_loss, metrics) from full-sequence logits [B, T, V]."""
    ls = _logsoftmax(xp, _response_logits(s_logits, batch["student_index"]))  # [B, R, V]
    lt = _logsoftmax(xp, _response_logits(t_logits, batch["teacher_index"]))
    tgt = batch["targets"][:, :, None]
    lp_s, lp_t = xp.take_along_axis(ls, tgt, -1)[..., 0], xp.take_along_axis(lt, tgt, -1)[..., 0]  # [B, R]
    k = tc.topk
    idx_s = xp.argsort(-sg(ls), axis=-1)[..., :k]  # the student's top-k (M-step support)
    idx_t = xp.argsort(-sg(lt), axis=-1)[..., :k]  # the teacher's top-k (E-step KL support)
    ctx, rows = batch["has_context"] * batch["row_mask"], batch["row_mask"]
    mask = batch["response_mask"] * ctx[:, None]  # [B, R]
    # M-step: reverse KL(pi || q) on the student's top-k + tail, prefix-weighted
    d = _kl(xp, _topk_tail(xp, ls, idx_s), _topk_tail(xp, lt, idx_s))
    step_lr = mask * (lp_s - batch["old_logp"])
    w = sg(xp.minimum(xp.exp(xp.cumsum(step_lr, axis=1) - step_lr), tc.importance_clip))
    m = xp.sum(mask * w * d) / mask.sum()
    # E-step: BCO on beta * sum(l_q - l_pi) - delta, + lambda KL(q || pi) on the teacher's top-k + tail
    rho = xp.sum(mask * (lp_t - lp_s), axis=1)
    z = tc.beta * rho - delta
    pos, neg = ctx * (batch["reward"] > 0.5), ctx * (batch["reward"] <= 0.5)
    logsig = lambda x: -xp.log1p(xp.exp(-x))
    bco = -xp.sum(pos * logsig(z)) / pos.sum() - xp.sum(neg * logsig(-z)) / neg.sum()
    kl_q = xp.sum(mask * _kl(xp, _topk_tail(xp, lt, idx_t), _topk_tail(xp, ls, idx_t))) / mask.sum()
    e = bco + tc.lambda_kl * kl_q
    # GRPO: per-token clipped ratio to the sampler, group-normalised advantages
    gmask = batch["response_mask"] * rows[:, None]
    r, g = batch["reward"], batch["group"]
    adv = np.zeros_like(r)
    for i in range(len(r)):
        members = (g == g[i]) & (rows > 0)
        if rows[i] and members.sum() > 1:
            adv[i] = r[i] - r[members].mean()
            adv[i] = adv[i] if tc.dr_grpo else adv[i] / (r[members].std(ddof=1) + 1e-6)
    ratio = xp.exp(lp_s - batch["old_logp"])
    surr = xp.minimum(ratio * adv[:, None], xp.clip(ratio, 1 - tc.clip_low, 1 + tc.clip_high) * adv[:, None])
    denom = rows.sum() * tc.response_budget if tc.dr_grpo else gmask.sum()
    grpo = -xp.sum(gmask * surr) / denom
    correct = pos * (z > 0) + neg * (z <= 0)
    gap = xp.abs(lp_s - batch["old_logp"])  # [B, R] sampler/trainer mismatch per token
    return m, e, grpo, {"divergence": xp.sum(mask * d) / mask.sum(), "kl": kl_q,
                        "bco_accuracy": correct.sum() / ctx.sum(),
                        "m_logp_gap": xp.sum(mask * gap) / mask.sum(), "g_logp_gap": xp.sum(gmask * gap) / gmask.sum(),
                        "is_clipped": xp.sum(mask * (w >= tc.importance_clip * (1 - 1e-6))) / mask.sum()}


@pytest.fixture(scope="module")
def ref_setup(params):
    from vpd_jax.models import forward

    tc = TrainConfig(**{**TC.__dict__, "importance_clip": 1.5, "response_budget": 24})
    batch = _pack(_ref_batch())
    f64 = lambda t: np.asarray(jax.device_get(forward(MC, params, jnp.asarray(batch[t]))), np.float64)
    s_logits, t_logits = f64("student_tokens"), f64("teacher_tokens")
    lp = np.take_along_axis(_logsoftmax(np, _response_logits(s_logits, batch["student_index"])),
                            batch["targets"][:, :, None], -1)[..., 0]
    noise = np.random.default_rng(1).normal(0.0, 0.3, lp.shape)
    batch = dict(batch, old_logp=((lp + noise) * batch["response_mask"]).astype(np.float32))  # a sampler a bit off
    return tc, batch, s_logits, t_logits


def _step_losses(tc, params, batch, delta=0.2):
    """The three losses (and metrics) exactly as the jitted steps compute them."""
    norms = steps_lib.batch_norms(batch, tc)
    m = steps_lib.m_loss(MC, tc, params, None, None, batch, norms)
    e = steps_lib.e_loss(MC, tc, params, jnp.float32(delta), batch, norms)
    adv = losses_lib.group_advantages(batch["reward"], batch["group"], batch["row_mask"], tc.dr_grpo)
    g = steps_lib.g_loss(MC, tc, params, None, dict(batch, advantage=adv), norms)
    return m, e, g


@pytest.mark.parametrize("dr_grpo", [False, True])
def test_losses_match_numpy_from_forward_logits(params, ref_setup, dr_grpo):
    tc, batch, s_logits, t_logits = ref_setup
    tc = TrainConfig(**{**tc.__dict__, "dr_grpo": dr_grpo})
    (m, mm), (e, em), (g, gm) = jax.jit(lambda p, b: _step_losses(tc, p, b))(params, batch)
    want_m, want_e, want_g, want = ref_losses(np, s_logits, t_logits, batch, tc, 0.2)
    np.testing.assert_allclose(float(m), want_m, rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(float(mm["divergence"]), want["divergence"], rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(float(e), want_e, rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(float(em["kl"]), want["kl"], rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(float(em["bco_accuracy"]), want["bco_accuracy"], rtol=1e-6)
    np.testing.assert_allclose(float(g), want_g, rtol=2e-4, atol=1e-6)
    # the mismatch diagnostics: |noise| ~ 0.24 per token, and some prefixes reach the clip
    np.testing.assert_allclose(float(mm["logp_gap"]), want["m_logp_gap"], rtol=1e-4)
    np.testing.assert_allclose(float(gm["logp_gap"]), want["g_logp_gap"], rtol=1e-4)
    np.testing.assert_allclose(float(mm["is_clipped"]), want["is_clipped"], atol=0.02)  # a float32 boundary token may flip
    assert 0.1 < float(mm["logp_gap"]) < 0.5 and 0.0 < float(mm["is_clipped"]) < 1.0
    # the weights are really off 1 and the KL really differs from the other direction
    assert abs(float(mm["m_loss"]) - float(mm["divergence"])) > 1e-3 * float(mm["divergence"])
    assert float(em["kl"]) > 1e-3


def test_each_step_differentiates_only_its_own_side(params, ref_setup):
    """M-step gradient = the gradient with the teacher computed by a frozen
    copy of the weights; E-step gradient = the one with the student frozen.
    Teacher and student contexts differ here, so a missing stop-gradient on
    either side would change the gradient."""
    from vpd_jax.models import forward

    tc, batch, _, _ = ref_setup
    frozen = jax.tree.map(jnp.copy, params)
    fwd = lambda p, t: forward(MC, p, jnp.asarray(batch[t]))

    def ref(p, which: str):
        s = fwd(p if which == "m" else frozen, "student_tokens")
        t = fwd(frozen if which == "m" else p, "teacher_tokens")
        out = ref_losses(jnp, s, t, jax.tree.map(np.asarray, batch), tc, 0.2, sg=jax.lax.stop_gradient)
        return out[0] if which == "m" else out[1]

    got_m, got_e = jax.jit(lambda p: [jax.grad(lambda q: _step_losses(tc, q, batch)[i][0])(p) for i in (0, 1)])(params)
    want_m, want_e = jax.jit(lambda p: [jax.grad(ref)(p, w) for w in ("m", "e")])(params)
    for got, want in ((got_m, want_m), (got_e, want_e)):
        norm = max(float(jnp.abs(x).max()) for x in jax.tree.leaves(want))
        assert norm > 1e-4
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=2e-3 * norm), got, want)


def test_dr_grpo_update_does_not_depend_on_the_packed_length(params, ref_setup):
    """Dr.GRPO's normaliser is rows x the response budget: the same rows
    packed to R = 16 and R = 32 give the same update."""
    tc, batch, _, _ = ref_setup
    tc = TrainConfig(**{**tc.__dict__, "dr_grpo": True})
    st = steps_lib.make_steps(MC, tc, make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1]))
    rows = [Row(r.student_prompt, r.teacher_prompt, r.response, r.reward, r.group, old_logp=[-1.0] * len(r.response))
            for r in _ref_batch()]
    out = []
    for R in (16, 32):
        b = pack_rows(rows, row_multiple=4, pad_to=(SHAPE[0] + R, SHAPE[1] + R, R))
        state, m = st.grpo_step(st.init_state(params), b)
        out.append((state.params, float(m["grpo_loss"])))
    assert abs(out[0][1]) > 1e-4
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-5)
    _params_close(out[0][0], out[1][0])


def test_learning_rate_schedule_counts_iterations(params, steps1):
    """An iteration with an E-step updates twice at that iteration's lr; the
    cosine reaches its floor after total_steps iterations, not earlier."""
    tc = TrainConfig(**{**TC.__dict__, "schedule": "cosine", "total_steps": 4, "warmup_steps": 1})
    st = steps_lib.make_steps(MC, tc, steps1.mesh)
    batch, state, seen = _pack(_rows()), st.init_state(params), []
    for _ in range(4):
        state, e = st.e_step(state, batch)
        state, m = st.m_step(state, batch)
        seen.append((float(e["lr"]), float(m["lr"])))
    want = [float(learning_rate(tc)(i)) for i in range(4)]
    np.testing.assert_allclose([e for e, _ in seen], want, rtol=1e-6)
    np.testing.assert_allclose([m for _, m in seen], want, rtol=1e-6)
    assert int(state.step) == 4 and want[-1] > 0.1 * tc.lr  # iteration 3 of 4 is not at the floor


def test_sft_loss_is_the_response_nll_from_forward_logits(params, ref_setup):
    """The warm start's loss: mean NLL of the response tokens only (the
    prompt is context, never a target), from plain forward() logits."""
    tc, batch, s_logits, _ = ref_setup
    loss, m = jax.jit(lambda p, b: steps_lib.sft_loss(MC, tc, p, b, steps_lib.batch_norms(b, tc)))(params, batch)
    ls = _logsoftmax(np, _response_logits(s_logits, batch["student_index"]))
    lp = np.take_along_axis(ls, batch["targets"][:, :, None], -1)[..., 0]
    mask = batch["response_mask"] * batch["row_mask"][:, None]
    np.testing.assert_allclose(float(loss), -(mask * lp).sum() / mask.sum(), rtol=1e-5)
    every = _logsoftmax(np, s_logits)  # the NLL over prompt and response would be another number
    lp_all = np.take_along_axis(every[:, :-1], batch["student_tokens"][:, 1:, None], -1)[..., 0]
    assert abs(-(batch["student_mask"][:, 1:] * lp_all).sum() / batch["student_mask"][:, 1:].sum() - float(loss)) > 1e-2
    np.testing.assert_allclose(float(m["nll"]), float(loss))
