"""README.md's table of the config.yaml keys, generated from the config models (`worker.config`).

    python -m devtools.config_table           # print the table
    python -m devtools.config_table --write   # rewrite it in README.md, between its marker comments

One row per setting, in the models' order (a section's `enabled`, `provider` and `source` first),
keyed by its path in the file; its default as written in YAML; its meaning is the field's
`description=`, which editors also show on hover (`worker.schema`). A section that may be null
(`datasets.history.intraday`) has a row of its own before its keys; a list of sections
(`datasets.chains.groups`) has one row, naming the keys of an item. A field without a description
is an error naming it: write one in the model, then run this again.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin

from annotated_types import MinLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from worker.config import Config

README = Path(__file__).resolve().parent.parent / "README.md"
COMMAND = "python -m devtools.config_table --write"
BEGIN = f"<!-- config-table: generated from the config models by `{COMMAND}`; edit their descriptions -->"
END = "<!-- config-table end -->"
HEADER = "| Key | Default | Meaning |\n|---|---|---|"
_FIRST = ("enabled", "provider", "source")  # what a section fetches, and from where, before how


class UndescribedField(Exception):
    """A config field has no `description=`, so the table (and the editors' help) would lack it."""


def table(model: type[BaseModel] = Config) -> str:
    """The Markdown table of `model`'s settings, one line per row, without a final line break. A
    meaning that an earlier row of a key of the same name has (`providers.polygon.timeout_s`) reads
    "as `<that key>`". Raises `UndescribedField` for a field without a description."""
    lines, first = [HEADER], dict[tuple[str, str], str]()
    for path, default, meaning in _rows(model, ""):
        earlier = first.setdefault((path.rsplit(".", 1)[-1], meaning), path)
        lines.append(_row(path, default, meaning if earlier == path else f"as `{earlier}`"))
    return "\n".join(lines)


def readme_with_table(readme: str, rows: str) -> str:
    """`readme` with the text between its two marker lines replaced by `rows`; a `ValueError` if
    either marker is missing."""
    begin, end = readme.find(BEGIN), readme.find(END)
    if begin < 0 or end < begin:
        raise ValueError(f"README.md lacks the marker lines of the config table: {BEGIN} ... {END}")
    return f"{readme[: begin + len(BEGIN)]}\n{rows}\n{readme[end:]}"


def _rows(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, str, str]]:
    fields = sorted(
        model.model_fields.items(),
        key=lambda item: _FIRST.index(item[0]) if item[0] in _FIRST else len(_FIRST),
    )
    for name, field in fields:
        path = f"{prefix}{name}"
        section, nullable, listed = _section(field.annotation)
        if section is not None and not nullable and not listed:
            yield from _rows(section, f"{path}.")
            continue
        if not field.description:
            raise UndescribedField(
                f"{model.__name__}.{name} (`{path}` in config.yaml) has no description=: write one in "
                f"the model (it is the README's Meaning and the editors' help), then run {COMMAND}"
            )
        if section is not None and listed:
            yield path, _default(field), f"{field.description}; each: {_item_keys(section)}"
        elif section is not None:
            yield path, "the keys below", field.description
            yield from _rows(section, f"{path}.")
        else:
            yield path, _default(field), field.description


def _row(path: str, default: str, meaning: str) -> str:
    meaning = meaning.replace("|", r"\|")  # a bar would end the cell
    return f"| `{path}` | {default} | {meaning} |"


def _section(annotation: Any) -> tuple[type[BaseModel] | None, bool, bool]:
    """The section model in `annotation` (itself, `X | None` or `list[X]`), whether null is
    allowed, and whether it is a list of them."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False, False
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, UnionType):
        members = [arg for arg in args if arg is not NoneType]
        if len(members) == 1:
            section, _, listed = _section(members[0])
            return section, NoneType in args, listed
    if origin is list and args:
        section, nullable, _ = _section(args[0])
        return section, nullable, section is not None
    return None, False, False


def _item_keys(section: type[BaseModel]) -> str:
    required = [name for name, field in section.model_fields.items() if field.is_required()]
    keys = f"`{{{', '.join(dict.fromkeys([*required, *section.model_fields]))}}}`"
    return keys + "".join(f", `{name}` required" for name in required)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        non_empty = any(isinstance(m, MinLen) and m.min_length > 0 for m in field.metadata)
        return "required, non-empty" if non_empty else "required"
    return f"`{_yaml(field.get_default(call_default_factory=True))}`"


def _yaml(value: Any) -> str:
    """`value` as written in config.yaml (flow style)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return f"[{', '.join(_yaml(item) for item in value)}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_yaml(item)}" for key, item in value.items()) + "}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.config_table", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the table in README.md")
    args = parser.parse_args(argv)
    rows = table()
    if not args.write:
        print(rows)
        return 0
    text = README.read_text(encoding="utf-8")
    updated = readme_with_table(text, rows)
    if updated != text:
        README.write_text(updated, encoding="utf-8")
    print(f"{README.name}: config table {'rewritten' if updated != text else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
