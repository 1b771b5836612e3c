"""A small tree in the Chart-to-text layout with every quirk and bad input the importer handles.

All content is made up for the tests (the real dataset is not vendored).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from PIL import Image

STATISTA_META = ["id", "title", "imgPath", "URL", "dataPath", "chartType", "xAxis", "yAxis"]
PEW_META = ["id", "old_id", "title", "imgPath", "caption", "URL", "dataPath", "chartType"]


def png_bytes(color: tuple[int, int, int], size: tuple[int, int] = (12, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 8), color).save(buffer, format="JPEG")
    return buffer.getvalue()


def _write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)


def _metadata(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    _write(path, buffer.getvalue())


def _split(folder: Path, name: str, keys: list[str]) -> None:
    _write(
        folder / "dataset_split" / f"{name}_index_mapping.csv",
        "File_No\n" + "".join(f"{k}.txt\n" for k in keys),
    )


def _item(
    folder: Path,
    number: int,
    *,
    data: str | bytes | None,
    image: bytes | None = None,
    title: str | bytes | None = None,
    caption: str | None = None,
    suffix: str = ".csv",
) -> None:
    _write(
        folder / "imgs" / f"{number}.png",
        image if image is not None else png_bytes((number * 10 % 256, 40, 90)),
    )
    if data is not None:
        _write(folder / "data" / f"{number}{suffix}", data)
    if title is not None:
        _write(folder / "titles" / f"{number}.txt", title)
    if caption is not None:
        _write(folder / "captions" / f"{number}.txt", caption)


def build_statista(root: Path) -> None:
    folder = root / "statista_dataset" / "dataset"
    _item(
        folder,
        1,
        title="Number of monthly active users of Service A worldwide as of 3rd "
        "quarter 2020 ( in millions )\n",
        caption="Service A had 2.74 billion users .\n",
        data="Quarter,Number of users in millions\nQ3 '20,2740\nQ2 '20,2701\n"
        "Q1 '20,2603\nQ4 '19,2498\n",
    )
    _item(
        folder,
        2,
        title="Brand Xâ€™s market share worldwide in 2020 , by vendor",
        data="Vendor,Market share\nVendor A,12.5%\nVendor B,20%\nOthers,67.5%\n",
    )
    _item(
        folder,
        3,
        title="Revenue of Company X 's streaming unit from 2018 to 2020 "
        "( in million U.S. dollars )",
        data='Year,Revenue in million U.S. dollars\n2020,"1,234"\n2019,"1,050.5"\n2018,987\n',
    )
    _item(
        folder,
        4,
        title="GDP per capita in selected countries",
        data="Country,GDP per capita\nNorway,$3.2\nSweden,$2.8\nDenmark,n/a\n",
    )
    _item(folder, 5, data="Year,Visitors\n2018,10\n2019,12\n2020,14\n")  # title from metadata
    _item(folder, 6, title="Scatter", data="A,B\nx,1\n")  # unknown chart type
    _item(folder, 7, title="No image", data="A,B\nx,1\n")
    (folder / "imgs" / "7.png").unlink()
    _item(folder, 8, title="Garbage image", data="A,B\nx,1\n", image=b"this is not a png")
    _item(
        folder,
        9,
        title="Truncated image",
        data="A,B\nx,1\n",
        image=png_bytes((1, 2, 3), (64, 64))[:60],
    )
    _item(folder, 10, title="Empty data", data="")
    _item(folder, 11, title="Ragged", data="Year,Value\n2019,1\n2020,2,3\n")
    _item(folder, 12, title="No numbers", data="Year,Value\n2019,n/a\n2020,unknown\n")
    _item(folder, 13, title="Latin-1 data", data="Name,Value\nCaf\xe9,12\n".encode("latin-1"))
    _item(folder, 14, title="Caf\xe9 prices".encode("latin-1"), data="A,B\nx,1\n")
    _item(
        folder,
        15,
        title="Coffee chains by number of stores",
        image=jpeg_bytes((200, 10, 10)),
        data="Chain,Stores\nCafÃ© Nero,1000\nCosta,2500\n",
    )
    _item(folder, 16, title="No metadata row", data="A,B\nx,1\n")
    _item(folder, 17, title="No data file", data=None)
    meta = {
        1: ("column", "Quarter", "Number of users in millions"),
        2: ("pie", "Vendor", "Market share"),
        3: ("line", "", ""),
        4: ("bar", "Country", "GDP per capita"),
        5: ("table", "", ""),
        6: ("scatter", "", ""),
        **{n: ("bar", "", "") for n in (7, 8, 9, 10, 11, 12, 13, 14, 17)},
        15: ("Column", "", ""),
    }
    rows = [
        {
            "id": str(n),
            "title": f"Metadata title {n}",
            "chartType": kind,
            "xAxis": x,
            "yAxis": y,
            "URL": f"https://example.org/statistics/{n}",
            "imgPath": f"imgs/{n}.png",
            "dataPath": f"data/{n}.csv",
        }
        for n, (kind, x, y) in sorted(meta.items())
    ]
    rows[4]["title"] = "Visitors to Museum Y 2018 - 2020"
    _metadata(folder / "metadata.csv", STATISTA_META, rows)
    _split(folder, "train", ["two_col-3", "two_col-999"])
    _split(folder, "val", ["two_col-2"])
    _split(folder, "test", ["two_col-1", "multi_col-1"])


def build_statista_multi(root: Path) -> None:
    folder = root / "statista_dataset" / "dataset" / "multiColumn"
    _item(
        folder,
        1,
        title="Population by gender , 2019 to 2021",
        data="Characteristic,Male,Female\n2021*,51%,49%\n2020,50.5%,49.5%\n2019,50%,50%\n",
    )
    _item(
        folder,
        2,
        title="Monthly sales and returns of Shop Z",
        data="Month,Sales,Returns\nJan 2020,10,1\nFeb 2020,12,-\nMar 2020,15,2\n",
    )
    _metadata(
        folder / "metadata.csv",
        STATISTA_META,
        [
            {"id": "1", "chartType": "column", "yAxis": "Share of population"},
            {"id": "2", "chartType": "line", "xAxis": "Month", "yAxis": "Sales in thousand units"},
        ],
    )
    _split(folder, "train", ["multi_col-2"])


PEW_OCR_PERCENT = (
    "x of adults who mainly speak  | at home  | all other 12x  | english only 199  | "
    "spanish 439  | chinese 7x  | 0  | 20 "
)
PEW_OCR_PLAIN = (
    "average weekday audience in thousands  | station a 429  | station b 310  | station c 95.5 "
)


def build_pew(root: Path) -> None:
    folder = root / "pew_dataset" / "dataset"
    _item(
        folder,
        1,
        suffix=".txt",
        title="Population over time",
        data="population in millions  | 50  | 40  | 1900  | 1950 ",
    )
    _item(
        folder,
        3,
        suffix=".txt",
        title="Languages spoken at home among adults, 2020",
        caption="Most adults speak English only.",
        data=PEW_OCR_PERCENT,
    )
    _item(folder, 4, suffix=".txt", title="Weekday audience of stations", data=PEW_OCR_PLAIN)
    _item(folder, 6, suffix=".txt", title="Area chart", data="a 1 | b 2")
    _metadata(
        folder / "metadata.csv",
        PEW_META,
        [
            {"id": "1", "old_id": "two_col-1", "chartType": "line"},
            {
                "id": "3",
                "old_id": "two_col-7",
                "chartType": "pie",
                "URL": "https://example.org/pew/3",
            },
            {"id": "4", "old_id": "multi_col-9", "chartType": "bar"},
            {"id": "6", "old_id": "two_col-8", "chartType": "area"},
        ],
    )
    _split(folder, "train", ["two_col-3"])  # number 3's own key is two_col-7, not two_col-3
    _split(folder, "val", ["two_col-7"])
    _split(folder, "test", ["two_col-1"])


def build_tree(root: Path) -> Path:
    build_statista(root)
    build_statista_multi(root)
    build_pew(root)
    return root
