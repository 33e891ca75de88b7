"""config.yaml for editors: the JSON Schema `python -m worker schema` prints and config.schema.json
holds, checked against the models and check-config; the README's config table, from the same models."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel, Field

from devtools.config_table import COMMAND, UndescribedField, readme_with_table, table
from tests.support import child_env
from worker.__main__ import main
from worker.config import ConfigError, load_config, parse_config
from worker.schema import REGENERATE, SCHEMA_FILE, config_schema, schema_text

REPO = Path(__file__).resolve().parent.parent
VALID = "watchlist: [AAPL, MSFT]\n"


def as_json(text: str) -> Any:
    """The YAML `text` as the JSON document editors validate: a date is the string written."""
    return json.loads(json.dumps(yaml.safe_load(text), default=str))


def schema_paths(text: str) -> set[str]:
    """The field paths the schema's errors name, written as check-config writes them
    (`providers.tradier.rate_per_min`, `watchlist[1]`): an unknown or a missing key is named by
    itself, as editors underline it, rather than by the mapping that holds it; of the alternatives
    of a field that may be null, the error of the one that fits best."""
    validator = jsonschema.Draft202012Validator(
        config_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    paths = set()
    for error in (leaf for e in validator.iter_errors(as_json(text)) for leaf in _leaves(e)):
        parts = list(error.absolute_path)
        if error.validator == "additionalProperties":
            named = set(error.instance) - set(error.schema.get("properties", {}))
        elif error.validator == "required":
            named = {key for key in error.validator_value if key not in error.instance}
        elif "propertyNames" in error.absolute_schema_path:
            named = {error.instance}
        else:
            named = {None}
        for key in named:
            full = parts if key is None else [*parts, key]
            paths.add("".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in full).removeprefix("."))
    return paths


def _leaves(error: jsonschema.ValidationError) -> Iterator[jsonschema.ValidationError]:
    """`error`, or for one of alternatives (`X | None`) the errors of those of the right type."""
    if not error.context:
        yield error
        return
    wrong_type = [e for e in error.context if e.validator == "type" and not e.relative_path]
    for inner in [e for e in error.context if e not in wrong_type] or wrong_type:
        yield from _leaves(inner)


def test_schema_command_prints_the_checked_in_schema(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m worker schema` prints config.schema.json as checked in, a draft 2020-12 schema."""
    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    assert printed == schema_text() + "\n"
    assert printed == (REPO / SCHEMA_FILE).read_text(encoding="utf-8"), (
        f"{SCHEMA_FILE} differs from the config models: regenerate it with `{REGENERATE}`"
    )
    schema = json.loads(printed)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_shipped_config_points_to_the_schema_and_is_valid_under_it() -> None:
    """config.yaml's first line points editors to config.schema.json, which accepts the file."""
    text = (REPO / "config.yaml").read_text(encoding="utf-8")
    assert text.splitlines()[0] == f"# yaml-language-server: $schema=./{SCHEMA_FILE}"
    assert schema_paths(text) == set()
    load_config(REPO / "config.yaml", env={})


@pytest.mark.parametrize(
    ("text", "path"),
    [
        pytest.param(
            "providers: {tradier: {rate_per_min: -1}}", "providers.tradier.rate_per_min", id="negative"
        ),
        pytest.param(
            "datasets: {quotes: {cadence_s: {regular: fast}}}",
            "datasets.quotes.cadence_s.regular",
            id="cadence-not-a-number",
        ),
        pytest.param(
            "datasets: {quotes: {cadence_s: {lunch: 60}}}",
            "datasets.quotes.cadence_s.lunch",
            id="no-such-phase",
        ),
        pytest.param(
            "providers: {tradier: {batchsize: 10}}", "providers.tradier.batchsize", id="unknown-key"
        ),
        pytest.param("providers: {tradier: {api_key: abc123}}", "providers.tradier.api_key", id="api-key"),
        pytest.param("datasets: {history: {intraday: {bar: 2m}}}", "datasets.history.intraday.bar", id="bar"),
        pytest.param("schedule: {exchange: NYSEX}", "schedule.exchange", id="unknown-exchange"),
        pytest.param("worker: {tick_s: 0}", "worker.tick_s", id="below-minimum"),
        pytest.param("retry: {enabled: maybe}", "retry.enabled", id="not-a-boolean"),
        pytest.param(
            "datasets: {chains: {groups: [{expirations: 5}]}}",
            "datasets.chains.groups[0].symbols",
            id="group-without-symbols",
        ),
        pytest.param(
            "datasets: {expirations: {provider: polygon}}", "datasets.expirations.provider", id="const"
        ),
        pytest.param("datasets: {indicators: {sma: [20, 0]}}", "datasets.indicators.sma[1]", id="list-item"),
        pytest.param("schedule: {extra_closed: [soon]}", "schedule.extra_closed[0]", id="not-a-date"),
        pytest.param(
            "providers: {tradier: {rate_per_min: true}}", "providers.tradier.rate_per_min", id="bool-for-int"
        ),
        pytest.param(
            "datasets: {quotes: {cadence_s: {regular: '15'}}}",
            "datasets.quotes.cadence_s.regular",
            id="quoted-number-for-float",
        ),
        pytest.param('metrics: {port: "9464"}', "metrics.port", id="quoted-number-for-nullable-int"),
        pytest.param(
            "providers: {polygon: {batch_size: yes}}", "providers.polygon.batch_size", id="yaml-yes"
        ),
    ],
)
def test_schema_and_check_config_refuse_a_bad_file_at_the_same_field_path(text: str, path: str) -> None:
    """Each bad file fails the schema and check-config, both naming the same field path."""
    assert path in schema_paths(VALID + text)
    with pytest.raises(ConfigError) as raised:
        parse_config(VALID + text, env={})
    assert re.search(rf"(^|\s){re.escape(path)}( =|:)", str(raised.value)), str(raised.value)


def test_schema_and_check_config_name_a_missing_watchlist_alike() -> None:
    """A file without a watchlist, or with an unknown top-level key, is named the same way by both."""
    assert schema_paths("watchlst: [AAPL]") == {"watchlist", "watchlst"}
    with pytest.raises(ConfigError) as raised:
        parse_config("watchlst: [AAPL]", env={})
    assert "watchlist: required, missing" in str(raised.value)
    assert "watchlst: unknown key" in str(raised.value)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("priority: [Chains, HISTORY, ' intraday ']", id="priority-in-any-case"),
        pytest.param("datasets: {history: {intraday: null}, indicators: {macd: null}}", id="nulls"),
        pytest.param("schedule: {exchange: XNAS, extra_closed: [2027-01-09]}", id="dates-and-exchange"),
        pytest.param(
            "datasets: {chains: {strike_window_pct: 15, groups: [{symbols: [spy], expirations: 0}]}}",
            id="chain-groups",
        ),
        pytest.param("datasets: {quotes: {cadence_s: {closed: 3600}}}, retry: {cap_s: 2.5}", id="numbers"),
        pytest.param("worker: {tick_s: 2.0, max_jobs: 4}", id="whole-float-for-int"),
        pytest.param("schedule: {extra_closed: ['2027-01-09']}", id="quoted-date"),
    ],
)
def test_schema_accepts_what_check_config_accepts(text: str) -> None:
    """Valid files the models accept are valid under the schema too: editors flag no false error."""
    parse_config(VALID + text.replace("}}}, retry", "}}}\nretry"), env={})
    assert schema_paths(VALID + text.replace("}}}, retry", "}}}\nretry")) == set()


def test_every_setting_has_help_and_every_section_refuses_unknown_keys() -> None:
    """Editors show a description for every key, and every section forbids keys it does not know."""
    schema = config_schema()
    assert schema["title"] == "marketcache config.yaml"
    sections = {"(top level)": schema, **schema["$defs"]}
    for name, section in sections.items():
        assert section["additionalProperties"] is False, name
        assert "title" not in section or section is schema, name
        for key, field in section["properties"].items():
            ref = field.get("$ref") or next((m["$ref"] for m in field.get("anyOf", []) if "$ref" in m), None)
            described = field.get("description") or (
                ref and schema["$defs"][ref.split("/")[-1]].get("description")
            )
            assert described, f"{name}.{key} has no description"
            assert "title" not in field, f"{name}.{key}"
    # factory defaults are shown; a section's default is left to its keys
    assert schema["$defs"]["QuotesConfig"]["properties"]["cadence_s"]["default"] == {
        "pre": 60.0,
        "regular": 15.0,
        "post": 60.0,
    }
    assert "default" not in schema["properties"]["providers"]
    assert "XNYS" in schema["$defs"]["ScheduleConfig"]["properties"]["exchange"]["enum"]


def test_readme_config_table_is_generated_from_the_models() -> None:
    """The README's config table is what `python -m devtools.config_table --write` writes."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme_with_table(readme, table()) == readme, (
        f"README.md's config table differs from the config models: run `{COMMAND}`"
    )
    rows = table().splitlines()
    assert rows[0] == "| Key | Default | Meaning |"
    assert "| `providers.tradier.rate_per_min` | `120` | the provider's allowance" in "\n".join(rows)
    assert (
        "| `datasets.quotes.cadence_s` | `{pre: 60, regular: 15, post: 60}` | seconds between"
        in "\n".join(rows)
    )
    assert "| `providers.polygon.timeout_s` | `10` | as `providers.tradier.timeout_s` |" in rows
    assert "| `watchlist` | required, non-empty | symbols refreshed on schedule" in "\n".join(rows)


def test_config_table_refuses_a_field_without_a_description() -> None:
    """A setting without a description stops the table, naming the field and what to do."""

    class Section(BaseModel):
        described: int = Field(default=1, description="has one")
        port: int = 9100

    class Root(BaseModel):
        metrics: Section = Section()

    with pytest.raises(
        UndescribedField, match=r"Section.port \(`metrics.port` in config.yaml\) has no description="
    ):
        table(Root)


def test_readme_edit_flow_checks_a_copy_then_copies_it_over_the_same_file(tmp_path: Path) -> None:
    """The README's edit flow, run as written: a checked copy is copied over the file, same inode."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```sh\n(cp config.yaml /tmp/new.yaml\n.*?)```", readme, flags=re.DOTALL)
    assert block is not None, "README.md lacks the edit-a-copy example"
    script = block.group(1).replace("/tmp/new.yaml", str(tmp_path / "new.yaml"))  # noqa: S108  # the README's path, replaced
    live = tmp_path / "config.yaml"
    live.write_text((REPO / "config.yaml").read_text(encoding="utf-8"))
    inode = live.stat().st_ino
    env = child_env(
        EDITOR="sed -i s/AAPL,/AAPL,KO,/",  # the edit: add KO to the watchlist
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONPATH=str(REPO),
    )
    result = subprocess.run(
        ["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "KO" in load_config(live, env={}).watchlist
    assert live.stat().st_ino == inode  # a bind mount still shows this file
