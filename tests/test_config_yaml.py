"""The config's YAML at a bounded cost: alias bombs, recursion, depth, size, repeated keys, tags."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from canopycli.cli import app
from canopycli.config import load_config, parse_config
from canopycli.config_yaml import MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH
from canopycli.errors import ConfigError

from .conftest import TOKEN
from .test_config import GOOD, problems

runner = CliRunner()


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    """The classic: each level is ``width`` aliases of the previous one (9 levels: 9**9 strings)."""
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(10)
def test_alias_bomb_is_refused_naming_the_line() -> None:
    [p] = problems(billion_laughs())
    # a0..a3 expand to 10, 91, 820 and 7,381 values; a4 (line 5) crosses the budget
    assert p.startswith("c.yaml:5: the config expands to more than 20,000 values")
    assert "aliases" in p


@pytest.mark.timeout(10)
def test_alias_bomb_hidden_in_a_valid_config_is_refused() -> None:
    text = billion_laughs() + GOOD.replace("    id_column: email\n", "    id_column: email\n    name: *a8\n")
    [p] = problems(text)
    assert "expands to more than 20,000 values" in p


@pytest.mark.timeout(10)
def test_validate_config_refuses_the_bomb_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(billion_laughs())
    r = runner.invoke(app, ["validate-config", str(tmp_path / "c.yaml")])
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.startswith("Error: ") and f"{tmp_path / 'c.yaml'}:5: the config expands to more than" in r.stderr
    assert "Traceback" not in r.stderr and "This is a bug" not in r.stderr


def test_recursive_alias_is_refused() -> None:
    [p] = problems("a: &a [1, *a]\n")
    assert p == "c.yaml:1: alias *a is used inside the value it refers to; write that value out"
    [p] = problems("a: &a\n  b: *a\n")
    assert p.startswith("c.yaml:2: alias *a is used inside")


@pytest.mark.parametrize("flow", [True, False])
def test_deep_nesting_is_refused(flow: bool) -> None:
    n = 5000  # far past Python's recursion limit, were anything to recurse that far
    text = "a: " + "[" * n + "]" * n + "\n" if flow else "".join(f"{'  ' * i}k{i}:\n" for i in range(200))
    [p] = problems(text)
    assert f"nested more than {MAX_CONFIG_DEPTH} levels deep" in p


def test_depth_counts_through_aliases() -> None:
    half = MAX_CONFIG_DEPTH // 2 + 2
    text = f"x: &x {'[' * half}1{']' * half}\ny: {'[' * half}*x{']' * half}\n"
    [p] = problems(text)
    assert p.startswith("c.yaml:2:") and "nested more than" in p


def test_undefined_alias_is_invalid_yaml() -> None:
    [p] = problems("a: *nope\n")
    assert p.startswith("c.yaml:1:") and "invalid YAML" in p and "undefined alias" in p


MERGED = """
connectors:
  main: &defaults
    endpoint: https://webhook.myclang.com/app/api/rest/public/v2/project/datahook/data-receiver/32-a
    token: ${CANOPY_TOKEN}
    identifier: hashed_email
    timeout: 60
    retries: 5
  other:
    <<: *defaults
    endpoint: https://webhook.myclang.com/app/api/rest/public/v2/project/datahook/data-receiver/32-b
    retries: 1
segments:
  A:
    connector: main
    id_column: email
    params: &params
      - { name: firstName, column: first_name }
      - { name: birthDate, type: date }
  B:
    connector: other
    id_column: email
    params: *params
"""


def test_merge_keys_and_aliases_for_shared_settings_still_work() -> None:
    cfg = parse_config(MERGED, "c.yaml")
    main, other = cfg.connectors["main"], cfg.connectors["other"]
    assert (other.timeout, other.retries, main.retries) == (60, 1, 5)
    assert other.endpoint.endswith("32-b") and other.token.get_secret_value() == TOKEN
    assert cfg.segments["A"].params == cfg.segments["B"].params and len(cfg.segments["B"].params or []) == 2


def test_a_merged_value_is_located_where_it_is_written() -> None:
    # the bad value comes from the anchored mapping (line 7); the explicit one (line 12) is fine
    text = MERGED.replace("    timeout: 60\n", "    timeout: 6000\n").replace("    retries: 1\n", "    retries: 99\n")
    ps = problems(text)
    assert "c.yaml:7: connectors.main.timeout: Input should be less than or equal to 600" in ps
    assert "c.yaml:7: connectors.other.timeout: Input should be less than or equal to 600" in ps
    assert "c.yaml:12: connectors.other.retries: Input should be less than or equal to 10" in ps


def test_many_aliases_within_the_budget_are_fine() -> None:
    segments = "".join(f"  S{i}:\n    connector: main\n    id_column: email\n    params: *params\n" for i in range(200))
    text = MERGED + segments
    cfg = parse_config(text, "c.yaml")
    assert len(cfg.segments) == 202


def test_a_repeated_key_is_a_problem_naming_both_lines() -> None:
    text = GOOD.replace(
        "    identifier: hashed_email\n", "    identifier: hashed_email\n    token: pasted-by-mistake\n"
    )
    [p] = problems(text)
    assert p.startswith("c.yaml:7: connectors.main.token: key 'token' appears twice in this mapping (lines 5 and 7)")
    assert "pasted-by-mistake" not in p


def test_a_repeated_segment_is_a_problem() -> None:
    text = GOOD + "  WelcomeFlow:\n    connector: main\n    id_column: customer\n"
    [p] = problems(text)
    assert "segments.WelcomeFlow: key 'WelcomeFlow' appears twice in this mapping (lines 8 and 11)" in p


def test_a_key_repeated_inside_a_shared_anchor_is_reported_once() -> None:
    text = MERGED.replace("    retries: 5\n", "    retries: 5\n    timeout: 61\n")
    ps = problems(text)
    assert len(ps) == 1 and "key 'timeout' appears twice in this mapping (lines 7 and 9)" in ps[0]


def test_an_explicit_key_overriding_a_merged_one_is_not_a_repeat() -> None:
    assert parse_config(MERGED, "c.yaml").connectors["other"].retries == 1


def test_binary_values_are_refused() -> None:
    text = GOOD.replace("${CANOPY_TOKEN}", "!!binary dG9rLVNFQ1JFVA==")
    [p] = problems(text)
    assert p.startswith("c.yaml:5: binary values (!!binary)")


def test_python_tags_stay_refused() -> None:
    [p] = problems(GOOD.replace("${CANOPY_TOKEN}", "!!python/object/apply:os.system ['true']"))
    assert "invalid YAML" in p


def test_an_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "c.yaml"
    big.write_text(GOOD + "# " + "x" * MAX_CONFIG_BYTES + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(big)
    [p] = e.value.problems
    assert p.startswith(f"{big}: the file is larger than 256 KiB")
    with pytest.raises(ConfigError, match="larger than 256 KiB"):
        parse_config(big.read_text(), "c.yaml")


@pytest.mark.timeout(10)
@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_an_endless_file_is_refused() -> None:
    with pytest.raises(ConfigError, match="larger than 256 KiB"):
        load_config("/dev/zero")


@pytest.mark.timeout(10)
def test_a_huge_flat_list_within_the_size_limit_is_refused_by_the_value_budget() -> None:
    text = GOOD + "  S2:\n    connector: main\n    id_column: email\n    params: [" + ", ".join(["1"] * 40_000) + "]\n"
    assert len(text) < MAX_CONFIG_BYTES
    [p] = problems(text)
    assert p.startswith("c.yaml:14: the config expands to more than 20,000 values")


def test_a_folder_or_a_non_utf8_file_is_a_clear_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert e.value.problems == ["cannot read the file: Is a directory"]
    utf16 = tmp_path / "u16.yaml"
    utf16.write_text(GOOD, encoding="utf-16")
    with pytest.raises(ConfigError) as e:
        load_config(utf16)
    assert e.value.problems == [f"{utf16}: the file is UTF-16; save it as UTF-8"]
    latin1 = tmp_path / "l1.yaml"
    latin1.write_bytes(GOOD.encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError) as e:
        load_config(latin1)
    assert e.value.problems == [f"{latin1}:11: the file is not UTF-8 text; save it as UTF-8"]


def test_an_expanded_variable_is_not_expanded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANOPY_TOKEN", "abc${OTHER}def")
    monkeypatch.setenv("OTHER", "INJECTED")
    cfg = parse_config(GOOD.replace("id_column: email", "id_column: ${COLUMN:-${OTHER}}"), "c.yaml")
    assert cfg.connectors["main"].token.get_secret_value() == "abc${OTHER}def"
    # a default stops at the first }: the rest is kept as written, never expanded twice
    assert cfg.segments["WelcomeFlow"].id_column == "${OTHER}"


def test_an_endpoint_from_the_environment_with_a_line_break(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENDPOINT", "https://webhook.myclang.com/x\n")
    [p] = problems(
        GOOD.replace(
            "https://webhook.myclang.com/app/api/rest/public/v2/project/datahook/data-receiver/32-x", "${ENDPOINT}"
        )
    )
    assert p.startswith("c.yaml:4: connectors.main.endpoint: endpoint contains whitespace or a control character")


def test_the_readme_merge_key_example_is_valid() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("YAML anchors,\naliases and merge keys work", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    cfg = parse_config(block, "README.md")
    main, archive = cfg.connectors["main"], cfg.connectors["archive"]
    assert (archive.timeout, archive.identifier) == (main.timeout, main.identifier) == (60, "hashed_email")
    assert (
        archive.endpoint.endswith("32-archive") and cfg.segments["Archive"].params == cfg.segments["WelcomeFlow"].params
    )
