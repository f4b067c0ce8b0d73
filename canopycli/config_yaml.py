"""Reading a config's YAML at a bounded cost, with a line for every YAML path.

A hostile or mistaken file (an alias bomb, a file that is not a config) is refused before
anything walks it; keys a mapping repeats are listed (YAML would silently keep only the last);
and every path is mapped to its line, so each problem can point into the file
(``canopycli.yaml:4: connectors.main.endpoint``). config.py turns the data into models.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import ConfigError

# A config is a few kilobytes. These bound the cost of a hostile or mistaken one (an alias bomb,
# a file that is not a config) before anything walks it: parsing, env expansion, pydantic.
MAX_CONFIG_BYTES = 256 * 1024
MAX_CONFIG_VALUES = 20_000  # YAML nodes, counting every alias as the values it stands for
MAX_CONFIG_DEPTH = 32  # nesting levels, through aliases too

Loc = tuple[str | int, ...]
_MERGE = "tag:yaml.org,2002:merge"


class _Refused(Exception):
    """The YAML is well-formed but too costly or too odd to load; ``line`` is 1-based."""

    def __init__(self, mark: Any, problem: str) -> None:
        super().__init__(problem)
        self.line = mark.line + 1 if mark is not None else None
        self.problem = problem


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that counts, while composing, the values the document stands for.

    PyYAML composes an alias as a reference to its anchor's node, which is cheap; but everything
    after it (the line index, env expansion, pydantic) walks the expanded tree. So each alias is
    charged the size and height of what it refers to, and the load stops at the alias that
    crosses ``MAX_CONFIG_VALUES`` or ``MAX_CONFIG_DEPTH``: a "billion laughs" is refused after a
    few thousand steps, while ``<<: *defaults`` merge keys keep working.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._values = 0
        self._depth = 0
        self._shape: dict[int, tuple[int, int]] = {}  # id(node) -> (values when expanded, height)

    def _charge(self, values: int, height: int, mark: Any) -> None:
        self._values += values
        if self._values > MAX_CONFIG_VALUES:
            raise _Refused(
                mark,
                f"the config expands to more than {MAX_CONFIG_VALUES:,} values (counting what each alias "
                "stands for); write it without nested aliases, or split it into several configs",
            )
        if self._depth + height > MAX_CONFIG_DEPTH:
            raise _Refused(mark, f"values are nested more than {MAX_CONFIG_DEPTH} levels deep; flatten the config")

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)  # an undefined one is PyYAML's error
            if target is not None:
                shape = self._shape.get(id(target))
                if shape is None:  # the anchored collection is still being composed
                    raise _Refused(
                        event.start_mark,
                        f"alias *{event.anchor} is used inside the value it refers to; write that value out",
                    )
                self._charge(*shape, event.start_mark)
            return super().compose_node(parent, index)
        self._charge(0, 1, event.start_mark)
        self._depth += 1
        before = self._values
        node = super().compose_node(parent, index)
        self._depth -= 1
        assert node is not None  # typed Optional, but PyYAML returns a node or raises
        height = 1 + max((self._shape[id(c)][1] for c in _children(node)), default=0)
        self._charge(1, 0, event.start_mark)
        self._shape[id(node)] = (self._values - before, height)
        return node

    def construct_yaml_binary(self, node: yaml.Node) -> bytes:
        # pydantic would take bytes for a string (a token!) and skip every check on it
        raise _Refused(node.start_mark, "binary values (!!binary) have no place in a config; write the text")


_Loader.add_constructor("tag:yaml.org,2002:binary", _Loader.construct_yaml_binary)


def _line_index(root: yaml.Node | None) -> tuple[dict[Loc, int], list[tuple[Loc, str]]]:
    """Map each YAML path to its 1-based line, so errors can point into the file; and list the
    keys a mapping repeats (YAML would silently keep only the last one).

    Runs on the composed document, before construction (which rewrites merge keys in place).
    Its cost is bounded by ``_Loader``: it walks at most ``MAX_CONFIG_VALUES`` nodes.
    """
    index: dict[Loc, int] = {}
    repeated: list[tuple[Loc, str]] = []
    checked: set[int] = set()

    def put(loc: Loc, line: int, merged: bool) -> None:
        if merged:  # a merged key never overrides one written in the mapping itself
            index.setdefault(loc, line)
        else:
            index[loc] = line

    def check_repeats(node: yaml.MappingNode, loc: Loc) -> None:
        if id(node) in checked:
            return
        checked.add(id(node))
        first: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE:
                continue
            line = key.start_mark.line + 1
            seen = first.setdefault((key.tag, key.value), line)
            if seen != line:
                repeated.append(
                    (
                        (*loc, key.value),
                        f"key {key.value!r} appears twice in this mapping (lines {seen} and {line}); "
                        "YAML would keep only the last one: remove or rename one of them",
                    )
                )

    def walk(node: yaml.Node, loc: Loc, merged: bool) -> None:
        index.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            check_repeats(node, loc)
            merges: list[yaml.Node] = []
            for key, val in node.value:
                if key.tag == _MERGE:
                    merges.extend(val.value if isinstance(val, yaml.SequenceNode) else [val])
                    continue
                k = key.value if isinstance(key, yaml.ScalarNode) else f"line {key.start_mark.line + 1}"
                put((*loc, k), key.start_mark.line + 1, merged)
                walk(val, (*loc, k), merged)
                put((*loc, k), key.start_mark.line + 1, merged)
            for source in merges:  # after the mapping's own keys, which win
                if isinstance(source, yaml.MappingNode):
                    walk(source, loc, True)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*loc, i), merged)

    if root is not None:
        walk(root, (), False)
    return index, repeated


def load_yaml(text: str, shown: str) -> tuple[Any, dict[Loc, int], list[tuple[Loc, str]]]:
    """Parse the YAML (bounded), index its lines, then construct plain Python data."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(shown, [too_big(shown)])
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        index, repeated = _line_index(root)
        data = loader.construct_document(root) if root is not None else None
    except _Refused as e:
        where = f"{shown}:{e.line}" if e.line else shown
        raise ConfigError(shown, [f"{where}: {e.problem}"]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark else shown
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(shown, [f"{where}: invalid YAML: {problem}"]) from None
    finally:
        loader.dispose()
    return data, index, repeated


def too_big(shown: str) -> str:
    return (
        f"{shown}: the file is larger than {MAX_CONFIG_BYTES // 1024} KiB; a config is a few kilobytes "
        "(is this the right file? split a very large config into several)"
    )


def where(path: str, index: dict[Loc, int], loc: Loc) -> str:
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    probe = loc
    while probe and probe not in index:
        probe = probe[:-1]
    line = index.get(probe)
    return f"{path}:{line}: {dotted}" if line else f"{path}: {dotted}"
