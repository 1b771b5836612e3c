"""dvc.yaml's code deps cannot drift from the code: derived from the AST, no imports executed.

For every stage, the modules it runs (`-m stages.<name>`) and everything they import from the
project, plus every prompt or template file named in that code (and the templates those
include), must be covered by a dep of the stage. A declared code dep that the stage no longer
imports is an error too, so a rename cannot leave a stale dep behind.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("chartdistill", "stages")
_INCLUDE = re.compile(r"{%-?\s*(?:include|import|extends|from)\s+[\"']([^\"']+)[\"']")
_VAR = re.compile(r"\$\{([^}]+)\}")


def load_stages(root: Path) -> dict[str, dict]:
    """dvc.yaml's stages with foreach expanded and ${...} resolved from params.yaml."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]

    def resolve(text: str, item: str | None) -> str:
        def value(match: re.Match[str]) -> str:
            if match.group(1) == "item":
                return str(item)
            node = params
            for key in match.group(1).split("."):
                node = node[key]
            return str(node)

        return _VAR.sub(value, text)

    out: dict[str, dict] = {}
    for name, stage in stages.items():
        items = stage.get("foreach", [None])
        body = stage.get("do", stage)
        for item in items:
            key = name if item is None else f"{name}@{item}"
            out[key] = {
                "cmd": resolve(body["cmd"], item),
                "deps": [resolve(d, item) for d in body.get("deps", [])],
            }
    return out


def module_path(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            # `from package import module` names a submodule
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def import_closure(root: Path, entry: str) -> set[Path]:
    """Files of every project module reachable from `entry`, package __init__ files included."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        module = todo.pop()
        if module.split(".")[0] not in PACKAGES:
            continue
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):
            path = module_path(root, ".".join(parts[:depth]))
            if path is None or path in seen:
                continue
            seen.add(path)
            todo.extend(_imported(ast.parse(path.read_text(), str(path))))
    return seen


def _names(tree: ast.AST) -> Iterator[tuple[str, bool]]:
    """(text, is_pattern): string literals, and f-strings that end in a file extension as glob
    patterns (`f"{chart_type}.yaml"` -> `*.yaml`)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value, False
        elif isinstance(node, ast.JoinedStr):
            pattern = "".join(v.value if isinstance(v, ast.Constant) else "*" for v in node.values)
            if re.search(r"\*[^*/]*\.\w+$", pattern):
                yield pattern, True


def data_files(root: Path, code: set[Path], prompts: Path) -> set[Path]:
    """Prompt and template files the code names, and what those templates include."""
    folders = [prompts, *root.glob("chartdistill/**/templates")]
    available = {p: p.name for folder in folders for p in folder.iterdir() if p.is_file()}
    named = {name for path in code for name in _names(ast.parse(path.read_text()))}
    found = {
        path
        for path, filename in available.items()
        for name, is_pattern in named
        if (fnmatch.fnmatchcase(filename, name) if is_pattern else filename == name)
    }
    todo = list(found)
    while todo:
        text = todo.pop().read_text(errors="replace")
        for include in _INCLUDE.findall(text):
            for folder in folders:
                path = folder / include
                if path.is_file() and path not in found:
                    found.add(path)
                    todo.append(path)
    return found


def covered(path: Path, deps: list[Path]) -> bool:
    return any(path == dep or dep in path.parents for dep in deps)


def check_stage(root: Path, name: str, stage: dict, prompts: Path) -> list[str]:
    """Problems with one stage's deps, each naming the stage and the path."""
    entries = re.findall(r"-m\s+(stages\.\w+)", stage["cmd"])
    if not entries:
        return [f"{name}: cmd {stage['cmd']!r} runs no `-m stages.<module>`"]
    code = set().union(*(import_closure(root, entry) for entry in entries))
    needed = code | data_files(root, code, prompts)
    deps = [(root / d).resolve() for d in stage["deps"]]
    problems = [
        f"{name}: dvc.yaml does not declare {p.relative_to(root)} (it is "
        f"{'imported' if p.suffix == '.py' else 'read'} by the stage)"
        for p in sorted(needed)
        if not covered(p, deps)
    ]
    code_roots = [root / package for package in PACKAGES]
    for dep in deps:
        is_code = any(dep == r or r in dep.parents for r in code_roots)
        if is_code and not any(covered(p, [dep]) for p in needed):
            problems.append(f"{name}: dvc.yaml declares {dep.relative_to(root)}, not used")
    return problems


def prompts_dir(root: Path) -> Path:
    return root / yaml.safe_load((root / "params.yaml").read_text())["paths"]["prompts"]


@pytest.mark.parametrize("name", sorted(load_stages(ROOT)))
def test_stage_deps_cover_its_code_and_prompt_files(name: str) -> None:
    stage = load_stages(ROOT)[name]
    assert check_stage(ROOT, name, stage, prompts_dir(ROOT)) == []


def test_removing_a_dep_is_caught_naming_stage_and_path() -> None:
    stage = load_stages(ROOT)["judge@structured"]
    prompts = prompts_dir(ROOT)
    for dropped, missing in (
        ("chartdistill/essay", "chartdistill/essay/grounding.py"),
        ("chartdistill/prompts/judge.py", "chartdistill/prompts/judge.py"),
        ("prompts/judge.md", "prompts/judge.md"),
        ("prompts/_chart.md", "prompts/_chart.md"),
    ):
        assert dropped in stage["deps"]
        deps = [d for d in stage["deps"] if d != dropped]
        problems = check_stage(ROOT, "judge@structured", {**stage, "deps": deps}, prompts)
        assert f"judge@structured: dvc.yaml does not declare {missing}" in "\n".join(problems)


def test_a_stale_code_dep_is_caught() -> None:
    stage = load_stages(ROOT)["charts"]
    deps = [*stage["deps"], "chartdistill/evaluation/metrics.py"]
    problems = check_stage(ROOT, "charts", {**stage, "deps": deps}, prompts_dir(ROOT))
    assert problems == ["charts: dvc.yaml declares chartdistill/evaluation/metrics.py, not used"]


def test_teacher_prompt_files_are_derived_per_role() -> None:
    """A student prompt edit must not rerun teach, a teacher prompt edit must not rerun train."""
    stages = load_stages(ROOT)
    prompts = prompts_dir(ROOT)

    def read(name: str) -> set[str]:
        code = set().union(
            *(
                import_closure(ROOT, m)
                for m in re.findall(r"-m\s+(stages\.\w+)", stages[name]["cmd"])
            )
        )
        return {p.name for p in data_files(ROOT, code, prompts)}

    assert {"bar.yaml", "section.md", "teacher_system.md", "_chart.md"} <= read("teach")
    assert "student.md" not in read("teach")
    assert read("train@structured") == {"student.md"}
    assert {"judge.md", "judge_system.md", "_chart.md", "pie.yaml"} <= read("judge@unstructured")
    assert "section.md" not in read("judge@unstructured")
