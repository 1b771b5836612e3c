"""Stage `datasets`: structured and unstructured parquet datasets from the teacher essays.

One library call (chartdistill.dataset.build.build_datasets); the teacher settings quoted in
the dataset cards are declared as params deps in dvc.yaml.
"""

from __future__ import annotations

from chartdistill.config import load_paths, load_section, read_params
from chartdistill.dataset.build import DatasetsParams, build_datasets
from chartdistill.io import write_json
from chartdistill.ocr import OcrParams
from stages.common import run, setup

GENERATION_KEYS = ("mode", "temperature", "top_p", "max_tokens", "seed")


def main() -> None:
    setup()
    paths = load_paths()
    teacher = read_params()["teacher"]
    ocr = load_section("ocr", OcrParams)
    built = build_datasets(
        paths,
        load_section("datasets", DatasetsParams),
        {key: teacher[key] for key in GENERATION_KEYS},
        ocr.hint_max_chars,
        ocr.hint_layout,
    )
    write_json(paths.metrics / "datasets.json", built.metrics)


if __name__ == "__main__":
    run(main)
