"""LoRA fine-tuning of the student on one dataset variant (transformers Trainer + peft + MLflow).

Dataset contract (written by the datasets stage): ``<dataset_dir>/{train,validation,test}.parquet``
with columns id, chart_type, title, image (datasets Image), text (the target essay).

Checkpoints go to ``checkpoint_dir`` every ``save_steps``; a rerun resumes from the last one
(and continues the same MLflow run). The adapter and processor are written to ``out_dir``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from chartdistill.config import ParamsError, Section
from chartdistill.device import use_bf16
from chartdistill.student.model import END_OF_UTTERANCE, save_student
from chartdistill.student.smolvlm import (
    CONNECTOR,
    IGNORE_INDEX,
    label_positions_only,
    lora_target_regex,
    qlora_kwargs,
)

log = logging.getLogger(__name__)

# The student's prompt: one string for every row, or a callable giving a row's prompt
# (chartdistill.prompts.student.StudentPrompt adds the row's OCR text).
Prompt = str | Callable[[dict[str, Any]], str]

SPLITS = ("train", "validation", "test")
REQUIRED_COLUMNS = ("id", "chart_type", "title", "image", "text")
MLFLOW_RUN_FILE = "mlflow_run_id.txt"
FINGERPRINT_FILE = "run_fingerprint.txt"


def default_tracking_uri() -> str:
    """sqlite mlflow.db at the project root; DVC_ROOT keeps queued experiments (which run in a
    temporary copy of the repo) logging to the real project's database."""
    root = Path(os.environ.get("DVC_ROOT") or ".").resolve()
    return f"sqlite:///{root / 'mlflow.db'}"


MODULE_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


TEXT_LINEAR_LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoraParams(Section):
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    # Text model modules (q_proj k_proj v_proj o_proj, MLP: gate_proj up_proj down_proj).
    target_modules: list[str] = Field(default_factory=lambda: list(TEXT_LINEAR_LAYERS))
    # Vision tower modules (SigLIP: q_proj k_proj v_proj out_proj fc1 fc2); empty: frozen.
    vision_target_modules: list[str] = Field(default_factory=list)
    train_connector: bool = False  # the vision->text connector fully trainable (saved whole)

    @model_validator(mode="after")
    def _check(self) -> LoraParams:
        names = [*self.target_modules, *self.vision_target_modules]
        if not self.target_modules:
            raise ValueError("target_modules: name at least one text-model module")
        bad = [name for name in names if not re.fullmatch(MODULE_NAME, name)]
        if bad:
            raise ValueError(f"target modules are plain module names, got {bad}")
        return self

    def target_regex(self) -> str:
        """peft target_modules as one regex over full module paths (re.fullmatch)."""
        return lora_target_regex(self.target_modules, self.vision_target_modules)


class TrainParams(Section):
    # The command dvc.yaml puts before `-m stages.train`: "python" for one process, or e.g.
    # "accelerate launch --multi_gpu --num_processes 4" to train on several GPUs.
    launch: str = "python"
    lora: LoraParams = LoraParams()
    learning_rate: float = 1e-3
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.05
    num_train_epochs: float = 2.0
    max_steps: int = 60  # -1: run num_train_epochs
    per_device_train_batch_size: int = 2
    per_device_eval_batch_size: int = 2
    gradient_accumulation_steps: int = 1
    weight_decay: float = 0.0
    neftune_noise_alpha: float | None = Field(default=None, gt=0)  # NEFTune: noisy embeddings
    eval_steps: int = 20
    save_steps: int = 20
    save_total_limit: int = 2
    logging_steps: int = 1
    max_length: int = 1024  # whole samples: longer ones are dropped with a reason, never cut
    min_kept_fraction: float = Field(default=0.5, ge=0, le=1)  # of train, else fail
    bf16: Literal["auto"] | bool = "auto"
    gradient_checkpointing: bool = False
    qlora: bool = False
    seed: int = 0
    mlflow_experiment: str = "chartdistill"
    report_to: list[Literal["mlflow", "none"]] = Field(default_factory=lambda: ["mlflow"])

    @model_validator(mode="after")
    def _check(self) -> TrainParams:
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError("max_steps must be -1 (use num_train_epochs) or a positive step count")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError("warmup_ratio must be in [0, 1)")
        for name in ("eval_steps", "save_steps", "logging_steps", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.save_steps % self.eval_steps:
            raise ValueError(
                "save_steps must be a multiple of eval_steps (the adapter kept is the saved "
                "step with the lowest validation loss)"
            )
        return self


# ----------------------------------------------------------------------------- data


def split_files(dataset_dir: Path, splits: Sequence[str] = SPLITS) -> dict[str, Path]:
    """The parquet file of each split, with a clear error when one is missing."""
    files = {split: dataset_dir / f"{split}.parquet" for split in splits}
    missing = [str(path) for path in files.values() if not path.exists()]
    if missing:
        raise FileNotFoundError(f"dataset {dataset_dir}: missing split file(s) {missing}")
    return files


def load_splits(dataset_dir: Path, splits: Sequence[str] = ("train", "validation")) -> Any:
    """Load the given splits as a datasets.DatasetDict and check the column contract. A
    missing validation file is left out (training then runs without eval, with a warning):
    a teacher that accepts very few essays leaves nothing to validate on."""
    from datasets import load_dataset

    if "validation" in splits and not (dataset_dir / "validation.parquet").exists():
        log.warning("%s: no validation split; training runs without an eval loss", dataset_dir)
        splits = [s for s in splits if s != "validation"]
    files = split_files(dataset_dir, splits)
    data = load_dataset("parquet", data_files={k: str(v) for k, v in files.items()})
    for split, dataset in data.items():
        missing = [c for c in REQUIRED_COLUMNS if c not in dataset.column_names]
        if missing:
            raise ValueError(f"{files[split]}: missing column(s) {missing}")
        if len(dataset) == 0:
            raise ValueError(f"{files[split]}: the {split} split is empty")
    return data


def dataset_hash(dataset_dir: Path) -> str:
    """sha256 over the split parquet files there are (names and bytes), for the MLflow tags."""
    present = [split for split in SPLITS if (dataset_dir / f"{split}.parquet").exists()]
    digest = hashlib.sha256()
    for split, path in sorted(split_files(dataset_dir, present).items()):
        digest.update(split.encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- collator


def user_turn(prompt: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}


def chat_messages(prompt: str, essay: str | None = None) -> list[dict[str, Any]]:
    """User turn (image + prompt), plus the assistant's essay when given."""
    messages = [user_turn(prompt)]
    if essay is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": essay}]})
    return messages


def _essay_token_ids(processor: Any, full_text: str, prompt_text: str) -> list[int]:
    """Token ids of the assistant part (essay + end of turn) as the template renders them."""
    if not full_text.startswith(prompt_text):
        raise ValueError("the chat template does not render the prompt as a prefix of the sample")
    answer = full_text[len(prompt_text) :]
    end = answer.rfind(END_OF_UTTERANCE)
    if end < 0:
        raise ValueError(
            f"the chat template does not end the assistant turn with {END_OF_UTTERANCE}"
        )
    return processor.tokenizer(answer[: end + len(END_OF_UTTERANCE)], add_special_tokens=False)[
        "input_ids"
    ]


def _chat_sample(processor: Any, prompt: Prompt, row: dict[str, Any]) -> Any:
    """(chat text with the essay, RGB image, essay + end-of-turn token ids) of one row.

    `prompt` is a string, or a callable giving the row's prompt (the OCR hint, issue 15)."""
    prompt = prompt(row) if callable(prompt) else prompt
    prompt_text = processor.apply_chat_template(chat_messages(prompt), add_generation_prompt=True)
    essay = str(row["text"]).strip()
    if not essay:
        raise ValueError(f"item {row.get('id')}: empty essay text")
    full = processor.apply_chat_template(chat_messages(prompt, essay))
    image = row.get("image")
    if not hasattr(image, "convert"):
        raise ValueError(f"item {row.get('id')}: no decodable image (got {type(image)})")
    return full, image.convert("RGB"), _essay_token_ids(processor, full, prompt_text)


def make_collator(
    processor: Any, prompt: Prompt, max_length: int | None = None
) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """Collator for rows {id, image, text}: chat-formatted, tokenised, labels on the essay only.

    Labels are -100 on the prompt, the image tokens, the tokens after the assistant's
    end-of-turn token and the padding; the essay tokens and its end-of-turn token are learned,
    and only their positions get logits (label_positions_only).
    Nothing is ever truncated: a sample longer than max_length is an error naming the item
    (train_variant drops such samples beforehand, see fit_max_length).
    """

    def collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        samples = [_chat_sample(processor, prompt, row) for row in rows]
        batch = processor(
            text=[full for full, _, _ in samples],
            images=[[image] for _, image, _ in samples],
            padding=True,
            padding_side="right",
            return_tensors="pt",
        )
        input_ids = batch["input_ids"]
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        for i, (row, (_, _, answer)) in enumerate(zip(rows, samples, strict=True)):
            if max_length is not None and lengths[i] > max_length:
                raise ValueError(
                    f"item {row.get('id')}: {lengths[i]} tokens exceed max_length {max_length} "
                    "(samples are never truncated; drop them with fit_max_length)"
                )
            end = _answer_end(input_ids[i, : lengths[i]].tolist(), answer, row.get("id"))
            labels[i, end - len(answer) : end] = input_ids[i, end - len(answer) : end]
        batch["labels"] = labels
        batch.update(label_positions_only(labels))
        return dict(batch)

    return collate


def sample_length(processor: Any, prompt: Prompt, row: dict[str, Any]) -> tuple[int, int]:
    """(tokens, essay tokens) of one training sample once the processor has expanded the image;
    the essay tokens include the end-of-turn token."""
    full, image, answer = _chat_sample(processor, prompt, row)
    ids = processor(text=[full], images=[[image]])["input_ids"][0]
    return len(ids), len(answer)


def fit_max_length(
    dataset: Any, processor: Any, prompt: Prompt, max_length: int, split: str
) -> tuple[Any, list[dict[str, Any]]]:
    """The rows whose whole sample (image, prompt, essay, end of turn) fits max_length, and a
    record {id, split, tokens, reason} for each row dropped. Nothing is truncated."""
    from tqdm.auto import tqdm

    keep: list[int] = []
    dropped: list[dict[str, Any]] = []
    for index, row in enumerate(tqdm(dataset, desc=f"lengths {split}", unit="sample")):
        tokens, essay = sample_length(processor, prompt, row)
        if tokens <= max_length:
            keep.append(index)
            continue
        reason = (
            f"{tokens} tokens ({tokens - essay} prompt and image, {essay} essay and end of turn) "
            f"exceed train.max_length {max_length}"
        )
        log.warning("%s item %s dropped: %s", split, row["id"], reason)
        dropped.append({"id": row["id"], "split": split, "tokens": tokens, "reason": reason})
    if not hasattr(dataset, "select"):  # a plain list of rows
        return [dataset[i] for i in keep], dropped
    return dataset.select(keep), dropped


def _answer_end(ids: list[int], answer: list[int], item: Any) -> int:
    """Index just past the assistant answer tokens in one unpadded row (searched from the end)."""
    n = len(answer)
    for end in range(len(ids), n - 1, -1):
        if ids[end - n : end] == answer:
            return end
    raise ValueError(f"item {item}: essay tokens not found in the tokenised sample")


# ----------------------------------------------------------------------------- helpers


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def peak_rss_mib() -> float:
    """Peak resident memory of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def _complete(checkpoint: Path) -> bool:
    """The Trainer writes trainer_state.json last (and not atomically): a checkpoint whose
    state file is missing or does not parse was cut off by a kill."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def last_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete checkpoint-N; half-written ones (a kill during a save) are removed."""
    from transformers.trainer_utils import get_last_checkpoint

    while checkpoint_dir.is_dir():
        found = get_last_checkpoint(str(checkpoint_dir))
        if not found:
            return None
        if _complete(Path(found)):
            return Path(found)
        log.warning("%s is incomplete (killed while saving?); removing it", found)
        shutil.rmtree(found)
    return None


def run_fingerprint(params: TrainParams, data_hash: str, base_dir: Path, prompt: Prompt) -> str:
    """What a checkpoint must match to be resumed: params, data, the base model's files (its
    weights too: a rebuilt base with the same config must not resume an old adapter), prompt."""
    payload = {
        "params": params.model_dump(mode="json", exclude={"mlflow_experiment", "report_to"}),
        "dataset": data_hash,
        "base": folder_digest(base_dir) if base_dir.is_dir() else str(base_dir),
        "prompt": prompt.fingerprint() if hasattr(prompt, "fingerprint") else prompt,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def folder_digest(folder: Path) -> str:
    """sha256 over a folder's file names and contents (~0.5 s for the 550 MB embedded base)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def resumable_checkpoint(checkpoint_dir: Path, fingerprint: str) -> Path | None:
    """The last checkpoint when it belongs to this run; stale checkpoints are removed."""
    marker = checkpoint_dir / FINGERPRINT_FILE
    checkpoint = last_checkpoint(checkpoint_dir)
    stored = marker.read_text(encoding="utf-8").strip() if marker.exists() else None
    if checkpoint is not None and stored != fingerprint:
        log.warning(
            "%s: checkpoints were made with other params, data, base or prompt; starting over",
            checkpoint_dir,
        )
        shutil.rmtree(checkpoint_dir)
        checkpoint = None
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(fingerprint + "\n", encoding="utf-8")
    return checkpoint


def checkpoint_step(checkpoint: Path) -> int:
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    return int(state["global_step"])


def loss_history(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-step rows {step, loss, eval_loss} from the Trainer's log history (None where absent)."""
    rows: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        step = int(entry.get("step", 0))
        for key in ("loss", "eval_loss"):
            if key in entry:
                row = rows.setdefault(step, {"step": step, "loss": None, "eval_loss": None})
                row[key] = float(entry[key])
    return [rows[step] for step in sorted(rows)]


@contextlib.contextmanager
def _environ(**values: str | None) -> Iterator[None]:
    """Set (or unset, with None) environment variables for the duration of the block."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ----------------------------------------------------------------------------- model


def load_trainable(base_dir: Path, params: TrainParams) -> tuple[Any, Any]:
    """Base student with a fresh LoRA adapter (4-bit base when qlora, CUDA only)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoProcessor, Idefics3ForConditionalGeneration

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if params.qlora:
        kwargs = _qlora_kwargs()
    model = Idefics3ForConditionalGeneration.from_pretrained(base_dir, **kwargs)
    processor = AutoProcessor.from_pretrained(base_dir)
    model.config.use_cache = False
    if params.qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=params.gradient_checkpointing
        )
    config = LoraConfig(
        r=params.lora.r,
        lora_alpha=params.lora.alpha,
        lora_dropout=params.lora.dropout,
        target_modules=params.lora.target_regex(),
        modules_to_save=[CONNECTOR] if params.lora.train_connector else None,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    if params.gradient_checkpointing:
        model.enable_input_require_grads()
    return model, processor


def _qlora_kwargs() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(
            "train.qlora: 4-bit QLoRA needs a CUDA GPU; set train.qlora: false on CPU"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise RuntimeError("train.qlora: the bitsandbytes package is not installed") from exc
    return qlora_kwargs()


def training_arguments(
    checkpoint_dir: Path, params: TrainParams, run_name: str, evaluate: bool = True
) -> Any:
    import torch
    from transformers import TrainingArguments

    reports = [r for r in params.report_to if r != "none"]
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        run_name=run_name,
        learning_rate=params.learning_rate,
        lr_scheduler_type=params.lr_scheduler_type,
        warmup_steps=params.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio
        num_train_epochs=params.num_train_epochs,
        max_steps=params.max_steps,
        per_device_train_batch_size=params.per_device_train_batch_size,
        per_device_eval_batch_size=params.per_device_eval_batch_size,
        gradient_accumulation_steps=params.gradient_accumulation_steps,
        weight_decay=params.weight_decay,
        neftune_noise_alpha=params.neftune_noise_alpha,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=params.eval_steps,
        load_best_model_at_end=evaluate,  # the step count is chosen by validation loss
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        save_strategy="steps",
        save_steps=params.save_steps,
        save_total_limit=params.save_total_limit,
        logging_strategy="steps",
        logging_steps=params.logging_steps,
        bf16=use_bf16(params.bf16),
        use_cpu=not torch.cuda.is_available(),
        activation_checkpointing=params.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False}
        if params.gradient_checkpointing
        else None,
        seed=params.seed,
        data_seed=params.seed,
        report_to=reports or "none",
        remove_unused_columns=False,
        label_names=["labels"],
        prediction_loss_only=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=False,
    )


# ----------------------------------------------------------------------------- MLflow


@contextlib.contextmanager
def mlflow_run(
    enabled: bool, params: TrainParams, checkpoint_dir: Path, resuming: bool, tags: dict[str, str]
) -> Iterator[Any]:
    """An active MLflow run for the Trainer's callback to log into (resumed with the checkpoints).

    Yields the mlflow module, or None when MLflow reporting is off.
    """
    if not enabled:
        yield None
        return
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri())
    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or params.mlflow_experiment
    mlflow.set_experiment(experiment)
    run_file = checkpoint_dir / MLFLOW_RUN_FILE
    run_id = (
        run_file.read_text(encoding="utf-8").strip() if resuming and run_file.exists() else None
    )
    run_id = run_id or os.environ.get("MLFLOW_RUN_ID") or None
    with (
        _environ(MLFLOW_RUN_ID=None, MLFLOW_EXPERIMENT_NAME=experiment),
        mlflow.start_run(run_id=run_id, run_name=tags.get("variant")) as run,
    ):
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        run_file.write_text(run.info.run_id + "\n", encoding="utf-8")
        mlflow.set_tags(tags)
        yield mlflow


# ----------------------------------------------------------------------------- training


class TooFewSamples(ParamsError):
    """Too few training samples fit train.max_length: a params problem, shown as one line."""


def fit_splits(data: Any, processor: Any, prompt: Prompt, params: TrainParams) -> tuple[Any, Any]:
    """Drop the train and validation samples that do not fit max_length whole (one reason each);
    fail with one line when fewer than min_kept_fraction of train, or no validation, remain."""
    dropped: list[dict[str, Any]] = []
    for split in [s for s in ("train", "validation") if s in data]:
        total = len(data[split])
        data[split], gone = fit_max_length(data[split], processor, prompt, params.max_length, split)
        dropped.extend(gone)
        kept = len(data[split])
        needed = 1 if split == "validation" else max(1, math.ceil(params.min_kept_fraction * total))
        if kept < needed:
            longest = max(item["tokens"] for item in gone)
            raise TooFewSamples(
                f"only {kept} of {total} {split} samples fit train.max_length "
                f"{params.max_length} (need {needed}; the longest has {longest} tokens): raise "
                "train.max_length or lower student.longest_edge"
            )
    return data, dropped


def data_counts(data: Any, dropped: list[dict[str, Any]]) -> dict[str, Any]:
    """Kept and dropped sample counts per split, and each dropped item with its reason."""
    counts: dict[str, Any] = {}
    for split in ("train", "validation"):
        counts[f"{split}_samples"] = len(data[split]) if split in data else 0
        counts[f"{split}_dropped_too_long"] = sum(1 for d in dropped if d["split"] == split)
    counts["dropped"] = dropped
    return counts


def trainable_parts(model: Any) -> dict[str, int]:
    """Trainable parameters by part of the student: text LoRA, vision LoRA, connector."""
    parts = {"trainable_text": 0, "trainable_vision": 0, "trainable_connector": 0}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if f".{CONNECTOR}." in name:
            parts["trainable_connector"] += param.numel()
        elif ".vision_model." in name:
            parts["trainable_vision"] += param.numel()
        else:
            parts["trainable_text"] += param.numel()
    return parts


def adapter_mib(out_dir: Path) -> float:
    """Size of the saved adapter weights."""
    files = list(out_dir.glob("adapter_model*.safetensors"))
    return round(sum(f.stat().st_size for f in files) / 2**20, 2)


def train_variant(
    variant: str,
    dataset_dir: Path,
    base_dir: Path,
    out_dir: Path,
    checkpoint_dir: Path,
    params: TrainParams,
    prompt: Prompt,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """LoRA-train the student on one dataset variant; save adapter + processor to out_dir.

    Resumes from the last checkpoint in checkpoint_dir when there is one. Returns metrics
    (train/eval loss, steps, samples/s, peak memory, resumed_from_step) and "history".
    """
    import torch
    from transformers import Trainer, set_seed

    data = load_splits(dataset_dir)
    set_seed(params.seed)
    model, processor = load_trainable(base_dir, params)
    trainable, total = model.get_nb_trainable_parameters()
    log.info("%s: %d trainable of %d parameters", variant, trainable, total)
    data, dropped = fit_splits(data, processor, prompt, params)
    data_hash = dataset_hash(dataset_dir)
    fingerprint = run_fingerprint(params, data_hash, base_dir, prompt)
    checkpoint = resumable_checkpoint(checkpoint_dir, fingerprint)
    resumed_from = checkpoint_step(checkpoint) if checkpoint else 0
    if checkpoint:
        log.info("%s: resuming from %s (step %d)", variant, checkpoint, resumed_from)
    tags = {
        "variant": variant,
        "git_commit": git_commit(),
        "dataset_hash": data_hash,
        "dvc_exp_name": os.environ.get("DVC_EXP_NAME", ""),
        "base_model": str(base_dir),
    }
    trainer = Trainer(
        model=model,
        args=training_arguments(checkpoint_dir, params, variant, "validation" in data),
        train_dataset=data["train"],
        eval_dataset=data.get("validation"),
        data_collator=make_collator(processor, prompt, params.max_length),
        callbacks=list(callbacks),
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    enabled = "mlflow" in params.report_to
    with mlflow_run(enabled, params, checkpoint_dir, checkpoint is not None, tags) as mlflow:
        output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        eval_metrics = final_eval(trainer)
        save_student(model, processor, out_dir)  # the adapter only, as peft saves it
        metrics = _metrics(output, eval_metrics, trainer, resumed_from, trainable)
        metrics.update(trainable_parts(model))
        metrics.update(data_counts(data, dropped))
        metrics["adapter_mib"] = adapter_mib(out_dir)
        if mlflow is not None:
            mlflow.log_metrics(
                {k: v for k, v in metrics.items() if isinstance(v, int | float) and v is not None}
            )
            mlflow.log_artifacts(str(out_dir), artifact_path="adapter")
            mlflow.log_dict({"dropped": dropped}, "dropped_samples.json")
            metrics["mlflow_run_id"] = mlflow.active_run().info.run_id
    metrics["history"] = loss_history(trainer.state.log_history)
    return metrics


def final_eval(trainer: Any) -> dict[str, float]:
    """Eval loss and step of the adapter kept: the checkpoint with the lowest validation loss,
    which the Trainer loaded at the end (it evaluates and saves the last step too). None
    without a validation split."""
    if trainer.eval_dataset is None or trainer.state.best_metric is None:
        return {}
    return {
        "eval_loss": float(trainer.state.best_metric),
        "best_step": int(trainer.state.best_global_step),
    }


def _metrics(
    output: Any, eval_metrics: dict[str, float], trainer: Any, resumed_from: int, trainable: int
) -> dict[str, Any]:
    import torch

    history = loss_history(trainer.state.log_history)
    train_losses = [row["loss"] for row in history if row["loss"] is not None]
    metrics: dict[str, Any] = {
        "train_loss": train_losses[-1] if train_losses else float(output.training_loss),
        "train_loss_mean": float(output.training_loss),
        "eval_loss": float(eval_metrics["eval_loss"]) if eval_metrics else None,
        "best_step": eval_metrics.get("best_step"),  # the adapter kept (lowest eval_loss)
        "steps": int(trainer.state.global_step),
        "resumed_from_step": resumed_from,
        "train_samples_per_second": float(output.metrics.get("train_samples_per_second", 0.0)),
        "train_runtime_s": float(output.metrics.get("train_runtime", 0.0)),
        "trainable_params": int(trainable),
        "peak_rss_mib": peak_rss_mib(),
        "dtype": "bfloat16" if trainer.args.bf16 else "float32",  # train.bf16 as resolved
    }
    if torch.cuda.is_available():
        metrics["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return metrics
