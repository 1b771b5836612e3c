"""`dvc plots show` offline: the committed template inlines vega, and headless Chromium with no
network draws the plots from it."""

from __future__ import annotations

import configparser
import io
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from chartdistill import plots_template as pt
from tests.conftest import ROOT, Project, copy_project

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Any host name fails to resolve: the page must draw with nothing from the network.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--virtual-time-budget=10000",
)

DEMO_ROWS = [(0, 2.5), (10, 1.75), (20, 1.25), (30, 0.875)]


def _chromium() -> str:
    """The browser `bash scripts/install.sh --dev` installs: a missing one fails, not skips."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise AssertionError("no chromium on PATH: run `bash scripts/install_browser.sh`")


# -- the committed template -------------------------------------------------------------------


def test_committed_template_is_configured_and_offline() -> None:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / ".dvc/config")
    # DVC resolves a relative plots.html_template against the .dvc/ folder.
    template = ROOT / ".dvc" / config["plots"]["html_template"]
    assert template == ROOT / pt.DEFAULT_TEMPLATE
    html = template.read_text(encoding="utf-8")
    pt.check_offline(html)
    assert html.count(pt.PLOTS_PLACEHOLDER) == 1
    order = [html.index(f"/* {bundle.spec} */") for bundle in pt.BUNDLES]
    assert order == sorted(order)  # vega before vega-lite before vega-embed
    assert html.index(pt.SVG_DEFAULT) > order[-1]
    for bundle in pt.BUNDLES:  # the builds carry their own version string
        assert f'="{bundle.version}"' in html, bundle.spec


# -- building a template from tarballs ----------------------------------------------------------


def _tarball(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _fake(tmp_path: Path, bundle: pt.JsBundle, script: str) -> tuple[pt.JsBundle, Path]:
    path = _tarball(
        tmp_path / f"{bundle.name}.tgz",
        {bundle.file: script, "LICENSE": f"Copyright -- {bundle.name} authors"},
    )
    pinned = pt.JsBundle(
        bundle.name, bundle.version, bundle.file, pt.npm_integrity(path.read_bytes()), "x"
    )
    return pinned, path


def _umd(global_name: str) -> str:
    return f'!function(t){{(t=globalThis).{global_name}={{version:"1"}}}}(this);'


def test_render_inlines_verified_bundles_in_order(tmp_path: Path) -> None:
    fetched = []
    for bundle in pt.BUNDLES:
        pinned, path = _fake(tmp_path, bundle, _umd("x"))
        fetched.append(pt.read_bundle(pinned, path))
    html = pt.render(fetched)
    pt.check_offline(html)
    assert html.count(_umd("x")) == 3
    assert "Copyright - - vega-embed authors" in html  # no "--" inside an HTML comment
    out = pt.write(tmp_path / "page" / "offline.html", fetched)
    assert out.read_text(encoding="utf-8") == html


def test_tampered_tarball_is_rejected(tmp_path: Path) -> None:
    pinned, path = _fake(tmp_path, pt.BUNDLES[0], _umd("x"))
    _tarball(path, {pinned.file: _umd("x") + "/* changed */", "LICENSE": "x"})
    with pytest.raises(pt.TemplateError, match=r"vega@5\.20\.2: .* has integrity"):
        pt.read_bundle(pinned, path)


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        (_umd("x") + "'</script>'", "</script"),
        (_umd("x") + "'{plot_divs}'", "placeholder"),
        ("console.log(1)", "UMD build"),
    ],
)
def test_scripts_that_cannot_be_inlined_are_rejected(
    tmp_path: Path, script: str, reason: str
) -> None:
    pinned, path = _fake(tmp_path, pt.BUNDLES[1], script)
    with pytest.raises(pt.TemplateError, match=re.escape(reason)):
        pt.render([pt.read_bundle(pinned, path)])


def test_page_with_network_scripts_is_not_offline() -> None:
    page = '<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>{plot_divs}'
    with pytest.raises(pt.TemplateError, match="from the network"):
        pt.check_offline(page)
    with pytest.raises(pt.TemplateError, match="no {plot_divs}"):
        pt.check_offline("<html></html>")


# -- drawing in a browser -----------------------------------------------------------------------


def _render_dom(page: Path, profile: Path) -> str:
    cmd = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom"]
    proc = subprocess.run(
        [*cmd, page.resolve().as_uri()], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _drawn(page: Path, profile: Path) -> tuple[list[str], str]:
    """The plot ids the page embeds, and the rendered DOM without its scripts."""
    html = page.read_text(encoding="utf-8")
    assert "cdn.jsdelivr" not in html and "<script src" not in html
    ids = re.findall(r"vegaEmbed\('#([^']+)'", html)
    dom = re.sub(r"<script\b.*?</script>", "", _render_dom(page, profile), flags=re.S | re.I)
    return ids, dom


def _svg_per_plot(dom: str, ids: list[str]) -> dict[str, bool]:
    """Whether each plot's own div (up to the next plot's) holds vega's drawn <svg>."""
    starts = {}
    for plot_id in ids:
        match = re.search(rf'<div id\s*=\s*"{re.escape(plot_id)}"', dom)
        starts[plot_id] = match.start() if match else -1
    ends = sorted(start for start in starts.values() if start >= 0) + [len(dom)]
    drawn = {}
    for plot_id, start in starts.items():
        end = min(e for e in ends if e > start) if start >= 0 else start
        drawn[plot_id] = (
            start >= 0 and re.search(r'<svg[^>]*class="marks"', dom[start:end]) is not None
        )
    return drawn


def _add_demo_plot(project: Project) -> str:
    """A top-level plot of a CSV this test writes (the tmp copy's dvc.yaml only)."""
    csv = "plots/demo_loss.csv"
    (project.root / "plots").mkdir(exist_ok=True)
    rows = "".join(f"{epoch},{loss}\n" for epoch, loss in DEMO_ROWS)
    (project.root / csv).write_text("epoch,loss\n" + rows)
    dvc_yaml = project.root / "dvc.yaml"
    spec = yaml.safe_load(dvc_yaml.read_text())
    spec.setdefault("plots", []).append({csv: {"x": "epoch", "y": "loss"}})
    dvc_yaml.write_text(yaml.safe_dump(spec, sort_keys=False))
    return csv


@pytest.mark.slow
def test_dvc_plots_show_draws_offline(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "repo")
    csv = _add_demo_plot(project)
    project.commit("demo plot")
    project.run("dvc", "plots", "show", csv)
    ids, dom = _drawn(project.root / "dvc_plots/index.html", tmp_path / "profile")
    # DVC shows the dvc.yaml definition and the file itself as two plots.
    assert ids and _svg_per_plot(dom, ids) == dict.fromkeys(ids, True), dom[-3000:]
    labels = re.findall(r'aria-label="(epoch: [^"]*)"', dom)
    # The line's label names its first and last points; a hover rule sits at every x.
    (first, first_loss), (last, last_loss) = DEMO_ROWS[0], DEMO_ROWS[-1]
    assert f"epoch: {first}; loss: {first_loss:g}; rev: workspace" in labels, labels
    assert f"epoch: {last}; loss: {last_loss:g}; rev: workspace" in labels, labels
    for epoch, _ in DEMO_ROWS:
        assert any(label.startswith(f"epoch: {epoch};") for label in labels), (epoch, labels)


def _declared_plots(project: Project) -> list[str]:
    shown = project.run("dvc", "plots", "show", "--json", check=False)
    if shown.returncode != 0:
        return []
    return list(json.loads(shown.stdout or "{}"))


@pytest.mark.slow
def test_pipeline_plots_draw_offline(tiny_run: Project, tmp_path: Path) -> None:
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    stages = spec.get("stages", {}).values()
    has_plots = bool(spec.get("plots")) or any(
        stage.get("plots") or (stage.get("do") or {}).get("plots") for stage in stages
    )
    assert has_plots, "dvc.yaml declares no plots"
    project = tiny_run  # the session's finished tiny run
    assert _declared_plots(project), "dvc.yaml declares plots but `dvc plots show` has none"
    project.run("dvc", "plots", "show")
    ids, dom = _drawn(project.root / "dvc_plots/index.html", tmp_path / "profile")
    assert ids
    assert _svg_per_plot(dom, ids) == dict.fromkeys(ids, True)
