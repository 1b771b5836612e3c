import shutil
from pathlib import Path

import pytest

from chartdistill.cli import main
from chartdistill.student.model import build_tiny_student

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _chart(path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (64, 48), "white").save(path)
    return path


def test_essay_from_a_tiny_student(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI prints the essay the student writes for the image under the pipeline's prompt
    (the random tiny student writes newlines only, so its text is compared, not judged)."""
    from PIL import Image

    from chartdistill.config import load_section
    from chartdistill.prompts.student import render_student_prompt
    from chartdistill.student.generation import generate_essays, load_for_inference
    from chartdistill.student.predict import PredictParams

    base = build_tiny_student(project / "base")
    chart = _chart(project / "c.png")
    code = main([str(chart), "--base", str(base), "--max-new-tokens", "6"])
    assert code == 0
    model, processor = load_for_inference(base, None, "float32")
    generation = load_section("predict", PredictParams).generation
    generation = generation.model_copy(update={"max_new_tokens": 6})
    prompt = render_student_prompt(project / "prompts", None)
    [essay] = generate_essays(model, processor, [Image.open(chart)], [prompt], generation)
    assert essay.new_tokens == 6
    assert capsys.readouterr().out == essay.text.rstrip() + "\n"


def test_missing_image_is_a_clear_error(project: Path) -> None:
    with pytest.raises(SystemExit, match=r"nope\.png: no such file"):
        main([str(project / "nope.png")])


def test_corrupt_image_is_a_clear_error(project: Path) -> None:
    bad = project / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(SystemExit, match=r"bad\.png: not a readable image"):
        main([str(bad)])


def test_missing_adapter_is_a_clear_error(project: Path) -> None:
    base = build_tiny_student(project / "base")
    chart = _chart(project / "c.png")
    with pytest.raises(SystemExit, match="no LoRA adapter here"):
        main([str(chart), "--base", str(base), "--adapter", str(project / "none")])
