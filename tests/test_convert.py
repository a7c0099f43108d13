"""launch/convert.py and vpd_jax.models.orbax_params: HF / GGUF -> Orbax -> params."""

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vpd_jax import sharding
from vpd_jax.models import load_pretrained, load_tokenizer, param_shardings
from vpd_jax.models.orbax_params import ORBAX_MARKER, load_orbax_params
from vpd_jax.models.placement import WeightError

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _convert_module():
    spec = importlib.util.spec_from_file_location("convert", os.path.join(_ROOT, "launch", "convert.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


convert = _convert_module()


def _assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        assert x.shape == y.shape and x.dtype == y.dtype, jax.tree_util.keystr(path)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope="module")
def converted_llama(tiny_llama_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("conv") / "llama")
    assert convert.main(["--model", tiny_llama_dir, "--out", out]) == 0
    return out


def test_round_trip_hf_to_orbax(tiny_llama_dir, converted_llama, capsys):
    ref_config, ref = load_pretrained(tiny_llama_dir)
    config, params = load_pretrained(converted_llama)  # dispatches on vpd_jax_model.json
    assert config == ref_config
    _assert_same(params, ref)
    assert os.path.exists(os.path.join(converted_llama, ORBAX_MARKER))


def test_round_trip_onto_2x2x2_mesh(tiny_llama_dir, converted_llama):
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    config, params = load_orbax_params(converted_llama, mesh=mesh)
    want = param_shardings(config, mesh)
    for (path, x), s in zip(jax.tree_util.tree_flatten_with_path(params)[0], jax.tree.leaves(want)):
        assert x.sharding.is_equivalent_to(s, x.ndim), jax.tree_util.keystr(path)
    assert len(params["layers"]["gate"].sharding.device_set) == 8
    _, ref = load_pretrained(tiny_llama_dir)
    _assert_same(params, ref)


def test_bfloat16_conversion(tiny_qwen3_dir, tmp_path):
    out = str(tmp_path / "bf16")
    assert convert.main(["--model", tiny_qwen3_dir, "--out", out, "--dtype", "bfloat16"]) == 0
    config, params = load_pretrained(out)
    assert config.param_dtype == "bfloat16"
    _, ref = load_pretrained(tiny_qwen3_dir)
    _assert_same(params, jax.tree.map(lambda x: x.astype(jnp.bfloat16), ref))
    _, up = load_orbax_params(out, dtype="float32")  # cast while restoring
    assert up["embed"].dtype == jnp.float32


def test_gguf_to_orbax_keeps_tokenizer(tiny_qwen3_dir, tmp_path):
    from test_gguf import write_gguf

    gguf_path = write_gguf(tiny_qwen3_dir, tmp_path / "m.gguf")
    out = str(tmp_path / "from_gguf")
    assert convert.main(["--model", gguf_path, "--out", out]) == 0
    config, params = load_pretrained(out)
    ref_config, ref = load_pretrained(gguf_path)
    assert config == ref_config
    _assert_same(params, ref)
    tok, ref_tok = load_tokenizer(out), load_tokenizer(gguf_path)
    text = "<|im_start|>hello world<|im_end|>"
    assert tok.encode(text) == ref_tok.encode(text)
    chat = [{"role": "user", "content": "hi"}]
    assert tok.apply_chat_template(chat, tokenize=False) == ref_tok.apply_chat_template(chat, tokenize=False)


def test_bad_inputs(converted_llama, tmp_path, capsys):
    with pytest.raises(SystemExit):
        convert.main(["--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # never overwrite a converted model
        convert.main(["--model", converted_llama, "--out", converted_llama])
    assert "already holds a converted model" in capsys.readouterr().err
    # A marker whose config disagrees with the saved params names the parameter.
    bad = tmp_path / "bad"
    bad.mkdir()
    os.symlink(os.path.join(converted_llama, "params"), bad / "params")
    meta = json.load(open(os.path.join(converted_llama, ORBAX_MARKER)))
    meta["config"]["intermediate_size"] = 128
    json.dump(meta, open(bad / ORBAX_MARKER, "w"))
    with pytest.raises(WeightError, match=r"\['layers'\]\['down'\] has shape \(3, 96, 64\).*\(3, 128, 64\)"):
        load_pretrained(str(bad))
    # A marker without params: the conversion never finished writing.
    empty = tmp_path / "empty"
    empty.mkdir()
    json.dump(meta, open(empty / ORBAX_MARKER, "w"))
    with pytest.raises(FileNotFoundError, match="params checkpoint .* is missing"):
        load_pretrained(str(empty))


@pytest.mark.parametrize("fixture", ["tiny_olmo3_dir", "tiny_gemma3_dir"])
def test_sliding_window_families_convert_with_their_config(fixture, request, tmp_path):
    """layer_types, the window, local rope and the rest survive the Orbax directory."""
    path = request.getfixturevalue(fixture)
    out = str(tmp_path / "m")
    assert convert.main(["--model", path, "--out", out]) == 0
    (c1, p1), (c2, p2) = load_pretrained(path), load_pretrained(out)
    assert c1 == c2 and any(c2.sliding_layers) and not all(c2.sliding_layers)
    _assert_same(p1, p2)
