"""The model's hand-written backward rules against plain autodiff and NumPy.

tests/test_models.py checks whole-model gradients against PyTorch; these
check the pieces alone, including what a whole-model loss never reaches
(fully masked query rows, bf16 cotangent dtypes, both weight-gradient
orientations).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vpd_jax.models import layers


def _rand(rng, *shape):
    return jnp.asarray(rng.standard_normal(shape), jnp.float32)


@pytest.mark.parametrize("i,o", [(6, 40), (40, 6)])  # transpose x, or transpose dy and the product
def test_weight_grad_equals_numpy(i, o):
    rng = np.random.default_rng(0)
    x, dy = _rand(rng, 3, 5, i), _rand(rng, 3, 5, o)
    ref = np.einsum("bti,bto->io", np.asarray(x, np.float64), np.asarray(dy, np.float64))
    np.testing.assert_allclose(np.asarray(jax.jit(layers.weight_grad)(x, dy)), ref, rtol=1e-5, atol=1e-5)


def test_project_gradients_and_dtypes():
    rng = np.random.default_rng(1)
    x, w, c = _rand(rng, 2, 7, 12), _rand(rng, 12, 30), _rand(rng, 2, 7, 30)
    plain = jax.grad(lambda x, w: jnp.sum(jnp.einsum("bti,io->bto", x, w) * c), (0, 1))(x, w)
    ours = jax.grad(lambda x, w: jnp.sum(layers.project(x, w, jnp.float32) * c), (0, 1))(x, w)
    for a, b in zip(ours, plain):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    out = layers.project(xb, wb, jnp.float32)
    gx, gw = jax.grad(lambda x, w: jnp.sum(layers.project(x, w, jnp.float32) * c), (0, 1))(xb, wb)
    assert out.dtype == jnp.float32 and gx.dtype == gw.dtype == jnp.bfloat16


def _plain_attention(q, k, v, mask):
    B, T, H, hd = q.shape
    K = k.shape[2]
    s = jnp.einsum("btkgd,bskd->bkgts", q.reshape(B, T, K, H // K, hd), k) * hd ** -0.5
    p = jax.nn.softmax(jnp.where(mask[:, None, None], s, layers.MASK_VALUE), axis=-1)
    return jnp.einsum("bkgts,bskd->btkgd", p, v).reshape(B, T, H, hd)


def test_attention_vjp_matches_autodiff_with_fully_masked_rows():
    rng = np.random.default_rng(2)
    B, T, H, K, hd = 2, 9, 6, 2, 8
    q, k, v, c = _rand(rng, B, T, H, hd), _rand(rng, B, T, K, hd), _rand(rng, B, T, K, hd), _rand(rng, B, T, H, hd)
    left_pad = np.array([0, 4])[:, None, None]  # row 1: queries 0-3 see no key at all
    mask = jnp.asarray(np.tril(np.ones((T, T), bool))[None] & (np.arange(T)[None, None] >= left_pad))
    ours = jax.value_and_grad(lambda *a: jnp.sum(layers.attention(*a, mask) * c), (0, 1, 2))(q, k, v)
    plain = jax.value_and_grad(lambda *a: jnp.sum(_plain_attention(*a, mask) * c), (0, 1, 2))(q, k, v)
    np.testing.assert_allclose(float(ours[0]), float(plain[0]), rtol=1e-6)
    for a, b in zip(ours[1], plain[1]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_swiglu_vjp_equals_numpy():
    rng = np.random.default_rng(3)
    x, g, u, d, c = _rand(rng, 2, 5, 8), _rand(rng, 8, 20), _rand(rng, 8, 20), _rand(rng, 20, 8), _rand(rng, 2, 5, 8)
    grads = jax.grad(lambda *a: jnp.sum(layers.swiglu(*a) * c), (0, 1, 2, 3))(x, g, u, d)
    X, G, U, D, C = (np.asarray(a, np.float64) for a in (x, g, u, d, c))
    a, b = X @ G, X @ U
    s = 1 / (1 + np.exp(-a))
    act = a * s * b
    d_act = C @ D.T
    da, db = d_act * b * (s + a * s * (1 - s)), d_act * a * s
    ref = (da @ G.T + db @ U.T, np.einsum("btd,btf->df", X, da), np.einsum("btd,btf->df", X, db),
           np.einsum("btf,btd->fd", act, C))
    for got, want in zip(grads, ref):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)
