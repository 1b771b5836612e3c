"""bench.suite's per-machine-kind table in BENCHMARKS.md: one dated row per kind."""

from __future__ import annotations

from bench.suite import COLD_ROW, KINDS_HEADING, TESTS_ROW, Row, kind_rows, kinds_table

EPYC = {"cpu": "AMD EPYC", "nproc": "2", "flags": "avx2"}
XEON = {"cpu": "Intel Xeon", "nproc": "2", "flags": "amx_bf16 avx2 avx512_bf16 avx512f"}


def cold_row(minutes: float) -> Row:
    return Row(f"{COLD_ROW} (2 cores)", minutes, "min", "<= 12 min", minutes <= 12)


def suite_row(minutes: float) -> Row:
    return Row(TESTS_ROW, minutes, "min (699 passed)", "<= 25 min", True)


def test_a_first_write_makes_the_table_with_this_kinds_row() -> None:
    text = kinds_table("", [cold_row(27.34), suite_row(15.6)], EPYC, "abc1234")
    assert text.startswith(KINDS_HEADING)
    (row,) = kind_rows(text).values()
    assert row[0] == "AMD EPYC, 2 cores, avx2"
    assert row[2:] == ["abc1234", row[3], "27.34 min", "15.60 min"]
    assert row[3] in ("float32", "bfloat16")


def test_a_write_replaces_only_its_own_kinds_row_and_keeps_what_it_did_not_measure() -> None:
    before = kinds_table("", [cold_row(27.34), suite_row(15.6)], EPYC, "abc1234")
    before = kinds_table(
        before + "## Notes\n\nkept\n", [cold_row(13.07), suite_row(12.2)], XEON, "def5678"
    )
    after = kinds_table(before, [cold_row(12.5)], XEON, "0a0a0a0")
    rows = kind_rows(after)
    assert set(rows) == {"AMD EPYC, 2 cores, avx2", f"Intel Xeon, 2 cores, {XEON['flags']}"}
    assert rows["AMD EPYC, 2 cores, avx2"][2:] == kind_rows(before)["AMD EPYC, 2 cores, avx2"][2:]
    xeon = rows[f"Intel Xeon, 2 cores, {XEON['flags']}"]
    assert (xeon[2], xeon[4], xeon[5]) == ("0a0a0a0", "12.50 min", "12.20 min")
    assert "## Notes" not in after  # the notes are kept by the caller, below the table
