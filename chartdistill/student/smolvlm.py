"""SmolVLM's architecture facts as plain data: tokens, chat template, real configs, LoRA paths.

The one place for what the offline builders (model.py, shapes.py), training and the GPU
benchmark (bench/gpu.py) share. Imports nothing beyond the standard library at import time, so
bench/gpu.py runs where pydantic, datasets, dvc or mlflow are not installed (the GPU machine).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

FAKE_IMAGE_TOKEN = "<fake_token_around_image>"
IMAGE_TOKEN = "<image>"
END_OF_UTTERANCE = "<end_of_utterance>"
IGNORE_INDEX = -100  # the label of a position that is not learned
GLOBAL_IMAGE_TOKEN = "<global-img>"
MAX_TILES_PER_SIDE = 6  # Idefics3Processor knows <row_i_col_j> for i, j in 1..6
RESERVED_TOKENS = 88  # SmolVLM's reserved added tokens, between <image> and <end_of_utterance>
# student.longest_edge "auto": tiles per side of the image budget. One tile for the offline
# students (their vision tower is random: more tiles cost time and teach nothing); two for a
# pretrained SmolVLM (a 448x336 chart -> 2x2 tiles + the global image = 5 tiles).
AUTO_TILES_OFFLINE = 1
AUTO_TILES_PRETRAINED = 2

# SmolVLM's chat template (HuggingFaceTB/SmolVLM-256M-Instruct):
# "User:<image>text<end_of_utterance>" turns, generation prompt "Assistant:".
# Content may be a string or a list of typed parts.
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}{{ ': ' + message['content'] }}"
    "{% else %}{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}"
    "{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}"
    "{{ line['text'] }}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

# The offline students' chat template: SmolLM2-Instruct's own ChatML turns, which their text
# model was instruction-tuned on ("<|im_start|>user\n...<|im_end|>\n<|im_start|>assistant\n"),
# with the image in the user turn and <end_of_utterance> (its embedding row is <|im_end|>'s)
# ending each turn. Under SmolVLM's "User:/Assistant:" turns the untrained base answers with
# <|im_end|> at once: an empty baseline is the template's doing, not the model's (measured).
OFFLINE_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# The tiny test student (text 64 x 2 layers, vision 32 x 1 layer at 32 px, scale_factor 2).
TINY_TEXT: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
TINY_VISION: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "image_size": 32,
    "patch_size": 8,
}
TINY_SCALE_FACTOR = 2

IMAGE_TOKEN_ID = 49190  # SmolVLM-256M/500M
VOCAB_SIZE = 49280
# SmolVLM-256M-Instruct: text = SmolLM2-135M's shape with an untied lm_head, vision = SigLIP
# base patch16 512, scale_factor 4 -> 64 tokens per 512-px tile.
TEXT_256M: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "max_position_embeddings": 8192,
    "rope_theta": 100000.0,
    "rms_norm_eps": 1e-5,
    "vocab_size": VOCAB_SIZE,
    "tie_word_embeddings": False,
    "pad_token_id": 2,
}
# SmolVLM-500M-Instruct: the same with SmolLM2-360M's text shape.
TEXT_500M: dict[str, Any] = {
    **TEXT_256M,
    "hidden_size": 960,
    "intermediate_size": 2560,
    "num_hidden_layers": 32,
    "num_attention_heads": 15,
    "num_key_value_heads": 5,
}
VISION_256M: dict[str, Any] = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "patch_size": 16,
    "image_size": 512,
}
SCALE_FACTOR_256M = 4
TEXT_CONFIGS = {"256m": TEXT_256M, "500m": TEXT_500M}

# Module paths of an Idefics3ForConditionalGeneration: LoRA targets are matched against these
# prefixes, so a text-model name (q_proj) never lands in the SigLIP tower, which has its own.
TEXT_LAYERS = r"model\.text_model\.layers\.\d+\.(?:self_attn|mlp)"
VISION_LAYERS = r"model\.vision_model\.encoder\.layers\.\d+\.(?:self_attn|mlp)"
CONNECTOR = "connector"


def image_tokens() -> list[str]:
    """The 128 tokens SmolVLM-256M/500M add after SmolLM2's 49,152, in their real order.

    ``<global-img>`` 49152, ``<row_1_col_1>``..``<row_6_col_6>`` 49153-49188 (row-major),
    ``<fake_token_around_image>`` 49189, ``<image>`` 49190, 88 reserved tokens 49191-49278,
    ``<end_of_utterance>`` 49279: the offline tokenizer has the hub tokenizer's ids and length.
    """
    tiles = [
        f"<row_{i + 1}_col_{j + 1}>"
        for i in range(MAX_TILES_PER_SIDE)
        for j in range(MAX_TILES_PER_SIDE)
    ]
    reserved = [f"<|reserved_special_token_{i}|>" for i in range(RESERVED_TOKENS)]
    return [GLOBAL_IMAGE_TOKEN, *tiles, FAKE_IMAGE_TOKEN, IMAGE_TOKEN, *reserved, END_OF_UTTERANCE]


def smolvlm_config(
    text: dict[str, Any], vision: dict[str, Any], scale_factor: int = SCALE_FACTOR_256M
) -> Any:
    """An Idefics3Config with SmolVLM-256M/500M's token ids around the given shapes."""
    from transformers import Idefics3Config

    return Idefics3Config(
        text_config=dict(text),
        vision_config=dict(vision),
        scale_factor=scale_factor,
        image_token_id=IMAGE_TOKEN_ID,
        pad_token_id=text.get("pad_token_id", 2),
        tie_word_embeddings=bool(text.get("tie_word_embeddings", False)),
    )


def config_256m() -> Any:
    return smolvlm_config(TEXT_256M, VISION_256M)


def config_500m() -> Any:
    return smolvlm_config(TEXT_500M, VISION_256M)


def qlora_kwargs() -> dict[str, Any]:
    """from_pretrained kwargs for a 4-bit NF4 base (double quantisation, bf16 compute)."""
    import torch
    from transformers import BitsAndBytesConfig

    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    return {"quantization_config": quant, "dtype": torch.bfloat16}


def lora_target_regex(text_modules: Sequence[str], vision_modules: Sequence[str] = ()) -> str:
    """peft target_modules as one regex over full module paths (re.fullmatch): text-model
    modules (q_proj k_proj v_proj o_proj, gate_proj up_proj down_proj) and, when named, vision
    tower modules (SigLIP: q_proj k_proj v_proj out_proj fc1 fc2)."""
    parts = [rf"{TEXT_LAYERS}\.(?:{'|'.join(text_modules)})"]
    if vision_modules:
        parts.append(rf"{VISION_LAYERS}\.(?:{'|'.join(vision_modules)})")
    return "|".join(f"(?:{part})" for part in parts)


def label_positions_only(labels: Any) -> dict[str, Any]:
    """The model's kwargs that project hidden states onto the vocabulary only where a token is
    learned: a boolean `logits_to_keep` mask of the positions predicting a label, and those
    labels in the same order as `shift_labels` (transformers' ForCausalLMLoss takes them as
    given). The loss is the same; the logits of the prompt, image and padding positions are
    never computed (BENCHMARKS.md: less memory, slightly faster steps)."""
    import torch

    shifted = torch.nn.functional.pad(labels, (0, 1), value=IGNORE_INDEX)[:, 1:]
    keep = shifted != IGNORE_INDEX
    return {"logits_to_keep": keep, "shift_labels": shifted[keep]}
