from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canopycli.errors import InputError
from canopycli.pipeline.rawinput import whole_lines as fingerprint
from canopycli.pipeline.read import Unreadable, open_source, sniff_delimiter


def records(path: Path, **kw: str) -> list[tuple[int, object]]:
    """The records, a CSV row (a list of cells in the header's order) shown as a dict for reading,
    an unreadable record as its reason."""
    src = open_source(str(path), **kw)
    try:
        got = list(src.records)
    finally:
        src.close()
    for _, r in got:
        assert isinstance(r, Unreadable) or isinstance(r, list) == (src.format == "csv")
    return [
        (
            n,
            r.reason
            if isinstance(r, Unreadable)
            else dict(zip(src.columns or (), r, strict=True))
            if isinstance(r, list)
            else r,
        )
        for n, r in got
    ]


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


# --- damage: an unclosed quote, a truncated stream ----------------------------------------------


def read_all(path: Path, **kw: str) -> tuple[list[tuple[int, object]], str | None]:
    """Every record as it comes out (Unreadable kept whole), and ``Source.damage``."""
    src = open_source(str(path), **kw)
    try:
        got = list(src.records)
    finally:
        src.close()
    return got, src.damage


def test_unclosed_quote_rejects_its_line_and_every_line_after_it(tmp_path: Path) -> None:
    p = tmp_path / "s.csv"
    p.write_bytes(b'email,note\nu0@x.com,fine\nu1@x.com,"oops\nu2@x.com,two\n\nu3@x.com,""three\n')
    got, damage = read_all(p)
    assert got == [
        (2, ["u0@x.com", "fine"]),
        (3, Unreadable("a quoted field opens on line 3 and is never closed", 'u1@x.com,"oops')),
        (4, Unreadable("follows the unclosed quote on line 3; not read as a row", "u2@x.com,two")),
        (6, Unreadable("follows the unclosed quote on line 3; not read as a row", 'u3@x.com,""three')),
    ]
    assert damage is not None and damage.startswith(f"{p}:3: a quoted field opens here and is never closed")
    assert "lines 3-6" in damage


@pytest.mark.parametrize(
    ("content", "lines"),
    [
        (b'email,note\nu1@x.com,"oops\nu2@x.com,fine', [2, 3]),  # no newline at the end either
        (b'email,note\nu1@x.com,"oops\n', [2]),  # the quote swallows only its own line break
    ],
)
def test_short_tail_behind_an_unclosed_quote_is_not_merged_into_a_row(
    tmp_path: Path, content: bytes, lines: list[int]
) -> None:
    """1.0 read these as valid rows: u2's line sent inside u1's note, or a note ending in a line break."""
    p = tmp_path / "s.csv"
    p.write_bytes(content)
    got, damage = read_all(p)
    assert all(isinstance(r, Unreadable) for _, r in got)
    assert [n for n, _ in got] == lines and damage is not None and damage.startswith(f"{p}:2: ")


def test_badly_closed_quote_rejects_the_lines_it_swallowed_and_reads_on(tmp_path: Path) -> None:
    """A quote that closes with a character after it (``"Amsterdam"`` read inside an open field)."""
    p = tmp_path / "s.csv"
    p.write_bytes(b'email,note\nu1@x.com,"oops\nu2@x.com,"Amsterdam"\nu3@x.com,x\nu4@x.com,"two\nlines"\n')
    got, damage = read_all(p)
    assert [(n, r.reason if isinstance(r, Unreadable) else r) for n, r in got] == [
        (2, "a quoted field opens on line 2 and holds a quote that is not doubled; not read as a row"),
        (3, "inside the badly quoted field that opens on line 2; not read as a row"),
        (4, ["u3@x.com", "x"]),
        (5, ["u4@x.com", "two\nlines"]),  # a field with a line break, quoted properly, is a row
    ]
    assert damage is None


def test_unclosed_quote_past_the_field_size_limit(tmp_path: Path) -> None:
    """1.0 raised an uncaught csv.Error ("This is a bug") once the open field passed 10 MB."""
    p = tmp_path / "s.csv"
    filler = b"y" * 999 + b"\n"
    with open(p, "wb") as fh:
        fh.write(b'email,note\nu0@x.com,ok\nu1@x.com,"open\n')
        fh.write(filler * 11_000)  # 11 MB inside the open field
    got, damage = read_all(p)
    assert got[0] == (2, ["u0@x.com", "ok"])
    assert got[1] == (3, Unreadable("a quoted field opens on line 3 and is never closed", 'u1@x.com,"open'))
    assert len(got) == 2 + 11_000 and {r.reason for _, r in got[2:]} == {  # type: ignore[union-attr]
        "follows the unclosed quote on line 3; not read as a row"
    }
    assert got[-1][0] == 3 + 11_000
    assert damage is not None and "10 MB" in damage and damage.startswith(f"{p}:3:")


def test_unclosed_quote_over_many_short_lines_is_found_before_10_mb(tmp_path: Path) -> None:
    """The lines kept for --rejects stay bounded: 150,000 short lines are far below the 10 MB field
    limit, but one record over more than 100,000 lines is taken as a quote that never closes."""
    p = tmp_path / "s.csv"
    p.write_bytes(b'email,note\nu0@x.com,ok\nu1@x.com,"open\n' + b"x\n" * 150_000)
    got, damage = read_all(p)
    assert got[:2] == [
        (2, ["u0@x.com", "ok"]),
        (3, Unreadable("a quoted field opens on line 3 and is never closed", 'u1@x.com,"open')),
    ]
    assert len(got) == 2 + 150_000 and got[-1] == (
        150_003,
        Unreadable("follows the unclosed quote on line 3; not read as a row", "x"),
    )
    assert damage is not None and "more than 100,000 lines" in damage and "lines 3-150003" in damage


plain = st.text(alphabet="abcdef XYZ.-@", max_size=6)


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(st.tuples(plain, plain, st.text(alphabet='ab "', max_size=4)), min_size=1, max_size=12),
    at=st.integers(min_value=0),
    cell=st.integers(min_value=0, max_value=2),
)
def test_a_stray_quote_never_makes_a_row_of_several_lines(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, str, str]], at: int, cell: int
) -> None:
    """Property: rows before the stray quote come out as written; no row after it ever holds a line
    break (no line is merged into another); each line is at most one record. (Later cells may hold
    quotes; not a delimiter right after a quote, which would close the stray one as validly as a
    real multi-line field is closed: that cannot be told apart.)"""
    p = tmp_path_factory.mktemp("prop") / "s.csv"
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["a", "b", "c"])
    lines = []
    for r in rows:
        one = io.StringIO()
        csv.writer(one, lineterminator="\n").writerow(r)
        lines.append(one.getvalue())
    k = at % len(rows)
    fields = lines[k].rstrip("\n").split(",") if '"' not in lines[k] else None
    if fields is not None:  # open a quote at the start of one cell of row k, never closed there
        fields[min(cell, len(fields) - 1)] = '"' + fields[min(cell, len(fields) - 1)]
        lines[k] = ",".join(fields) + "\n"
    p.write_text(buf.getvalue() + "".join(lines))
    got, _ = read_all(p)
    assert len(got) <= len(rows) and len({n for n, _ in got}) == len(got)
    for n, r in got:
        if isinstance(r, list):
            assert not any("\n" in c for c in r)
            if fields is not None and n - 2 < k:
                assert tuple(r) == rows[n - 2]


def gz_rows(n: int, jsonl: bool = False) -> bytes:
    if jsonl:
        return gzip.compress(b"".join(b'{"email": "u%d@example.com"}\n' % i for i in range(n)))
    return gzip.compress(b"email,note\n" + b"".join(b"u%d@example.com,n%d\n" % (i, i) for i in range(n)))


@pytest.mark.parametrize("name", ["s.csv.gz", "s.jsonl.gz"])
def test_gzip_that_ends_mid_stream_stops_reading_as_damage(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    whole = gz_rows(30_000, jsonl="jsonl" in name)
    p.write_bytes(whole[: len(whole) // 2])
    got, damage = read_all(p)
    assert 1_000 < len(got) < 30_000 and all(not isinstance(r, Unreadable) for _, r in got)
    last = got[-1][0]
    assert damage == (
        f"{p}:{last}: the input breaks off after this line (the compressed data ends too early); "
        "reading stopped there and the rest was not read"
    )


@pytest.mark.parametrize("name", ["s.csv.gz", "s.jsonl.gz"])
def test_gzip_that_ends_before_the_first_record_is_an_input_error(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    p.write_bytes(gz_rows(30_000, jsonl="jsonl" in name)[:25])
    with pytest.raises(InputError, match="compressed data ends too early") as e:
        open_source(str(p))
    assert "truncated or corrupt" in str(e.value)


def test_gzip_corrupt_in_the_middle_is_damage_not_a_crash(tmp_path: Path) -> None:
    whole = bytearray(gz_rows(30_000))
    whole[len(whole) // 2] ^= 0xFF
    p = tmp_path / "s.csv.gz"
    p.write_bytes(bytes(whole))
    _, damage = read_all(p)
    assert damage is not None and "the compressed data is corrupt" in damage


def test_fingerprint_of_a_truncated_gzip_is_an_input_error(tmp_path: Path) -> None:
    p = tmp_path / "s.csv.gz"
    whole = gz_rows(30_000)
    p.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match="cannot be read to the end: the compressed data ends too early"):
        fingerprint(str(p))


# --- what a rejected record carries (for --rejects) --------------------------------------------


def test_unreadable_records_carry_what_was_read(tmp_path: Path) -> None:
    p = tmp_path / "s.csv"
    p.write_bytes(b"email,city\na@x.com\nb@x.com,Li\xe8ge,BE\n")
    got, _ = read_all(p)
    assert got == [
        (2, Unreadable("has 1 fields, the header has 2", ["a@x.com"])),
        (3, Unreadable("has 3 fields, the header has 2", ["b@x.com", "Li\udce8ge", "BE"])),
    ]
    j = tmp_path / "s.jsonl"
    j.write_bytes(b'[1, 2]\r\n{"email": "a@x.com", \xff\n"text"\n')
    got, _ = read_all(j)
    assert [(n, r.raw) for n, r in got] == [(1, "[1, 2]"), (2, '{"email": "a@x.com", \udcff'), (3, '"text"')]  # type: ignore[union-attr]


# --- what is not UTF-8 text, and messages that must not echo data -------------------------------


@pytest.mark.parametrize(
    ("content", "encoding"),
    [
        ("email,name\na@x.com,Ann\n".encode("utf-16"), "UTF-16"),  # with a byte order mark
        ("email,name\na@x.com,Ann\n".encode("utf-16-le"), "UTF-16"),  # without one
        ("email,name\na@x.com,Ann\n".encode("utf-16-be"), "UTF-16"),
        ("email,name\na@x.com,Ann\n".encode("utf-32"), "UTF-32"),
    ],
)
def test_utf16_is_named_with_how_to_convert_it(tmp_path: Path, content: bytes, encoding: str) -> None:
    p = tmp_path / "s.csv"
    p.write_bytes(content)
    with pytest.raises(InputError) as e:
        open_source(str(p))
    assert f"is {encoding} text" in e.value.message and "binary" not in e.value.message
    assert e.value.hint is not None and f"iconv -f {encoding} -t UTF-8" in e.value.hint


def test_format_hint_lists_tsv(tmp_path: Path) -> None:
    p = tmp_path / "export.txt"
    p.write_text("email\na@x.com\n")
    with pytest.raises(InputError) as e:
        open_source(str(p))
    assert e.value.hint is not None and ".tsv" in e.value.hint


def test_repeated_header_cells_that_look_like_data_are_not_echoed(tmp_path: Path) -> None:
    p = tmp_path / "s.csv"
    p.write_text("ann@example.com,ann@example.com\nb@x.com,b@x.com\n")
    with pytest.raises(InputError) as e:
        open_source(str(p))
    assert "@" not in str(e.value) and "may have no header line" in str(e.value)
    p.write_text("email,city,city\n")
    with pytest.raises(InputError, match="repeated column name.*: city"):
        open_source(str(p))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'email,"note\nu1@x.com,hi\n', "the header line opens a quote that it does not close"),
        (b"email,n" + b"x" * (11 * 1024 * 1024) + b"\nu1@x.com,hi\n", "the header line cannot be parsed as CSV"),
    ],
)
def test_header_with_an_unclosed_quote_or_a_huge_cell(tmp_path: Path, content: bytes, message: str) -> None:
    """Sibling of the unclosed quote: 1.0 read the first case's header as ``email,note`` (a guess)
    and crashed on the second with an uncaught csv.Error."""
    p = tmp_path / "s.csv"
    p.write_bytes(content)
    with pytest.raises(InputError, match=message) as e:
        open_source(str(p))
    assert e.value.message.startswith(f"{p}:1: ")
