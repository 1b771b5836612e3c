"""An offline HTML template for `dvc plots show`: vega, vega-lite and vega-embed inlined.

DVC's default page loads vega from a CDN and stays blank without internet. DVC accepts a
page of our own (`dvc config plots.html_template PATH`) holding a `{plot_divs}` placeholder;
each plot div then calls the global `vegaEmbed(...)`. This module builds that page from the
UMD builds in the npm packages, pinned to the versions DVC's own page loads, and checked
against their npm integrity hashes:

    python -m chartdistill.plots_template            # rewrites .dvc/plots/offline.html

The page is committed, so viewing plots needs neither npm nor a network; npm (the ordinary
client, `npm pack`) is needed only to rebuild it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chartdistill.io import atomic_write_text

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = Path(".dvc/plots/offline.html")
PLOTS_PLACEHOLDER = "{plot_divs}"
# DVC substitutes these with str.replace anywhere in the page: none may occur in the scripts.
DVC_PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")


@dataclass(frozen=True)
class JsBundle:
    """One npm package's browser build: where it is in the tarball and what it must hash to."""

    name: str
    version: str
    file: str  # path inside the package folder of the tarball
    integrity: str  # npm's "sha512-<base64>" of the tarball
    global_name: str  # what the UMD build defines on window

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"


# The versions dvc-render's default page loads (dvc_render/vega.py), in load order.
BUNDLES: tuple[JsBundle, ...] = (
    JsBundle(
        "vega",
        "5.20.2",
        "build/vega.min.js",
        "sha512-qmH7aD9GGPpssVdxL1xgcdxTbQzyRUeRR16Os385ymvQhiwCYQNA6+eXUPAZDTVLfk0RXu6Jzj6kUE5jQ80EVw==",
        "vega",
    ),
    JsBundle(
        "vega-lite",
        "5.2.0",
        "build/vega-lite.min.js",
        "sha512-Yxcg8MvYfxHcG6BbkaKT0oVCIMIcE19UvqIsEwBmyd/7h2nzW7oRnID81T8UrY7hpDrIr6wa2JADOT2dhGNErw==",
        "vegaLite",
    ),
    JsBundle(
        "vega-embed",
        "6.18.2",
        "build/vega-embed.min.js",
        "sha512-wcDyQPE4J5aiCDc3/suH5RQDvrKkjuLkhzUcbOLwEkNF8/+pp17tS0JghzEvAPNRg+5aG1/N2ydixq8Lk3dOlg==",
        "vegaEmbed",
    ),
)


@dataclass(frozen=True)
class Fetched:
    """A bundle's script text and its package's LICENSE text."""

    bundle: JsBundle
    script: str
    license: str


# DVC's plot divs call `vegaEmbed(el, spec)` with no options. Default the renderer to SVG: the
# page then holds real, searchable text and marks (aria-labels carry each datum), and it prints
# sharply. Options a caller passes still win; vegaEmbed's own properties are kept.
SVG_DEFAULT = """(function () {
  var embed = window.vegaEmbed;
  window.vegaEmbed = Object.assign(function (el, spec, opts) {
    return embed(el, spec, Object.assign({renderer: "svg"}, opts));
  }, embed);
})();"""


class TemplateError(ValueError):
    """A bundle or a page that cannot serve as DVC's offline template."""


def npm_integrity(data: bytes) -> str:
    """npm's integrity string for a tarball: sha512, base64."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


def read_bundle(bundle: JsBundle, tarball: Path) -> Fetched:
    """Check the tarball against the pinned hash and read the build and LICENSE from it."""
    data = tarball.read_bytes()
    got = npm_integrity(data)
    if got != bundle.integrity:
        raise TemplateError(
            f"{bundle.spec}: {tarball} has integrity {got}, expected {bundle.integrity}"
        )
    with tarfile.open(tarball, "r:gz") as tar:
        script = _member_text(tar, bundle, f"package/{bundle.file}")
        license_text = _member_text(tar, bundle, "package/LICENSE")
    return Fetched(bundle, script, license_text)


def _member_text(tar: tarfile.TarFile, bundle: JsBundle, name: str) -> str:
    try:
        member = tar.extractfile(name)
    except KeyError:
        member = None
    if member is None:
        raise TemplateError(f"{bundle.spec}: the tarball has no file {name}")
    return member.read().decode("utf-8")


def npm_pack(bundles: Sequence[JsBundle], dest: Path, npm: str = "npm") -> dict[str, Path]:
    """Download the packages' tarballs with `npm pack` into dest; returns spec -> tarball."""
    cmd = [npm, "pack", "--json", "--pack-destination", str(dest), *(b.spec for b in bundles)]
    log.info("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    except FileNotFoundError as exc:
        raise TemplateError(f"{npm!r} not found: npm is needed to rebuild the template") from exc
    if proc.returncode != 0:
        raise TemplateError(f"npm pack failed ({proc.returncode}): {proc.stderr.strip()}")
    packed = {f"{item['name']}@{item['version']}": dest / item["filename"] for item in _json(proc)}
    missing = [b.spec for b in bundles if b.spec not in packed]
    if missing:
        raise TemplateError(f"npm pack did not return {', '.join(missing)}")
    return packed


def _json(proc: subprocess.CompletedProcess[str]) -> list[dict[str, str]]:
    # npm prints warnings on stderr; stdout is the JSON list.
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise TemplateError(f"npm pack printed no JSON: {proc.stdout[:200]!r}") from exc


def fetch(bundles: Sequence[JsBundle] = BUNDLES, npm: str = "npm") -> list[Fetched]:
    """npm pack the pinned packages into a temp folder, verify them and read their builds."""
    with tempfile.TemporaryDirectory(prefix="vega-npm-") as tmp:
        packed = npm_pack(bundles, Path(tmp), npm)
        return [read_bundle(b, packed[b.spec]) for b in bundles]


def _check_script(fetched: Fetched) -> None:
    spec = fetched.bundle.spec
    if re.search(r"</script", fetched.script, re.IGNORECASE):
        raise TemplateError(f"{spec}: the script contains '</script' and cannot be inlined")
    for placeholder in DVC_PLACEHOLDERS:
        if placeholder in fetched.script:
            raise TemplateError(f"{spec}: the script contains DVC's placeholder {placeholder}")
    if f".{fetched.bundle.global_name}=" not in fetched.script.replace(" ", ""):
        raise TemplateError(
            f"{spec}: the script does not look like a UMD build defining "
            f"window.{fetched.bundle.global_name}"
        )


def render(fetched: Sequence[Fetched]) -> str:
    """The page: the licences, the inlined scripts in load order, SVG_DEFAULT, `{plot_divs}`."""
    notices, scripts = [], []
    for item in fetched:
        _check_script(item)
        licence = item.license.replace("--", "- -")  # "--" may not appear in an HTML comment
        notices.append(f"<!-- {item.bundle.spec} ({item.bundle.file}):\n{licence.strip()}\n-->")
        scripts.append(f"<script>/* {item.bundle.spec} */\n{item.script.strip()}\n</script>")
    scripts.append(f"<script>/* chartdistill: SVG by default */\n{SVG_DEFAULT}\n</script>")
    versions = ", ".join(item.bundle.spec for item in fetched)
    return (
        "<!DOCTYPE html>\n"
        f"<!-- Offline page for `dvc plots show`, written by python -m chartdistill.plots_template"
        f"\n     with {versions} inlined. Do not edit by hand. -->\n"
        + "\n".join(notices)
        + '\n<html>\n<head>\n<meta charset="utf-8">\n<title>DVC Plot</title>\n'
        + "\n".join(scripts)
        + "\n<style>\ntable { border-spacing: 15px; }\n</style>\n</head>\n<body>\n"
        + PLOTS_PLACEHOLDER
        + "\n</body>\n</html>\n"
    )


def check_offline(html: str) -> None:
    """Raise if the page cannot serve offline: no placeholder, or a script from the network."""
    if PLOTS_PLACEHOLDER not in html:
        raise TemplateError(f"the page has no {PLOTS_PLACEHOLDER} placeholder")
    if "{scripts}" in html:
        raise TemplateError("the page has DVC's {scripts} placeholder: DVC would add CDN scripts")
    remote = re.findall(r"<script[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//[^\"'> ]+", html, re.I)
    if remote:
        raise TemplateError(f"the page loads scripts from the network: {remote}")
    for bundle in BUNDLES:
        if f"/* {bundle.spec} */" not in html:
            raise TemplateError(f"the page does not inline {bundle.spec}")


def write(path: Path = DEFAULT_TEMPLATE, fetched: Sequence[Fetched] | None = None) -> Path:
    """Build the page (fetching the bundles with npm unless given) and write it atomically."""
    html = render(fetched if fetched is not None else fetch())
    check_offline(html)
    atomic_write_text(path, html)
    log.info("wrote %s (%d kB)", path, len(html) // 1024)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_TEMPLATE)
    parser.add_argument("--npm", default="npm", help="the npm executable")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    write(args.output, fetch(npm=args.npm))


if __name__ == "__main__":
    main()
