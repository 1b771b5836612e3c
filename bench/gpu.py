"""The real SmolVLM students on a GPU: LoRA training and batched generation throughput.

SmolVLM-256M and -500M are built from their exact configs with random weights (the hub cannot be
reached), with the default image budget (params.yaml student.longest_edge, "auto": two 512-px
tiles per side, so a 448x336 chart is 2x2 tiles + the global image) and LoRA as in params.yaml
train.lora (text attention). Per batch size it measures one training step's tokens/s and
samples/s under bf16 autocast with fp32 weights (as `train.bf16` does in the Trainer) and the peak
GPU memory, without and with gradient checkpointing; QLoRA where bitsandbytes imports; and
greedy generation tokens/s (prefill included) at batch 1 and 32.

Samples are synthetic token ids at real lengths: the image block laid out as Idefics3Processor
lays it (per tile <fake_token_around_image><row_i_col_j> + 64 <image>, a newline per row, then the
global image), PROMPT_TOKENS of instruction and OCR hint, ESSAY_TOKENS of essay (labels, and
logits, on the essay only, as the collator does). Random pixels: compute does not depend on
their values.

Imports only torch, transformers, peft, pyyaml, pillow and chartdistill.student.smolvlm (no
pydantic, datasets, dvc, mlflow), so it runs on the lent GPU machine from a bare checkout:

    python -m bench.gpu --out "$OUT/gpu.json"        # ~3 min on an H100, --time-limit 240
    python -m bench.gpu --tiny                       # CPU, seconds: what CI runs
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.suite import machine
from chartdistill.student.smolvlm import (
    AUTO_TILES_PRETRAINED,
    END_OF_UTTERANCE,
    FAKE_IMAGE_TOKEN,
    GLOBAL_IMAGE_TOKEN,
    IGNORE_INDEX,
    IMAGE_TOKEN,
    TEXT_256M,
    TEXT_CONFIGS,
    TINY_SCALE_FACTOR,
    TINY_TEXT,
    TINY_VISION,
    VISION_256M,
    image_tokens,
    label_positions_only,
    lora_target_regex,
    qlora_kwargs,
    smolvlm_config,
)

PARAMS = Path("params.yaml")
FIRST_ADDED_ID = 49152  # SmolVLM's added tokens follow SmolLM2's 49,152 (image_tokens() order)
NEWLINE_ID = 198  # SmolLM2's "\n"
# The student prompt (instruction + an OCR hint of up to ocr.hint_max_chars = 600 characters)
# and a 250-word essay at ~1.6 SmolLM2 tokens per word (DESIGN.md section 7) + end of turn.
PROMPT_TOKENS = 160
ESSAY_TOKENS = 400
GENERATED_TOKENS = 128


@dataclass(frozen=True)
class Plan:
    """What one run measures; the real plan or the CPU --tiny plan."""

    models: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    generate_batches: tuple[int, ...]
    warmup_steps: int
    timed_steps: int
    prompt_tokens: int
    essay_tokens: int
    generated_tokens: int
    qlora_batch_sizes: tuple[int, ...]
    tiny: bool = False


REAL = Plan(
    models=("256m", "500m"),
    batch_sizes=(4, 8, 16, 32),
    generate_batches=(1, 32),
    warmup_steps=2,
    timed_steps=3,
    prompt_tokens=PROMPT_TOKENS,
    essay_tokens=ESSAY_TOKENS,
    generated_tokens=GENERATED_TOKENS,
    qlora_batch_sizes=(8, 32),
)
TINY = Plan(
    models=("tiny",),
    batch_sizes=(1, 2),
    generate_batches=(1, 2),
    warmup_steps=1,
    timed_steps=1,
    prompt_tokens=16,
    essay_tokens=16,
    generated_tokens=4,
    qlora_batch_sizes=(2,),
    tiny=True,
)


@dataclass
class Clock:
    """The run's time limit: a case that would start after it is skipped, and says so."""

    limit_s: float
    began: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        return self.limit_s - (time.perf_counter() - self.began)


# ----------------------------------------------------------------------------- inputs


def read_params(path: Path = PARAMS) -> dict[str, Any]:
    """train.lora, student.longest_edge and the chart size, read raw (no pydantic here)."""
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {
        "lora": params["train"]["lora"],
        "longest_edge": params["student"]["longest_edge"],
        "chart": (int(params["charts"]["width"]), int(params["charts"]["height"])),
    }


def model_config(name: str) -> Any:
    if name == "tiny":
        return smolvlm_config({**TEXT_256M, **TINY_TEXT}, TINY_VISION, TINY_SCALE_FACTOR)
    return smolvlm_config(TEXT_CONFIGS[name], VISION_256M)


def image_layout(config: Any, longest_edge: Any, chart: tuple[int, int]) -> tuple[int, int, int]:
    """(tiles, rows, cols) the Idefics3 image processor makes of a blank chart-sized image."""
    from PIL import Image

    try:  # transformers 5 names the PIL backend; 4.x's Idefics3ImageProcessor is that one
        from transformers import Idefics3ImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers import Idefics3ImageProcessor as ImageProcessor

    tile = int(config.vision_config.image_size)
    edge = tile * AUTO_TILES_PRETRAINED if longest_edge == "auto" else int(longest_edge)
    processor = ImageProcessor(
        do_resize=True,
        size={"longest_edge": edge},
        max_image_size={"longest_edge": tile},
        do_image_splitting=True,
    )
    image = Image.new("RGB", chart, "white")
    out = processor(images=[[image]], return_tensors="pt", return_row_col_info=True)
    return int(out["pixel_values"].shape[1]), int(out["rows"][0][0]), int(out["cols"][0][0])


def image_block(rows: int, cols: int, seq_len: int) -> list[int]:
    """The image's token ids as Idefics3Processor expands one <image> (tiles, then global)."""
    ids = {token: FIRST_ADDED_ID + i for i, token in enumerate(image_tokens())}
    fake, image, glob = ids[FAKE_IMAGE_TOKEN], ids[IMAGE_TOKEN], ids[GLOBAL_IMAGE_TOKEN]
    out: list[int] = []
    for r in range(rows):
        for c in range(cols):
            out += [fake, ids[f"<row_{r + 1}_col_{c + 1}>"], *[image] * seq_len]
        out.append(NEWLINE_ID)
    return [*out, NEWLINE_ID, fake, glob, *[image] * seq_len, fake]


def image_seq_len(config: Any) -> int:
    patches = config.vision_config.image_size // config.vision_config.patch_size
    return patches * patches // (config.scale_factor**2)


@dataclass(frozen=True)
class Sample:
    prompt: list[int]  # text + image block
    essay: list[int]  # essay + end of turn
    tiles: int


def make_sample(config: Any, plan: Plan, params: dict[str, Any], seed: int = 0) -> Sample:
    import torch

    tiles, rows, cols = image_layout(config, params["longest_edge"], params["chart"])
    generator = torch.Generator().manual_seed(seed)
    text = torch.randint(
        3, FIRST_ADDED_ID, (plan.prompt_tokens + plan.essay_tokens,), generator=generator
    )
    prompt = [
        1,
        *text[: plan.prompt_tokens].tolist(),
        *image_block(rows, cols, image_seq_len(config)),
    ]
    eou = FIRST_ADDED_ID + image_tokens().index(END_OF_UTTERANCE)
    return Sample(prompt, [*text[plan.prompt_tokens :].tolist(), eou], tiles)


def batch(sample: Sample, size: int, config: Any, device: Any, with_essay: bool = True) -> dict:
    import torch

    ids = sample.prompt + (sample.essay if with_essay else [])
    input_ids = torch.tensor([ids] * size, device=device)
    tile = config.vision_config.image_size
    out = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": torch.randn(size, sample.tiles, 3, tile, tile, device=device),
    }
    if with_essay:
        labels = input_ids.clone()
        labels[:, : len(sample.prompt)] = IGNORE_INDEX
        out["labels"] = labels
        out.update(label_positions_only(labels))
    return out


# ----------------------------------------------------------------------------- measuring


def device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_mib() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


@contextlib.contextmanager
def out_of_memory(row: dict[str, Any]) -> Iterator[None]:
    """A case that runs out of GPU memory is recorded as "OOM", not a crash of the run."""
    import torch

    try:
        yield
    except torch.OutOfMemoryError:
        row["error"] = "OOM"
        torch.cuda.empty_cache()


def build(config: Any) -> Any:
    """Random fp32 weights, made on the device."""
    import torch
    from transformers import Idefics3ForConditionalGeneration

    torch.manual_seed(0)
    with device():
        return Idefics3ForConditionalGeneration(config)


def set_checkpointing(model: Any, enable: bool) -> None:
    """Gradient checkpointing on or off (transformers 5 renamed it activation checkpointing)."""
    kwargs = {"use_reentrant": False}
    renamed = hasattr(model, "activation_checkpointing_enable")
    if not enable:
        off = "activation_checkpointing_disable" if renamed else "gradient_checkpointing_disable"
        getattr(model, off)()
        return
    if renamed:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.enable_input_require_grads()


def add_lora(model: Any, lora: dict[str, Any]) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=lora_target_regex(
            lora["target_modules"], lora.get("vision_target_modules") or ()
        ),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def train_case(
    model: Any, sample: Sample, size: int, ckpt: bool, plan: Plan, config: Any
) -> dict[str, Any]:
    """Training steps (forward, backward, AdamW on the trainable params) under bf16 autocast."""
    import torch

    set_checkpointing(model, ckpt)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    inputs = batch(sample, size, config, device())
    reset_peak()
    began = 0.0
    for step in range(plan.warmup_steps + plan.timed_steps):
        if step == plan.warmup_steps:
            sync()
            began = time.perf_counter()
        with torch.autocast(device().type, dtype=torch.bfloat16):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync()
    seconds = (time.perf_counter() - began) / plan.timed_steps
    tokens = inputs["input_ids"].numel()
    return {
        "step_s": round(seconds, 4),
        "tokens_per_s": round(tokens / seconds, 1),
        "samples_per_s": round(size / seconds, 2),
        "peak_mib": peak_mib(),
        "loss": round(float(loss.detach()), 3),
    }


def generate_case(model: Any, sample: Sample, size: int, plan: Plan, config: Any) -> dict[str, Any]:
    """Greedy generation of exactly generated_tokens per row (prefill included), bf16 weights."""
    import torch

    inputs = batch(sample, size, config, device(), with_essay=False)
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
    kwargs = {
        "max_new_tokens": plan.generated_tokens,
        "min_new_tokens": plan.generated_tokens,
        "do_sample": False,
        "use_cache": True,
    }
    with torch.inference_mode():
        model.generate(**inputs, max_new_tokens=2, min_new_tokens=2, do_sample=False)  # warm-up
        reset_peak()
        sync()
        began = time.perf_counter()
        out = model.generate(**inputs, **kwargs)
        sync()
    seconds = time.perf_counter() - began
    new = (out.shape[1] - inputs["input_ids"].shape[1]) * size
    return {
        "seconds": round(seconds, 3),
        "new_tokens": new,
        "tokens_per_s": round(new / seconds, 1),
        "peak_mib": peak_mib(),
    }


def bitsandbytes_status() -> str | None:
    """None when QLoRA can run here, else why not."""
    import torch

    if not torch.cuda.is_available():
        return "not run: no CUDA GPU"
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return "not run: bitsandbytes is not importable here"
    return None


def qlora_model(model: Any, lora: dict[str, Any]) -> Any:
    """The model saved and reloaded as a 4-bit NF4 base (as train.qlora loads it), with LoRA."""
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import Idefics3ForConditionalGeneration

    with tempfile.TemporaryDirectory() as tmp:
        model.to(torch.bfloat16).save_pretrained(tmp)
        quantised = Idefics3ForConditionalGeneration.from_pretrained(
            tmp, device_map={"": device()}, **qlora_kwargs()
        )
    quantised.config.use_cache = False
    quantised = prepare_model_for_kbit_training(quantised, use_gradient_checkpointing=True)
    return add_lora(quantised, lora)


def skipped(row: dict[str, Any], clock: Clock) -> bool:
    if clock.left() <= 0:
        row["error"] = "skipped: time limit"
        return True
    return False


def run_model(name: str, plan: Plan, params: dict[str, Any], clock: Clock) -> list[dict]:
    import torch

    config = model_config(name)
    sample = make_sample(config, plan, params)
    base = {
        "model": name,
        "tiles": sample.tiles,
        "sequence": len(sample.prompt) + len(sample.essay),
    }
    rows: list[dict[str, Any]] = []
    model = build(config)
    base["params"] = sum(p.numel() for p in model.parameters())
    model.config.use_cache = False
    peft_model = add_lora(model, params["lora"])
    base["trainable"] = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    for checkpointing in (False, True):
        oom = False
        for size in plan.batch_sizes:
            row = {**base, "kind": "train", "batch": size, "checkpointing": checkpointing}
            rows.append(row)
            if oom:
                row["error"] = "OOM (a smaller batch did)"
                continue
            if skipped(row, clock):
                continue
            with out_of_memory(row):
                row.update(train_case(peft_model, sample, size, checkpointing, plan, config))
            oom = row.get("error") == "OOM"
            log_row(row)
    set_checkpointing(peft_model, False)
    model = peft_model.merge_and_unload().to(torch.bfloat16).eval()
    model.config.use_cache = True
    for size in plan.generate_batches:
        row = {**base, "kind": "generate", "batch": size, "sequence": len(sample.prompt)}
        rows.append(row)
        if not skipped(row, clock):
            with out_of_memory(row):
                row.update(generate_case(model, sample, size, plan, config))
            log_row(row)
    rows.extend(run_qlora(model, sample, base, plan, params, clock, config))
    del model, peft_model
    reset_peak()
    return rows


def run_qlora(
    model: Any,
    sample: Sample,
    base: dict[str, Any],
    plan: Plan,
    params: dict[str, Any],
    clock: Clock,
    config: Any,
) -> list[dict]:
    why_not = bitsandbytes_status()
    rows = [
        {**base, "kind": "qlora", "batch": size, "checkpointing": True}
        for size in plan.qlora_batch_sizes
    ]
    if why_not is not None:
        for row in rows:
            row["error"] = why_not
        return rows
    quantised = qlora_model(model, params["lora"])
    for row in rows:
        if not skipped(row, clock):
            with out_of_memory(row):
                row.update(train_case(quantised, sample, row["batch"], True, plan, config))
            log_row(row)
    return rows


# ----------------------------------------------------------------------------- report


def log_row(row: dict[str, Any]) -> None:
    print(json.dumps(row), file=sys.stderr, flush=True)


def environment() -> dict[str, Any]:
    import peft
    import torch
    import transformers

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {
        "device": gpu or f"cpu ({machine()['cpu']})",
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "threads": torch.get_num_threads(),
    }


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: one line per case."""
    head = (
        "| model | kind | batch | grad ckpt | tiles | seq | tokens/s | samples/s | step s "
        "| peak GiB | note |"
    )
    lines = [head, "|" + "---|" * 11]
    for row in rows:
        peak = row.get("peak_mib")
        lines.append(
            "| "
            + " | ".join(
                _cell(v)
                for v in (
                    row["model"],
                    row["kind"],
                    row["batch"],
                    {True: "yes", False: "no"}.get(row.get("checkpointing")),
                    row["tiles"],
                    row["sequence"],
                    row.get("tokens_per_s"),
                    row.get("samples_per_s"),
                    row.get("step_s", row.get("seconds")),
                    None if peak is None else round(peak / 1024, 2),
                    row.get("error"),
                )
            )
            + " |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model on CPU (CI)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (+ .md table beside)")
    parser.add_argument("--time-limit", type=float, default=240.0, help="seconds; later cases skip")
    parser.add_argument("--models", nargs="*", default=None, help="256m 500m (default both)")
    args = parser.parse_args(argv)
    plan = TINY if args.tiny else REAL
    if args.models:
        plan = Plan(**{**plan.__dict__, "models": tuple(args.models)})
    if not plan.tiny and device().type != "cuda":
        print("bench.gpu: no CUDA GPU here; use --tiny on CPU", file=sys.stderr)
        return 2
    clock = Clock(args.time_limit)
    params = read_params()
    rows = [row for name in plan.models for row in run_model(name, plan, params, clock)]
    result = {
        "environment": environment(),
        "plan": plan.__dict__,
        "params": params,
        "wall_s": round(time.perf_counter() - clock.began, 1),
        "rows": rows,
    }
    text = table(rows)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        args.out.with_suffix(".md").write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
