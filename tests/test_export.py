"""The export: LoRA merged into a tiny student, saved plain, checked against the adapter model,
loaded in a fresh process that never imports chartdistill, and served by `transformers serve`."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from chartdistill.student import export as export_module
from chartdistill.student.export import ExportMismatch, ExportParams, export_variant
from chartdistill.student.model import load_student, save_student
from chartdistill.student.smolvlm import lora_target_regex
from tests.test_student import chart_image, tiny_student_dir

PROMPT = "Write an essay about this chart."
PARAMS = ExportParams(check_charts=4, max_new_tokens=12)


def words(text: str, row: dict[str, Any]) -> dict[str, Any]:
    return {"words": len(text.split()), "id": row["id"]}


def make_adapter(base: Path, out: Path) -> Path:
    """A LoRA adapter on the text attention whose B matrices are random (peft starts them at
    zero, which would merge to the base unchanged and make the check vacuous)."""
    import torch
    from peft import LoraConfig, get_peft_model

    model, processor = load_student(base)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=lora_target_regex(["q_proj", "v_proj"]))
    model = get_peft_model(model, config)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    return save_student(model, processor, out)


def rows() -> list[dict[str, Any]]:
    sizes = [(448, 336), (300, 300), (224, 168), (400, 250), (320, 240)]
    return [{"id": f"c{i}", "image": chart_image(*size)} for i, size in enumerate(sizes)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    base = tiny_student_dir(tmp_path_factory)
    root = tmp_path_factory.mktemp("export")
    adapter = make_adapter(base, root / "adapter")
    metrics = export_variant(base, adapter, root / "out", rows(), lambda row: PROMPT, PARAMS, words)
    return base, root / "out", metrics


def test_export_is_plain_safetensors_with_processor_and_equal_essays(exported: Any) -> None:
    _, out, metrics = exported
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors"} <= names
    assert "processor_config.json" in names and "tokenizer.json" in names
    assert "chat_template.jinja" in names or "chat_template.json" in names
    assert not any("adapter" in name for name in names)
    assert metrics["equal"] and metrics["check_charts"] == 4
    assert metrics["same_essays"] == metrics["same_metrics"] == 4
    assert metrics["size_bytes"] == sum(p.stat().st_size for p in out.iterdir())
    assert 0 < metrics["weights_bytes"] < metrics["size_bytes"]
    assert [e["id"] for e in metrics["essays"]] == ["c0", "c1", "c2", "c3"]
    assert all(e["adapter"] for e in metrics["essays"])


def test_a_wrong_export_fails_the_check(
    exported: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saving the base without the LoRA (unload, not merge) must be caught."""
    base, _, _ = exported
    adapter = make_adapter(base, tmp_path / "adapter")
    monkeypatch.setattr(export_module, "merge", lambda model: model.unload())
    with pytest.raises(ExportMismatch, match=r"other essays .* on \d of 4 test charts"):
        export_variant(base, adapter, tmp_path / "out", rows(), lambda r: PROMPT, PARAMS, words)


def test_too_few_check_charts_fail(exported: Any, tmp_path: Path) -> None:
    base, _, _ = exported
    with pytest.raises(ExportMismatch, match="only 2 test charts"):
        export_variant(base, base, tmp_path / "o", rows()[:2], lambda r: PROMPT, PARAMS, words)


def test_check_charts_below_four_is_rejected() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ExportParams(check_charts=3)
    with pytest.raises(ValidationError):
        ExportParams.model_validate({"check_charts": 4, "extra": 1})


# A fresh interpreter: chartdistill cannot be imported, only transformers' Auto classes load
# the export; greedy text must equal the adapter model's essay for the same chart.
FRESH_LOAD = r"""
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("chartdistill", "stages", "bench", "harness"):
            raise ImportError(f"{name} is blocked")
sys.meta_path.insert(0, Block())
sys.path = [p for p in sys.path if p not in ("", ".")]
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
out, image_path, prompt, tokens = sys.argv[1:5]
model = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32).eval()
processor = AutoProcessor.from_pretrained(out)
messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
text = processor.apply_chat_template(messages, add_generation_prompt=True)
image = Image.open(image_path).convert("RGB")
batch = processor(text=[text], images=[[image]], return_tensors="pt")
with torch.inference_mode():
    ids = model.generate(**batch, max_new_tokens=int(tokens), do_sample=False)
new = processor.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)[0]
try:
    import chartdistill  # noqa
    imported = True
except ImportError:
    imported = False
print(json.dumps({"text": new.strip(), "class": type(model).__name__, "chartdistill": imported}))
"""


def test_export_loads_in_a_fresh_process_without_the_project(exported: Any, tmp_path: Path) -> None:
    _, out, metrics = exported
    image = tmp_path / "chart.png"
    rows()[0]["image"].save(image)
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_LOAD, str(out), str(image), PROMPT, "12"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["chartdistill"] is False
    assert result["class"] == "Idefics3ForConditionalGeneration"
    assert result["text"] == metrics["essays"][0]["adapter"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_transformers_serve_answers_with_an_essay_about_a_chart(
    exported: Any, tmp_path: Path
) -> None:
    """`transformers serve <export>` on CPU, asked through the openai client with an image part."""
    from openai import OpenAI

    _, out, metrics = exported
    port = free_port()
    cache = tmp_path / "hub"
    cache.mkdir()
    command = [
        str(Path(sys.executable).parent / "transformers"),
        "serve",
        str(out),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        "--dtype",
        "float32",
    ]
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        deadline = time.monotonic() + 90
        reply = None
        while reply is None:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                reply = client.chat.completions.create(
                    model=str(out),
                    messages=[
                        {
                            "role": "user",
                            "content": [
                                {
                                    "type": "image_url",
                                    "image_url": {"url": data_url(rows()[0]["image"])},
                                },
                                {"type": "text", "text": PROMPT},
                            ],
                        }
                    ],
                    max_tokens=8,
                    temperature=0,
                    timeout=60,
                )
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    assert reply.object == "chat.completion"
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason == "length"
    assert reply.usage.completion_tokens == 8
    # The server saw the image: its prompt is as long as the processor makes chat + image.
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(out)
    chat = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}],
        add_generation_prompt=True,
    )
    expected = processor(text=[chat], images=[[rows()[0]["image"]]])["input_ids"][0]
    assert reply.usage.prompt_tokens == len(expected)
    # ... and writes greedily what the adapter model wrote for this chart (8 of its 12 tokens).
    essay = metrics["essays"][0]["adapter"]
    assert choice.message.content.strip() and essay.startswith(choice.message.content.strip())
