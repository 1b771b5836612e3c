"""A tiny random Llama with a word-level chat tokenizer, built in memory (no files, no hub).

Tests of the embedded backend, prefix reuse and constrained scoring run the real transformers
code paths on it in milliseconds.
"""

from __future__ import annotations

from typing import Any

# The vocabulary every tiny model starts with: pad, the chat markers (ids 0-2), unknown, roles.
BASE_WORDS = ["<pad>", "<|im_start|>", "<|im_end|>", "[UNK]", "system", "user", "assistant"]

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> "
    "{% endfor %}{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)


def tiny_word_llama(
    words: list[str],
    hidden_size: int = 16,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    num_key_value_heads: int = 1,
    max_position_embeddings: int = 256,
) -> tuple[Any, Any]:
    """(tokenizer, model): `words` is the whole vocabulary, starting with BASE_WORDS; whitespace-
    split words outside it become [UNK]."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="<|im_end|>", unk_token="[UNK]"
    )
    tokenizer.padding_side = "left"
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(words),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    return tokenizer, LlamaForCausalLM(config).eval()


def embedded_backend(tokenizer: Any, model: Any, **params: Any) -> Any:
    """An EmbeddedBackend (fp32) that uses the given tokenizer and model instead of loading."""
    from chartdistill.llm.embedded import EmbeddedBackend
    from chartdistill.llm.types import EmbeddedParams

    backend = EmbeddedBackend(EmbeddedParams(dtype="float32", **params))
    backend._tokenizer, backend._model = tokenizer, model
    return backend
