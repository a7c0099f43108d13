"""The training-pass attention kernel choice (ModelConfig.attention).

The cuDNN path runs only on an NVIDIA GPU; its parity test is skipped
elsewhere. On a GPU machine: JAX_PLATFORMS=cuda pytest tests/test_attention.py
(conftest otherwise pins the CPU).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vpd_jax.models import ModelConfig, init_params, preset
from vpd_jax.models.transformer import attention_impl, default_positions, hidden_states

ON_GPU = jax.default_backend() == "gpu"


def _right_padded(seed, b, t, vocab):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(3, vocab, size=(b, t)).astype(np.int32)
    lengths = rng.integers(t // 3, t + 1, size=b)
    lengths[0] = t  # one full row
    mask = np.arange(t)[None, :] < lengths[:, None]  # [B, T] real tokens first, padding after
    return np.where(mask, tokens, 0), mask


def _small_qwen3(**kw) -> ModelConfig:
    return preset("qwen3-0.6b", num_layers=2, vocab_size=512, hidden_size=256, intermediate_size=512,
                  num_heads=4, num_kv_heads=2, remat="none", **kw)


def test_choice_and_errors_off_gpu():
    with pytest.raises(ValueError, match="attention must be one of"):
        _small_qwen3(attention="flash")
    if ON_GPU:
        pytest.skip("checks the non-GPU resolution")
    assert attention_impl(_small_qwen3(compute_dtype="bfloat16")) == "xla"
    assert attention_impl(_small_qwen3(attention="xla")) == "xla"
    with pytest.raises(ValueError, match="needs an NVIDIA GPU backend"):
        attention_impl(_small_qwen3(attention="cudnn", compute_dtype="bfloat16"))


def test_causal_mask_alone_suffices_for_right_padding():
    """The premise of the fused path: with padding after the real tokens, a
    causal mask hides every pad key from every real query, so dropping the
    padding mask changes no real position's hidden state."""
    config = _small_qwen3(attention="xla")
    params = init_params(config, jax.random.key(0))
    tokens, mask = _right_padded(0, 3, 24, config.vocab_size)
    masked = np.asarray(hidden_states(config, params, tokens, mask=mask))
    causal_only = np.asarray(hidden_states(config, params, tokens, default_positions(tokens, mask)))
    np.testing.assert_allclose(causal_only[mask], masked[mask], atol=1e-5, rtol=0)
    # ...and left padding is not covered: there the padding mask matters.
    left = np.ascontiguousarray(mask[:, ::-1])
    lt = np.where(left, tokens, 0)
    lm = np.asarray(hidden_states(config, params, lt, mask=left))
    lc = np.asarray(hidden_states(config, params, lt, default_positions(lt, left)))
    assert np.abs(lc[left] - lm[left]).max() > 1e-3


@pytest.mark.skipif(not ON_GPU, reason="cuDNN flash attention needs an NVIDIA GPU")
def test_cudnn_matches_xla_on_gpu():
    """Hidden states and parameter gradients of the fused path equal the
    einsum path (both bf16 compute) at the real positions of a right-padded
    batch; head_dim 128 as Qwen3."""
    xla = _small_qwen3(attention="xla", compute_dtype="bfloat16")
    fused = xla.replace(attention="cudnn")
    assert attention_impl(fused) == "cudnn"
    params = init_params(xla, jax.random.key(1))
    tokens, mask = _right_padded(1, 4, 256, xla.vocab_size)
    w = jnp.asarray(mask, jnp.float32)[..., None]

    def loss(cfg, p):
        h = hidden_states(cfg, p, tokens, mask=mask, right_padded=True).astype(jnp.float32)
        return jnp.sum(w * h * h) / jnp.sum(w), h

    (l_x, h_x), g_x = jax.jit(jax.value_and_grad(lambda p: loss(xla, p), has_aux=True))(params)
    (l_f, h_f), g_f = jax.jit(jax.value_and_grad(lambda p: loss(fused, p), has_aux=True))(params)
    h_x, h_f = np.asarray(h_x)[mask], np.asarray(h_f)[mask]
    assert np.linalg.norm(h_f - h_x) / np.linalg.norm(h_x) < 2e-2
    for a, b in zip(jax.tree.leaves(g_f), jax.tree.leaves(g_x)):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        assert np.linalg.norm(a - b) <= 5e-2 * np.linalg.norm(b) + 1e-6
    # The jitted step really lowered to the fused kernel...
    hlo = jax.jit(lambda p: loss(fused, p)[0]).lower(params).as_text()
    assert "cudnn" in hlo.lower() or "fmha" in hlo.lower()
    # ...and shapes it cannot take (odd length, left padding) run the einsum path.
    odd = hidden_states(fused, params, tokens[:, :255], mask=mask[:, :255], right_padded=True)
    ref = hidden_states(xla, params, tokens[:, :255], mask=mask[:, :255])
    np.testing.assert_array_equal(np.asarray(odd), np.asarray(ref))
    left = np.ascontiguousarray(mask[:, ::-1])
    np.testing.assert_array_equal(np.asarray(hidden_states(fused, params, tokens, mask=left)),
                                  np.asarray(hidden_states(xla, params, tokens, mask=left)))
