"""Stage `base_student`: materialise the student VLM (offline build or a pinned hub model)."""

from __future__ import annotations

from chartdistill.config import load_paths, load_section
from chartdistill.student.model import StudentParams, build_base_student
from stages.common import run, setup


def main() -> None:
    setup()
    build_base_student(load_section("student", StudentParams), load_paths().base_model)


if __name__ == "__main__":
    run(main)
