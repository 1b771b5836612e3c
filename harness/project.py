"""A throwaway copy of the project as its own git + DVC repo, run with this venv's tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# A profile small enough that the whole pipeline runs in about a minute.
TINY_PROFILE: dict[str, Any] = {
    "charts": {
        "counts": {"bar": 2, "line": 2, "pie": 1, "table": 1},
        "test_counts": {"bar": 0, "line": 0, "pie": 1, "table": 1},  # held out from the teacher
        "width": 224,
        "height": 168,
    },
    # Two attempts, as for a real teacher: the stub's faults exercise the repair path.
    "teacher": {"max_attempts": 2, "validation": {"min_words": 100, "min_grounded_fraction": 0.5}},
    # Split per chart type: one bar and one line chart go to test, the rest to train, and
    # ensure_validation moves one train chart to validation (3 train, 1 validation, 2 test);
    # the test split also holds the two held-out charts, which have no reference essay.
    "datasets": {
        "bounds": {"min_words": 100, "min_grounded_fraction": 0.5},
        "split": {"train": 0.5, "validation": 0.16, "test": 0.34},
        "split_salt": "tiny-3",
    },
    "student": {
        "base": "tiny",
        "vision": {
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "image_size": 32,
            "patch_size": 8,
        },
        "longest_edge": 64,
    },
    "train": {
        "max_steps": 2,
        "eval_steps": 1,
        "save_steps": 1,
        "per_device_train_batch_size": 1,
        "max_length": 512,
        "bf16": False,
    },
    "predict": {"dtype": "float32", "generation": {"max_new_tokens": 12, "batch_size": 2}},
}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class Project:
    """A copy of the tracked project files in its own git repo, run with this venv's tools."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "PYTHONPATH": str(root),
        }

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            list(args), cwd=self.root, env=self.env, capture_output=True, text=True, timeout=1800
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def set_params(self, override: dict[str, Any]) -> None:
        path = self.root / "params.yaml"
        params = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump(_merge(params, override), sort_keys=False))

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-qm", message)


def copy_project(dest: Path) -> Project:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    project = Project(dest)
    project.run("git", "init", "-q", "-b", "main")
    project.run("git", "config", "user.email", "test@example.com")
    project.run("git", "config", "user.name", "test")
    return project


def point_llms_at(project: Project, stub: Any, **llm: Any) -> None:
    """Every params section with an `llm` endpoint (teacher, judge, ...) talks to the stub, with
    the `llm` settings given; the teacher asks it section by section instead of computing its
    essays."""
    params = yaml.safe_load((project.root / "params.yaml").read_text())
    override = {
        name: {"llm": {**llm, "base_url": stub.base_url, "model": f"stub-{name}"}}
        for name, section in params.items()
        if isinstance(section, dict) and isinstance(section.get("llm"), dict)
    }
    assert "teacher" in override, sorted(params)
    override["teacher"]["mode"] = "stepwise"
    project.set_params(override)
