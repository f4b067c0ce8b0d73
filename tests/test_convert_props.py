"""Param converters accept exactly what the README's "Param types" table says.

Each grammar below is written from the README's rule, not from the implementation: generate
from it and the value must be accepted with the right wire value; generate anything else and
an accepted value must match it. Values are converted through ``param_maker`` (the cell -> wire
param step of every row), so trimming and empty cells are covered too.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from canopycli.config import Param
from canopycli.pipeline.values import _inferred, converter, param_maker

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
LIMIT = 9_007_199_254_740_992  # 2^53, as the README writes it
FAST = settings(max_examples=200, deadline=None)

# --- the README's grammars ------------------------------------------------------------------

WS = r"\s*"  # "ignores whitespace around the value"
NUMBER = re.compile(WS + r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)" + WS)
INTEGER_SPELLING = re.compile(r"[+-]?[0-9]+")
WHOLE = re.compile(WS + r"([+-]?[0-9]+)(?:\.0*)?" + WS)
DATE = re.compile(WS + r"([0-9]{4}-[0-9]{2}-[0-9]{2})" + WS)
DATETIME = re.compile(
    WS
    + r"([0-9]{4}-[0-9]{2}-[0-9]{2})[T ]([0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?)(Z|[+-][0-9]{2}:[0-9]{2})?"
    + WS
)
FLAGS_TRUE = {"true", "t", "yes", "y", "ja", "j", "1"}
FLAGS_FALSE = {"false", "f", "no", "n", "nee", "0"}


def readme_row(ptype: str) -> tuple[str, str]:
    """(accepts, sent as) of a row of the Param types table."""
    m = re.search(rf"^\| `{ptype}` \| (.+?) \| (.+?) \|$", README, re.M)
    assert m is not None, ptype
    return m.group(1), m.group(2)


def readme_gender() -> dict[str, str]:
    accepts, _ = readme_row("gender")
    aliases: dict[str, str] = {}
    for canon, listed in re.findall(r"`([A-Z]+)`: ([^;]+)", accepts):
        for alias in listed.split(", "):
            aliases[alias.strip()] = canon
    return aliases


GENDER = readme_gender()


def convert(ptype: str, value: Any) -> Any:
    """The wire value of one cell for a param of ``ptype``, or ValueError with the reason."""
    p = Param(name="p", type=ptype)  # type: ignore[arg-type]
    wire, conv = converter(p)
    got = param_maker("p", wire, conv, p.max_length, None, True)(value)
    assert got is not None
    return got["value"]


def outcome(ptype: str, value: Any) -> tuple[str, Any]:
    try:
        return "ok", convert(ptype, value)
    except ValueError as e:
        return "rejected", str(e)


# --- text that looks like what people type, and text that only nearly does -----------------

UNICODE_DIGITS = (
    "\u0660\u0663\u06f1\u0966\uff10\uff11\u00b2\u2082\U0001d7ce"  # Arabic-Indic, full-width, super/subscript...
)
NUMBERISH = st.text(alphabet="0123456789+-.eE_, \t\u00a0" + UNICODE_DIGITS + "nNaAiIfFxX", max_size=24)
DATEISH = st.text(alphabet="0123456789-WT :.Z+" + UNICODE_DIGITS, max_size=32)
ANY_TEXT = st.one_of(st.text(max_size=30), NUMBERISH)
PAD = st.sampled_from(["", " ", "\t", "  ", "\u00a0", "\n"])

number_spelling = st.from_regex(
    r"[+-]?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})(?:[eE][+-]?[0-9]{1,3})?", fullmatch=True
)


def expected_number(text: str) -> tuple[str, Any]:
    """The README's rule, applied to a spelling of the grammar."""
    if INTEGER_SPELLING.fullmatch(text):
        n = int(text)
        return ("ok", n) if abs(n) < LIMIT else ("rejected", "out of range")
    f = float(text)
    mantissa = re.split("[eE]", text)[0]
    if f == 0.0 and any(c in "123456789" for c in mantissa):
        return "rejected", "out of range"  # not zero, too small for a double
    if not math.isfinite(f) or abs(f) >= LIMIT:
        return "rejected", "out of range"
    return "ok", f


@FAST
@given(PAD, number_spelling, PAD)
@example("", "1e400", "")
@example("", "1e-400", "")
@example(" ", "9007199254740992", "")
@example("", "-9007199254740991", "")
@example("", "9007199254740991.9", "")
def test_number_accepts_every_documented_spelling_with_the_right_value(pre: str, text: str, post: str) -> None:
    want = expected_number(text)
    got = outcome("number", pre + text + post)
    if want[0] == "ok":
        assert got == want and type(got[1]) is type(want[1]), (text, got)
        assert not (isinstance(got[1], float) and math.copysign(1.0, got[1]) < 0 and got[1] == 0)  # no -0.0
    else:
        assert got[0] == "rejected" and "out of range" in got[1], (text, got)


@FAST
@given(ANY_TEXT)
@example("\u0663")
@example("1_000")
@example("NaN")
@example("-Infinity")
@example("\u00b2")
def test_number_accepts_nothing_outside_the_grammar(text: str) -> None:
    if outcome("number", text)[0] == "ok" and text.strip():
        assert NUMBER.fullmatch(text), repr(text)


@FAST
@given(PAD, st.from_regex(r"[+-]?[0-9]{1,20}(?:\.0{0,5})?", fullmatch=True), PAD)
def test_integer_accepts_digits_and_trailing_zero_decimals(pre: str, text: str, post: str) -> None:
    n = int(text.split(".")[0])
    got = outcome("integer", pre + text + post)
    if abs(n) < LIMIT:
        assert got == ("ok", n) and type(got[1]) is int
    else:
        assert got[0] == "rejected" and "out of range" in got[1]


@FAST
@given(ANY_TEXT)
@example("12.5")
@example("1e3")
@example("\u0664\u0662")
def test_integer_accepts_nothing_outside_the_grammar(text: str) -> None:
    if outcome("integer", text)[0] == "ok" and text.strip():
        assert WHOLE.fullmatch(text), repr(text)


# --- JSON numbers (JSONL): the same range rule, whatever size the JSON text had -------------


@FAST
@given(st.integers(min_value=-(2**80), max_value=2**80))
@example(2**53)
@example(2**53 - 1)
@example(-(2**53))
@example(2**64)
@example(-(2**63) - 1)
def test_jsonl_integers_are_exact_or_out_of_range_never_rounded(n: int) -> None:
    value = orjson.loads(str(n).encode())  # what the JSONL reader hands over (a float past 64 bits)
    for ptype in ("number", "integer"):
        got = outcome(ptype, value)
        if abs(n) < LIMIT:
            assert got == ("ok", n) and type(got[1]) is int
        else:
            assert got[0] == "rejected" and "out of range" in got[1]
    try:
        kept = _inferred(value)  # JSONL without params:
    except ValueError as e:
        assert abs(n) >= LIMIT and "out of range" in str(e)
    else:
        assert abs(n) < LIMIT and kept == ("number", n) and type(kept[1]) is int


@FAST
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_json_floats_are_finite_and_below_2_53_or_out_of_range(f: float) -> None:
    ok = math.isfinite(f) and abs(f) < LIMIT
    got = outcome("number", f)
    if ok:
        assert got == ("ok", f) and orjson.loads(orjson.dumps(got[1])) == f
    else:
        assert got[0] == "rejected" and "out of range" in got[1]
    whole = outcome("integer", f)
    if ok and f.is_integer():
        assert whole == ("ok", int(f))
    else:
        assert whole[0] == "rejected"


@pytest.mark.parametrize("ptype", ["number", "integer", "yesno", "optin"])
def test_json_booleans_are_not_numbers(ptype: str) -> None:
    got = outcome(ptype, True)
    assert (got[0] == "rejected") is (ptype in ("number", "integer"))


# --- dates and date-times -------------------------------------------------------------------


@FAST
@given(PAD, st.dates(), PAD)
def test_date_accepts_every_calendar_day_as_yyyy_mm_dd(pre: str, d: dt.date, post: str) -> None:
    text = f"{d.year:04d}-{d.month:02d}-{d.day:02d}"
    assert outcome("date", pre + text + post) == ("ok", text)


@FAST
@given(st.one_of(DATEISH, st.text(max_size=12)))
@example("2024-W01-1")
@example("2024-001")
@example("20240101")
@example("\uff12\uff10\uff12\uff14-01-01")
def test_date_accepts_nothing_but_yyyy_mm_dd(text: str) -> None:
    if outcome("date", text)[0] == "ok" and text.strip():
        m = DATE.fullmatch(text)
        assert m, repr(text)
        y, mo, d = (int(x) for x in m.group(1).split("-"))
        dt.date(y, mo, d)  # a day that exists


fraction = st.one_of(
    st.just(""), st.integers(1, 6).flatmap(lambda n: st.from_regex(rf"\.[0-9]{{{n}}}", fullmatch=True))
)
offset = st.one_of(
    st.just(""),
    st.just("Z"),
    st.tuples(st.sampled_from("+-"), st.integers(0, 23), st.integers(0, 59)).map(
        lambda t: f"{t[0]}{t[1]:02d}:{t[2]:02d}"
    ),
)


@FAST
@given(st.datetimes(), st.sampled_from(["T", " "]), st.booleans(), fraction, offset, PAD)
def test_datetime_accepts_every_documented_form_and_sends_it_with_a_t(
    when: dt.datetime, sep: str, seconds: bool, frac: str, off: str, pad: str
) -> None:
    time = f"{when.hour:02d}:{when.minute:02d}" + (f":{when.second:02d}{frac}" if seconds else "")
    date = f"{when.year:04d}-{when.month:02d}-{when.day:02d}"
    assert outcome("datetime", f"{pad}{date}{sep}{time}{off}{pad}") == ("ok", f"{date}T{time}{off}")


@FAST
@given(st.one_of(DATEISH, st.text(max_size=30)))
@example("2024-W01-1T10:00")
@example("2024-01-01T10")
@example("2024-01-01T10:00:00.1234567")
@example("2024-01-01T10:00:00+0100")
def test_datetime_accepts_nothing_outside_the_grammar(text: str) -> None:
    if outcome("datetime", text)[0] == "ok" and text.strip():
        m = DATETIME.fullmatch(text)
        assert m, repr(text)
        dt.datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}")  # a real date and time
        off = m.group(3) or "Z"
        assert off == "Z" or (int(off[1:3]) < 24 and int(off[4:]) < 60), repr(text)  # an offset under 24:00


# --- the spellings: boolean family, gender, option ------------------------------------------

flagish = st.text(alphabet="truefalsyonjTRUEFALSYONJ01 \u212a\u0130\u0131\u017f", max_size=6)


@FAST
@given(st.one_of(flagish, st.text(max_size=8)))
@example("Ja")
@example("NEE")
@example("\u212a")  # KELVIN SIGN, lowercases to k
def test_boolean_family_accepts_exactly_the_documented_spellings(text: str) -> None:
    key = text.strip().lower() if text.strip().isascii() else None
    want = True if key in FLAGS_TRUE else False if key in FLAGS_FALSE else None
    for ptype, wire in (
        ("boolean", {True: True, False: False}),
        ("optin", {True: "Y", False: "N"}),
        ("yesno", {True: 1, False: 0}),
    ):
        got = outcome(ptype, text)
        if not text.strip():
            continue  # an empty cell: see test_normalize (empty: skip/send)
        if want is None:
            assert got[0] == "rejected", (ptype, text)
        else:
            assert got == ("ok", wire[want]), (ptype, text)


def test_readme_lists_exactly_the_boolean_spellings() -> None:
    accepts, _ = readme_row("boolean")
    text_part = accepts.split("; JSON")[0]
    listed = set(re.findall(r"`([^`]+)`", text_part))
    assert listed == FLAGS_TRUE | FLAGS_FALSE
    for ptype in ("optin", "yesno"):
        assert readme_row(ptype)[0] == "the `boolean` spellings"


@pytest.mark.parametrize("spelling", sorted(FLAGS_TRUE | FLAGS_FALSE))
def test_every_boolean_spelling_is_accepted_and_named_in_the_refusal(spelling: str) -> None:
    assert outcome("boolean", spelling.upper()) == ("ok", spelling in FLAGS_TRUE)
    reason = outcome("boolean", "maybe")[1]
    assert re.search(rf"(?<![a-z0-9]){re.escape(spelling)}(?![a-z0-9])", reason), (spelling, reason)


def test_readme_gender_aliases_are_exactly_the_accepted_ones() -> None:
    assert len(GENDER) >= 30 and set(GENDER.values()) == {"MAN", "WOMAN", "FAMILY", "NONBINARY", "UNKNOWN"}
    for alias, canon in GENDER.items():
        assert outcome("gender", alias) == ("ok", canon), alias
        assert outcome("gender", f" {alias.upper()} ") == ("ok", canon), alias


@FAST
@given(st.one_of(st.sampled_from(sorted(GENDER)).map(str.upper), st.text(max_size=12)))
def test_gender_accepts_nothing_the_readme_does_not_list(text: str) -> None:
    got = outcome("gender", text)
    if got[0] == "ok" and text.strip():
        assert GENDER.get(text.strip().lower()) == got[1], repr(text)


@FAST
@given(st.text(max_size=300))
def test_option_is_the_trimmed_uppercased_text_up_to_max_length(text: str) -> None:
    if not text.strip():
        return
    want = text.strip().upper()
    got = outcome("option", text)
    if len(want) <= 256:
        assert got == ("ok", want)
    else:
        assert got[0] == "rejected" and "longer than 256" in got[1]


def test_readme_states_the_range_rule() -> None:
    accepts, _ = readme_row("number")
    assert "finite, with magnitude below 2^53 (9,007,199,254,740,992), so every receiver reads it exactly" in accepts
    assert int("9,007,199,254,740,992".replace(",", "")) == LIMIT == 2**53
