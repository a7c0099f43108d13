"""On-policy generation: batched sampling with a KV cache from the trainer's params.

VPD needs G fresh samples per prompt every iteration, from exactly the
weights being trained, so the sampler takes the trainer's own (sharded)
params pytree as an argument of its jitted functions: no copy, no weight
sync, no stale policy.

How a token is chosen from its logits is token_choice.py's job. One call
of `Sampler.generate` runs three compiled programs:

- convert (one compilation): the trainer's stacked params into per-layer
  decode weights (models/decode.py), in the compute dtype, bfloat16 or int8
  (`SamplingConfig.weights`); they live for this call only;
- prefill (one compilation per (prompt bucket, batch)): runs each distinct
  left-padded prompt once into a fresh cache, copies its cache rows to its G
  samples and samples each row's first token;
- decode (one `lax.while_loop`): one token per row per iteration, leaving as
  soon as every row has emitted an EOS or reached `max_new_tokens`.

Randomness is per row: row r (in output order) samples step n with one
uniform from fold_in(fold_in(key, r), n), so a sample depends on the key, its
row and its step only, never on the batch padding or on how the batch is
sharded.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from vpd_jax import sharding as shd
from vpd_jax.distributed import to_numpy
from vpd_jax.models import ModelConfig
from vpd_jax.models.decode import (WEIGHT_FORMATS, cache_bytes, decode_params, decode_weight_bytes, forward_cached,
                                   init_cache)
from vpd_jax.token_choice import choose_tokens

CACHE_AXES = ("batch", "kv_heads", "cache_seq", "head_dim")  # [B, K, S, hd], one per layer and per k / v


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How tokens are drawn; frozen so a Sampler can be a jit-time constant."""

    max_new_tokens: int = 256  # generated tokens per row, the EOS included
    temperature: float = 1.0  # logits / temperature before filtering (unused when greedy)
    top_p: float = 1.0  # keep the smallest set of tokens with this much mass; 1 = off (no sort)
    top_k: int = 0  # keep the k most likely tokens; 0 = off
    greedy: bool = False  # argmax instead of sampling
    eos_ids: tuple[int, ...] = ()  # any of these ends a row (and is kept); () = always max_new_tokens
    pad_id: int = 0  # fills the prompts' left padding and every slot after a row's end
    prompt_buckets: tuple[int, ...] = ()  # allowed padded prompt lengths, e.g. powers of two
    bucket_multiple: int = 64  # without prompt_buckets: pad prompts to a multiple of this
    # Decode weights: "compute" (the trainer's compute dtype: its numerics), or
    # "bfloat16" / "int8" (weight-only, per-channel scales) for speed; the
    # log-probs then differ from the trainer's (docs/PERFORMANCE.md, Sampler).
    weights: str = "compute"

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"SamplingConfig.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.greedy and not self.temperature > 0:
            raise ValueError(f"SamplingConfig.temperature must be > 0 (or set greedy=True), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingConfig.top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"SamplingConfig.top_k must be >= 0 (0 = off), got {self.top_k}")
        if self.weights not in WEIGHT_FORMATS:
            raise ValueError(f"SamplingConfig.weights must be one of {WEIGHT_FORMATS}, got {self.weights!r}")
        if self.bucket_multiple < 1:
            raise ValueError(f"SamplingConfig.bucket_multiple must be >= 1, got {self.bucket_multiple}")
        object.__setattr__(self, "eos_ids", tuple(int(e) for e in self.eos_ids))
        object.__setattr__(self, "prompt_buckets", tuple(sorted(int(b) for b in self.prompt_buckets)))

    @classmethod
    def for_model(cls, config: ModelConfig, **kw) -> "SamplingConfig":
        """EOS and pad ids from the model config, the rest from kw."""
        pad = config.pad_token_id if config.pad_token_id is not None else (config.eos_token_ids or (0,))[0]
        return cls(**{"eos_ids": config.eos_token_ids, "pad_id": pad, **kw})

    def bucket(self, prompt_len: int) -> int:
        """The padded prompt length: prompts up to it share one compilation."""
        if self.prompt_buckets:
            for b in self.prompt_buckets:
                if b >= prompt_len:
                    return b
            raise ValueError(
                f"a prompt of {prompt_len} tokens is longer than the largest prompt bucket "
                f"{self.prompt_buckets[-1]}; add a bucket to SamplingConfig.prompt_buckets or shorten the prompt"
            )
        return max(1, math.ceil(prompt_len / self.bucket_multiple)) * self.bucket_multiple


@dataclasses.dataclass(frozen=True)
class SampleOutput:
    """Host arrays, rows prompt-major (prompt 0's G samples first). N = prompts x G."""

    tokens: np.ndarray  # [N, max_new] int32; pad_id after a row's end
    lengths: np.ndarray  # [N] int32: generated tokens, the EOS included
    finish_reasons: list  # N x "eos" | "length"
    logprobs: np.ndarray  # [N, max_new] f32: log pi(token) under the UNTEMPERED policy; 0 after the end
    prompt_index: np.ndarray  # [N] int32: which prompt a row answers
    prompts: list  # N lists of prompt token ids (row r's prompt)


# ------------------------------------------------------------------ memory
def check_memory(config: ModelConfig, batch: int, max_len: int, stats: dict | None, cache_sharding=None,
                 vocab_workspace: int = 4, weight_bytes: float = 0) -> None:
    """Raises MemoryError if the KV cache cannot fit next to what is already
    allocated (the params among it), before anything is allocated.

    stats is `device.memory_stats()` (None on CPU: nothing to check). The
    cache is counted per device through the sharding of one layer's
    [B, K, S, hd] buffer; `vocab_workspace` [B, V] float32 buffers cover the
    logits and the sampling temporaries.
    """
    if not stats or "bytes_limit" not in stats:
        return
    shape = (batch, config.num_kv_heads, max_len, config.head_dim)
    local = cache_sharding.shard_shape(shape) if cache_sharding is not None else shape
    per_device = cache_bytes(config, local[0], local[2]) * (local[1] / shape[1])
    need = per_device + vocab_workspace * local[0] * config.vocab_size * 4 + weight_bytes
    in_use, limit = stats.get("bytes_in_use", 0), stats["bytes_limit"]
    if in_use + need > limit:
        gib = 2.0 ** 30
        raise MemoryError(
            f"sampling {batch} rows x {max_len} cache slots needs {need / gib:.2f} GiB per device (KV cache "
            f"{per_device / gib:.2f} GiB + decode weights {weight_bytes / gib:.2f} GiB + logits), but {in_use / gib:.2f} GiB of {limit / gib:.2f} GiB are in use "
            "(params included); sample fewer prompts or samples per call, lower max_new_tokens, use a smaller "
            "prompt bucket, shard the batch over more devices, or set compute_dtype='bfloat16' for a half-size cache"
        )


# ----------------------------------------------------------------- sampler
@dataclasses.dataclass(frozen=True)
class Sampler:
    """Generates from a params pytree laid out like `param_shardings(model, mesh)`.

    `trace_counts` counts how often prefill and decode were traced (=
    compiled): one per distinct (prompt bucket, batch) for each.
    """

    model: ModelConfig
    sampling: SamplingConfig
    mesh: object = None  # a jax.sharding.Mesh, or None for one device
    rules: tuple | None = None  # logical-axis rules (vpd_jax.sharding.DEFAULT_RULES when None)
    trace_counts: collections.Counter = dataclasses.field(
        default_factory=collections.Counter, compare=False, hash=False, repr=False)

    # -------------------------------------------------------------- public
    def generate(self, params: dict, prompts: list, key: jax.Array, num_samples: int = 1) -> SampleOutput:
        """num_samples samples for each prompt (a list of token-id lists)."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("generate needs at least one prompt and every prompt needs at least one token")
        cfg = self.sampling
        prompt_index = np.repeat(np.arange(len(prompts), dtype=np.int32), num_samples)  # [N] prompt-major
        rows = [list(map(int, prompts[i])) for i in prompt_index]
        divisor = shd.batch_divisor(self.mesh, self.rules) if self.mesh is not None else 1
        round_up = lambda x: -(-x // divisor) * divisor  # padding rows keep every batch shard the same size
        n, batch, n_prompts = len(rows), round_up(len(rows)), round_up(len(prompts))
        P = cfg.bucket(max(len(p) for p in prompts))
        tokens = np.full((n_prompts, P), cfg.pad_id, np.int32)  # [Bp, P], left-padded
        mask = np.zeros((n_prompts, P), bool)
        for i, ids in enumerate(prompts):
            tokens[i, P - len(ids):], mask[i, P - len(ids):] = ids, True
        mask[len(prompts):, -1] = True  # a padding prompt holds one real (pad) token: a well-defined softmax
        source = np.zeros(batch, np.int32)  # [B] the prompt whose cache row a sample starts from
        source[:n] = prompt_index
        active = np.arange(batch) < n  # [B]

        self._check_memory(batch + n_prompts, P + cfg.max_new_tokens)  # both caches exist during prefill
        put = self._put_batch
        weights = self._convert(params)
        state = self._prefill(weights, put(tokens), put(mask), put(source), put(active), key)
        state = self._decode(weights, state)
        del weights
        state.pop("cache")  # the donated buffer, returned only so it aliases; freed here
        # On a multi-host mesh each host holds only its rows' shards; every
        # host gets every row (the caller keeps its own).
        out = {k: to_numpy(state[k]) for k in ("tokens", "logprobs", "lengths", "eos")}
        reasons = ["eos" if e else "length" for e in out["eos"][:n]]
        return SampleOutput(tokens=out["tokens"][:n], lengths=out["lengths"][:n], finish_reasons=reasons,
                            logprobs=out["logprobs"][:n], prompt_index=prompt_index, prompts=rows)

    # ------------------------------------------------------------ plumbing
    def _put_batch(self, x: np.ndarray) -> jax.Array:
        if self.mesh is None:
            return jnp.asarray(x)
        sharding = shd.batch_sharding(self.mesh, x.ndim, self.rules)
        # Every host passes the same global array; each materialises only the
        # shards on its own devices (works on one host and on a pod).
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    def _cache_sharding(self, shape):
        return None if self.mesh is None else shd.named_sharding(self.mesh, CACHE_AXES, shape, self.rules)

    def _check_memory(self, batch: int, max_len: int) -> None:
        devices = ([d for d in self.mesh.devices.flat if d.process_index == jax.process_index()]
                   if self.mesh is not None else jax.local_devices()[:1])  # stats exist for local devices only
        shape = (batch, self.model.num_kv_heads, max_len, self.model.head_dim)
        # The converted decode weights live beside the params for the call;
        # counted as if spread evenly over the mesh, as the params are.
        per_device_weights = decode_weight_bytes(self.model, self.sampling.weights) / (
            self.mesh.devices.size if self.mesh is not None else 1)
        for device in devices:
            stats = device.memory_stats() if hasattr(device, "memory_stats") else None
            check_memory(self.model, batch, max_len, stats, self._cache_sharding(shape),
                         weight_bytes=per_device_weights)

    def _constrain(self, x: jax.Array, logical_axes) -> jax.Array:
        if self.mesh is None:
            return x
        return jax.lax.with_sharding_constraint(x, shd.named_sharding(self.mesh, logical_axes, x.shape, self.rules))

    @functools.cached_property
    def _convert(self):
        return jax.jit(functools.partial(decode_params, self.model, weights=self.sampling.weights))

    @functools.cached_property
    def _prefill(self):
        # The cache is created inside the program: it never exists before
        # prefill, so there is nothing to allocate (or to check) twice.
        return jax.jit(self._prefill_body)

    @functools.cached_property
    def _decode(self):
        # The state (the per-layer [B, K, S, hd] caches above all) is donated: XLA
        # writes the returned state into the input's buffers, so the cache is
        # updated in place instead of copied into a second buffer per call.
        return jax.jit(self._decode_body, donate_argnums=(1,))

    def _prefill_body(self, params, tokens, mask, source, active, key):
        """tokens, mask [Bp, P] (distinct prompts, left-padded); source,
        active [B] (a row's prompt; False on padding rows) -> decode state.

        Each distinct prompt is run once and its cache rows and last logits
        are then copied to its G samples: with G samples per prompt the
        prefill costs 1/G of running every row.
        """
        self.trace_counts["prefill"] += 1  # runs at trace time only
        cfg, (Bp, P), B = self.sampling, tokens.shape, source.shape[0]
        S = P + cfg.max_new_tokens
        cache = init_cache(self.model, Bp, S)
        positions = jnp.maximum(jnp.cumsum(mask, axis=1, dtype=jnp.int32) - 1, 0)  # [Bp, P]
        # Generated slots are valid from the moment they are written; the
        # causal rule (slot <= query slot) hides the ones not yet written.
        kv_valid = jnp.concatenate([mask, jnp.ones((Bp, cfg.max_new_tokens), bool)], axis=1)  # [Bp, S]
        logits, cache = forward_cached(self.model, params, tokens, positions, cache, jnp.int32(0), kv_valid,
                                       last_only=True)  # [Bp, 1, V]
        cache = jax.tree.map(lambda c: self._constrain(jnp.take(c, source, axis=0), CACHE_AXES), cache)  # [B, K, S, hd]
        logits, kv_valid, mask = logits[source], kv_valid[source], mask[source]  # [B, 1, V], [B, S], [B, P]
        row_keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(B, dtype=jnp.int32))  # [B]
        first, logp = choose_tokens(cfg, logits[:, 0], row_keys, jnp.int32(0))
        first = jnp.where(active, first, cfg.pad_id)
        tokens_out = jnp.full((B, cfg.max_new_tokens), cfg.pad_id, jnp.int32).at[:, 0].set(first)
        logprobs = jnp.zeros((B, cfg.max_new_tokens), jnp.float32).at[:, 0].set(jnp.where(active, logp, 0.0))
        eos = active & jnp.isin(first, jnp.asarray(cfg.eos_ids, jnp.int32)) if cfg.eos_ids else jnp.zeros_like(active)
        return {
            "cache": cache,
            "kv_valid": kv_valid,
            "row_keys": row_keys,
            "prompt_len": jnp.sum(mask, axis=1, dtype=jnp.int32),  # [B]
            "step": jnp.int32(0),  # index of the newest token in tokens_out
            "tokens": tokens_out,  # [B, max_new]
            "logprobs": logprobs,  # [B, max_new]
            "lengths": active.astype(jnp.int32),  # [B]
            "eos": eos,  # [B] ended by an EOS
            "done": eos | ~active,  # [B]
        }

    def _decode_body(self, params, state):
        """Feeds each row's newest token and samples the next, until every
        row is done or max_new_tokens tokens exist."""
        self.trace_counts["decode"] += 1
        cfg = self.sampling
        P = state["kv_valid"].shape[1] - cfg.max_new_tokens
        eos_ids = jnp.asarray(cfg.eos_ids, jnp.int32)

        def keep_going(s):
            return (s["step"] + 1 < cfg.max_new_tokens) & ~jnp.all(s["done"])

        def step(s):
            n = s["step"]
            last = jax.lax.dynamic_slice_in_dim(s["tokens"], n, 1, axis=1)  # [B, 1]
            positions = s["prompt_len"][:, None] + n  # [B, 1]: token n follows the real prompt
            logits, cache = forward_cached(self.model, params, last, positions, s["cache"], P + n,
                                           s["kv_valid"], last_only=True)
            tok, logp = choose_tokens(cfg, logits[:, 0], s["row_keys"], n + 1)
            live = ~s["done"]
            tok = jnp.where(live, tok, cfg.pad_id)
            hit_eos = live & jnp.isin(tok, eos_ids) if cfg.eos_ids else jnp.zeros_like(live)
            return {
                **s,
                "cache": cache,
                "step": n + 1,
                "tokens": jax.lax.dynamic_update_slice_in_dim(s["tokens"], tok[:, None], n + 1, axis=1),
                "logprobs": jax.lax.dynamic_update_slice_in_dim(
                    s["logprobs"], jnp.where(live, logp, 0.0)[:, None], n + 1, axis=1),
                "lengths": s["lengths"] + live,
                "eos": s["eos"] | hit_eos,
                "done": s["done"] | hit_eos,
            }

        return jax.lax.while_loop(keep_going, step, state)
