"""Batched essay generation with the student (base, or base + LoRA adapter)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import model_validator

from chartdistill.config import Section
from chartdistill.device import resolve_dtype
from chartdistill.student.model import load_student, stop_token_ids
from chartdistill.student.training import chat_messages

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)


class GenerationParams(Section):
    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.1  # applied to generated tokens only; 1.0 = off
    batch_size: int = 24  # decode reads all weights a step: more rows a step, fewer steps
    # Every this many new tokens, rows that ended their turn leave the batch (0: one generate
    # call, every row decoded until the last one stops).
    drop_finished_every: int = 64
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> GenerationParams:
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be positive")
        if self.drop_finished_every < 0:
            raise ValueError("drop_finished_every must be >= 0 (0: never)")
        if self.repetition_penalty <= 0 or self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError("repetition_penalty, temperature > 0 and 0 < top_p <= 1 required")
        return self


def load_adapter_model(
    base_dir: Path, adapter_dir: Path, dtype: str | torch.dtype = "float32"
) -> tuple[Any, Any]:
    """Base student with the LoRA adapter attached (a PeftModel, not merged); the adapter's
    processor wins when it saved one."""
    from peft import PeftModel
    from transformers import AutoProcessor

    if not (adapter_dir / "adapter_config.json").exists():
        raise FileNotFoundError(f"{adapter_dir}: no LoRA adapter here (adapter_config.json)")
    model, processor = load_student(base_dir, dtype)
    model = PeftModel.from_pretrained(model, adapter_dir)
    if (adapter_dir / "processor_config.json").exists():
        processor = AutoProcessor.from_pretrained(adapter_dir)
    model.eval()
    return model, processor


def load_for_inference(
    base_dir: Path, adapter_dir: Path | None = None, dtype: str | torch.dtype = "float32"
) -> tuple[Any, Any]:
    """Base student, with the LoRA adapter merged in when given; the adapter's processor wins."""
    if adapter_dir is None:
        return load_student(base_dir, dtype)
    model, processor = load_adapter_model(base_dir, adapter_dir, dtype)
    model = model.merge_and_unload().to(resolve_dtype(dtype))
    model.eval()
    return model, processor


def _generation_kwargs(params: GenerationParams, prompt_length: int) -> dict[str, Any]:
    from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    kwargs: dict[str, Any] = {"do_sample": params.do_sample}  # max_new_tokens: per call, _decode
    if params.do_sample:
        kwargs.update(temperature=params.temperature, top_p=params.top_p)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if params.repetition_penalty != 1.0:
        kwargs["logits_processor"] = LogitsProcessorList(
            [
                RepetitionPenaltyLogitsProcessor(
                    penalty=params.repetition_penalty, prompt_ignore_length=prompt_length
                )
            ]
        )
    return kwargs


class Generated(NamedTuple):
    """One row's essay and what it cost: prompt tokens prefilled (image tokens included, padding
    not), tokens generated up to and including its stop, and its share of the batch's seconds."""

    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float


def generate_batch(
    model: Any,
    processor: Any,
    images: Sequence[Image.Image],
    prompts: Sequence[str],
    params: GenerationParams,
) -> list[Generated]:
    """One left-padded batch through model.generate: each row's text up to its end of turn."""
    import torch

    began = time.perf_counter()
    texts = [
        processor.apply_chat_template(chat_messages(p), add_generation_prompt=True) for p in prompts
    ]
    batch = processor(
        text=texts,
        images=[[image.convert("RGB")] for image in images],
        padding=True,
        padding_side="left",
        return_tensors="pt",
    ).to(model.device)
    if "pixel_values" in batch:
        batch["pixel_values"] = batch["pixel_values"].to(model.dtype)
    prompt_length = batch["input_ids"].shape[1]
    stops = stop_token_ids(processor.tokenizer)
    kwargs = {**_generation_kwargs(params, prompt_length), "eos_token_id": stops}
    with torch.inference_mode():
        rows = _decode(model, dict(batch), kwargs, params, stops)
    texts = decode_turns(processor.tokenizer, rows, stops)
    seconds = (time.perf_counter() - began) / len(texts)
    prompt_tokens = batch["attention_mask"].sum(dim=1).tolist()
    return [
        Generated(text, int(prompt), min(turn_end(ids, stops) + 1, len(ids)), seconds)
        for text, prompt, ids in zip(texts, prompt_tokens, rows, strict=True)
    ]


def _decode(
    model: Any,
    inputs: dict[str, Any],
    kwargs: dict[str, Any],
    params: GenerationParams,
    stops: Sequence[int],
) -> list[list[int]]:
    """Each row's new token ids. model.generate runs `drop_finished_every` tokens at a time and
    goes on from its own KV cache, without the rows that ended their turn: a batch is not
    decoded to its longest row's length for every row."""
    import torch

    rows: list[list[int]] = [[] for _ in range(inputs["input_ids"].shape[0])]
    active = list(range(len(rows)))
    produced = 0  # tokens generated so far by every row still in the batch
    while active and produced < params.max_new_tokens:
        left = params.max_new_tokens - produced
        step = min(params.drop_finished_every or left, left)
        output = model.generate(
            **inputs, **kwargs, max_new_tokens=step, return_dict_in_generate=True
        )
        new = output.sequences[:, inputs["input_ids"].shape[1] :]
        produced += new.shape[1]
        for row, ids in zip(active, new.tolist(), strict=True):
            rows[row].extend(ids)
        going = [i for i, row in enumerate(active) if turn_end(rows[row], stops) == len(rows[row])]
        if new.shape[1] < step or not going:
            break
        keep = torch.tensor(going)
        output.past_key_values.batch_select_indices(keep)
        mask = inputs["attention_mask"]
        inputs = {
            "input_ids": output.sequences[keep],
            "attention_mask": torch.cat([mask, mask.new_ones(new.shape)], dim=1)[keep],
            "past_key_values": output.past_key_values,
        }
        active = [active[i] for i in going]
    return rows


def turn_end(ids: Sequence[int], stops: Sequence[int]) -> int:
    """The index of a row's first stop token (end of turn or eos), or its length if none."""
    return next((i for i, token in enumerate(ids) if token in stops), len(ids))


def decode_turns(tokenizer: Any, rows: Sequence[Sequence[int]], stops: Sequence[int]) -> list[str]:
    """Each row's text up to its first stop token (end of turn or eos); nothing after it."""
    cut = [list(ids[: turn_end(ids, stops)]) for ids in rows]
    return [text.strip() for text in tokenizer.batch_decode(cut, skip_special_tokens=True)]


def generate_essays(
    model: Any,
    processor: Any,
    images: Sequence[Image.Image],
    prompts: Sequence[str],
    params: GenerationParams,
) -> list[Generated]:
    """Essays for (image, prompt) pairs in batches, in input order."""
    from tqdm.auto import tqdm
    from transformers import set_seed

    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
    set_seed(params.seed)
    results: list[Generated | None] = [None] * len(images)
    batches = batch_plan(
        [_input_size(image, prompt) for image, prompt in zip(images, prompts, strict=True)],
        params.batch_size,
    )
    for batch in tqdm(batches, desc="generate", unit="batch", disable=len(batches) < 2):
        generated = generate_batch(
            model, processor, [images[i] for i in batch], [prompts[i] for i in batch], params
        )
        for index, row in zip(batch, generated, strict=True):
            results[index] = row
    return [r for r in results if r is not None]


def _input_size(image: Image.Image, prompt: str) -> tuple[int, int]:
    """What decides a row's prompt length: the image's pixels (its tiles) and the text."""
    return image.width * image.height, len(prompt)


def batch_plan(sizes: Sequence[Any], batch_size: int) -> list[list[int]]:
    """Indices in batches of at most batch_size, items of similar size together (less padding),
    split evenly (9 items at batch 8 run as 5 + 4, not 8 + 1: no near-empty last batch)."""
    if not sizes:
        return []
    count = -(-len(sizes) // batch_size)
    size = -(-len(sizes) // count)
    order = sorted(range(len(sizes)), key=lambda i: (sizes[i], i))
    return [order[start : start + size] for start in range(0, len(order), size)]
