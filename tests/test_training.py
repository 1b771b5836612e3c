"""LoRA training (labels, weights, resume, MLflow) and batched generation on the tiny student."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from safetensors.torch import load_file
from transformers import TrainerCallback

from chartdistill.config import ParamsError, parse_section
from chartdistill.student.generation import GenerationParams, generate_essays, load_for_inference
from chartdistill.student.model import END_OF_UTTERANCE, load_student
from chartdistill.student.training import (
    IGNORE_INDEX,
    LoraParams,
    TooFewSamples,
    TrainParams,
    dataset_hash,
    fit_max_length,
    fit_splits,
    load_splits,
    loss_history,
    make_collator,
    run_fingerprint,
    sample_length,
    train_variant,
)
from tests.test_student import chart_image, tiny_student_dir

PROMPT = "Write an IELTS Task 1 essay about this chart."
ESSAYS = [
    "The bar chart compares sales in four regions. North sold the most, at 40 units.",
    "The line graph shows prices from 2010 to 2020. They rose steadily overall.",
    "The pie chart shows energy sources. Coal accounts for 45 percent of the total.",
    "The table lists student numbers. Engineering is the largest faculty by far.",
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_student_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One sqlite tracking DB for the session (a fresh one costs seconds)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_DISABLE_TELEMETRY")}
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    yield uri
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def write_split(path: Path, n: int, offset: int) -> None:
    from datasets import Dataset

    from chartdistill.dataset.build import dataset_features

    rows = {
        "id": [f"c{offset + i}" for i in range(n)],
        "chart_type": ["bar"] * n,
        "title": [f"Chart {offset + i}" for i in range(n)],
        "image": [chart_image(448 - 32 * (i % 3), 336) for i in range(n)],
        "text": [ESSAYS[(offset + i) % len(ESSAYS)] for i in range(n)],
        "teacher_model": ["stub"] * n,
        "prompt_hash": ["h"] * n,
    }
    features = dataset_features()
    for name in features:  # any further text column of the contract: empty
        rows.setdefault(name, [""] * n)
    Dataset.from_dict(rows, features=features).to_parquet(str(path))


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dataset")
    for split, n, offset in (("train", 8, 0), ("validation", 2, 100), ("test", 2, 200)):
        write_split(path / f"{split}.parquet", n, offset)
    return path


def small_params(**overrides: Any) -> TrainParams:
    base = {
        "lora": LoraParams(r=4, alpha=8, dropout=0.0, train_connector=True),
        "learning_rate": 5e-3,
        "max_steps": 4,
        "per_device_train_batch_size": 2,
        "per_device_eval_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "eval_steps": 2,
        "save_steps": 2,
        "logging_steps": 1,
        "max_length": 512,
        "bf16": False,
        "mlflow_experiment": "test-chartdistill",
    }
    return TrainParams(**{**base, **overrides})


class Snapshot(TrainerCallback):
    """Copies of the trainable model's weights at train begin and end."""

    def __init__(self) -> None:
        self.before: dict[str, Any] = {}
        self.after: dict[str, Any] = {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
        self.before = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def on_train_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
        self.after = {k: v.detach().clone() for k, v in model.state_dict().items()}


class CrashAfterFirstSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
        raise KeyboardInterrupt(f"killed after the checkpoint at step {state.global_step}")


def test_collator_labels_only_the_essay_and_end_token(tiny_dir: Path, dataset_dir: Path) -> None:
    _, processor = load_student(tiny_dir)
    rows = list(load_splits(dataset_dir)["train"].select(range(3)))
    batch = make_collator(processor, PROMPT)(rows)
    labels, ids = batch["labels"], batch["input_ids"]
    assert labels.shape == ids.shape
    assert batch["pixel_values"].shape[:2] == (3, 5)
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert not ((ids == image_id) & (labels != IGNORE_INDEX)).any()
    assert not ((batch["attention_mask"] == 0) & (labels != IGNORE_INDEX)).any()
    for i, row in enumerate(rows):
        kept = labels[i][labels[i] != IGNORE_INDEX].tolist()
        assert processor.tokenizer.decode(kept).strip() == row["text"] + END_OF_UTTERANCE
        positions = (labels[i] != IGNORE_INDEX).nonzero().flatten()
        assert positions.tolist() == list(range(int(positions[0]), int(positions[-1]) + 1))
        assert (labels[i][positions] == ids[i][positions]).all()


def test_logits_only_at_label_positions_give_the_same_loss(
    tiny_dir: Path, dataset_dir: Path
) -> None:
    import torch

    model, processor = load_student(tiny_dir)
    rows = list(load_splits(dataset_dir)["train"].select(range(3)))
    batch = make_collator(processor, PROMPT)(rows)
    every = {k: v for k, v in batch.items() if k not in ("logits_to_keep", "shift_labels")}
    with torch.no_grad():
        kept, full = model(**batch), model(**every)
    predicting = batch["labels"][:, 1:] != IGNORE_INDEX
    assert kept.logits.shape == (int(predicting.sum()), full.logits.shape[-1])
    torch.testing.assert_close(kept.logits, full.logits[:, :-1][predicting])
    torch.testing.assert_close(kept.loss, full.loss)


def test_collator_never_truncates(tiny_dir: Path, dataset_dir: Path) -> None:
    _, processor = load_student(tiny_dir)
    rows = list(load_splits(dataset_dir)["train"].select(range(2)))
    full = make_collator(processor, PROMPT)(rows)
    longest = int(full["attention_mask"].sum(dim=1).max())
    fits = make_collator(processor, PROMPT, max_length=longest)(rows)
    assert fits["input_ids"].shape == full["input_ids"].shape
    with pytest.raises(ValueError, match=r"item c\d: \d+ tokens exceed max_length"):
        make_collator(processor, PROMPT, max_length=longest - 1)(rows)


def test_samples_too_long_are_dropped_with_a_reason_never_cut(
    tiny_dir: Path, dataset_dir: Path
) -> None:
    _, processor = load_student(tiny_dir)
    train = load_splits(dataset_dir)["train"]
    lengths = [sample_length(processor, PROMPT, row)[0] for row in train]
    collated = make_collator(processor, PROMPT)(list(train))
    assert lengths == collated["attention_mask"].sum(dim=1).tolist()
    limit = sorted(lengths)[len(lengths) // 2]
    kept, dropped = fit_max_length(train, processor, PROMPT, limit, "train")
    assert len(kept) == sum(n <= limit for n in lengths) and len(kept) + len(dropped) == len(train)
    too_long = {row["id"] for row, n in zip(train, lengths, strict=True) if n > limit}
    assert too_long and {d["id"] for d in dropped} == too_long
    assert all(f"exceed train.max_length {limit}" in d["reason"] for d in dropped)
    batch = make_collator(processor, PROMPT, max_length=limit)(list(kept))
    eou = processor.tokenizer.convert_tokens_to_ids(END_OF_UTTERANCE)
    for i in range(len(kept)):
        labelled = batch["labels"][i][batch["labels"][i] != IGNORE_INDEX]
        assert labelled[-1] == eou

    data = load_splits(dataset_dir)
    with pytest.raises(TooFewSamples, match=r"only \d+ of 8 train samples fit train.max_length"):
        fit_splits(data, processor, PROMPT, small_params(max_length=min(lengths) - 1))


def test_load_splits_names_missing_columns(tmp_path: Path) -> None:
    from datasets import Dataset

    for split in ("train", "validation", "test"):
        Dataset.from_dict({"id": ["a"], "text": ["x"]}).to_parquet(
            str(tmp_path / f"{split}.parquet")
        )
    with pytest.raises(ValueError, match=r"train.parquet: missing column\(s\) \['chart_type'"):
        load_splits(tmp_path)
    (tmp_path / "train.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="train.parquet"):
        load_splits(tmp_path)


def test_training_without_a_validation_split_runs_without_eval(
    tiny_dir: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    """A teacher that accepts very few essays leaves no validation split: training still runs,
    with no eval loss (and says so), instead of failing the pipeline."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.parquet").write_bytes((dataset_dir / "train.parquet").read_bytes())
    metrics = train_variant(
        "structured", data, tiny_dir, tmp_path / "out", tmp_path / "ckpt",
        small_params(max_steps=2, report_to=[]), PROMPT,
    )  # fmt: skip
    assert metrics["steps"] == 2 and metrics["eval_loss"] is None
    assert metrics["validation_samples"] == 0 and metrics["train_samples"] == 8
    assert all(row["eval_loss"] is None for row in metrics["history"])


def test_neftune_noise_is_on_the_text_embeddings_while_training(
    tiny_dir: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    class Probe(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
            embeddings = model.get_input_embeddings()
            seen["alpha"] = getattr(embeddings, "neftune_noise_alpha", None)
            seen["training"] = embeddings.training

    train_variant(
        "structured", dataset_dir, tiny_dir, tmp_path / "out", tmp_path / "ckpt",
        small_params(max_steps=1, neftune_noise_alpha=5.0, report_to=[]), PROMPT,
        callbacks=[Probe()],
    )  # fmt: skip
    assert seen == {"alpha": 5.0, "training": True}


def test_train_params_reject_bad_values() -> None:
    with pytest.raises(ParamsError, match="max_steps"):
        parse_section("train", TrainParams, {"max_steps": 0})
    with pytest.raises(ParamsError, match="train.bf16"):
        parse_section("train", TrainParams, {"bf16": "sometimes"})
    with pytest.raises(ParamsError, match="train.lora.rank"):
        parse_section("train", TrainParams, {"lora": {"rank": 8}})
    with pytest.raises(ParamsError, match="save_steps must be a multiple of eval_steps"):
        parse_section("train", TrainParams, {"save_steps": 5, "eval_steps": 2})


def test_qlora_on_cpu_is_a_clear_error(tiny_dir: Path, dataset_dir: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present: 4-bit loading is allowed here")
    with pytest.raises(RuntimeError, match="qlora: 4-bit QLoRA needs a CUDA GPU"):
        train_variant(
            "structured", dataset_dir, tiny_dir, tmp_path / "out", tmp_path / "ckpt",
            small_params(qlora=True), PROMPT,
        )  # fmt: skip


def test_training_updates_lora_only_and_records_mlflow(
    tiny_dir: Path, dataset_dir: Path, tmp_path: Path, mlflow_uri: str
) -> None:
    from mlflow.tracking import MlflowClient

    snapshot = Snapshot()
    out = tmp_path / "adapter"
    metrics = train_variant(
        "structured", dataset_dir, tiny_dir, out, tmp_path / "ckpt",
        small_params(), PROMPT, callbacks=[snapshot],
    )  # fmt: skip
    assert metrics["steps"] == 4 and metrics["resumed_from_step"] == 0
    assert metrics["eval_loss"] > 0 and metrics["train_loss"] > 0
    assert metrics["peak_rss_mib"] > 0 and metrics["train_samples_per_second"] > 0
    assert [row["step"] for row in metrics["history"] if row["loss"] is not None] == [1, 2, 3, 4]
    evals = {row["step"]: row["eval_loss"] for row in metrics["history"] if row["eval_loss"]}
    assert list(evals) == [2, 4]
    # The adapter kept is the step with the lowest validation loss, and its loss is reported.
    assert metrics["eval_loss"] == pytest.approx(min(evals.values()))
    assert evals[metrics["best_step"]] == pytest.approx(metrics["eval_loss"])

    lora = [k for k in snapshot.before if "lora_" in k]
    saved = [k for k in snapshot.before if "modules_to_save" in k]
    frozen = [k for k in snapshot.before if k not in lora and k not in saved]
    assert lora and saved and frozen
    assert any(not snapshot.before[k].equal(snapshot.after[k]) for k in lora if "lora_B" in k)
    assert any(not snapshot.before[k].equal(snapshot.after[k]) for k in saved)
    assert all(snapshot.before[k].equal(snapshot.after[k]) for k in frozen)
    assert not any("vision_model" in k for k in lora)  # text-model attention only by default
    parts = {k: metrics[k] for k in ("trainable_text", "trainable_vision", "trainable_connector")}
    assert parts["trainable_vision"] == 0 and parts["trainable_text"] > 0
    assert parts["trainable_connector"] > 0  # train_connector=True in small_params
    assert sum(parts.values()) == metrics["trainable_params"]
    assert metrics["adapter_mib"] > 0
    assert metrics["train_samples"] == 8 and metrics["train_dropped_too_long"] == 0
    assert metrics["validation_samples"] == 2 and metrics["dropped"] == []

    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    assert (out / "processor_config.json").exists()
    best = load_file(tmp_path / f"ckpt/checkpoint-{metrics['best_step']}/adapter_model.safetensors")
    kept = load_file(out / "adapter_model.safetensors")
    assert best.keys() == kept.keys() and all(best[k].equal(kept[k]) for k in best)

    client = MlflowClient(tracking_uri=mlflow_uri)
    run = client.get_run(metrics["mlflow_run_id"])
    assert run.data.tags["variant"] == "structured"
    assert run.data.tags["dataset_hash"] == dataset_hash(dataset_dir)
    assert "git_commit" in run.data.tags
    assert float(run.data.params["learning_rate"]) == pytest.approx(5e-3)
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 4
    assert run.data.metrics["trainable_params"] == metrics["trainable_params"]
    assert run.data.metrics["adapter_mib"] == metrics["adapter_mib"]
    assert client.get_metric_history(run.info.run_id, "eval_loss")
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "adapter")]
    assert "adapter/adapter_config.json" in artifacts

    model, processor = load_for_inference(tiny_dir, out)
    [essay] = generate_essays(
        model, processor, [chart_image()], [PROMPT], GenerationParams(max_new_tokens=4)
    )
    assert isinstance(essay.text, str) and essay.seconds > 0
    assert 1 <= essay.new_tokens <= 4 and essay.prompt_tokens > 4


def test_a_killed_run_resumes_from_its_checkpoint(
    tiny_dir: Path, dataset_dir: Path, tmp_path: Path, mlflow_uri: str
) -> None:
    ckpt = tmp_path / "ckpt"
    args = ("unstructured", dataset_dir, tiny_dir, tmp_path / "adapter", ckpt, small_params())
    with pytest.raises(KeyboardInterrupt, match="step 2"):
        train_variant(*args, PROMPT, callbacks=[CrashAfterFirstSave()])
    assert (ckpt / "checkpoint-2").is_dir()
    first_run = (ckpt / "mlflow_run_id.txt").read_text().strip()
    metrics = train_variant(*args, PROMPT)
    assert metrics["resumed_from_step"] == 2
    assert metrics["steps"] == 4
    assert [row["step"] for row in metrics["history"] if row["loss"] is not None] == [1, 2, 3, 4]
    assert metrics["mlflow_run_id"] == first_run

    finished = train_variant(*args, PROMPT)
    assert finished["resumed_from_step"] == 4 and finished["steps"] == 4
    changed = train_variant(*args[:-1], small_params(bf16=True), PROMPT)
    assert changed["resumed_from_step"] == 0 and changed["steps"] == 4
    assert changed["mlflow_run_id"] != first_run


def test_a_rebuilt_base_with_the_same_config_does_not_resume_old_checkpoints(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """Rebuilding the base (other weights, same config.json) changes the run's fingerprint, so
    the next run starts over instead of resuming an adapter trained on the old weights."""
    import shutil

    from safetensors.torch import load_file, save_file

    base = shutil.copytree(tiny_dir, tmp_path / "base")
    before = run_fingerprint(small_params(), "data", base, PROMPT)
    weights = base / "model.safetensors"
    tensors = load_file(weights)
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1.0
    save_file(tensors, weights, metadata={"format": "pt"})
    assert (base / "config.json").read_bytes() == (tiny_dir / "config.json").read_bytes()
    assert run_fingerprint(small_params(), "data", base, PROMPT) != before


def test_loss_history_merges_train_and_eval_rows() -> None:
    logs = [
        {"step": 1, "loss": 2.0},
        {"step": 2, "loss": 1.5},
        {"step": 2, "eval_loss": 1.7},
        {"step": 2, "train_runtime": 3.0},
    ]
    assert loss_history(logs) == [
        {"step": 1, "loss": 2.0, "eval_loss": None},
        {"step": 2, "loss": 1.5, "eval_loss": 1.7},
    ]


def test_batched_generation_matches_one_at_a_time(tiny_dir: Path) -> None:
    model, processor = load_for_inference(tiny_dir, None, "float32")
    images = [chart_image(448, 336), chart_image(300, 336), chart_image(448, 200)]
    prompts = [PROMPT, "Summarise the chart.", PROMPT + " Use about 150 words."]
    # The random tiny student repeats the prompt's last token (a newline) unless that token is
    # penalised: at 2.0 its rows write different words, so the comparison below has teeth.
    params = GenerationParams(max_new_tokens=6, batch_size=3, repetition_penalty=2.0)
    batched = generate_essays(model, processor, images, prompts, params)
    single = generate_essays(
        model, processor, images, prompts, params.model_copy(update={"batch_size": 1})
    )
    assert len(batched) == 3
    assert all(isinstance(e.text, str) and e.seconds > 0 for e in batched)
    assert [e.text for e in batched] == [e.text for e in single]
    # padding is not counted: each row prefills what it would prefill alone
    assert [e.prompt_tokens for e in batched] == [e.prompt_tokens for e in single]
    assert [e.new_tokens for e in batched] == [e.new_tokens for e in single]
    assert all(e.text for e in batched) and len({e.text for e in batched}) > 1


def test_generation_checks_its_inputs(tiny_dir: Path) -> None:
    model, processor = load_student(tiny_dir)
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        generate_essays(model, processor, [chart_image()] * 2, [PROMPT], GenerationParams())
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_for_inference(tiny_dir, tiny_dir)
    _ = Image  # PIL is the image type the API takes
