"""The student VLM: offline build (tiny and embedded), determinism, processor + chat template."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from chartdistill.config import ParamsError, parse_section
from chartdistill.student.model import (
    END_OF_UTTERANCE,
    IMAGE_TOKEN,
    TINY_PARAMS,
    StudentParams,
    build_tiny_student,
    load_student,
)


def tiny_student_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny student per test session, shared by the test modules (built on first use)."""
    path = tmp_path_factory.getbasetemp() / "tiny_student"
    if not (path / "config.json").exists():
        build_tiny_student(path)
    return path


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_student_dir(tmp_path_factory)


def file_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def chart_image(width: int = 448, height: int = 336) -> Image.Image:
    image = Image.new("RGB", (width, height), "white")
    for x in range(40, width - 40, 60):
        image.paste((30, 90, 200), (x, height // 3, x + 30, height - 30))
    return image


def test_tiny_build_is_deterministic_and_safetensors_only(tiny_dir: Path, tmp_path: Path) -> None:
    again = build_tiny_student(tmp_path / "again")
    hashes = file_hashes(tiny_dir)
    assert hashes == file_hashes(again)
    assert "model.safetensors" in hashes
    assert not any(name.endswith(".bin") for name in hashes)
    assert "chat_template.jinja" in hashes or "chat_template.json" in hashes


def test_other_seed_changes_the_random_vision_tower(tiny_dir: Path, tmp_path: Path) -> None:
    other = build_tiny_student(tmp_path / "other", seed=1)
    assert file_hashes(other)["model.safetensors"] != file_hashes(tiny_dir)["model.safetensors"]


def test_processor_round_trips_with_chat_template(tiny_dir: Path) -> None:
    from transformers import Idefics3ImageProcessorPil, Idefics3Processor

    model, processor = load_student(tiny_dir)
    assert isinstance(processor, Idefics3Processor)
    assert isinstance(processor.image_processor, Idefics3ImageProcessorPil)
    assert processor.image_seq_len == TINY_PARAMS.image_seq_len == 4
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe it."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "It rises."}]},
    ]
    text = processor.apply_chat_template(messages)
    # SmolLM2-Instruct's own turns (its text model's), <end_of_utterance> ending each
    assert text == (
        f"<|im_start|>user\n{IMAGE_TOKEN}Describe it.{END_OF_UTTERANCE}\n"
        f"<|im_start|>assistant\nIt rises.{END_OF_UTTERANCE}\n"
    )
    prompt = processor.apply_chat_template(messages[:1], add_generation_prompt=True)
    assert text.startswith(prompt)
    assert prompt.endswith(f"{END_OF_UTTERANCE}\n<|im_start|>assistant\n")
    batch = processor(text=[text], images=[[chart_image()]], return_tensors="pt")
    # 448x336 -> longest edge 64 -> 2x2 tiles of 32 px + the global image = 5 tiles
    assert tuple(batch["pixel_values"].shape) == (1, 5, 3, 32, 32)
    image_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert model.config.image_token_id == image_id
    assert int((batch["input_ids"] == image_id).sum()) == 5 * 4
    for token in ("<fake_token_around_image>", "<row_2_col_2>", "<global-img>", END_OF_UTTERANCE):
        ids = processor.tokenizer(token, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and ids[0] < model.config.text_config.vocab_size, token
    logits = model(**batch).logits
    assert logits.shape[:2] == batch["input_ids"].shape


def test_default_image_budget_is_one_tile_offline_and_two_per_side_pretrained(
    tmp_path: Path,
) -> None:
    params = StudentParams()
    assert params.image_seq_len == 49
    assert params.longest_edge == "auto"
    assert params.image_longest_edge(params.vision.image_size) == params.vision.image_size
    local = StudentParams(base=str(tmp_path))
    assert local.image_longest_edge(512) == 1024 and local.image_longest_edge(384) == 768
    assert StudentParams(longest_edge=448).image_longest_edge(224) == 448
    with pytest.raises(ValueError, match="longest_edge"):
        StudentParams(longest_edge=200)


def test_offline_tokenizer_has_smolvlm_added_tokens_in_the_real_order(tiny_dir: Path) -> None:
    _, processor = load_student(tiny_dir)
    tokenizer = processor.tokenizer
    assert len(tokenizer) == 49280
    expected = {
        "<global-img>": 49152,
        "<row_1_col_1>": 49153,
        "<row_1_col_2>": 49154,
        "<row_6_col_6>": 49188,
        "<fake_token_around_image>": 49189,
        "<image>": 49190,
        "<|reserved_special_token_0|>": 49191,
        "<|reserved_special_token_87|>": 49278,
        END_OF_UTTERANCE: 49279,
    }
    assert {token: tokenizer.convert_tokens_to_ids(token) for token in expected} == expected


def test_hub_id_needs_a_revision(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="revision"):
        parse_section("student", StudentParams, {"base": "HuggingFaceTB/SmolVLM-256M-Instruct"})
    pinned = parse_section(
        "student",
        StudentParams,
        {"base": "HuggingFaceTB/SmolVLM-256M-Instruct", "revision": "abc123"},
    )
    assert pinned.is_hub_id
    assert not parse_section("student", StudentParams, {"base": str(tmp_path)}).is_hub_id


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"vision": {"hidden_size": 190, "num_attention_heads": 4}}, "num_attention_heads"),
        ({"vision": {"image_size": 200, "patch_size": 16}}, "patch_size"),
        ({"scale_factor": 3}, "scale_factor"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_bad_student_params_are_rejected(raw: dict, reason: str) -> None:
    with pytest.raises(ParamsError, match=reason):
        parse_section("student", StudentParams, raw)


def test_load_student_names_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_student(tmp_path)


@pytest.fixture(scope="module")
def embedded_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from chartdistill.student.model import build_base_student

    return build_base_student(StudentParams(), tmp_path_factory.mktemp("embedded") / "base")


@pytest.mark.slow
def test_embedded_student_text_logits_equal_smollm2(embedded_dir: Path) -> None:
    import torch

    from chartdistill.bundled import dequantise

    student, processor = load_student(embedded_dir)
    reference = dequantise("float32").eval()
    ids = processor.tokenizer(
        "The bar chart compares the number of visitors to three museums.", return_tensors="pt"
    )["input_ids"]
    with torch.inference_mode():
        ours = student(input_ids=ids).logits
        theirs = reference(input_ids=ids).logits
    vocab = theirs.shape[-1]
    assert ours.shape[-1] >= vocab
    torch.testing.assert_close(ours[..., :vocab], theirs, rtol=0, atol=1e-4)
    assert sum(p.numel() for p in student.parameters()) > 130_000_000


@pytest.mark.slow
def test_untrained_embedded_student_answers_instead_of_ending_its_turn(
    embedded_dir: Path,
) -> None:
    """The baseline is SmolLM2-Instruct's own answer: in its chat format it writes words (under
    SmolVLM's "Assistant:" turn its first greedy token was <|im_end|>, an empty essay)."""
    import torch

    from chartdistill.student.model import stop_token_ids
    from chartdistill.student.training import chat_messages

    student, processor = load_student(embedded_dir)
    prompt = "Write an IELTS Academic Task 1 essay describing this chart."
    text = processor.apply_chat_template(chat_messages(prompt), add_generation_prompt=True)
    batch = processor(text=[text], images=[[chart_image()]], return_tensors="pt")
    with torch.inference_mode():
        first = student(**batch).logits[0, -1].argmax().item()
    assert first not in stop_token_ids(processor.tokenizer)
    assert processor.tokenizer.decode([first]).strip()


@pytest.mark.slow
def test_embedded_base_is_the_same_bytes_from_the_gguf_and_from_the_converted_copy(
    embedded_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first build on a machine dequantises the GGUF (and keeps the converted copy), later
    ones read that copy: the same base student either way, naming no path of this machine."""
    from chartdistill.student.model import build_base_student

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty_cache"))
    fresh = build_base_student(StudentParams(), tmp_path / "fresh")
    assert any((tmp_path / "empty_cache" / "chartdistill").iterdir())  # the copy was kept
    again = build_base_student(StudentParams(), tmp_path / "again")
    for built in (fresh, again):
        names = sorted(f.name for f in built.iterdir())
        assert names == sorted(f.name for f in embedded_dir.iterdir())
        for name in names:
            assert (built / name).read_bytes() == (embedded_dir / name).read_bytes(), name
    config = (fresh / "config.json").read_text()
    assert '"_name_or_path"' not in config and "site-packages" not in config
