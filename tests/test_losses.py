"""losses.py and divergences.py against a NumPy re-derivation (float64).

Everything here runs eagerly on tiny random logits: no model, no mesh.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vpd_jax import divergences as dv
from vpd_jax import losses

TOL = dict(rtol=1e-5, atol=1e-5)
KINDS = ("reverse_kl", "forward_kl", "jsd")


# ------------------------------------------------------------ NumPy reference
def np_logsoftmax(x):
    x = np.asarray(x, np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def np_div_dist(ps, pt, kind, alpha):
    """D(s, t) for explicit distributions (last axis)."""
    kl = lambda p, q: np.sum(p * (np.log(p) - np.log(q)), -1)
    if kind == "reverse_kl":
        return kl(ps, pt)
    if kind == "forward_kl":
        return kl(pt, ps)
    m = alpha * pt + (1 - alpha) * ps
    return alpha * kl(pt, m) + (1 - alpha) * kl(ps, m)


def np_divergence(s, t, kind, alpha=0.5, topk=0, support="student"):
    ps, pt = np.exp(np_logsoftmax(s)), np.exp(np_logsoftmax(t))
    if topk == 0:
        return np_div_dist(ps, pt, kind, alpha)
    chooser = np.asarray(s if support == "student" else t, np.float64)
    idx = np.argsort(-chooser, axis=-1)[..., :topk]
    top_s, top_t = np.take_along_axis(ps, idx, -1), np.take_along_axis(pt, idx, -1)
    qs = np.concatenate([top_s, 1 - top_s.sum(-1, keepdims=True)], -1)  # k + tail bucket
    qt = np.concatenate([top_t, 1 - top_t.sum(-1, keepdims=True)], -1)
    return np_div_dist(qs, qt, kind, alpha)


def rand_logits(seed, shape, scale=3.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


# ---------------------------------------------------------------- divergences
@pytest.mark.parametrize("kind,topk,support", [(k, 0, "student") for k in KINDS] +
                         [(k, 5, s) for k, s in itertools.product(KINDS, ("student", "teacher"))])
def test_divergence_matches_numpy(kind, topk, support):
    s, t = rand_logits(0, (3, 4, 37)), rand_logits(1, (3, 4, 37))
    got = dv.divergence(jnp.asarray(s), jnp.asarray(t), kind, 0.3, topk, support)
    np.testing.assert_allclose(np.asarray(got), np_divergence(s, t, kind, 0.3, topk, support), **TOL)
    assert np.all(np.asarray(got) >= -1e-6)


def test_topk_tail_is_exact_when_topk_holds_almost_all_mass():
    s = np.zeros((2, 50), np.float32)
    s[:, :3] = 40.0  # tail mass ~ 47 e^-40: log(1 - sum p) would round to log(0)
    got = np.asarray(dv.topk_with_tail(jnp.asarray(s), jnp.asarray(np.tile([[0, 1, 2]], (2, 1)))))
    np.testing.assert_allclose(got[:, 3], np.log(47.0) - 40.0 - np.log(3.0), rtol=1e-5)
    np.testing.assert_allclose(np.exp(got.astype(np.float64)).sum(-1), 1.0, rtol=1e-5)


def test_logit_stats_equals_the_separate_passes_and_numpy():
    """The one-pass stats the losses use: the same numbers as log_probs +
    token_log_prob / entropy / topk_with_tail, and as NumPy; the tail stays
    exact at e^-40 and finite when it underflows float32 altogether."""
    s = rand_logits(4, (6, 40)) * 3
    s[0, :3], s[1, :3] = 40.0, 200.0  # row 0: tail ~ e^-40; row 1: tail < float32's smallest normal
    tgt = np.random.default_rng(5).integers(0, 40, 6)
    idx = np.asarray(jax.lax.top_k(jnp.asarray(s), 3)[1])
    lp, ent, sup = (np.asarray(a) for a in dv.logit_stats(jnp.asarray(s), jnp.asarray(tgt), jnp.asarray(idx)))
    ls = np_logsoftmax(s)
    np.testing.assert_allclose(lp, ls[np.arange(6), tgt], **TOL)
    np.testing.assert_allclose(ent, -(np.exp(ls) * ls).sum(-1), **TOL)
    assert np.all(ent >= 0)
    sep = np.asarray(dv.topk_with_tail(jnp.asarray(s), jnp.asarray(idx)))
    np.testing.assert_allclose(sup[[0, *range(2, 6)]], sep[[0, *range(2, 6)]], rtol=1e-5, atol=1e-5)
    rest = np.ones_like(s, bool)
    np.put_along_axis(rest, idx, False, axis=-1)
    tail = np.log(np.where(rest, np.exp(ls), 0).sum(-1))  # float64
    np.testing.assert_allclose(sup[[0, *range(2, 6)], 3], tail[[0, *range(2, 6)]], rtol=1e-5)
    assert np.isfinite(sup[1]).all() and sup[1, 3] < -80  # log of float32's smallest normal, not -inf
    assert np.isfinite(np.asarray(dv.divergence_from_logprobs(jnp.asarray(sup), jnp.asarray(sup[::-1]), "jsd"))).all()


def test_entropy_and_token_log_prob():
    s = rand_logits(2, (5, 11))
    tgt = np.random.default_rng(3).integers(0, 11, 5)
    ls = np_logsoftmax(s)
    stats = losses.token_stats_from_logits(jnp.asarray(s), jnp.asarray(s), jnp.asarray(tgt), losses.DivergenceSpec())
    np.testing.assert_allclose(stats["ent_s"], -(np.exp(ls) * ls).sum(-1), **TOL)
    np.testing.assert_allclose(stats["lp_s"], ls[np.arange(5), tgt], **TOL)


def test_chunked_stats_from_hidden_equal_logits_path():
    """R = 7 with chunk 3 (padding path), a two-term (SDPO mix) teacher."""
    rng = np.random.default_rng(4)
    B, R, D, V = 2, 7, 6, 29
    hs, ht, hr = (rng.standard_normal((B, R, D)).astype(np.float32) for _ in range(3))
    w, wr = (rng.standard_normal((D, V)).astype(np.float32) for _ in range(2))
    tgt = rng.integers(0, V, (B, R))
    spec = losses.DivergenceSpec("jsd", 0.4, 6, "student")
    teacher = [(0.7, jnp.asarray(ht), jnp.asarray(w)), (0.3, jnp.asarray(hr), jnp.asarray(wr))]
    got = losses.chunked_token_stats(jnp.asarray(hs), jnp.asarray(w), teacher, jnp.asarray(tgt), spec, chunk=3)
    s = hs.astype(np.float64) @ w
    t = 0.7 * (ht.astype(np.float64) @ w) + 0.3 * (hr.astype(np.float64) @ wr)
    ls, lt = np_logsoftmax(s), np_logsoftmax(t)
    take = lambda l: np.take_along_axis(l, tgt[..., None], -1)[..., 0]
    np.testing.assert_allclose(got["lp_s"], take(ls), **TOL)
    np.testing.assert_allclose(got["lp_t"], take(lt), **TOL)
    np.testing.assert_allclose(got["ent_s"], -(np.exp(ls) * ls).sum(-1), **TOL)
    np.testing.assert_allclose(got["div"], np_divergence(s, t, "jsd", 0.4, 6, "student"), **TOL)


@pytest.mark.parametrize("grad_side", ["student", "teacher"])
@pytest.mark.parametrize("topk", [0, 5])
def test_chunked_gradients_equal_unchunked_logits_path(grad_side, topk):
    """The chunked backward (which keeps the detached side's top-k support
    instead of recomputing it) gives the gradients of the plain logits path."""
    rng = np.random.default_rng(6)
    B, R, D, V = 2, 7, 6, 29
    hs, ht = (jnp.asarray(rng.standard_normal((B, R, D)), jnp.float32) for _ in range(2))
    w = jnp.asarray(rng.standard_normal((D, V)), jnp.float32)
    tgt = jnp.asarray(rng.integers(0, V, (B, R)))
    support = "student" if grad_side == "student" else "teacher"
    spec = losses.DivergenceSpec("reverse_kl" if grad_side == "student" else "forward_kl", 0.5, topk, support)
    mix = jnp.asarray(rng.random((B, R)), jnp.float32)

    def reduce(st):
        return jnp.sum(mix * st["div"]) + 0.3 * jnp.sum(st["lp_s"] + st["lp_t"]) + 0.1 * jnp.sum(st["ent_s"])

    def chunked(hs, ht, w):
        return reduce(losses.chunked_token_stats(hs, w, [(1.0, ht, w)], tgt, spec, chunk=3, grad_side=grad_side))

    def direct(hs, ht, w):
        return reduce(losses.token_stats_from_logits(hs @ w, ht @ w, tgt, spec, grad_side=grad_side))

    got = jax.grad(chunked, argnums=(0, 1, 2))(hs, ht, w)
    want = jax.grad(direct, argnums=(0, 1, 2))(hs, ht, w)
    for g, h in zip(got, want):
        np.testing.assert_allclose(g, h, rtol=2e-5, atol=2e-5)
    detached = 1 if grad_side == "student" else 0
    assert float(jnp.abs(got[detached]).max()) == 0.0  # nothing flows into the detached side


def test_chunked_backward_skips_the_detached_lm_head():
    """With a top-k support the backward recomputes only the trained side's
    logits: 2 head matmuls in the forward + 1 recompute + 2 for the gradient."""
    B, R, D, V = 2, 8, 4, 64
    hs, ht, w = jnp.ones((B, R, D)), jnp.ones((B, R, D)), jnp.ones((D, V))
    tgt = jnp.zeros((B, R), jnp.int32)

    def n_head_matmuls(topk):
        spec = losses.DivergenceSpec("reverse_kl", 0.5, topk, "student")
        f = lambda hs, w: jnp.sum(losses.chunked_token_stats(hs, w, [(1.0, ht, w)], tgt, spec, chunk=R,
                                                             grad_side="student")["div"])
        jaxpr = str(jax.make_jaxpr(jax.grad(f, argnums=(0, 1)))(hs, w))
        return jaxpr.count("= dot_general[")

    assert n_head_matmuls(0) == 6  # full vocabulary: both sides recomputed
    assert n_head_matmuls(5) == 5  # top-k: the teacher's k + 1 log-probs are kept instead


# ------------------------------------------------------------------- losses
def np_e_step(lp_t, lp_s, kl, mask, reward, valid, delta, beta, lam, length_normalize):
    rho = (mask * (lp_t - lp_s)).sum(1)
    if length_normalize:
        rho = rho / np.maximum(mask.sum(1), 1)
    z = beta * rho - delta
    logsig = lambda x: -np.log1p(np.exp(-x))
    pos, neg = (valid > 0) & (reward > 0.5), (valid > 0) & (reward <= 0.5)
    bco = -logsig(z[pos]).mean() - logsig(-z[neg]).mean()
    return bco + lam * (mask * kl).sum() / mask.sum(), (z[pos] > 0).sum() + (z[neg] <= 0).sum()


@pytest.mark.parametrize("length_normalize", [False, True])
def test_e_step_loss_matches_numpy(length_normalize):
    rng = np.random.default_rng(5)
    B, R = 6, 5
    lp_t, lp_s = -rng.random((B, R)) * 3, -rng.random((B, R)) * 3
    kl = rng.random((B, R))
    mask = (rng.random((B, R)) > 0.3).astype(np.float64)
    reward = np.array([1, 0, 1, 0, 0, 1.0])
    valid = np.array([1, 1, 1, 1, 0, 1.0])  # row 4: no context / padding
    mask[4] = 0  # its tokens are masked too, as steps.py does
    want, correct = np_e_step(lp_t, lp_s, kl, mask, reward, valid, 0.3, 0.7, 0.2, length_normalize)
    n_pos, n_neg = 3.0, 2.0
    f = lambda x: jnp.asarray(x, jnp.float32)
    loss, m = losses.e_step_loss(f(lp_t), f(lp_s), f(kl), f(mask), f(reward), f(valid), 0.3, 0.7, 0.2,
                                 length_normalize, n_pos, n_neg, mask.sum(), 5.0)
    np.testing.assert_allclose(loss, want, **TOL)
    np.testing.assert_allclose(m["bco_accuracy"], correct / 5, **TOL)


def test_bco_accuracy_with_one_class_absent():
    """3 positives, all classified right, no negatives: accuracy 1, not 3 / 4
    (the clamped class counts must not leak into the accuracy's denominator)."""
    f = lambda x: jnp.asarray(x, jnp.float32)
    lp_t, lp_s = f(np.full((3, 2), -1.0)), f(np.full((3, 2), -2.0))  # rho = +2 on every row
    ones = f(np.ones(3))
    _, m = losses.e_step_loss(lp_t, lp_s, f(np.zeros((3, 2))), f(np.ones((3, 2))), ones, ones, 0.0, 1.0, 0.0,
                              False, 3.0, 1.0, 6.0, 3.0)
    assert float(m["bco_accuracy"]) == 1.0


def test_update_delta():
    d = losses.update_delta(jnp.float32(1.0), jnp.float32(3.0), jnp.float32(-1.0), 1.0, 1.0, 0.9)
    np.testing.assert_allclose(d, 0.9 * 1.0 + 0.1 * (3.0 - 1.0) / 2, **TOL)
    d = losses.update_delta(jnp.float32(1.0), jnp.float32(3.0), jnp.float32(0.0), 1.0, 0.0, 0.5)
    np.testing.assert_allclose(d, 0.5 + 0.5 * 3.0, **TOL)  # only positives: their mean is the target
    assert float(losses.update_delta(jnp.float32(1.0), 0.0, 0.0, 0.0, 0.0, 0.5)) == 1.0


def np_advantages(reward, group, valid, dr):
    adv = np.zeros_like(reward)
    for i in range(len(reward)):
        members = [j for j in range(len(reward)) if group[j] == group[i] and valid[j]]
        if not valid[i] or len(members) < 2:
            continue
        r = reward[members]
        adv[i] = reward[i] - r.mean()
        if not dr:
            adv[i] /= r.std(ddof=1) + 1e-6
    return adv


@pytest.mark.parametrize("dr_grpo", [False, True])
def test_grpo_matches_numpy(dr_grpo):
    rng = np.random.default_rng(6)
    reward = np.array([1, 0, 0, 1, 1, 0, 1, 0.0])
    group = np.array([0, 0, 0, 1, 1, 1, 2, 3])  # groups 2 and 3 have one row: advantage 0
    valid = np.array([1, 1, 1, 1, 1, 1, 1, 0.0])
    adv = np_advantages(reward, group, valid, dr_grpo)
    got_adv = losses.group_advantages(jnp.asarray(reward, jnp.float32), jnp.asarray(group),
                                      jnp.asarray(valid, jnp.float32), dr_grpo)
    np.testing.assert_allclose(got_adv, adv, **TOL)
    B, R = 8, 4
    lp, lp_old, lp_ref = (-rng.random((B, R)) * 2 for _ in range(3))
    mask = (rng.random((B, R)) > 0.2) * valid[:, None]
    ratio = np.exp(lp - lp_old)
    surr = np.minimum(ratio * adv[:, None], np.clip(ratio, 0.8, 1.3) * adv[:, None])
    k3 = np.exp(lp_ref - lp) - (lp_ref - lp) - 1
    denom = B * R if dr_grpo else mask.sum()
    want = (mask * (-surr + 0.05 * k3)).sum() / denom
    f = lambda x: jnp.asarray(x, jnp.float32)
    loss, m = losses.grpo_loss(f(lp), f(lp_old), f(adv), f(mask), 0.2, 0.3, denom, f(lp_ref), 0.05, mask.sum())
    np.testing.assert_allclose(loss, want, **TOL)
    np.testing.assert_allclose(m["kl_ref"], (mask * k3).sum() / mask.sum(), **TOL)
    np.testing.assert_allclose(m["clip_fraction"], (mask * ((ratio < 0.8) | (ratio > 1.3))).sum() / mask.sum(), **TOL)


def np_prefix_weight(lp, old, mask, clip):
    """prod_{s<t} exp(lp_s - old_s), truncated at clip: the likelihood ratio of
    the prefix y_<t that the per-position divergence D_t depends on."""
    B, R = lp.shape
    w = np.ones((B, R))
    for b in range(B):
        for t in range(R):
            w[b, t] = min(np.exp(np.sum((mask[b] * (lp[b] - old[b]))[:t])), clip)
    return w


def test_m_step_loss_with_prefix_importance_weight():
    rng = np.random.default_rng(7)
    div, mask = rng.random((3, 6)), (rng.random((3, 6)) > 0.3) * 1.0
    lp, old = -rng.random((3, 6)), -rng.random((3, 6))
    w = np_prefix_weight(lp, old, mask, 1.5)
    f = lambda x: jnp.asarray(x, jnp.float32)
    got_w = losses.prefix_importance_weight(f(lp), f(old), f(mask), 1.5)
    np.testing.assert_allclose(got_w, w, **TOL)
    assert np.all(np.asarray(got_w)[:, 0] == 1.0)  # nothing precedes the first token
    loss, m = losses.m_step_loss(f(div), f(mask), mask.sum(), got_w)
    np.testing.assert_allclose(loss, (mask * w * div).sum() / mask.sum(), **TOL)
    np.testing.assert_allclose(m["divergence"], (mask * div).sum() / mask.sum(), **TOL)
    # on-policy: every weight is exactly 1; a 10k-token prefix far off-policy stays finite at the clip
    np.testing.assert_array_equal(losses.prefix_importance_weight(f(lp), f(lp), f(mask), 1.5), 1.0)
    long = losses.prefix_importance_weight(jnp.zeros((1, 10000)), jnp.full((1, 10000), -1.0), jnp.ones((1, 10000)), 2.0)
    assert np.all(np.isfinite(np.asarray(long))) and float(long[0, -1]) == 2.0


def test_teacher_agrees_matches_numpy():
    rng = np.random.default_rng(3)
    lp_t, lp_s = -rng.random((6, 5)), -rng.random((6, 5))
    mask = (rng.random((6, 5)) > 0.2) * 1.0
    reward = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    rho = (mask * (lp_t - lp_s)).sum(1)
    want = np.where(reward > 0.5, rho > 0, rho < 0)
    f = lambda x: jnp.asarray(x, jnp.float32)
    np.testing.assert_array_equal(np.asarray(losses.teacher_agrees(f(lp_t), f(lp_s), f(mask), f(reward))), want)
    # the same log-ratio is agreement on a pass and disagreement on a fail; rho = 0 agrees with neither
    one = lambda r, d: float(losses.teacher_agrees(f([[d]]), f([[0.0]]), f([[1.0]]), f([r]))[0])
    assert (one(1.0, 0.5), one(0.0, 0.5), one(1.0, -0.5), one(0.0, -0.5), one(1.0, 0.0), one(0.0, 0.0)) == \
        (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)


def test_prefix_weight_makes_the_off_policy_estimate_unbiased():
    """Exact expectations on a 2-step toy policy: the divergence at step 2
    depends on y_1 only. Sampling from pi_old and weighting D_2 by the
    prefix ratio pi(y_1) / pi_old(y_1) gives E_pi[D_2]; weighting by the
    ratio of y_2 itself (the old rule) does not."""
    p_new, p_old = np.array([0.8, 0.2]), np.array([0.3, 0.7])  # pi(y_1), pi_old(y_1)
    q2_new, q2_old = np.array([0.6, 0.4]), np.array([0.5, 0.5])  # pi(y_2 | y_1), pi_old(y_2 | y_1), any y_1
    d2 = np.array([2.0, 5.0])  # D_2(y_1)
    target = np.sum(p_new * d2)  # E_{y ~ pi}[D_2(y_1)]
    prefix, token = 0.0, 0.0
    for y1 in range(2):
        for y2 in range(2):
            prob = p_old[y1] * q2_old[y2]  # the sample's probability under pi_old
            lp = jnp.log(jnp.asarray([[p_new[y1], q2_new[y2]]], jnp.float32))
            old = jnp.log(jnp.asarray([[p_old[y1], q2_old[y2]]], jnp.float32))
            w = float(losses.prefix_importance_weight(lp, old, jnp.ones((1, 2)), 1e9)[0, 1])
            prefix += prob * w * d2[y1]
            token += prob * (q2_new[y2] / q2_old[y2]) * d2[y1]
    np.testing.assert_allclose(prefix, target, rtol=1e-5)
    assert abs(token - target) > 0.5


# ------------------------------------------------------- gradient isolation
def _m_from_logits(s, t, tgt, mask, spec):
    st = losses.token_stats_from_logits(s, t, tgt, spec, grad_side="student")
    return losses.m_step_loss(st["div"], mask, jnp.sum(mask))[0]


def _e_from_logits(s, t, tgt, mask, reward, beta, lam, spec):
    st = losses.token_stats_from_logits(s, t, tgt, spec, grad_side="teacher")
    valid = jnp.ones_like(reward)
    n_pos, n_neg = jnp.maximum(jnp.sum(reward), 1.0), jnp.maximum(jnp.sum(1 - reward), 1.0)
    return losses.e_step_loss(st["lp_t"], st["lp_s"], st["div"], mask, reward, valid, 0.1, beta, lam, False,
                              n_pos, n_neg, jnp.sum(mask), jnp.sum(valid))[0]


@pytest.fixture(scope="module")
def logits_batch():
    s, t = rand_logits(8, (4, 5, 23)), rand_logits(9, (4, 5, 23))
    tgt = np.random.default_rng(10).integers(0, 23, (4, 5))
    mask = np.ones((4, 5), np.float32)
    mask[1, 3:] = 0
    return jnp.asarray(s), jnp.asarray(t), jnp.asarray(tgt), jnp.asarray(mask), jnp.asarray([1.0, 0.0, 1.0, 0.0])


@pytest.mark.parametrize("kind,topk", [("reverse_kl", 0), ("forward_kl", 5), ("jsd", 0)])
def test_m_step_gradient_only_through_student(logits_batch, kind, topk):
    s, t, tgt, mask, _ = logits_batch
    spec = losses.DivergenceSpec(kind, 0.5, topk, "student")
    gs, gt = jax.grad(_m_from_logits, argnums=(0, 1))(s, t, tgt, mask, spec)
    assert float(jnp.abs(gs).max()) > 1e-4
    assert float(jnp.abs(gt).max()) == 0.0


def test_e_step_gradient_only_through_teacher(logits_batch):
    s, t, tgt, mask, reward = logits_batch
    spec = losses.DivergenceSpec("forward_kl", topk=5, support="teacher")
    gs, gt = jax.grad(_e_from_logits, argnums=(0, 1))(s, t, tgt, mask, reward, 0.5, 0.3, spec)
    assert float(jnp.abs(gt).max()) > 1e-4
    assert float(jnp.abs(gs).max()) == 0.0


@pytest.mark.parametrize("kind,topk", [("reverse_kl", 0), ("reverse_kl", 5), ("forward_kl", 0), ("jsd", 5)])
def test_same_context_gives_zero_m_loss_and_grad(logits_batch, kind, topk):
    s, _, tgt, mask, _ = logits_batch
    spec = losses.DivergenceSpec(kind, 0.5, topk, "student")
    loss, g = jax.value_and_grad(_m_from_logits)(s, s, tgt, mask, spec)
    assert abs(float(loss)) < 1e-6
    assert float(jnp.abs(g).max()) < 1e-6


def test_e_step_beta_and_lambda_zero_gives_zero_grad(logits_batch):
    s, t, tgt, mask, reward = logits_batch
    spec = losses.DivergenceSpec("forward_kl", topk=5, support="teacher")
    g = jax.grad(_e_from_logits, argnums=1)(s, t, tgt, mask, reward, 0.0, 0.0, spec)
    assert float(jnp.abs(g).max()) == 0.0
    g = jax.grad(_e_from_logits, argnums=1)(s, t, tgt, mask, reward, 0.0, 0.3, spec)
    assert float(jnp.abs(g).max()) > 1e-4  # the KL term alone does move the teacher
