"""Logit parity of vpd_jax's decoder with transformers (PyTorch, fp32)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vpd_jax import sharding
from vpd_jax.models import ModelConfig, forward, load_pretrained, preset
from vpd_jax.models.placement import WeightError


def _torch_logits(path, tokens, mask=None):
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    model.eval()
    t = torch.tensor(np.asarray(tokens))
    kw = {}
    if mask is not None:
        m = torch.tensor(np.asarray(mask), dtype=torch.long)
        kw = dict(attention_mask=m, position_ids=(m.cumsum(-1) - 1).clamp(min=0))
    with torch.no_grad():
        return model(input_ids=t, **kw).logits.numpy()


def _tokens(seed, b, t, vocab=160):
    return np.random.default_rng(seed).integers(3, vocab, size=(b, t)).astype(np.int32)


def _left_padded(seed, t, pads):
    """Tokens [len(pads), t] whose row i starts with pads[i] pad tokens (id 0), and their mask."""
    mask = (np.arange(t)[None] >= np.asarray(pads)[:, None]).astype(np.int32)
    return np.where(mask == 1, _tokens(seed, len(pads), t), 0), mask


@pytest.mark.parametrize("fixture", ["tiny_qwen3_dir", "tiny_llama_dir", "tiny_olmo3_dir", "tiny_gemma3_dir"])
def test_logits_match_transformers(fixture, request):
    path = request.getfixturevalue(fixture)
    config, params = load_pretrained(path)
    tokens = _tokens(0, 2, 40)  # 40 > original 16-token context of the llama3 scaling
    ours = np.asarray(jax.jit(forward, static_argnums=0)(config, params, tokens))
    ref = _torch_logits(path, tokens)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


def test_config_reads_hf_fields(tiny_qwen3_dir, tiny_llama_dir):
    q = ModelConfig.from_hf_dir(tiny_qwen3_dir)
    assert (q.arch, q.qk_norm, q.head_dim, q.num_kv_heads, q.tie_word_embeddings) == ("qwen3", True, 24, 2, False)
    l = ModelConfig.from_hf_dir(tiny_llama_dir)
    assert (l.arch, l.rope_type, l.tie_word_embeddings) == ("llama", "llama3", True)
    assert os.path.exists(os.path.join(tiny_llama_dir, "model.safetensors.index.json"))  # sharded


def test_olmo3_config_and_sliding_window(tiny_olmo3_dir):
    """The window is real: a token further back than it changes the full
    layer's output only, so logits move; keys inside it are what sliding
    layers see. Checked through transformers above; here the config."""
    c = ModelConfig.from_hf_dir(tiny_olmo3_dir)
    assert (c.arch, c.qk_norm, c.qk_norm_all_heads, c.post_norms, c.sliding_window) == ("olmo3", True, True, True, 5)
    assert c.sliding_layers == (True, True, True, False)
    assert c.rope_dict == {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}
    assert c.local_rope_theta is None
    assert c.local_rope().rope_scaling is None
    assert ModelConfig.from_json(json.loads(json.dumps(c.to_json()))) == c


def test_olmo3_legacy_config_spelling_as_published(tiny_olmo3_dir, tmp_path):
    """The published OLMo-3 config.json spells rope the legacy way (rope_theta
    + a YaRN rope_scaling with an explicit attention_factor), meaning YaRN on
    the full layers only; read so, our logits equal transformers'."""
    import shutil

    shutil.copytree(tiny_olmo3_dir, tmp_path / "m")
    with open(tmp_path / "m" / "config.json") as f:
        hf = json.load(f)
    del hf["rope_parameters"]
    hf.update(rope_theta=500000.0, rope_scaling={"rope_type": "yarn", "factor": 8.0, "beta_fast": 32.0,
                                                 "beta_slow": 1.0, "original_max_position_embeddings": 16,
                                                 "attention_factor": 1.2079441541679836})
    with open(tmp_path / "m" / "config.json", "w") as f:
        json.dump(hf, f)
    config, params = load_pretrained(str(tmp_path / "m"))
    assert config.rope_type == "yarn" and config.local_rope().rope_theta == 500000.0
    tokens = _tokens(6, 2, 40)
    ours = np.asarray(jax.jit(forward, static_argnums=0)(config, params, tokens))
    np.testing.assert_allclose(ours, _torch_logits(str(tmp_path / "m"), tokens), atol=1e-4, rtol=0)


def test_mistral_sliding_window_is_kept_and_exported(tmp_path):
    """Mistral 7B v0.1's window (every layer) is applied, and an export is a
    Mistral again: a Llama config.json would silently drop the window."""
    import torch
    import transformers

    from vpd_jax.models.hf_export import write_hf_model

    torch.manual_seed(4)
    cfg = transformers.MistralConfig(vocab_size=160, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=5,
                                     max_position_embeddings=256, eos_token_id=2, bos_token_id=1)
    transformers.MistralForCausalLM(cfg).save_pretrained(str(tmp_path / "src"))
    config, params = load_pretrained(str(tmp_path / "src"))
    assert config.arch == "llama" and config.sliding_layers == (True, True) and config.sliding_window == 5
    tokens = _tokens(5, 2, 24)
    ours = np.asarray(jax.jit(forward, static_argnums=0)(config, params, tokens))
    np.testing.assert_allclose(ours, _torch_logits(str(tmp_path / "src"), tokens), atol=1e-4, rtol=0)
    write_hf_model(str(tmp_path / "out"), config, params)
    with open(tmp_path / "out" / "config.json") as f:
        assert json.load(f)["architectures"] == ["MistralForCausalLM"]
    np.testing.assert_allclose(_torch_logits(str(tmp_path / "out"), tokens), ours, atol=1e-4, rtol=0)


def test_llama_and_qwen3_configs_serialise_as_before_the_new_families():
    """Checkpoint fingerprints and converted directories hold ModelConfig.to_json():
    a run started before OLMo-3 / Gemma 3 existed must still resume."""
    before = {"arch", "vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads",
              "head_dim", "rms_norm_eps", "rope_theta", "rope_scaling", "max_position_embeddings",
              "tie_word_embeddings", "qk_norm", "bos_token_id", "eos_token_ids", "pad_token_id", "param_dtype",
              "compute_dtype", "remat", "attention"}
    for name in ("qwen3-0.6b", "smollm2-135m"):
        assert set(preset(name).to_json()) == before


@pytest.mark.parametrize("name,count", [("gemma3-270m", 268_098_176), ("gemma3-1b", 999_885_952)])
def test_gemma3_presets_are_the_published_models(name, count):
    """The presets' shapes give Gemma 3's published parameter counts, and
    transformers builds the same count from the exported config.json."""
    import torch
    import transformers

    c = preset(name)
    assert c.num_params() == count
    hf = {k: v for k, v in c.to_hf_config().items() if k not in ("architectures", "model_type", "torch_dtype")}
    with torch.device("meta"):
        model = transformers.Gemma3ForCausalLM(transformers.Gemma3TextConfig(**hf))
    assert sum(p.numel() for p in model.parameters()) == count
    assert model.config.layer_types[:6] == ["sliding_attention"] * 5 + ["full_attention"]


def test_left_padding_matches_transformers(tiny_qwen3_dir):
    config, params = load_pretrained(tiny_qwen3_dir)
    tokens, mask = _left_padded(1, 12, [5, 0, 2])
    ours = np.asarray(jax.jit(forward, static_argnums=0)(config, params, tokens, mask=mask))
    ref = _torch_logits(tiny_qwen3_dir, tokens, mask)
    real = mask.astype(bool)
    np.testing.assert_allclose(ours[real], ref[real], atol=1e-4, rtol=0)
    # A left-padded row equals the same row unpadded.
    alone = np.asarray(forward(config, params, tokens[:1, 5:]))
    np.testing.assert_allclose(ours[0, 5:], alone[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("fixture", ["tiny_qwen3_dir", "tiny_olmo3_dir", "tiny_gemma3_dir"])
def test_sharded_mesh_equals_one_device(fixture, request):
    tiny_qwen3_dir = request.getfixturevalue(fixture)
    tokens = _tokens(2, 8, 16)
    config, params1 = load_pretrained(tiny_qwen3_dir)
    one = np.asarray(jax.jit(forward, static_argnums=0)(config, params1, tokens))
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    config, params8 = load_pretrained(tiny_qwen3_dir, mesh=mesh)
    assert len(params8["layers"]["q"].sharding.device_set) == 8
    from vpd_jax.models import param_shardings

    p_shard = param_shardings(config, mesh)
    b_shard = sharding.batch_sharding(mesh, 2)
    fwd = jax.jit(lambda p, t: forward(config, p, t), in_shardings=(p_shard, b_shard),
                  out_shardings=sharding.batch_sharding(mesh, 3))
    eight = fwd(params8, jax.device_put(tokens, b_shard))
    assert len(eight.sharding.device_set) == 8
    np.testing.assert_allclose(np.asarray(eight), one, atol=1e-5, rtol=0)


def test_bf16_compute_close_to_fp32(tiny_llama_dir):
    tokens = _tokens(3, 2, 16)
    config, params = load_pretrained(tiny_llama_dir)
    ref = np.asarray(forward(config, params, tokens))
    bf = np.asarray(forward(config.replace(compute_dtype="bfloat16"), params, tokens))
    assert params["embed"].dtype == jnp.float32  # master weights stay fp32
    assert np.abs(bf - ref).max() < 0.1 * np.abs(ref).max()
    assert (bf.argmax(-1) == ref.argmax(-1)).mean() > 0.9


def test_bad_inputs_name_file_and_tensor(tiny_qwen3_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained(str(tmp_path / "nope"))
    bad = tmp_path / "bad_arch"
    bad.mkdir()
    cfg = json.load(open(os.path.join(tiny_qwen3_dir, "config.json")))
    json.dump({**cfg, "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}, open(bad / "config.json", "w"))
    with pytest.raises(ValueError, match="unsupported architecture"):
        load_pretrained(str(bad))
    # Shape mismatch: the config claims a wider MLP than the weights hold.
    wrong = tmp_path / "wrong_shape"
    wrong.mkdir()
    json.dump({**cfg, "intermediate_size": 128}, open(wrong / "config.json", "w"))
    os.symlink(os.path.join(tiny_qwen3_dir, "model.safetensors"), wrong / "model.safetensors")
    with pytest.raises(WeightError, match=r"model.safetensors.*'layers.0.gate'.*\(64, 96\).*\(64, 128\)"):
        load_pretrained(str(wrong))
    # Missing tensor: a safetensors file without the final norm.
    from safetensors.numpy import load_file, save_file

    missing = tmp_path / "missing"
    missing.mkdir()
    tensors = load_file(os.path.join(tiny_qwen3_dir, "model.safetensors"))
    del tensors["model.norm.weight"]
    save_file(tensors, str(missing / "model.safetensors"))
    json.dump(cfg, open(missing / "config.json", "w"))
    with pytest.raises(KeyError, match="model.norm.weight"):
        load_pretrained(str(missing))


def _torch_nll_grads(path, tokens, mask):
    """transformers' parameter gradients of the masked mean next-token NLL."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    m = torch.tensor(mask, dtype=torch.long)
    logits = model(input_ids=torch.tensor(tokens), attention_mask=m,
                   position_ids=(m.cumsum(-1) - 1).clamp(min=0)).logits
    lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, torch.tensor(tokens[:, 1:, None]).long())[..., 0]
    w = (m[:, :-1] * m[:, 1:]).float()  # real input and real target
    (-(lp * w).sum() / w.sum()).backward()
    return {n: p.grad.numpy() for n, p in model.named_parameters()}


@pytest.mark.parametrize("fixture", ["tiny_qwen3_dir", "tiny_llama_dir", "tiny_olmo3_dir", "tiny_gemma3_dir"])
def test_gradients_match_transformers(fixture, request):
    """Every parameter gradient of a left-padded batch equals PyTorch
    autograd's on the same checkpoint: the check on the model's hand-written
    backward rules (attention, SwiGLU, the LM-head projection)."""
    from vpd_jax.models.hf_loader import hf_name_table
    from vpd_jax.models.placement import assemble_params

    path = request.getfixturevalue(fixture)
    config, params = load_pretrained(path)
    tokens, mask = _left_padded(4, 14, [4, 0, 1])

    def nll(p):
        logp = jax.nn.log_softmax(forward(config, p, tokens, mask=mask)[:, :-1], -1)
        lp = jnp.take_along_axis(logp, tokens[:, 1:, None], -1)[..., 0]
        w = mask[:, :-1] * mask[:, 1:]
        return -jnp.sum(lp * w) / jnp.sum(w)

    ours = jax.jit(jax.grad(nll))(params)
    ref = _torch_nll_grads(path, tokens, mask)
    table = hf_name_table(config)  # maps HF layouts onto ours; linear but for Gemma's + 1, which grads skip

    def grad_to_ours(name, i):
        pattern, layout = table[name]
        g = ref[pattern.format(i=i)]
        return g if layout.kind == "plus_one" else layout.to_ours(g)

    ref = assemble_params(config, grad_to_ours, "torch")
    assert jax.tree.structure(ours) == jax.tree.structure(ref)
    for (name, g), r in zip(jax.tree_util.tree_leaves_with_path(ours), jax.tree.leaves(ref)):
        r = np.asarray(r)
        assert np.abs(r).max() > 0, name
        np.testing.assert_allclose(np.asarray(g), r, atol=2e-5 * np.abs(r).max(), rtol=1e-3, err_msg=str(name))
