"""bench.gpu cannot rot: its --tiny mode runs on CPU where pydantic, datasets, openai, dvc and
mlflow cannot be imported (the GPU machine has none of them), and its samples have the shapes
the real students take."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from transformers import Idefics3ForConditionalGeneration

from bench.gpu import REAL, image_block, make_sample, model_config, read_params
from chartdistill.student.smolvlm import IMAGE_TOKEN_ID, config_500m

ROOT = Path(__file__).resolve().parents[1]
ABSENT_ON_GPU = ("pydantic", "datasets", "openai", "dvc", "mlflow", "bitsandbytes")

# Makes the packages the GPU machine lacks unimportable (None in sys.modules: `import` raises,
# importlib.util.find_spec answers None as for a package that is not installed), checks that,
# then runs the module as `python -m bench.gpu` would.
RUN_BLOCKED = r"""
import importlib.util, runpy, sys
BLOCKED = sys.argv[1].split(",")
for name in BLOCKED:
    sys.modules[name] = None
for name in BLOCKED:
    try:
        __import__(name)
    except ImportError:
        assert importlib.util.find_spec(name) is None
    else:
        raise SystemExit(f"the block let {name} through")
sys.argv = ["bench.gpu", *sys.argv[2:]]
runpy.run_module("bench.gpu", run_name="__main__", alter_sys=True)  # exits with main()'s code
"""


def test_tiny_mode_runs_without_the_packages_the_gpu_machine_lacks(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, "-c", RUN_BLOCKED, ",".join(ABSENT_ON_GPU), "--tiny", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = result["rows"]
    train = [r for r in rows if r["kind"] == "train"]
    assert [(r["batch"], r["checkpointing"]) for r in train] == [
        (1, False),
        (2, False),
        (1, True),
        (2, True),
    ]
    assert all(r["tokens_per_s"] > 0 and r["samples_per_s"] > 0 for r in train)
    for r in train:  # every token of the batch (image, prompt, essay) counts
        assert abs(r["tokens_per_s"] * r["step_s"] / (r["batch"] * r["sequence"]) - 1) < 0.01
    generate = [r for r in rows if r["kind"] == "generate"]
    assert [(r["batch"], r["new_tokens"]) for r in generate] == [(1, 4), (2, 8)]
    qlora = [r for r in rows if r["kind"] == "qlora"]
    assert qlora and all(r["error"].startswith("not run:") for r in qlora)
    assert train[0]["trainable"] > 0 and train[0]["tiles"] == 5
    assert result["params"]["lora"]["target_modules"] == read_params()["lora"]["target_modules"]
    table = out.with_suffix(".md").read_text()
    assert table.startswith("| model | kind | batch") and table in proc.stdout


def test_real_samples_have_the_default_budget_layout() -> None:
    """SmolVLM-256M at longest_edge auto: a 448x336 chart is 2x2 tiles + global = 5 tiles,
    320 <image> tokens, laid out as Idefics3Processor expands one <image>."""
    config = model_config("256m")
    sample = make_sample(config, REAL, read_params())
    assert sample.tiles == 5
    assert sample.prompt.count(IMAGE_TOKEN_ID) == 5 * 64
    assert len(image_block(2, 2, 64)) == 4 * (2 + 64) + 2 + 1 + 3 + 64
    assert len(sample.essay) == REAL.essay_tokens + 1
    assert len(sample.prompt) == 1 + REAL.prompt_tokens + len(image_block(2, 2, 64))


def test_500m_config_has_the_hub_parameter_count() -> None:
    with torch.device("meta"):
        model = Idefics3ForConditionalGeneration(config_500m())
    assert sum(p.numel() for p in model.parameters()) == 507_482_304
