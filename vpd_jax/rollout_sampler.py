"""The trainer's view of the sampler: prompt ids in, decoded rollouts out.

Keeps one `Sampler` per distinct sampling setting (training rollouts, eval,
self-critique) so each keeps its compiled programs across iterations, and
makes sampling collective on multi-host runs: every host passes the global
prompt list to the same jitted program and keeps its own rows.
"""

from __future__ import annotations

import jax
import numpy as np

from vpd_jax import distributed
from vpd_jax.sampling import Sampler, SamplingConfig

# Prompt lengths rounded up to these: a new prompt length inside a bucket
# reuses the compiled prefill.
PROMPT_BUCKETS = (64, 128, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288, 16384)


class RolloutSampler:
    def __init__(self, model_config, tokenizer, mesh, rollout_cfg):
        self.model_config, self.tokenizer, self.mesh = model_config, tokenizer, mesh
        self.defaults = dict(temperature=float(rollout_cfg.temperature), top_p=float(rollout_cfg.top_p),
                             top_k=int(rollout_cfg.top_k), max_new_tokens=int(rollout_cfg.max_new_tokens),
                             weights=str(rollout_cfg.get("weights", "compute")))
        eos = set(model_config.eos_token_ids)
        if tokenizer is not None and tokenizer.eos_token_id is not None:
            eos.add(int(tokenizer.eos_token_id))
        self.eos_ids = tuple(sorted(eos))
        pad = tokenizer.pad_token_id if tokenizer is not None else None
        self.pad_id = int(pad if pad is not None else (model_config.pad_token_id or self.eos_ids[0]))
        self._samplers: dict = {}

    def _sampler(self, **overrides) -> Sampler:
        setting = dict(self.defaults, **{k: v for k, v in overrides.items() if v is not None})
        key = tuple(sorted(setting.items()))
        if key not in self._samplers:
            cfg = SamplingConfig(eos_ids=self.eos_ids, pad_id=self.pad_id, prompt_buckets=PROMPT_BUCKETS, **setting)
            self._samplers[key] = Sampler(self.model_config, cfg, self.mesh)
        return self._samplers[key]

    def sample(self, params, prompt_ids: list[list[int]], key, num_samples: int, **overrides) -> list[dict]:
        """num_samples rollouts per prompt of THIS host, prompt-major.

        Each dict: prompt_index (into prompt_ids), response_ids (EOS
        included), logprobs (untempered policy), finish, text.
        """
        every = distributed.allgather_objects(prompt_ids)  # identical program inputs on all hosts
        flat = [p for host in every for p in host]
        if not flat:
            return []
        out = self._sampler(**overrides).generate(params, flat, key, num_samples)
        start = sum(len(h) for h in every[:jax.process_index()]) * num_samples  # this host's rows
        rows = []
        for i in range(start, start + len(prompt_ids) * num_samples):
            n = int(out.lengths[i])
            resp = [int(t) for t in out.tokens[i, :n]]
            rows.append(dict(prompt_index=(i - start) // num_samples, response_ids=resp,
                             logprobs=np.asarray(out.logprobs[i, :n], np.float32), finish=str(out.finish_reasons[i]),
                             text=self.tokenizer.decode(resp, skip_special_tokens=True)))
        return rows

    def texts(self, params, prompt_ids: list[list[int]], key, max_new_tokens: int) -> list[str]:
        """One sampled completion per prompt (e.g. the self-critique pass)."""
        return [r["text"] for r in self.sample(params, prompt_ids, key, 1, max_new_tokens=max_new_tokens)]
