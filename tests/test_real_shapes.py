"""SmolVLM students at their real shapes, offline: SmolVLM-256M built from its exact
config with random weights, the hub's processor settings and the offline tokenizer; the 2.2B's
tile and token arithmetic from its processor settings (no model built)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from chartdistill.student.generation import (
    GenerationParams,
    decode_turns,
    generate_batch,
    load_for_inference,
)
from chartdistill.student.model import END_OF_UTTERANCE, StudentParams, build_base_student
from chartdistill.student.shapes import (
    PARAMS_256M,
    build_256m,
    processor_2b,
    processor_256m,
    write_hub_folder,
)
from chartdistill.student.training import (
    IGNORE_INDEX,
    LoraParams,
    TrainParams,
    chat_messages,
    fit_max_length,
    load_trainable,
    make_collator,
    sample_length,
    train_variant,
)
from harness.fake_teacher import reply
from harness.stub_server import StubServer
from tests.conftest import TINY_PROFILE, copy_project, point_llms_at
from tests.test_training import write_split

PROMPT = "Write an IELTS Academic Task 1 essay describing this chart."
EOU = 49279
SENTENCE = (
    "In 2015 the share of households with broadband rose from 42.5% to 67.3%, while "
    "spending on mobile data reached $1,250 per year in the North region."
)
# Default LoRA (r=16 on every linear layer of the text model): per layer q and o 16*(576+576),
# k and v 16*(576+192), MLP gate, up and down 16*(576+1536); 30 layers.
TEXT_LORA_256M = 30 * 16 * ((576 + 576) * 2 + (576 + 192) * 2 + (576 + 1536) * 3)
CONNECTOR_256M = 768 * 16 * 576


def essay_of(words: int) -> str:
    sentence = SENTENCE.split()
    return " ".join(sentence[i % len(sentence)] for i in range(words))


def chart(width: int = 448, height: int = 336) -> Image.Image:
    image = Image.new("RGB", (width, height), "white")
    for x in range(40, width - 40, 60):
        image.paste((30, 90, 200), (x, height // 3, x + 30, height - 30))
    return image


def expanded(processor: Any, width: int, height: int) -> tuple[int, int, int]:
    """(tiles, <image> tokens, prompt tokens) of the generation prompt for one chart."""
    text = processor.apply_chat_template(chat_messages(PROMPT), add_generation_prompt=True)
    batch = processor(text=[text], images=[[chart(width, height)]])
    ids = batch["input_ids"][0]
    return len(batch["pixel_values"][0]), ids.count(processor.image_token_id), len(ids)


@pytest.fixture(scope="module")
def proc256() -> Any:
    return processor_256m()


@pytest.fixture(scope="module")
def model_256m() -> Any:
    return build_256m()


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory: pytest.TempPathFactory, model_256m: Any, proc256: Any) -> Path:
    """The random 256M laid out like the hub repository (bf16 safetensors, eos 2)."""
    return write_hub_folder(model_256m, proc256, tmp_path_factory.mktemp("SmolVLM-256M-Instruct"))


@pytest.fixture(scope="module")
def one_tile_dir(tmp_path_factory: pytest.TempPathFactory, hub_dir: Path) -> Path:
    """base_student's build from the local folder, at a one-tile budget."""
    params = StudentParams(base=str(hub_dir), longest_edge=512)
    return build_base_student(params, tmp_path_factory.mktemp("base") / "base")


def test_offline_processor_has_the_hub_settings(proc256: Any) -> None:
    image_processor = proc256.image_processor
    assert image_processor.size == {"longest_edge": 2048}
    assert image_processor.max_image_size == {"longest_edge": 512}
    assert image_processor.do_image_splitting and image_processor.resample == Image.LANCZOS
    assert list(image_processor.image_mean) == list(image_processor.image_std) == [0.5] * 3
    assert proc256.image_seq_len == 64 and len(proc256.tokenizer) == 49280
    assert proc256.image_token_id == 49190


@pytest.mark.parametrize(
    ("longest_edge", "size", "tiles", "image_tokens", "prompt"),
    [
        (2048, (448, 336), 13, 832, 882),  # the hub's own budget (what the defaults did)
        (2048, (600, 600), 17, 1088, 1147),
        ("auto", (448, 336), 5, 320, 353),  # student.longest_edge auto: 2 x 512 px
        ("auto", (600, 600), 5, 320, 353),
        (512, (448, 336), 1, 64, 87),  # one tile
    ],
)
def test_256m_tiles_and_tokens(
    proc256: Any, tmp_path: Path, longest_edge: Any, size: tuple, tiles: int, image_tokens: int,
    prompt: int,
) -> None:  # fmt: skip
    budget = StudentParams(base=str(tmp_path), longest_edge=longest_edge).image_longest_edge(512)
    proc256.image_processor.size = {"longest_edge": budget}
    assert expanded(proc256, *size) == (tiles, image_tokens, prompt)


@pytest.mark.parametrize(
    ("longest_edge", "size", "tiles", "image_tokens", "prompt"),
    [
        (1536, (448, 336), 13, 1053, 1203),  # the 2.2B hub budget: every item > 1024 tokens
        (1536, (600, 600), 17, 1377, 1568),
        ("auto", (448, 336), 5, 405, 474),  # student.longest_edge auto: 2 x 384 px
        ("auto", (600, 600), 5, 405, 474),
    ],
)
def test_2b_tiles_and_tokens_without_building_it(
    tmp_path: Path, longest_edge: Any, size: tuple, tiles: int, image_tokens: int, prompt: int
) -> None:
    budget = StudentParams(base=str(tmp_path), longest_edge=longest_edge).image_longest_edge(384)
    processor = processor_2b(budget)
    assert processor.image_token_id == 49153 and processor.image_seq_len == 81
    # Its tokenizer has no tile tags: <row_1_col_1> is plain text, several tokens.
    assert len(processor.tokenizer("<row_1_col_1>", add_special_tokens=False)["input_ids"]) > 1
    assert expanded(processor, *size) == (tiles, image_tokens, prompt)
    # At the auto budget a 300-word essay (~1.7 tokens a word) fits train.max_length 1024.
    if longest_edge == "auto":
        assert prompt + int(300 * 1.7) + 1 <= TrainParams().max_length


def test_a_250_word_essay_keeps_its_end_of_turn_label(proc256: Any, tmp_path: Path) -> None:
    rows = [{"id": "e250", "image": chart(), "text": essay_of(250)}]
    proc256.image_processor.size = {"longest_edge": StudentParams(base=str(tmp_path))
                                    .image_longest_edge(512)}  # fmt: skip
    tokens, essay_tokens = sample_length(proc256, PROMPT, rows[0])
    assert 353 + essay_tokens <= tokens <= TrainParams().max_length
    kept, dropped = fit_max_length(rows, proc256, PROMPT, TrainParams().max_length, "train")
    assert len(kept) == 1 and dropped == []
    batch = make_collator(proc256, PROMPT, TrainParams().max_length)(rows)
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    positions = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
    assert len(positions) == essay_tokens
    assert positions == list(range(positions[0], positions[-1] + 1))
    assert labels[positions[-1]] == ids[positions[-1]] == EOU
    assert positions[-1] == len(ids) - 2  # the template's "\n" follows the end of turn
    assert ids[: positions[0]].count(49190) == 320  # no label inside the prompt or the image
    assert proc256.tokenizer.decode([ids[i] for i in positions[:-1]]).strip() == essay_of(250)

    # At the hub's budget (13 tiles) the same sample does not fit: dropped, never cut.
    proc256.image_processor.size = {"longest_edge": 2048}
    kept, dropped = fit_max_length(rows, proc256, PROMPT, TrainParams().max_length, "train")
    assert kept == [] and dropped[0]["id"] == "e250"
    assert re.fullmatch(
        r"\d+ tokens \(8\d\d prompt and image, \d+ essay and end of turn\) exceed "
        r"train.max_length 1024",
        dropped[0]["reason"],
    )


def test_decode_cuts_at_the_first_end_of_turn_or_eos(proc256: Any) -> None:
    tokenizer = proc256.tokenizer
    words = tokenizer("The chart rose", add_special_tokens=False)["input_ids"]
    stops = [EOU, tokenizer.eos_token_id]
    rows = [[*words, EOU, *words], [words[0], tokenizer.eos_token_id, *words], words]
    assert decode_turns(tokenizer, rows, stops) == ["The chart rose", "The", "The chart rose"]


@pytest.mark.slow
def test_256m_has_the_real_parameter_count(model_256m: Any) -> None:
    parts: dict[str, int] = {}
    for name, param in model_256m.named_parameters():
        part = name.split(".")[1] if name.startswith("model.") else name.split(".")[0]
        parts[part] = parts.get(part, 0) + param.numel()
    assert sum(parts.values()) == PARAMS_256M
    assert parts["connector"] == CONNECTOR_256M
    assert parts["lm_head"] == 49280 * 576
    assert 86_000_000 < parts["vision_model"] < 87_000_000
    assert 134_000_000 < parts["text_model"] < 135_000_000


@pytest.mark.slow
def test_base_student_applies_the_budget_and_stop_tokens_to_a_local_folder(
    one_tile_dir: Path, hub_dir: Path
) -> None:
    hub = json.loads((hub_dir / "generation_config.json").read_text())
    assert hub["eos_token_id"] == 2  # the early hub revision
    processor = json.loads((one_tile_dir / "processor_config.json").read_text())
    size = processor.get("image_processor", processor)["size"]
    assert size == {"longest_edge": 512}
    generation = json.loads((one_tile_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [EOU, 2]


@pytest.mark.slow
def test_lora_targets_resolve_only_where_intended(one_tile_dir: Path) -> None:
    model, _ = load_trainable(one_tile_dir, TrainParams())
    wrapped = {n.removeprefix("base_model.model.") for n, m in model.named_modules()
               if hasattr(m, "lora_A") and not n.endswith(("lora_A", "lora_B"))}  # fmt: skip
    pattern = r"model\.text_model\.layers\.\d+\.(self_attn\.(q|k|v|o)|mlp\.(gate|up|down))_proj"
    assert len(wrapped) == 30 * 7 and all(re.fullmatch(pattern, name) for name in wrapped)
    assert model.get_nb_trainable_parameters()[0] == TEXT_LORA_256M

    lora = LoraParams(vision_target_modules=["q_proj", "k_proj", "v_proj", "out_proj"],
                      train_connector=True)  # fmt: skip
    model, _ = load_trainable(one_tile_dir, TrainParams(lora=lora))
    vision = [n for n, m in model.named_modules() if hasattr(m, "lora_A") and "vision_model" in n]
    assert len({n.rsplit(".lora_", 1)[0] for n in vision}) == 12 * 4
    vision_lora = 12 * 4 * 16 * (768 + 768)
    trainable = model.get_nb_trainable_parameters()[0]
    assert trainable == TEXT_LORA_256M + vision_lora + CONNECTOR_256M


class ForcedTokens:
    """lm_head hook: row r emits scripts[r][step] (its last token once the script runs out).
    When the batch shrinks, the rows whose script has ended its turn are the ones gone."""

    def __init__(self, scripts: list[list[int]]) -> None:
        self.scripts = scripts
        self.live = list(range(len(scripts)))
        self.batch_sizes: list[int] = []

    @property
    def calls(self) -> int:
        return len(self.batch_sizes)

    def __call__(self, module: Any, args: Any, output: Any) -> Any:
        step = self.calls
        self.batch_sizes.append(output.shape[0])
        if output.shape[0] < len(self.live):
            self.live = [r for r in self.live if EOU not in self.scripts[r][:step]]
        forced = output.clone()
        forced[:, -1, :] = -1e4
        for row, script in enumerate(self.scripts[r] for r in self.live):
            forced[row, -1, script[min(step, len(script) - 1)]] = 1e4
        return forced


def forced_generate(
    model: Any, processor: Any, scripts: list[list[int]], images: list[Any], params: Any
) -> tuple[Any, ForcedTokens]:
    """generate_batch with each row forced to its script (no repetition penalty)."""
    hook = ForcedTokens(scripts)
    handle = model.lm_head.register_forward_hook(hook)
    try:
        params = params.model_copy(update={"repetition_penalty": 1.0})
        return generate_batch(model, processor, images, [PROMPT] * len(images), params), hook
    finally:
        handle.remove()


@pytest.mark.slow
def test_one_step_at_one_tile_then_generation_stops_at_end_of_turn(
    one_tile_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for split, n, offset in (("train", 2, 0), ("validation", 1, 100), ("test", 1, 200)):
        write_split(data / f"{split}.parquet", n, offset)
    params = TrainParams(max_steps=1, per_device_train_batch_size=1, per_device_eval_batch_size=1,
                         eval_steps=1, save_steps=1, bf16=False, report_to=["none"])  # fmt: skip
    metrics = train_variant(
        "structured", data, one_tile_dir, tmp_path / "adapter", tmp_path / "ckpt", params, PROMPT
    )
    assert metrics["steps"] == 1 and metrics["train_loss"] > 0
    assert metrics["trainable_params"] == metrics["trainable_text"] == TEXT_LORA_256M
    assert metrics["train_samples"] == 2 and metrics["train_dropped_too_long"] == 0
    assert abs(metrics["adapter_mib"] - TEXT_LORA_256M * 4 / 2**20) < 0.1  # fp32 LoRA weights

    model, processor = load_for_inference(one_tile_dir, tmp_path / "adapter", "float32")
    model.generation_config.eos_token_id = 2  # what an early hub revision says
    words = processor.tokenizer("The chart rose", add_special_tokens=False)["input_ids"]
    scripts = [[*words[:2], EOU, words[2]], [*words, words[0], EOU, words[1]]]
    generated, hook = forced_generate(
        model, processor, scripts, [chart(), chart(600, 600)], GenerationParams(max_new_tokens=12)
    )
    decode = processor.tokenizer.decode
    assert [g.text for g in generated] == [
        decode(words[:2]).strip(),
        decode([*words, words[0]]).strip(),
    ]
    assert [g.new_tokens for g in generated] == [3, 5]  # the end of turn counts
    assert hook.calls == 5  # stopped when the second row ended its turn, not at 12


@pytest.mark.slow
@pytest.mark.parametrize(
    ("every", "batch_sizes"), [(4, [3] * 4 + [2] * 4 + [1] * 4), (0, [3] * 12)]
)
def test_rows_that_end_their_turn_leave_the_batch(
    one_tile_dir: Path, every: int, batch_sizes: list[int]
) -> None:
    model, processor = load_for_inference(one_tile_dir)
    words = processor.tokenizer(SENTENCE, add_special_tokens=False)["input_ids"]
    scripts = [[*words[:2], EOU], words[:12], [*words[3:9], EOU]]
    params = GenerationParams(max_new_tokens=12, drop_finished_every=every)
    generated, hook = forced_generate(model, processor, scripts, [chart()] * 3, params)
    decode = processor.tokenizer.decode
    assert [g.text for g in generated] == [
        decode(words[:2]).strip(),
        decode(words[:12]).strip(),
        decode(words[3:9]).strip(),
    ]
    assert [g.new_tokens for g in generated] == [3, 12, 7]
    # Row 0 ended at token 3, so the next 4 tokens run without it; row 2 ended at token 7.
    assert hook.batch_sizes == batch_sizes


@pytest.mark.slow
def test_going_on_from_the_cache_writes_what_one_call_writes(one_tile_dir: Path) -> None:
    """Left-padded rows of different lengths, greedy, no row ending: generate restarted every 3
    tokens from its own cache gives the tokens of one call (positions and mask carried right)."""
    model, processor = load_for_inference(one_tile_dir)
    images, prompts = [chart(), chart(600, 600)], [PROMPT, f"{PROMPT} Mention every bar."]

    def texts(every: int) -> list[str]:
        params = GenerationParams(max_new_tokens=10, drop_finished_every=every)
        return [g.text for g in generate_batch(model, processor, images, prompts, params)]

    assert texts(3) == texts(0)


@pytest.mark.slow
def test_dvc_repro_base_student_train_predict_on_a_hub_laid_folder(
    hub_dir: Path, tmp_path: Path
) -> None:
    project = copy_project(tmp_path / "repo")
    project.set_params(TINY_PROFILE)
    project.set_params(
        {
            "student": {"base": str(hub_dir), "longest_edge": 512},
            "train": {"per_device_eval_batch_size": 1, "max_steps": 1},
            "predict": {"limit": 1, "generation": {"max_new_tokens": 8, "batch_size": 1}},
        }
    )
    with StubServer(reply=reply) as stub:
        point_llms_at(project, stub)
        project.commit("real-shape 256M student from a local folder")
        out = project.run("dvc", "repro", "predict@structured").stdout
    for stage in ("base_student", "train@structured", "predict@structured"):
        assert f"Running stage '{stage}'" in out
    base = project.root / "models" / "base"
    assert json.loads((base / "config.json").read_text())["vision_config"]["image_size"] == 512
    assert json.loads((base / "generation_config.json").read_text())["eos_token_id"] == [EOU, 2]
    train = json.loads((project.root / "metrics" / "train_structured.json").read_text())
    assert train["steps"] == 1 and train["trainable_params"] == TEXT_LORA_256M
    assert train["train_dropped_too_long"] == 0 and train["adapter_mib"] > 6
    predictions = (project.root / "data" / "predictions" / "structured.jsonl").read_text()
    assert len(predictions.splitlines()) == 1
    assert END_OF_UTTERANCE not in predictions
