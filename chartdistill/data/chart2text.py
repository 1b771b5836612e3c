"""Import charts from the Chart-to-text layout (vis-nlp/Chart-to-text) as ChartRecords.

The dataset itself is not shipped (reported GPL-3.0); point `charts.chart2text.root` at a
checkout that holds `statista_dataset/` and/or `pew_dataset/`. Layout per dataset folder:
`imgs/N.png`, `data/N.csv` (Statista) or `data/N.txt` (Pew OCR), `titles/N.txt`,
`captions/N.txt`, `metadata.csv`, `dataset_split/{train,val,test}_index_mapping.csv`
(column `File_No`, values such as `two_col-21156.txt`); `statista_dataset/dataset/multiColumn/`
repeats the layout for multi-series charts.

How the quirks are handled:
- Chart type comes from the metadata column `chartType` (column -> bar; bar, line, pie, table
  kept; anything else is rejected as `unknown_chart_type`).
- Titles: mojibake is repaired, then Statista's tokenisation is undone (`( in millions )` ->
  `(in millions)`, `2020 ,` -> `2020,`, `Facebook 's` -> `Facebook's`, `do n't` -> `don't`,
  `$ 3` -> `$3`); the raw title is kept in `provenance["original_title"]`.
- Mojibake (UTF-8 read as cp1252/latin-1, e.g. `â€™`) is repaired run by run: each run of
  non-ASCII characters is re-encoded as cp1252 (latin-1 for the five bytes cp1252 leaves
  undefined) and decoded as UTF-8; a run is replaced only when that decode succeeds.
- Cells: `12.5%` -> 12.5 (unit `%`), `1,234` -> 1234, `$3.2` -> 3.2 (unit `$`); `-`, `n/a` and
  empty cells are missing values (None); other text counts in `provenance["unparsed_cells"]`.
- Unit: `%` when the values carry it; else the phrase after `in` in the y-axis label or a value
  column header (`Revenue in million U.S. dollars` -> `million U.S. dollars`), or `%` when that
  label speaks of a share or percentage; else the currency sign on the values (`$`, `€`, `£`).
  Axis labels come from the Statista metadata (`xAxis`, `yAxis`) where present, else from the
  table header.
- Time series stored newest first (years, `Q3 '20`, `Jan 2020`, `H1 2019`, `2019/20`, with or
  without a trailing `*`) are reversed to chronological order when every label is a time and the
  labels strictly decrease; `provenance["reversed_time_order"]` says so.
- Pew data files are OCR text joined by ` | `. The raw text is kept in
  `provenance["ocr_text"]`; a segment becomes a row when it reads `<label with a letter>
  <number>[x|%]` (label at most 8 words / 60 characters); segments with only numbers (axis
  ticks) or no number (headings) are skipped. The table is read as percentages when any value
  carries `x` or `%`, or the text mentions `%`, `percent` or `share`, or a segment starts with
  `x of` (OCR for `% of`). In a percentage table a three-digit number ending in 9 with no marker
  is read as the first two digits with a lost `%` (`spanish 429` -> 42); those labels are listed
  in `provenance["ocr_percent_fixes"]`. Numbers in tables that are not percentages are kept.
- Splits: a chart's key is the metadata `old_id` when present, else `two_col-N` (Statista) or
  `multi_col-N` (multiColumn); the split files map keys to train / validation / test. Charts in
  no split file get `split = None`. Statista's own split files list `multi_col-*` keys too, so
  both Statista folders' split files are read for both Statista datasets.
- Order and limit: items are numbered by file number within each dataset and the datasets are
  interleaved round robin (in the order given), so every dataset contributes; at most
  `limit_per_type` charts of each type are kept. Once a type is full, further charts of that type
  are skipped without being checked (and without a Reject).

Bad items never stop the import: each becomes a `Reject(item="<dataset>/<N>", reason, detail)`
with reason one of missing_metadata, unknown_chart_type, missing_image, unreadable_image,
image_too_large (over MAX_IMAGE_PIXELS), missing_data, non_utf8, empty_table, ragged_table,
unparsable_table, non_numeric_table, missing_title, invalid_record.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

from PIL import Image, UnidentifiedImageError
from pydantic import Field, ValidationError, field_validator
from tqdm import tqdm

from chartdistill.config import InputError, Section
from chartdistill.data.records import CHART_TYPES, ChartRecord, ChartType, Reject
from chartdistill.io import atomic_write_bytes

log = logging.getLogger(__name__)

DatasetName = Literal["statista", "statista_multi", "pew"]

DATASET_DIRS: dict[str, tuple[str, ...]] = {
    "statista": ("statista_dataset", "dataset"),
    "statista_multi": ("statista_dataset", "dataset", "multiColumn"),
    "pew": ("pew_dataset", "dataset"),
}
# Statista's split files list both two_col-* and multi_col-* keys, so both folders are read.
SPLIT_SOURCES: dict[str, tuple[str, ...]] = {
    "statista": ("statista", "statista_multi"),
    "statista_multi": ("statista", "statista_multi"),
    "pew": ("pew",),
}
DEFAULT_KEY_PREFIX: dict[str, str] = {"statista": "two_col", "statista_multi": "multi_col"}
SPLIT_NAMES: dict[str, str] = {"train": "train", "val": "validation", "test": "test"}
SPLIT_DIRS: tuple[str, ...] = ("dataset_split", "dataset_splits")
CHART_TYPE_MAP: dict[str, ChartType] = {
    "column": "bar",
    "bar": "bar",
    "line": "line",
    "pie": "pie",
    "table": "table",
}
MISSING_CELLS = frozenset({"", "-", "–", "—", "n/a", "na", "n.a.", "none", "null", "nan", "..."})


class Chart2TextParams(Section):
    """params.yaml `charts.chart2text`: where the Chart-to-text checkout is and what to take."""

    root: Path | None = None
    datasets: list[DatasetName] = Field(default=["statista", "statista_multi", "pew"], min_length=1)
    limit_per_type: int = Field(default=200, ge=1)

    @field_validator("datasets")
    @classmethod
    def _unique(cls, value: list[DatasetName]) -> list[DatasetName]:
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"dataset listed more than once: {', '.join(repeated)}")
        return value


class _ItemError(Exception):
    """One item cannot be imported; becomes a Reject."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class _Dataset:
    name: str
    folder: Path
    metadata: dict[int, dict[str, str]]
    splits: dict[str, str]
    numbers: list[int]


@dataclass
class _Table:
    columns: list[str]
    rows: list[list[Any]]
    symbols: Counter[str] = field(default_factory=Counter)
    unparsed: int = 0
    percent: bool = False
    ocr_text: str | None = None
    percent_fixes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- text repair


_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")


def _fix_run(match: re.Match[str]) -> str:
    run = match.group(0)
    raw = bytearray()
    for char in run:
        try:
            raw += char.encode("cp1252")
        except UnicodeEncodeError:
            if ord(char) > 0xFF:
                return run
            raw.append(ord(char))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return run


def repair_mojibake(text: str) -> str:
    """Undo UTF-8 text decoded as cp1252/latin-1 (`â€™` -> `’`), leaving valid text alone."""
    for _ in range(2):  # twice covers text that was mis-decoded twice
        fixed = _NON_ASCII_RUN.sub(_fix_run, text)
        if fixed == text:
            break
        text = fixed
    return text


def clean_text(text: str) -> str:
    """Repair mojibake and collapse whitespace."""
    return re.sub(r"\s+", " ", repair_mojibake(text)).strip()


_TITLE_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"([(\[{])\s+"), r"\1"),  # "( in" -> "(in"
    (re.compile(r"\s+([)\]}])"), r"\1"),  # "millions )" -> "millions)"
    (re.compile(r"\s+([,.;:!?])"), r"\1"),  # "2020 ," -> "2020,"
    (re.compile(r"(\d)\s+%"), r"\1%"),  # "12 %" -> "12%" (but "(in %)" stays)
    (re.compile(r"(\w)\s*(['’])\s*(s|re|ve|ll|d|m)\b"), r"\1\2\3"),  # "X ' s" -> "X's"
    (re.compile(r"(\w)\s+(n['’]t)\b"), r"\1\2"),  # "do n't" -> "don't"
    (re.compile(r"([$€£¥])\s+(\d)"), r"\1\2"),  # "$ 3" -> "$3"
)


def clean_title(text: str) -> str:
    """Repair mojibake and undo Statista's pre-tokenisation of titles."""
    title = clean_text(text)
    for pattern, replacement in _TITLE_RULES:
        title = pattern.sub(replacement, title)
    return title


# ---------------------------------------------------------------- numbers


_NUMBER = re.compile(
    r"^(?P<sign>[-−+]?)\s*(?P<cur>[$€£¥])?\s*(?P<sign2>[-−+]?)"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)\s*(?P<pct>%)?$"
)


def parse_number(cell: str) -> tuple[int | float | None, str]:
    """A table cell as (number, symbol): `12.5%` -> (12.5, "%"), `$1,234` -> (1234, "$").

    Missing markers (`-`, `n/a`, empty) give (None, ""); other text raises ValueError.
    """
    text = cell.strip().replace("\u00a0", " ")
    if text.lower() in MISSING_CELLS:
        return None, ""
    match = _NUMBER.match(text)
    if match is None:
        raise ValueError(f"not a number: {cell!r}")
    digits = match["num"].replace(",", "")
    value: int | float = float(digits) if "." in digits else int(digits)
    if "-" in match["sign"] + match["sign2"] or "−" in match["sign"] + match["sign2"]:
        value = -value
    symbol = "%" if match["pct"] else (match["cur"] or "")
    return value, symbol


# ---------------------------------------------------------------- time order


_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}
_YEAR = r"(?:'(?P<yy>\d{2})|(?P<yyyy>1[6-9]\d{2}|20\d{2}|2100))"
_TIME_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("year", re.compile(rf"^(?:FY\s*)?{_YEAR}(?:/(?:\d{{2}}|\d{{4}}))?$", re.I)),
    ("quarter", re.compile(rf"^Q(?P<sub>[1-4])\s*{_YEAR}$", re.I)),
    ("half", re.compile(rf"^H(?P<sub>[12])\s*{_YEAR}$", re.I)),
    ("month", re.compile(rf"^(?P<month>[A-Za-z]{{3,9}})\.?\s*{_YEAR}$")),
)


def _full_year(match: re.Match[str]) -> int:
    if match["yyyy"]:
        return int(match["yyyy"])
    short = int(match["yy"])
    return 2000 + short if short < 70 else 1900 + short


def time_key(label: str) -> tuple[int, int] | None:
    """Sortable (year, period) for a time label such as `2020`, `2021*`, `Q3 '20`, `Jan 2019`."""
    text = label.strip().rstrip("*").strip()
    for kind, pattern in _TIME_PATTERNS:
        match = pattern.match(text)
        if match is None:
            continue
        if kind == "month":
            month = _MONTHS.get(match["month"].lower())
            if month is None:
                return None
            return _full_year(match), month
        period = int(match["sub"]) if kind in ("quarter", "half") else 0
        if kind == "half":
            period = 1 if period == 1 else 3  # H1 sorts with Q1, H2 with Q3
        return _full_year(match), period
    return None


def chronological(rows: list[list[Any]]) -> tuple[list[list[Any]], bool]:
    """Rows in time order: a newest-first time series is reversed; anything else is kept."""
    keys = [time_key(str(row[0])) for row in rows]
    if len(rows) < 2 or any(key is None for key in keys):
        return rows, False
    if all(a > b for a, b in pairwise(keys)):  # type: ignore[operator]
        return rows[::-1], True
    return rows, False


# ---------------------------------------------------------------- units


_UNIT_WORDS = (
    r"(?:hundred|thousand|million|billion|trillion|percent|u\.s\.|us|usd|eur|gbp|euro|dollar|"
    r"pound|yen|yuan|rupee|franc|won|metric|ton|tonne|kilo|gram|meter|metre|kilometer|mile|"
    r"liter|litre|gallon|barrel|hour|minute|second|day|week|month|year|degree|square|cubic|"
    r"[kmgt]wh|[kmgt]w|gb|tb|mb)"
)
_UNIT_PHRASE = re.compile(rf"\bin ({_UNIT_WORDS}\w*\b[^,()]*)", re.I)
_PARENS_UNIT = re.compile(r"\(\s*in ([^)]+?)\s*\)", re.I)
_PERCENT_WORDS = re.compile(r"\b(?:percent|percentage|share)\b", re.I)


def unit_from_label(label: str) -> str:
    """The unit a label names: `Sales in billion euros` -> `billion euros`, `Share of` -> `%`."""
    match = _PARENS_UNIT.search(label) or _UNIT_PHRASE.search(label)
    if match:
        return match.group(1).strip()
    return "%" if _PERCENT_WORDS.search(label) else ""


def choose_unit(symbols: Counter[str], labels: list[str], percent: bool = False) -> str:
    """The table's unit: `%` on the values, else a unit named by a label, else a currency sign."""
    ranked = [s for s, _ in sorted(symbols.items(), key=lambda kv: (-kv[1], kv[0]))]
    if percent or ranked[:1] == ["%"]:
        return "%"
    for label in labels:
        unit = unit_from_label(label)
        if unit:
            return unit
    return ranked[0] if ranked else ""


# ---------------------------------------------------------------- tables


def parse_csv_table(text: str) -> _Table:
    """A Statista data CSV (header + rows) as a table with numeric values."""
    try:
        lines = [row for row in csv.reader(io.StringIO(text)) if any(c.strip() for c in row)]
    except csv.Error as exc:
        raise _ItemError("unparsable_table", f"CSV error: {exc}") from exc
    if not lines:
        raise _ItemError("empty_table", "data file has no rows")
    header, body = lines[0], lines[1:]
    if not body:
        raise _ItemError("empty_table", "data file has a header but no rows")
    if len(header) < 2:
        raise _ItemError("empty_table", "needs a label column and at least one value column")
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise _ItemError(
                "ragged_table", f"line {number} has {len(row)} cells, header has {len(header)}"
            )
    table = _Table(columns=[clean_text(c) for c in header], rows=[])
    for row in body:
        values: list[Any] = [clean_text(row[0])]
        for cell in row[1:]:
            try:
                value, symbol = parse_number(repair_mojibake(cell))
            except ValueError:
                value, symbol = None, ""
                table.unparsed += 1
            if symbol:
                table.symbols[symbol] += 1
            values.append(value)
        table.rows.append(values)
    _require_numbers(table)
    return table


_OCR_PAIR = re.compile(
    r"^(?P<label>.*?[A-Za-z].*?)\s+(?P<cur>[$€£¥])?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)\s?(?P<mark>%|x|X)?$"
)
_OCR_PERCENT_TEXT = re.compile(r"%|\bpercent|\bshare\b|(?:^|\|)\s*x of\b", re.I)
OCR_MAX_LABEL_WORDS = 8
OCR_MAX_LABEL_CHARS = 60


def parse_pew_ocr(text: str) -> _Table:
    """Best-effort label/number pairs from Pew's ` | `-joined OCR text (see the module notes)."""
    if not text.strip():
        raise _ItemError("empty_table", "OCR data file is empty")
    pairs: list[tuple[str, re.Match[str]]] = []
    for segment in text.split("|"):
        segment = clean_text(segment)
        match = _OCR_PAIR.match(segment)
        if match is None:
            continue
        label = match["label"].strip(" :-–")
        if len(label) > OCR_MAX_LABEL_CHARS or len(label.split()) > OCR_MAX_LABEL_WORDS:
            continue
        pairs.append((label, match))
    percent = bool(_OCR_PERCENT_TEXT.search(text)) or any(m["mark"] for _, m in pairs)
    table = _Table(columns=["Category", "Value"], rows=[], percent=percent, ocr_text=text)
    for label, match in pairs:
        digits = match["num"].replace(",", "")
        value: int | float = float(digits) if "." in digits else int(digits)
        if percent and not match["mark"] and re.fullmatch(r"\d{2}9", digits):
            value = int(digits[:2])
            table.percent_fixes.append(label)
        if match["cur"]:
            table.symbols[match["cur"]] += 1
        table.rows.append([label, value])
    if not table.rows:
        raise _ItemError("non_numeric_table", "no '<label> <number>' pairs in the OCR text")
    return table


def _require_numbers(table: _Table) -> None:
    if all(v is None for row in table.rows for v in row[1:]):
        raise _ItemError("non_numeric_table", "no numeric values in the value columns")


# ---------------------------------------------------------------- files


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _ItemError(
            "non_utf8",
            f"{path.parent.name}/{path.name}: not UTF-8 ({exc.reason} at byte {exc.start})",
        ) from exc


_PNG_MODES = frozenset({"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"})
# Charts are a few hundred pixels a side (Chart-to-text: ~800x600); the student sees at most a
# few 448 px tiles. Anything above 16 megapixels is a broken or hostile file, not a chart:
# rejected from its header, before a single pixel is decoded (PIL only warns up to ~89 MP).
MAX_IMAGE_PIXELS = 4096 * 4096


def _check_size(image: Image.Image, name: str) -> None:
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise _ItemError(
            "image_too_large",
            f"imgs/{name}: {width}x{height} pixels is over the {MAX_IMAGE_PIXELS:,}-pixel limit",
        )


def load_png(path: Path) -> bytes:
    """The image as PNG bytes after PIL verify + load (non-PNG images are re-encoded).
    Images over MAX_IMAGE_PIXELS are rejected from their header, without decoding them."""
    data = path.read_bytes()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                _check_size(image, path.name)
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.format == "PNG":
                return data
            converted = image if image.mode in _PNG_MODES else image.convert("RGB")
            buffer = io.BytesIO()
            converted.save(buffer, format="PNG")
            return buffer.getvalue()
    except UnidentifiedImageError as exc:  # its message names a memory address: keep it out
        raise _ItemError("unreadable_image", f"imgs/{path.name}: not an image file") from exc
    except Image.DecompressionBombError as exc:
        raise _ItemError("image_too_large", f"imgs/{path.name}: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise _ItemError("unreadable_image", f"imgs/{path.name}: {exc}") from exc


def _read_metadata(path: Path) -> dict[int, dict[str, str]]:
    """metadata.csv rows by file number, with lower-cased column names."""
    import pandas as pd  # only the import needs it; params loading stays light

    if not path.is_file():
        raise InputError(f"{path}: metadata.csv not found (not a Chart-to-text dataset folder?)")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: cannot read metadata: {exc}") from exc
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if "id" not in frame.columns and "datapath" not in frame.columns:
        raise InputError(f"{path}: metadata needs an 'id' or 'dataPath' column")
    rows: dict[int, dict[str, str]] = {}
    for record in frame.to_dict(orient="records"):
        raw_id = record.get("id") or Path(record.get("datapath", "")).stem
        try:
            number = int(str(raw_id).strip())
        except ValueError:
            log.warning("%s: skipping metadata row with id %r", path, raw_id)
            continue
        rows.setdefault(number, {k: str(v) for k, v in record.items()})
    return rows


def _read_splits(folders: list[Path]) -> dict[str, str]:
    """Split file keys (`two_col-21156`) -> train / validation / test."""
    splits: dict[str, str] = {}
    for folder in folders:
        for dirname in SPLIT_DIRS:
            for prefix, split in SPLIT_NAMES.items():
                path = folder / dirname / f"{prefix}_index_mapping.csv"
                if path.is_file():
                    _add_split_file(path, split, splits)
    return splits


def _add_split_file(path: Path, split: str, splits: dict[str, str]) -> None:
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError:
        log.warning("%s: empty split file", path)
        return
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: cannot read split file: {exc}") from exc
    column = next((c for c in frame.columns if str(c).strip().lower() == "file_no"), None)
    if column is None:
        raise InputError(f"{path}: split file has no File_No column")
    for value in frame[column]:
        key = Path(value.strip()).stem
        if not key:
            continue
        previous = splits.setdefault(key, split)
        if previous != split:
            log.warning("%s: %s already in split %s; keeping %s", path, key, previous, previous)


def _file_numbers(folder: Path) -> set[int]:
    numbers: set[int] = set()
    for sub in ("imgs", "data"):
        if (folder / sub).is_dir():
            numbers.update(int(p.stem) for p in (folder / sub).iterdir() if p.stem.isdigit())
    return numbers


def _load_dataset(root: Path, name: str) -> _Dataset | None:
    folder = root.joinpath(*DATASET_DIRS[name])
    if not folder.is_dir():
        return None
    metadata = _read_metadata(folder / "metadata.csv")
    split_folders = [root.joinpath(*DATASET_DIRS[source]) for source in SPLIT_SOURCES[name]]
    numbers = sorted(set(metadata) | _file_numbers(folder))
    return _Dataset(name, folder, metadata, _read_splits(split_folders), numbers)


# ---------------------------------------------------------------- items


def _chart_type(dataset: _Dataset, number: int) -> ChartType:
    meta = dataset.metadata.get(number)
    if meta is None:
        raise _ItemError("missing_metadata", f"no row for id {number} in metadata.csv")
    raw = (meta.get("charttype") or meta.get("chart_type") or "").strip()
    chart_type = CHART_TYPE_MAP.get(raw.lower())
    if chart_type is None:
        raise _ItemError(
            "unknown_chart_type",
            f"chartType {raw!r} is not one of column, {', '.join(CHART_TYPES)}",
        )
    return chart_type


def _data_path(dataset: _Dataset, number: int) -> Path:
    for suffix in (".csv", ".txt"):
        path = dataset.folder / "data" / f"{number}{suffix}"
        if path.is_file():
            return path
    raise _ItemError("missing_data", f"no data/{number}.csv or data/{number}.txt")


def _read_table(dataset: _Dataset, number: int) -> _Table:
    path = _data_path(dataset, number)
    text = _read_text(path)
    if dataset.name == "pew" and path.suffix == ".txt":
        return parse_pew_ocr(text)
    return parse_csv_table(text)


def _read_optional(path: Path) -> str:
    return _read_text(path).strip() if path.is_file() else ""


def _split_key(dataset: _Dataset, number: int, meta: dict[str, str]) -> str | None:
    old_id = meta.get("old_id", "").strip()
    if old_id:
        return Path(old_id).stem
    prefix = DEFAULT_KEY_PREFIX.get(dataset.name)
    return f"{prefix}-{number}" if prefix else None


def _build_record(
    dataset: _Dataset, number: int, chart_type: ChartType
) -> tuple[ChartRecord, bytes]:
    meta = dataset.metadata[number]
    image_path = dataset.folder / "imgs" / f"{number}.png"
    if not image_path.is_file():
        raise _ItemError("missing_image", f"imgs/{number}.png not found")
    table = _read_table(dataset, number)
    raw_title = (
        _read_optional(dataset.folder / "titles" / f"{number}.txt") or meta.get("title", "").strip()
    )
    if not raw_title:
        raise _ItemError("missing_title", f"titles/{number}.txt and the metadata title are empty")
    caption = clean_text(_read_optional(dataset.folder / "captions" / f"{number}.txt"))
    image = load_png(image_path)

    rows, reversed_order = chronological(table.rows)
    columns = list(table.columns)
    x_label = clean_text(meta.get("xaxis", "")) or (columns[0] if table.ocr_text is None else "")
    y_label = clean_text(meta.get("yaxis", ""))
    if not y_label and table.ocr_text is None and len(columns) == 2:
        y_label = columns[1]
    columns[0] = columns[0] or x_label or "Characteristic"
    labels = [y_label, *columns[1:]] if table.ocr_text is None else []
    unit = choose_unit(table.symbols, labels, percent=table.percent)
    key = _split_key(dataset, number, meta)
    provenance: dict[str, Any] = {
        "dataset": dataset.name,
        "file_number": number,
        "split_key": key,
        "original_title": raw_title,
        "caption": caption,
        "url": meta.get("url", "").strip(),
        "reversed_time_order": reversed_order,
    }
    if table.ocr_text is None:
        provenance["unparsed_cells"] = table.unparsed
    else:
        provenance["ocr_text"] = table.ocr_text
        provenance["ocr_percent_fixes"] = table.percent_fixes
    record_id = f"{dataset.name}-{number}"
    try:
        record = ChartRecord(
            id=record_id,
            chart_type=chart_type,
            title=clean_title(raw_title),
            x_label=x_label,
            y_label=y_label,
            unit=unit,
            columns=columns,
            rows=rows,
            image=f"images/{record_id}.png",
            source=dataset.name,
            split=dataset.splits.get(key) if key else None,
            provenance=provenance,
        )
    except ValidationError as exc:
        raise _ItemError("invalid_record", str(exc).replace("\n", " ")) from exc
    return record, image


def _interleave(datasets: list[_Dataset]) -> Iterator[tuple[_Dataset, int]]:
    longest = max((len(d.numbers) for d in datasets), default=0)
    for index in range(longest):
        for dataset in datasets:
            if index < len(dataset.numbers):
                yield dataset, dataset.numbers[index]


def _open_datasets(params: Chart2TextParams) -> list[_Dataset]:
    if params.root is None:
        raise InputError("charts.chart2text.root is not set: point it at a Chart-to-text checkout")
    root = Path(params.root)
    if not root.is_dir():
        raise InputError(f"charts.chart2text.root: {root} is not a folder")
    datasets = [d for name in params.datasets if (d := _load_dataset(root, name)) is not None]
    found = {d.name for d in datasets}
    if not datasets:
        wanted = ", ".join("/".join(DATASET_DIRS[n]) for n in params.datasets)
        raise InputError(f"{root}: none of the requested datasets found (looked for {wanted})")
    for name in params.datasets:
        if name not in found:
            log.warning("%s: dataset %s not found, skipping", root, name)
    return datasets


def import_chart2text(
    params: Chart2TextParams, out_dir: Path
) -> tuple[list[ChartRecord], list[Reject]]:
    """Import Chart-to-text charts: images copied to out_dir/images/<id>.png, records + rejects."""
    datasets = _open_datasets(params)
    total = sum(len(d.numbers) for d in datasets)
    kept: Counter[str] = Counter()
    records: list[ChartRecord] = []
    rejects: list[Reject] = []
    over_limit = 0
    for dataset, number in tqdm(
        _interleave(datasets), total=total, desc="chart2text", unit="chart"
    ):
        if all(kept[t] >= params.limit_per_type for t in CHART_TYPES):
            break
        item = f"{dataset.name}/{number}"
        try:
            chart_type = _chart_type(dataset, number)
            if kept[chart_type] >= params.limit_per_type:
                over_limit += 1
                continue
            record, image = _build_record(dataset, number, chart_type)
        except _ItemError as exc:
            log.debug("%s rejected: %s", item, exc)
            rejects.append(Reject(item=item, reason=exc.reason, detail=exc.detail))
            continue
        atomic_write_bytes(out_dir / record.image, image)
        records.append(record)
        kept[chart_type] += 1
    reasons = Counter(r.reason for r in rejects)
    log.info(
        "chart2text: %d charts (%s), %d rejected (%s), %d skipped over the per-type limit",
        len(records),
        ", ".join(f"{t}={kept[t]}" for t in CHART_TYPES),
        len(rejects),
        ", ".join(f"{k}={v}" for k, v in sorted(reasons.items())) or "none",
        over_limit,
    )
    return records, rejects
