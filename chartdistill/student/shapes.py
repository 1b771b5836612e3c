"""The real SmolVLM students at their real shapes, offline: configs, processors, tokenizers.

Where the hub cannot be reached (CI, these machines), SmolVLM-256M-Instruct is built from its
exact configuration with random weights, the tokenizer is the bundled SmolLM2 GGUF tokenizer plus
SmolVLM's added tokens in their real order, and the processors carry the hub's settings (also
the 2.2B's, for its tile and token arithmetic). `write_hub_folder` lays a model out as the hub
repository does, so `student.base` can point at it. Used by the tests and bench/, not by stages.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

from chartdistill.student.model import (
    END_OF_UTTERANCE,
    FAKE_IMAGE_TOKEN,
    IMAGE_TOKEN,
    StudentParams,
    VisionTowerParams,
    _load_gguf_tokenizer,
    make_processor,
)
from chartdistill.student.smolvlm import (  # noqa: F401  (re-exported for tests and bench/)
    TEXT_256M,
    TEXT_500M,
    VISION_256M,
    config_256m,
    config_500m,
)

PARAMS_256M = 256_484_928
HUB_LONGEST_EDGE_256M = 2048  # the hub processor's size.longest_edge (4 x 512)
# SmolVLM-Instruct (2.2B): 384-px tiles, scale_factor 3 -> 81 tokens per tile.
TILE_2B, SEQ_LEN_2B, HUB_LONGEST_EDGE_2B = 384, 81, 1536


def offline_tokenizer() -> Any:
    """SmolLM2's tokenizer (from the bundled GGUF) + SmolVLM-256M's 128 added tokens."""
    return _load_gguf_tokenizer()


@functools.lru_cache(maxsize=1)
def _tokenizer_2b() -> Any:
    from chartdistill.bundled import gguf_tokenizer

    tokenizer = gguf_tokenizer()
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [FAKE_IMAGE_TOKEN, IMAGE_TOKEN, END_OF_UTTERANCE]},
        replace_extra_special_tokens=False,
    )
    return tokenizer


def tokenizer_2b() -> Any:
    """The 2.2B adds only three tokens: row/column and global tags stay plain text (a private
    copy; the GGUF is parsed once a process)."""
    return copy.deepcopy(_tokenizer_2b())


def student_params_256m(longest_edge: int | str = HUB_LONGEST_EDGE_256M) -> StudentParams:
    """Params whose offline processor has the hub settings of SmolVLM-256M/500M."""
    vision = VisionTowerParams(**{k: VISION_256M[k] for k in VisionTowerParams.model_fields})
    return StudentParams(base="tiny", vision=vision, scale_factor=4, longest_edge=longest_edge)


def processor_256m(longest_edge: int | str = HUB_LONGEST_EDGE_256M) -> Any:
    """Idefics3Processor as the hub ships it: 2048/512, splitting, LANCZOS, mean = std = 0.5."""
    return make_processor(student_params_256m(longest_edge), offline_tokenizer())


def processor_2b(longest_edge: int = HUB_LONGEST_EDGE_2B) -> Any:
    from transformers import Idefics3ImageProcessorPil, Idefics3Processor

    from chartdistill.student.model import CHAT_TEMPLATE

    image_processor = Idefics3ImageProcessorPil(
        do_resize=True,
        size={"longest_edge": longest_edge},
        max_image_size={"longest_edge": TILE_2B},
        do_image_splitting=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer_2b(),
        image_seq_len=SEQ_LEN_2B,
        chat_template=CHAT_TEMPLATE,
    )


def build_256m(seed: int = 0) -> Any:
    """SmolVLM-256M-Instruct from its exact config, random weights (5 s, 1.3 GB in fp32)."""
    import torch
    from transformers import Idefics3ForConditionalGeneration

    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config_256m())
    # The first hub uploads said eos 2 (<|im_end|>), not <end_of_utterance>.
    model.generation_config.eos_token_id = 2
    model.generation_config.pad_token_id = 2
    return model.eval()


def write_hub_folder(model: Any, processor: Any, folder: Path) -> Path:
    """config.json, generation_config.json, model.safetensors (bf16, as on the hub), processor
    and tokenizer files, chat template: the layout of HuggingFaceTB/SmolVLM-256M-Instruct."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)
    model.to(torch.float32)
    processor.save_pretrained(folder)
    return folder
