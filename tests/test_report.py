"""The evaluation report: figure marks, the loss curve, the `report` stage end to end (after
judge_check and both judge stages on a stub judge), MLflow logging to the training run, and the
page in headless Chromium with no network: images load, marks are there, a screenshot is saved."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from chartdistill.essay.sections import render_structured
from chartdistill.essay.text import EssayBounds
from chartdistill.io import read_jsonl, write_json, write_jsonl
from chartdistill.report.build import essay_view, flat_numbers, loss_curve
from tests.test_essays import CHART, GOOD
from tests.test_evaluation import enable_gate, project, run_check, run_stage  # noqa: F401
from tests.test_plots import CHROMIUM_FLAGS, _chromium

MISATTRIBUTED = "Women aged 45-64 spent 32.5 hours a week online."  # 32.5: men aged 16-24
UNGROUNDED = "Men aged 16-24 spent 99 hours a week online."


def marks_of(text: str) -> list[tuple[str, str | None]]:
    view = essay_view(text, CHART, EssayBounds())
    return [(s.text, s.mark) for p in view.paragraphs for s in p if s.mark]


def test_every_figure_is_marked_by_its_grounding() -> None:
    text = f"{MISATTRIBUTED} {UNGROUNDED}\n\nMen aged 25-44 spent 24 hours online in 2020."
    assert marks_of(text) == [("32.5", "misattributed"), ("99", "ungrounded"), ("24", "grounded")]
    view = essay_view(text, CHART, EssayBounds())
    assert len(view.paragraphs) == 2
    assert "".join(s.text for s in view.paragraphs[0]) == f"{MISATTRIBUTED} {UNGROUNDED}"
    assert view.counts == {"grounded": 1, "misattributed": 1, "ungrounded": 1}
    # Section markers are not figures; the age bands are labels, not values.
    good = essay_view(render_structured(GOOD), CHART, EssayBounds())
    assert good.counts == {"grounded": 6, "misattributed": 0, "ungrounded": 0}
    assert not any("paragraph 1" in s.text for p in good.paragraphs for s in p if s.mark)


def test_loss_curve_scales_into_the_viewport() -> None:
    rows = [{"step": "1", "loss": "2.0", "eval_loss": ""}, {"step": "3", "loss": "1.0"}]
    rows.append({"step": "3", "loss": "", "eval_loss": "1.5"})
    curve = loss_curve(rows, width=100, height=50)
    assert curve is not None and curve.x_range == (1.0, 3.0) and curve.y_range == (1.0, 2.0)
    assert curve.series["loss"] == "10.0,10.0 90.0,40.0"
    assert curve.series["eval_loss"] == "90.0,25.0"
    assert loss_curve([{"step": "1", "loss": "nan"}]) is None


def test_flat_numbers() -> None:
    data = {"a": 1, "b": {"c": 0.5, "d": None, "e": "x", "f": True}}
    assert flat_numbers(data, "eval.") == {"eval.a": 1.0, "eval.b.c": 0.5, "eval.b.f": 1.0}


# --------------------------------------------------------------------------- the stage


def draw_chart(path: Path) -> None:
    image = Image.new("RGB", (240, 160), "white")
    draw = ImageDraw.Draw(image)
    for n, height in enumerate((120, 90, 60)):
        draw.rectangle((30 + 60 * n, 150 - height, 70 + 60 * n, 150), fill=(40, 90, 160))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


@pytest.fixture
def judged(project, monkeypatch, tmp_path_factory):  # noqa: F811 - the imported fixture
    """The evaluation project after judge_check and both judge stages, with a loss curve and a
    training run in a fresh MLflow store for the structured variant."""
    root, stub = project
    charts_file = root / "data/charts/charts.jsonl"
    charts = list(read_jsonl(charts_file))
    for chart in charts:  # an image of its own per chart
        chart["image"] = f"images/{chart['id']}.png"
        draw_chart(root / "data/charts" / chart["image"])
    write_jsonl(charts_file, charts)
    predictions = root / "data/predictions"
    baseline = list(read_jsonl(predictions / "baseline.jsonl"))
    baseline[1]["text"] = f"{MISATTRIBUTED} {UNGROUNDED}"
    write_jsonl(predictions / "baseline.jsonl", baseline)
    shutil.copyfile(predictions / "structured.jsonl", predictions / "unstructured.jsonl")
    enable_gate(root)
    run_check(monkeypatch)
    run_stage(monkeypatch, "structured")
    enable_gate(root, llm_when_unreliable=False)  # the audit flags the stub: not asked
    run_stage(monkeypatch, "unstructured")
    with (root / "plots").joinpath("train_structured.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerows([("step", "loss", "eval_loss"), (1, 2.5, ""), (2, 1.9, 2.1), (3, 1.4, "")])

    import mlflow

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("test-report")).info.run_id
    write_json(root / "metrics/train_structured.json", {"mlflow_run_id": run_id})
    return root, client, run_id


def run_report(monkeypatch: pytest.MonkeyPatch) -> None:
    from stages import report

    monkeypatch.setattr(sys, "argv", ["stages.report"])
    report.main()


def test_report_stage_writes_pages_and_logs_to_the_training_run(judged, monkeypatch) -> None:
    root, client, run_id = judged
    # the report reads what the judge stages matched, not the predictions or essays again
    shutil.rmtree(root / "data/predictions")
    shutil.rmtree(root / "data/essays")
    run_report(monkeypatch)
    out = root / "reports"
    assert sorted(p.name for p in out.iterdir()) == [
        "images",
        "index.html",
        "structured.html",
        "unstructured.html",
    ]
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "bar-1.png",
        "bar-2.png",
        "line-1.png",
    ]
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="structured.html"' in index and 'href="unstructured.html"' in index
    page = (out / "structured.html").read_text(encoding="utf-8")
    for chart_id in ("bar-1", "bar-2", "line-1"):
        assert f'id="chart-{chart_id}"' in page and f'src="images/{chart_id}.png"' in page
    for mark in ("grounded", "misattributed", "ungrounded"):
        assert f'<mark class="{mark}">' in page
    assert "<polyline" in page and "http://" not in page and "https://" not in page
    assert "<script" not in page
    assert "known-answer pairs" in page and "length-controlled" in page
    # the source beside each verdict: bar-1 (an essay against a one-line baseline) and bar-2 (the
    # baseline fails more checks by the margin) by the gate, with its reason; line-1 by the LLM
    verdicts = re.findall(r'source: <strong class="source">(\w+)</strong>', page)
    assert verdicts == ["gate", "gate", "llm"]
    assert "gate (essay_beats_non_essay): finetuned is better" in page
    assert "gate (margin): finetuned is better" in page and "gate abstains" in page
    assert "By verdict source" in page and "table gate: trusted." in page
    # unstructured: line-1, which the gate leaves, is a tie from no source
    other = (out / "unstructured.html").read_text(encoding="utf-8")
    verdicts = re.findall(r'source: <strong class="source">(\w+)</strong>', other)
    assert verdicts == ["gate", "gate", "none"]
    assert "the LLM, flagged by the audit, was not asked" in other
    assert re.search(r"<tr><td>none</td><td>—</td><td>1</td><td>0 / 1 / 0</td>", other)
    # Essay text is escaped, never markup.
    assert "<analysis>" not in page

    artifacts = {a.path for a in client.list_artifacts(run_id, "report")}
    assert {"report/structured.html", "report/index.html", "report/images"} <= artifacts
    run = client.get_run(run_id)
    assert run.data.metrics["eval.n"] == 3.0
    assert "eval.expected_win_rate" in run.data.metrics and "judge.pairs" in run.data.metrics


# --------------------------------------------------------------------------- in a browser

PROBE = """<script>
window.addEventListener("load", () => {
  for (const img of document.images) {
    img.setAttribute("data-loaded", String(img.complete && img.naturalWidth > 0));
  }
  document.body.setAttribute("data-probed", "yes");
});
</script>"""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    cmd = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_report_renders_offline_in_chromium(judged, monkeypatch, tmp_path: Path) -> None:
    root = judged[0]
    monkeypatch.setenv("CHARTDISTILL_TEST_KEY", "unused")
    run_report(monkeypatch)
    # A copy of the page with a probe script that records whether each image loaded: the
    # report itself holds no script.
    page = root / "reports/structured.html"
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"))
    dom = chromium("--dump-dom", probe.resolve().as_uri(), profile=tmp_path / "p1").stdout
    assert 'data-probed="yes"' in dom
    loaded = re.findall(r'<img[^>]*data-loaded="(true|false)"', dom)
    assert loaded == ["true", "true", "true"], loaded
    for mark in ("grounded", "misattributed", "ungrounded"):
        assert len(re.findall(f'<mark class="{mark}">', dom)) >= 1, mark

    shot = Path(os.environ.get("CHARTDISTILL_REPORT_SHOT") or tmp_path / "report.png")
    chromium(
        f"--screenshot={shot}",
        "--window-size=1400,2200",
        page.resolve().as_uri(),
        profile=tmp_path / "p2",
    )
    with Image.open(shot) as image:
        assert image.size == (1400, 2200)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # drawn, not a blank page
