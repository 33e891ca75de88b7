"""`python -m worker schema`: the JSON Schema (draft 2020-12) of config.yaml, from the config models.

Editors that know JSON Schema (VS Code with the YAML extension, JetBrains IDEs, Neovim with
yaml-language-server) read it from config.yaml's first line, `# yaml-language-server:
$schema=./config.schema.json`, and check and complete the file as it is typed; hovering a key shows
its description, default and bounds. `config.schema.json` is this module's output, checked in:
regenerate it with `python -m worker schema > config.schema.json` after changing a model.

pydantic writes the schema in validation mode; then it is made right for the YAML people write:
- a default made by a factory (`cadence_s`, the indicator windows) is shown like any other;
- a section's default is left to its keys, each of which shows its own, instead of repeating the
  whole section at every level;
- the titles pydantic derives from names ("Rate Per Min") are dropped: the descriptions are the help;
- every section refuses unknown keys (`additionalProperties: false`), so an API key in the file
  fails the schema as it fails `parse_config`.
What a schema cannot say (a symbol's form, `retry.cap_s >= retry.base_s`, the other rules across
fields) is left to `python -m worker check-config`, which checks everything the worker does.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault
from pydantic_core import core_schema

from worker.config import Config

DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_FILE = "config.schema.json"
"""Where the schema is checked in, beside config.yaml (whose first line points to it)."""
REGENERATE = f"python -m worker schema > {SCHEMA_FILE}"

# Keywords whose values are data, not schemas: a "title" inside them is not a title.
_DATA_KEYWORDS = frozenset({"default", "enum", "const", "examples"})
# Keywords whose values map names to schemas: the names are not keywords.
_SCHEMA_MAPS = frozenset({"properties", "$defs", "patternProperties", "dependentSchemas"})


class _ConfigSchema(GenerateJsonSchema):
    """pydantic's generator, with factory defaults shown and section defaults left to their keys."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            default: Any = factory()  # type: ignore[call-arg]
        else:
            default = super().get_default_value(schema)
        return NoDefault if isinstance(default, BaseModel) else default


def config_schema() -> dict[str, Any]:
    """The JSON Schema of config.yaml, as a JSON object (`$schema`, `title`, `properties`, `$defs`...)."""
    generated = Config.model_json_schema(mode="validation", schema_generator=_ConfigSchema)
    _drop_titles(generated)
    return {"$schema": DRAFT, "title": "marketcache config.yaml", **generated}


def schema_text() -> str:
    """`config_schema()` as `python -m worker schema` prints it and config.schema.json holds it
    (without the final line break)."""
    return json.dumps(config_schema(), indent=2, ensure_ascii=False)


def _drop_titles(schema: Any) -> None:
    if isinstance(schema, list):
        for item in schema:
            _drop_titles(item)
        return
    if not isinstance(schema, dict):
        return
    schema.pop("title", None)
    for keyword, value in schema.items():
        if keyword in _DATA_KEYWORDS:
            continue
        if keyword in _SCHEMA_MAPS and isinstance(value, dict):
            for member in value.values():
                _drop_titles(member)
        else:
            _drop_titles(value)
