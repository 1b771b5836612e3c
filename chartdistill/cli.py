"""`chartdistill-essay`: write an IELTS Task 1 essay for one chart image with a student model.

chartdistill-essay chart.png --variant structured
chartdistill-essay chart.png --adapter path/to/adapter --base models/base --title "..."
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from chartdistill.config import ParamsError, load_paths, load_section


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chartdistill-essay", description=__doc__.split("\n")[0])
    parser.add_argument("image", type=Path, help="the chart image (PNG, JPEG, ...)")
    parser.add_argument("--title", help="the chart's title, if known")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--variant", help="a trained variant: structured or unstructured")
    which.add_argument("--adapter", type=Path, help="a LoRA adapter directory")
    parser.add_argument("--base", type=Path, help="the base student (default: paths.base_model)")
    parser.add_argument("--max-new-tokens", type=int, help="override predict.generation")
    return parser


def load_image(path: Path):  # -> PIL.Image.Image
    """The image as RGB, or a clear error naming the file and what is wrong with it."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise SystemExit(f"chartdistill-essay: {path}: no such file")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise SystemExit(f"chartdistill-essay: {path}: not a readable image ({exc})") from exc


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    image = load_image(args.image)

    from chartdistill.prompts.student import render_student_prompt
    from chartdistill.student.generation import generate_essays, load_for_inference
    from chartdistill.student.predict import PredictParams

    try:
        paths = load_paths()
        params = load_section("predict", PredictParams)
    except ParamsError as exc:
        raise SystemExit(f"chartdistill-essay: run it from the project root ({exc})") from exc
    adapter = args.adapter or (paths.models / args.variant if args.variant else None)
    base = args.base or paths.base_model
    generation = params.generation
    if args.max_new_tokens:
        generation = generation.model_copy(update={"max_new_tokens": args.max_new_tokens})
    try:
        model, processor = load_for_inference(base, adapter, params.dtype)
    except FileNotFoundError as exc:
        hint = "run `dvc repro` or `dvc pull` first"
        raise SystemExit(f"chartdistill-essay: {exc} ({hint})") from exc
    # The pipeline trains on the title-free instruction; --title adds the title to it.
    prompt = render_student_prompt(paths.prompts, args.title)
    [essay] = generate_essays(model, processor, [image], [prompt], generation)
    sys.stdout.write(essay.text.rstrip() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
