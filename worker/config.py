"""config.yaml: the watchlist, providers and cadences, validated; plus overrides from the environment.

Environment variables win over the file: `REDIS_URL`, `TRADIER_BASE_URL`, `POLYGON_BASE_URL`,
`MARKETCACHE_METRICS_PORT`, `MARKETCACHE_METRICS_HOST`.
API keys come from the environment only (`TRADIER_API_KEY`, `POLYGON_API_KEY`) and live in
`Secrets`, never in `Config`, so that dumping a config cannot leak them.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, get_args

import yaml
from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict, JsonValue

from reader.redis_url import DEFAULT_REDIS_URL, redact_url
from worker.dataset_config import (
    ChainGroup,
    ChainsConfig,
    ChainSelection,
    DatasetsConfig,
    HistoryConfig,
    IndicatorsConfig,
    Scheduled,
    Section,
    Symbol,
)
from worker.errors import ConfigError
from worker.priority import BACKGROUND, dataset_ranks

__all__ = [
    "API_KEY_ENV",
    "CONFIG_ENV",
    "CacheConfig",
    "ChainGroup",
    "ChainSelection",
    "ChainsConfig",
    "Config",
    "ConfigError",
    "DatasetsConfig",
    "HistoryConfig",
    "IndicatorsConfig",
    "MetricsConfig",
    "OnDemandConfig",
    "ProviderConfig",
    "RetryConfig",
    "ScheduleConfig",
    "Scheduled",
    "Secrets",
    "WorkerConfig",
    "load_config",
    "parse_config",
    "resolve_config_path",
]

CONFIG_ENV = "MARKETCACHE_CONFIG"
DEFAULT_CONFIG_PATH = Path("config.yaml")

# field path in the file -> environment variable that overrides it
ENV_OVERRIDES: dict[tuple[str, ...], str] = {
    ("redis_url",): "REDIS_URL",
    ("providers", "tradier", "base_url"): "TRADIER_BASE_URL",
    ("providers", "polygon", "base_url"): "POLYGON_BASE_URL",
    ("metrics", "port"): "MARKETCACHE_METRICS_PORT",
    ("metrics", "host"): "MARKETCACHE_METRICS_HOST",
}
API_KEY_ENV = {"tradier": "TRADIER_API_KEY", "polygon": "POLYGON_API_KEY"}
DEFAULT_EXCHANGE = "XNYS"


def exchange_codes() -> list[str]:
    """Every calendar code `exchange-calendars` knows (aliases such as NYSE included), sorted."""
    import exchange_calendars  # deferred: it pulls in pandas, which only another exchange than XNYS needs

    return sorted(str(code) for code in exchange_calendars.get_calendar_names())


def _priority_items(schema: JsonDict) -> None:
    """The JSON Schema of `priority` takes the background datasets' names in any case, as the model
    does (`_priority` lowers them), each once; editors offer the names as examples."""
    names = "|".join(
        "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in n) for n in BACKGROUND
    )
    examples: list[JsonValue] = [*BACKGROUND]
    schema["items"] = {"type": "string", "pattern": rf"^\s*({names})\s*$", "examples": examples}
    schema["uniqueItems"] = True


def _exchange_enum(schema: JsonDict) -> None:
    """The JSON Schema of `schedule.exchange` lists the codes, so that editors complete them."""
    codes: list[JsonValue] = [*exchange_codes()]
    schema["enum"] = codes


RatePerMin = Annotated[
    int,
    Field(
        gt=0,
        description="the provider's allowance, requests per minute, shared by all workers (they send a "
        "little less: the rest is headroom for bursts and latency)",
    ),
]
BatchSize = Annotated[int, Field(gt=0, le=1000, description="symbols per quotes call (at most 1000)")]


class ProviderConfig(Section):
    """One upstream API: where it is and how hard it may be called."""

    base_url: str
    rate_per_min: RatePerMin
    batch_size: BatchSize
    max_concurrency: int = Field(default=4, gt=0, description="requests in flight at once")
    timeout_s: float = Field(default=10.0, gt=0, description="total time of one request, body included")
    breaker_failures: int = Field(
        default=5,
        ge=1,
        description="transient failures in a row that open the provider's circuit breaker (no call while "
        "it is open)",
    )
    breaker_open_s: float = Field(
        default=30.0, gt=0, le=3600, description="how long an open breaker waits before one probe request"
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL, e.g. https://api.tradier.com")
        return value.rstrip("/")


class TradierConfig(ProviderConfig):
    """Tradier's market data API: quotes, expirations, chains, daily bars and timesales."""

    base_url: str = Field(
        default="https://api.tradier.com",
        description="where the API is; sandbox: `https://sandbox.tradier.com` (`TRADIER_BASE_URL` wins)",
    )
    rate_per_min: RatePerMin = 120
    batch_size: BatchSize = 100


class PolygonConfig(ProviderConfig):
    """Polygon's REST API: snapshots, aggregates and indicators."""

    base_url: str = Field(
        default="https://api.polygon.io", description="where the API is (`POLYGON_BASE_URL` wins)"
    )
    rate_per_min: RatePerMin = 5
    batch_size: BatchSize = 250


class ProvidersConfig(Section):
    """The upstream APIs. Their keys come from the environment only: TRADIER_API_KEY, POLYGON_API_KEY."""

    tradier: TradierConfig = TradierConfig()
    polygon: PolygonConfig = PolygonConfig()


class ScheduleConfig(Section):
    """The exchange whose calendar drives the schedule."""

    exchange: str = Field(
        default=DEFAULT_EXCHANGE,
        description="the exchange calendar, an `exchange-calendars` code; phases are cut in New York "
        "time, so XNYS or another US exchange",
        json_schema_extra=_exchange_enum,
    )
    extra_closed: list[date] = Field(
        default_factory=list,
        description="dates of unscheduled closures the calendar does not know, YYYY-MM-DD (published to "
        "readers too)",
    )
    closing_delay_s: float = Field(
        default=60.0,
        ge=0,
        le=4 * 3600,
        description="how long after its last phase a closing refresh runs",
    )

    @field_validator("exchange")
    @classmethod
    def _known_exchange(cls, code: str) -> str:
        if code == DEFAULT_EXCHANGE:  # known: spares importing exchange-calendars (and pandas) here
            return code
        codes = exchange_codes()
        if code in codes:
            return code
        close = [c for c in codes if c.upper() == code.upper()] or difflib.get_close_matches(code, codes, n=2)
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        raise ValueError(
            f"not an exchange-calendars code{hint}; use one such as XNYS (NYSE), XNAS (Nasdaq), XASE "
            "(NYSE American), ARCX (NYSE Arca) or BATS (Cboe BZX), in upper case; list them all with "
            "python -c 'import exchange_calendars; print(exchange_calendars.get_calendar_names())'"
        )


class CacheConfig(Section):
    """How long items stay in Redis, and when a read calls them stale."""

    keep_stale_s: int = Field(
        default=7 * 86_400,
        ge=0,
        description="how long an item stays readable (flagged stale) after `fresh_until`",
    )
    fresh_slack_s: float = Field(
        default=5.0, ge=0, description="added to `fresh_until` while the next refresh is in flight"
    )


class WorkerConfig(Section):
    """One worker process: its tick, its job slots and how it stops."""

    tick_s: int = Field(default=1, ge=1, le=60, description="how often due batches are enqueued")
    max_jobs: int = Field(default=10, gt=0, description="jobs one worker process runs at once")
    job_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="longest a refresh job may run; waits for rate windows stop short of it",
    )
    shutdown_grace_s: int = Field(
        default=10, ge=0, description="on Ctrl-C or SIGTERM, how long jobs in flight may finish"
    )
    symbols_per_job: int = Field(
        default=10, gt=0, le=1000, description="symbols per refresh job of the per-symbol datasets"
    )
    poll_delay_s: float = Field(
        default=0.02,
        gt=0,
        le=5,
        description="how often the queue is polled: an on-demand fetch starts within this",
    )


class RetryConfig(Section):
    """Retries of a refresh whose symbols failed with a transient upstream error."""

    enabled: bool = Field(
        default=True,
        description="retry a refresh that failed of a transient fault, until the next scheduled refresh "
        "(false: wait for that one)",
    )
    base_s: float = Field(
        default=2.0,
        gt=0,
        description="retry n waits a random time up to `min(cap_s, base_s * 2^n)`",
    )
    cap_s: float = Field(default=300.0, gt=0, description="the longest wait before a retry (at least base_s)")

    @model_validator(mode="after")
    def _cap_above_base(self) -> RetryConfig:
        if self.cap_s < self.base_s:
            raise ValueError(f"cap_s={self.cap_s:g} is below base_s={self.base_s:g}; raise cap_s")
        return self


class OnDemandConfig(Section):
    """Fetches that readers enqueue on a miss or a stale read."""

    unknown_ttl_s: int = Field(
        default=300,
        ge=1,
        le=86_400,
        description='how long an upstream\'s "no such symbol" is remembered (no call meanwhile)',
    )
    adopt: bool = Field(
        default=False,
        description="schedule a symbol fetched on demand `adopt_after` times in a day, for the rest of it",
    )
    adopt_after: int = Field(
        default=3, ge=1, description="on-demand fetches of a symbol in one day that adopt it (with `adopt`)"
    )


class MetricsConfig(Section):
    """Prometheus metrics served over HTTP by `python -m worker run` (`worker.metrics`)."""

    port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="serve the Prometheus metrics on this port, at /metrics (null: none; 0: any free "
        "port); MARKETCACHE_METRICS_PORT wins",
    )
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="the address the metrics listen on: this machine only by default; 0.0.0.0 to let "
        "another machine or container scrape them; MARKETCACHE_METRICS_HOST wins",
    )


class Config(Section):
    """The whole of config.yaml."""

    redis_url: str = Field(
        default=DEFAULT_REDIS_URL,
        description="where the cache lives: redis://, rediss:// or unix:// (`REDIS_URL` wins)",
    )
    watchlist: list[Symbol] = Field(
        min_length=1,
        description="symbols refreshed on schedule (stocks, ETFs, indices; not option contracts); "
        "case-insensitive, duplicates dropped",
    )
    providers: ProvidersConfig = ProvidersConfig()
    datasets: DatasetsConfig = DatasetsConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    cache: CacheConfig = CacheConfig()
    on_demand: OnDemandConfig = OnDemandConfig()
    worker: WorkerConfig = WorkerConfig()
    retry: RetryConfig = RetryConfig()
    metrics: MetricsConfig = MetricsConfig()
    priority: list[str] = Field(
        default=list(BACKGROUND),
        description="who spends an upstream's allowance after on-demand fetches and quotes (always "
        "first), in this order; the last ones are stretched when the plan needs more than the allowance",
        json_schema_extra=_priority_items,
    )

    @field_validator("priority")
    @classmethod
    def _priority(cls, order: list[str]) -> list[str]:
        order = [name.strip().lower() for name in order]
        dataset_ranks(order)  # ValueError naming an unknown dataset
        if len(set(order)) != len(order):
            raise ValueError(f"priority lists a dataset twice: {order}; name each once")
        return order

    @field_validator("watchlist")
    @classmethod
    def _distinct(cls, symbols: list[str]) -> list[str]:
        return list(dict.fromkeys(symbols))

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected a redis://, rediss:// or unix:// URL, e.g. redis://localhost:6379/0")
        return value


@dataclass(frozen=True)
class Secrets:
    """API keys, from the environment only."""

    tradier_api_key: SecretStr | None = None
    polygon_api_key: SecretStr | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Secrets:
        """The keys in `env` (default: the environment), spaces around them dropped; a `ConfigError`
        for a key that cannot be sent as one (a space, a line break or a non-ASCII character inside,
        as a bad paste leaves): the message names the variable and the position, never the key."""
        env = os.environ if env is None else env

        def read(name: str) -> SecretStr | None:
            value = env.get(name, "").strip()
            flaw = _unsendable(value)
            if flaw is not None:
                position, what = flaw
                raise ConfigError(
                    f"{name} holds {what} at character {position}: an API key is one word of printable "
                    f"ASCII; set {name} again, copied without it (the key is not shown here)"
                )
            return SecretStr(value) if value else None

        return cls(read(API_KEY_ENV["tradier"]), read(API_KEY_ENV["polygon"]))

    def api_key(self, provider: str) -> str:
        """The key of `provider`, or a `ConfigError` saying which variable to set."""
        secret = {"tradier": self.tradier_api_key, "polygon": self.polygon_api_key}.get(provider)
        if secret is None:
            raise ConfigError(
                f"{API_KEY_ENV[provider]} is not set: export your {provider} API key, "
                "or use `make run`, which starts the local emulator and needs no key"
            )
        return secret.get_secret_value()

    def values(self) -> list[str]:
        """Every secret value, for log redaction."""
        return [s.get_secret_value() for s in (self.tradier_api_key, self.polygon_api_key) if s is not None]


def _unsendable(key: str) -> tuple[int, str] | None:
    """The first character of `key` that no API key holds (1-based position, what it is), or None."""
    for position, char in enumerate(key, start=1):
        if char in " \t":
            return position, "a space or a tab"
        if not char.isascii():
            return position, "a non-ASCII character"
        if not char.isprintable():
            return position, "a control character (a line break, a NUL...)"
    return None


def resolve_config_path(path: str | Path | None, env: Mapping[str, str] | None = None) -> Path:
    """`path`, else `MARKETCACHE_CONFIG`, else ./config.yaml."""
    env = os.environ if env is None else env
    return Path(path or env.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, override from `env`, and validate; raise `ConfigError` listing every problem."""
    env = os.environ if env is None else env
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(
            f"{path}: cannot read it ({e.strerror}); pass --config PATH or set {CONFIG_ENV}"
        ) from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from e
    return parse_config(text, source=str(path), env=env)


def parse_config(text: str, *, source: str = "config", env: Mapping[str, str] | None = None) -> Config:
    """Validate the YAML `text`; `source` names it in error messages. Types are strict, as in
    config.schema.json: `true`, `yes` or `"15"` where a number is expected is a `ConfigError`, not a
    1 or a 15; a YYYY-MM-DD date may be quoted or not; an environment override of a number field
    (`MARKETCACHE_METRICS_PORT=9464`) is read as the number it spells."""
    env = os.environ if env is None else env
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise ConfigError(f"{source}: not valid YAML{at}: {getattr(e, 'problem', e)}") from e
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping of settings (watchlist: [...], ...), got {type(data).__name__}"
        )
    _refuse_secrets(data, source)
    overridden = _apply_env(data, env)
    try:
        # Strict, so that a value of the wrong type is refused as config.schema.json refuses it
        # (`rate_per_min: true`, `port: "9464"`, `batch_size: yes` are not numbers); through JSON, whose
        # strict mode still takes a list for a tuple and a YYYY-MM-DD string for a date.
        return Config.model_validate_json(json.dumps(_as_json(data)), strict=True)
    except ValidationError as e:
        lines = [_describe(err, overridden) for err in e.errors()]
        problems = "1 problem" if len(lines) == 1 else f"{len(lines)} problems"
        raise ConfigError(f"{source} is invalid ({problems}):\n  " + "\n  ".join(lines)) from None


def _refuse_secrets(data: Any, source: str, path: tuple[str, ...] = ()) -> None:
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        lowered = str(key).lower()
        if any(word in lowered for word in ("api_key", "apikey", "token", "secret", "password")):
            dotted = ".".join((*path, str(key)))
            raise ConfigError(
                f"{source}: {dotted}: secrets are not read from the config file; remove it and set "
                f"{' or '.join(API_KEY_ENV.values())} in the environment (or put the password in REDIS_URL)"
            )
        _refuse_secrets(value, source, (*path, str(key)))


def _as_json(value: Any) -> Any:
    """The YAML `value` as the JSON document that config.schema.json checks in editors: a YAML date
    (or other scalar JSON lacks) is the text written, `2027-01-09`; a whole float such as `1.0` is
    the integer it is, as JSON Schema counts it (an int field takes it; a float field takes an int)."""
    if isinstance(value, dict):
        return {str(key): _as_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_json(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None or isinstance(value, (str, int, float)):
        return value
    return str(value)


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    overridden: dict[tuple[str, ...], str] = {}
    for path, name in ENV_OVERRIDES.items():
        value = env.get(name, "").strip()
        if not value:
            continue
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = _from_env(path, value)
        overridden[path] = name
    return overridden


def _from_env(path: tuple[str, ...], text: str) -> str | int:
    """The environment's `text` as the field at `path` takes it: an integer for a field of integers
    (the environment holds only text, `MARKETCACHE_METRICS_PORT=9464`); otherwise the text, which a
    field of another type refuses naming the variable."""
    model: type[BaseModel] | None = Config
    for part in path[:-1]:
        field = model.model_fields.get(part) if model is not None else None
        model = _section_type(field.annotation if field is not None else None)
    field = model.model_fields.get(path[-1]) if model is not None else None
    annotation = field.annotation if field is not None else None
    takes_int = annotation is int or int in get_args(annotation)
    return int(text) if takes_int and re.fullmatch(r"[+-]?\d+", text) else text


def _describe(error: Any, overridden: dict[tuple[str, ...], str]) -> str:
    parts = error["loc"]
    key_refused = parts[-1:] == ("[key]",)  # a key of a mapping such as cadence_s: the loc ends with it
    if key_refused:
        parts = parts[:-1]
    loc = tuple(str(part) for part in parts)
    dotted = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts)
    dotted = dotted.removeprefix(".") or "(top level)"
    if error["type"] == "extra_forbidden" and loc[-1] == "interval_s":
        return (
            f"{dotted}: replaced by cadence_s, seconds between refreshes per phase of the exchange day, "
            "e.g. cadence_s: {pre: 60, regular: 15, post: 60} (a phase left out is off)"
        )
    if error["type"] == "extra_forbidden":
        return f"{dotted}: unknown key{_suggest(loc)}"
    if error["type"] == "missing":
        return f"{dotted}: required, missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if key_refused:
        return f"{dotted}: unknown key ({message})"
    origin = f" (from {overridden[loc]})" if loc in overridden else ""
    value = error["input"]
    if not origin:
        message += _wrong_type_hint(error["type"], value)
    if isinstance(value, str) and "://" in value:
        value = redact_url(value)
    return f"{dotted} = {value!r}{origin}: {message}"


def _wrong_type_hint(kind: str, value: object) -> str:
    """How to write a number or a boolean that YAML read as another type (`"15"`, `yes`), or ""."""
    if kind not in ("int_type", "float_type", "bool_type"):
        return ""
    if isinstance(value, bool):
        return " (true, false, yes, no, on and off are booleans in YAML: write a number)"
    if not isinstance(value, str):
        return ""
    if kind == "bool_type":
        quoted_as_wanted = value.strip().lower() in ("true", "false", "yes", "no", "on", "off")
    else:
        quoted_as_wanted = re.fullmatch(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*", value) is not None
    return " (quoted, it is text: write it without quotes)" if quoted_as_wanted else ""


def _suggest(loc: tuple[str, ...]) -> str:
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        if part.isdigit():  # an index into a list of sections
            continue
        field = model.model_fields.get(part)
        section = _section_type(field.annotation if field is not None else None)
        if section is None:
            return ""
        model = section
    allowed = sorted(model.model_fields)
    close = difflib.get_close_matches(loc[-1], allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f" (expected one of: {', '.join(allowed)}){hint}"


def _section_type(annotation: Any) -> type[BaseModel] | None:
    """The section model in `annotation`: itself, or inside `list[...]` or `... | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _section_type(arg)
        if found is not None:
            return found
    return None
