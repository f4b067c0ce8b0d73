from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from canopycli.errors import InputError
from canopycli.read import open_source, sniff_delimiter


def records(path: Path, **kw: str) -> list[tuple[int, object]]:
    """The records, a CSV row (a list of cells in the header's order) shown as a dict for reading."""
    src = open_source(str(path), **kw)
    try:
        got = list(src.records)
    finally:
        src.close()
    for _, r in got:
        assert isinstance(r, str) or isinstance(r, list) == (src.format == "csv")
    return [(n, dict(zip(src.columns or (), r, strict=True)) if isinstance(r, list) else r) for n, r in got]


def test_csv_with_bom_crlf_quotes_and_physical_line_numbers(tmp_path: Path) -> None:
    p = tmp_path / "s.csv"
    p.write_bytes(b'\xef\xbb\xbfemail,note\r\na@x.com,"two\r\nlines"\r\n\r\nb@x.com,"say ""hi"""\r\n')
    got = records(p)
    assert got == [(2, {"email": "a@x.com", "note": "two\r\nlines"}), (5, {"email": "b@x.com", "note": 'say "hi"'})]


@pytest.mark.parametrize(("header", "delim"), [("a,b", ","), ("a;b", ";"), ("a\tb", "\t"), ("a|b", "|"), ("a", ",")])
def test_sniff_delimiter(header: str, delim: str) -> None:
    assert sniff_delimiter(header) == delim


def test_semicolon_and_explicit_delimiter(tmp_path: Path) -> None:
    p = tmp_path / "s.csv"
    p.write_text("email;city\na@x.com;Utrecht, NL\n")
    assert records(p) == [(2, {"email": "a@x.com", "city": "Utrecht, NL"})]
    assert records(p, delimiter=",")[0] == (2, "has 2 fields, the header has 1")


def test_wrong_field_count_is_a_rejected_record(tmp_path: Path) -> None:
    p = tmp_path / "s.csv"
    p.write_text("email,city\na@x.com\nb@x.com,Leiden\n")
    got = records(p)
    assert got[0] == (2, "has 1 fields, the header has 2")
    assert got[1] == (3, {"email": "b@x.com", "city": "Leiden"})


def test_invalid_utf8_is_carried_not_fatal(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 do not stop the file; the row is rejected when normalized (test_cli)."""
    p = tmp_path / "s.csv"
    p.write_bytes(b"email,city\na@x.com,Li\xe8ge\nb@x.com,Gent\n")
    got = records(p)
    assert got[0] == (2, {"email": "a@x.com", "city": "Li\udce8ge"})
    assert got[1] == (3, {"email": "b@x.com", "city": "Gent"})


def test_jsonl_blank_lines_bad_json_and_non_objects(tmp_path: Path) -> None:
    p = tmp_path / "s.jsonl"
    p.write_text('{"email": "a@x.com", "vip": true}\n\n[1,2]\n{oops\n{"email": "b@x.com"}\n')
    got = records(p)
    assert got[0] == (1, {"email": "a@x.com", "vip": True})
    assert got[1] == (3, "not a JSON object (got list)")
    assert got[2][0] == 4 and "not valid JSON" in str(got[2][1])
    assert got[3] == (5, {"email": "b@x.com"})


@pytest.mark.parametrize("name", ["s.csv.gz", "s.jsonl.gz", "s.ndjson.gz"])
def test_gzip_by_extension(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    body = b'{"email": "a@x.com"}\n' if "json" in name else b"email\na@x.com\n"
    p.write_bytes(gzip.compress(body))
    got = records(p)
    assert got == [(1 if "json" in name else 2, {"email": "a@x.com"})]


def test_format_override_for_unknown_extension(tmp_path: Path) -> None:
    p = tmp_path / "export.txt"
    p.write_text("email\na@x.com\n")
    with pytest.raises(InputError, match="cannot tell the format"):
        open_source(str(p))
    assert records(p, fmt="csv") == [(2, {"email": "a@x.com"})]


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty"), (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary"), (b"a,a\n1,2\n", "repeated column")],
)
def test_unusable_input_raises_before_any_record(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "s.csv"
    p.write_bytes(content)
    with pytest.raises(InputError, match=message):
        open_source(str(p))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        open_source(str(tmp_path / "nope.csv"))


def test_reader_streams(tmp_path: Path) -> None:
    """The reader is lazy: the first record arrives without reading the whole file."""
    p = tmp_path / "big.csv"
    with open(p, "w") as fh:
        fh.write("email\n")
        for i in range(200_000):
            fh.write(f"u{i}@example.com\n")
    src = open_source(str(p))
    first = next(src.records)
    assert first == (2, ["u0@example.com"])
    assert src._raw is not None and src._raw.tell() < p.stat().st_size / 4  # read a little, not the file
    src.close()
