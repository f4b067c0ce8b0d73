"""The header checks of the normalizer: linear in the number of columns, and messages that never
echo a cell that could be an email address (a file without a header line)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from canopycli.config import Param, Segment
from canopycli.errors import InputError
from canopycli.model import Profile, Reject
from canopycli.pipeline.normalize import Normalizer
from canopycli.pipeline.read import open_source

from .conftest import reject_of


def segment(**kw: object) -> Segment:
    return Segment.model_validate({"connector": "main", "id_column": "email", **kw})


def test_a_100000_column_header_is_linear() -> None:
    """1.0 looked each column up with list.index: about a minute for 100,000 columns."""
    cols = [f"c{i}" for i in range(100_000)] + ["email"]
    params = [{"name": f"p{i}", "column": f"c{99_999 - i}"} for i in range(500)]
    t = time.perf_counter()
    n = Normalizer(segment(), "hashed_email", cols)
    m = Normalizer(segment(params=params), "hashed_email", cols)
    took = time.perf_counter() - t
    assert took < 3, f"{took:.1f} s"
    assert n.id_key == 100_000 and m.specs is not None and m.specs[0][0] == 99_999
    row = ["v"] * 100_000 + ["a@x.com"]
    got = n(2, row)
    assert isinstance(got, Profile) and len(got.customer["params"]) == 100_000  # type: ignore[index]


def test_a_wide_file_reads_in_well_under_a_second_per_part(tmp_path: Path) -> None:
    p = tmp_path / "wide.csv"
    cols = ["email"] + [f"c{i}" for i in range(100_000)]
    p.write_text(",".join(cols) + "\n" + ",".join(["a@x.com"] + ["v"] * 100_000) + "\n")
    t = time.perf_counter()
    src = open_source(str(p))
    try:
        assert src.columns is not None and len(src.columns) == 100_001
    finally:
        src.close()
    assert time.perf_counter() - t < 3


@pytest.mark.parametrize("params", [None, [{"name": "firstName"}]])
def test_headerless_csv_never_echoes_its_first_line(tmp_path: Path, params: object) -> None:
    """1.0: ``no id column 'email' (columns: a@x.com, Ann)``: the first row, printed."""
    p = tmp_path / "s.csv"
    p.write_text("ann@example.com,Ann\nbob@example.com,Bob\n")
    src = open_source(str(p))
    try:
        with pytest.raises(InputError) as e:
            Normalizer(segment(params=params), "hashed_email", src.columns, source_name=src.name)
    finally:
        src.close()
    text = str(e.value)
    assert "@" not in text and "Ann" not in text
    assert "the first line has no column named 'email'" in text and "may have no header line" in text


def test_missing_param_column_on_a_headerless_file_suggests_the_header(tmp_path: Path) -> None:
    cols = ["email", "ann@example.com", "Ann"]  # the id column is there by chance, the rest is data
    with pytest.raises(InputError) as e:
        Normalizer(segment(params=[{"name": "firstName"}]), "hashed_email", cols)
    assert "param column(s) not in the header: firstName" in str(e.value)
    assert "may have no header line" in str(e.value) and "ann@" not in str(e.value)


def test_a_long_header_is_not_printed_whole() -> None:
    cols = [f"column_{i}" for i in range(1_000)]
    with pytest.raises(InputError) as e:
        Normalizer(segment(), "hashed_email", cols)
    assert "column_0" in str(e.value) and "(and 980 more)" in str(e.value) and len(str(e.value)) < 600


def test_reasons_name_a_column_by_position_when_its_name_could_be_an_email() -> None:
    cols = ["email", "bob@example.com"]
    n = Normalizer(segment(), "hashed_email", cols)
    got = n(2, ["a@x.com", "x" * 300])
    assert reject_of(got) == Reject(2, "column 2: is longer than 256 characters (300)")
    j = Normalizer(segment(), "hashed_email", None)
    got = j(1, {"email": "a@x.com", "bob@example.com": {"nested": 1}})
    assert isinstance(got, Reject) and "@" not in got.reason and "nested object" in got.reason


def test_params_given_by_name_still_work_with_a_header() -> None:
    n = Normalizer(segment(params=[Param(name="first", column="fn").model_dump()]), "hashed_email", ["fn", "email"])
    got = n(2, ["Ann", "a@x.com"])
    assert isinstance(got, Profile)
    assert got.customer["params"] == [{"name": "first", "type": "string", "value": "Ann"}]  # type: ignore[index]
