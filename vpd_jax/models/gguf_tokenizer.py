"""A transformers fast tokenizer rebuilt from a GGUF file's vocabulary.

Built directly with the `tokenizers` library: transformers' own GGUF
tokenizer path calls its GGUF reader, which imports torch, and vpd_jax never
imports torch at run time.

Only byte-level BPE (`tokenizer.ggml.model == "gpt2"`: SmolLM2, Qwen, Llama 3)
is supported. The text is split before BPE the way llama.cpp splits it for
the file's `tokenizer.ggml.pre` type, since that decides which merges apply
(e.g. SmolLM2 splits every digit on its own).
"""

from __future__ import annotations

import logging

from vpd_jax.models.gguf_loader import GGUFFile, open_gguf

log = logging.getLogger(__name__)

# llama.cpp token types (llama_token_type): CONTROL tokens are special
# (<|im_start|>), USER_DEFINED ones are matched whole but not special (<think>).
_CONTROL, _USER_DEFINED = 3, 4

# The pre-tokenizer regexes of the vocabularies we meet, by `tokenizer.ggml.pre`.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_GPT2_PRE = ("default", "gpt-2", "gpt2")
_DIGITS_THEN_GPT2_PRE = ("smollm", "starcoder", "refact", "codeshell")  # \p{N} alone, then GPT-2's regex
_SPLIT_PRE = {"llama-bpe": _LLAMA3_SPLIT, "llama3": _LLAMA3_SPLIT, "llama-v3": _LLAMA3_SPLIT,
              "qwen2": _QWEN2_SPLIT, "deepseek-r1-qwen": _QWEN2_SPLIT}


def _pre_tokenizer(pre: str, source: str):
    from tokenizers import Regex, pre_tokenizers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)  # GPT-2's regex built in
    if pre in _DIGITS_THEN_GPT2_PRE:
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if pre in _SPLIT_PRE:
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(_SPLIT_PRE[pre]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    if pre not in _GPT2_PRE:
        log.warning("%s: tokenizer.ggml.pre=%r is not known to vpd_jax; splitting text with GPT-2's regex, "
                    "which may tokenize some text differently from llama.cpp", source, pre)
    return byte_level


def tokenizer_from_gguf(path: str):
    """PreTrainedTokenizerFast with the file's vocabulary, special tokens and chat template."""
    return tokenizer_from_file(open_gguf(path))


def tokenizer_from_file(f: GGUFFile):
    from tokenizers import AddedToken, Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    kind = f.value("tokenizer.ggml.model", None)
    if kind != "gpt2":
        raise ValueError(f"{f.path}: tokenizer.ggml.model={kind!r} is not supported; vpd_jax rebuilds byte-level "
                         "BPE ('gpt2') vocabularies only (give the Hugging Face directory instead)")
    tokens = f.value("tokenizer.ggml.tokens")
    types = f.value("tokenizer.ggml.token_type", None) or [1] * len(tokens)
    merges = []
    for row, m in enumerate(f.value("tokenizer.ggml.merges")):
        pair = m.split(" ")
        if len(pair) != 2:
            raise ValueError(f"{f.path}: tokenizer.ggml.merges[{row}] = {m!r} is not two tokens separated by a space")
        merges.append(tuple(pair))

    vocab = {tok: i for i, tok in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = _pre_tokenizer(f.value("tokenizer.ggml.pre", "default"), f.path)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == _CONTROL])
    tok.add_tokens([AddedToken(t, special=False, normalized=False)
                    for t, ty in zip(tokens, types) if ty == _USER_DEFINED])

    def token(key):
        i = f.value(f"tokenizer.ggml.{key}", None)
        return None if i is None else tokens[int(i)]

    bos = token("bos_token_id")
    if f.value("tokenizer.ggml.add_bos_token", False) and bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=token("eos_token_id"),
        pad_token=token("padding_token_id"),
        unk_token=token("unknown_token_id"),
        chat_template=f.value("tokenizer.chat_template", None),
        clean_up_tokenization_spaces=False,
    )
