"""config.yaml validation: `check-config` names the field path, the bad value and the fix, exit 2."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import child_env
from worker.__main__ import main
from worker.config import (
    ConfigError,
    Secrets,
    load_config,
    parse_config,
    resolve_config_path,
)
from worker.reload import ConfigWatcher
from worker.risks import config_warnings

REPO = Path(__file__).resolve().parent.parent
VALID = "watchlist: [AAPL, msft]\n"


def check_config(path: Path, *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", "check-config", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=child_env(**(env or {})),
        check=False,
    )


@pytest.mark.parametrize(
    ("text", "path", "value", "expected"),
    [
        pytest.param(
            "watchlist: [AAPL]\nproviders: {tradier: {batch_size: lots}}",
            "providers.tradier.batch_size",
            "'lots'",
            "valid integer",
            id="wrong-type",
        ),
        pytest.param(
            "watchlist: [AAPL]\nproviders: {tradier: {batchsize: 10}}",
            "providers.tradier.batchsize",
            "unknown key",
            "did you mean 'batch_size'",
            id="unknown-key",
        ),
        pytest.param(
            "watchlist: [AAPL]\nwatchlst: [MSFT]",
            "watchlst",
            "unknown key",
            "did you mean 'watchlist'",
            id="unknown-top-level-key",
        ),
        pytest.param(
            "watchlist: [AAPL]\nproviders: {tradier: {rate_per_min: -5}}",
            "providers.tradier.rate_per_min",
            "-5",
            "greater than 0",
            id="negative-rate",
        ),
        pytest.param("watchlist: []", "watchlist", "[]", "at least 1 item", id="empty-watchlist"),
        pytest.param(
            "watchlist: [AAPL, 'AAPL*']", "watchlist[1]", "'AAPL*'", "letter first", id="bad-symbol"
        ),
        pytest.param("providers: {}", "watchlist", "required", "missing", id="no-watchlist"),
    ],
)
def test_check_config_refuses_bad_files_with_the_field_path(
    tmp_path: Path, text: str, path: str, value: str, expected: str
) -> None:
    """Each kind of mistake exits 2 and names where it is, what it is and what is expected."""
    config = tmp_path / "config.yaml"
    config.write_text(text)
    result = check_config(config)
    assert result.returncode == 2, result
    assert result.stdout == ""
    line = next(line for line in result.stderr.splitlines() if line.strip().startswith(path))
    assert value in line
    assert expected in line


def test_check_config_accepts_the_shipped_config_and_describes_it() -> None:
    """The repository's config.yaml is valid; check-config says what it will do."""
    result = check_config(REPO / "config.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ")
    assert "14 symbols" in result.stdout
    assert "quotes (pre 60s, regular 15s, post 60s; closing refresh) from tradier" in result.stdout


def test_check_config_on_a_missing_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    """A missing file is exit 2 with the flag and the variable that choose it."""
    result = check_config(tmp_path / "nope.yaml")
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr
    assert "--config" in result.stderr
    assert "MARKETCACHE_CONFIG" in result.stderr


def test_not_yaml_and_not_a_mapping_are_refused_with_the_position() -> None:
    """Broken YAML reports its line and column; a list at the top level is refused."""
    with pytest.raises(ConfigError, match=r"not valid YAML at line 2, column"):
        parse_config("watchlist: [AAPL\nproviders: {", env={})
    with pytest.raises(ConfigError, match=r"expected a mapping"):
        parse_config("- AAPL\n- MSFT", env={})


def test_api_keys_in_the_file_are_refused_and_never_echoed() -> None:
    """A key in the file is refused, pointing at the variable, without printing the value."""
    with pytest.raises(ConfigError) as raised:
        parse_config("watchlist: [AAPL]\nproviders: {tradier: {api_key: abc123secret}}", env={})
    assert "providers.tradier.api_key" in str(raised.value)
    assert "TRADIER_API_KEY" in str(raised.value)
    assert "abc123secret" not in str(raised.value)


def test_environment_wins_over_the_file_and_is_named_when_wrong() -> None:
    """REDIS_URL and TRADIER_BASE_URL override the file; a bad override names its variable."""
    env = {"REDIS_URL": "redis://cache:6380/2", "TRADIER_BASE_URL": "http://127.0.0.1:9999/"}
    config = parse_config(VALID + "redis_url: redis://file:6379/0", env=env)
    assert config.redis_url == "redis://cache:6380/2"
    assert config.providers.tradier.base_url == "http://127.0.0.1:9999"
    with pytest.raises(
        ConfigError, match=r"providers.tradier.base_url = 'ftp://x' \(from TRADIER_BASE_URL\)"
    ):
        parse_config(VALID, env={"TRADIER_BASE_URL": "ftp://x"})


def test_a_number_from_the_environment_is_taken_though_the_file_must_not_quote_one() -> None:
    """MARKETCACHE_METRICS_PORT=9464 (the environment holds text) sets the port; the same text in
    the file is refused, as the schema refuses it; a variable that is no number is named."""
    config = parse_config(VALID + "metrics: {port: 9100}", env={"MARKETCACHE_METRICS_PORT": "9464"})
    assert config.metrics.port == 9464
    assert parse_config(VALID, env={"MARKETCACHE_METRICS_PORT": " 0 "}).metrics.port == 0
    with pytest.raises(ConfigError, match=r"metrics.port = '9464': Input should be a valid integer \(quoted"):
        parse_config(VALID + "metrics: {port: '9464'}", env={})
    with pytest.raises(
        ConfigError,
        match=r"metrics.port = 'ninety' \(from MARKETCACHE_METRICS_PORT\): Input should be a valid",
    ):
        parse_config(VALID, env={"MARKETCACHE_METRICS_PORT": "ninety"})


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param(
            "providers: {tradier: {rate_per_min: true}}",
            "providers.tradier.rate_per_min = True: Input should be a valid integer (true, false, yes, no",
            id="true-for-a-count",
        ),
        pytest.param(
            "providers: {tradier: {batch_size: yes}}",
            "providers.tradier.batch_size = True: Input should be a valid integer",
            id="yes-for-a-count",
        ),
        pytest.param(
            "datasets: {quotes: {cadence_s: {regular: '15'}}}",
            "datasets.quotes.cadence_s.regular = '15': Input should be a valid number (quoted, it is text: "
            "write it without quotes)",
            id="quoted-seconds",
        ),
        pytest.param(
            'metrics: {port: "9464"}',
            "metrics.port = '9464': Input should be a valid integer",
            id="quoted-port",
        ),
        pytest.param(
            "retry: {enabled: 'false'}",
            "retry.enabled = 'false': Input should be a valid boolean",
            id="quoted-bool",
        ),
    ],
)
def test_check_config_refuses_a_value_of_the_wrong_type_instead_of_converting_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: str
) -> None:
    """A boolean or a quoted number where the schema wants a number (or a boolean) is exit 2, naming
    the field, the value and what is expected, as config.schema.json refuses it: not turned into 1."""
    config = tmp_path / "config.yaml"
    config.write_text(VALID + text + "\n")
    assert main(["check-config", str(config)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"(1 problem):\n  {line}" in captured.err


def test_a_reload_to_a_value_of_the_wrong_type_keeps_the_last_good_config(tmp_path: Path) -> None:
    """Hot reload refuses `rate_per_min: true` as check-config does; the running config stays."""
    path = tmp_path / "config.yaml"
    path.write_text(VALID + "providers: {tradier: {rate_per_min: 60}}\n")
    watcher = ConfigWatcher(path, load_config(path, env={}), env={})
    path.write_text(VALID + "providers: {tradier: {rate_per_min: true}}\n")
    assert watcher.poll() is None
    assert watcher.current.providers.tradier.rate_per_min == 60


def test_watchlist_is_normalised_and_deduplicated() -> None:
    """Lower case is accepted, duplicates are dropped, order is kept."""
    config = parse_config("watchlist: [msft, AAPL, aapl, MSFT, brk.b]", env={})
    assert config.watchlist == ["MSFT", "AAPL", "BRK.B"]


def test_redis_password_is_not_echoed_in_errors() -> None:
    """A bad value that carries a Redis password is shown redacted."""
    with pytest.raises(ConfigError) as raised:
        parse_config(VALID + "worker: {tick_s: 0}", env={"REDIS_URL": "http://:hunter2@host:6379"})
    assert "hunter2" not in str(raised.value)
    assert "redis_url" in str(raised.value)


def test_risky_but_legal_settings_are_warned_about_not_refused(tmp_path: Path) -> None:
    """Plain http to a remote host, a rate above Tradier's, an uneven tick: warned about, exit 0."""
    config = tmp_path / "config.yaml"
    config.write_text(
        "watchlist: [AAPL]\n"
        "providers: {tradier: {base_url: 'http://api.example.com', rate_per_min: 500}}\n"
        "datasets: {quotes: {cadence_s: {regular: 2}}}\n"
        "worker: {tick_s: 7}\n"
    )
    result = check_config(config)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 3
    assert "providers.tradier.base_url = 'http://api.example.com' is plain http" in warnings[0]
    assert "datasets.quotes cadence_s.regular = 2 is shorter than worker.tick_s = 7" in warnings[1]
    assert "worker.tick_s = 7 does not divide 60" in warnings[2]
    quiet = parse_config("watchlist: [AAPL]\nproviders: {tradier: {rate_per_min: 500}}", env={})
    assert config_warnings(quiet) == [
        "providers.tradier.rate_per_min = 500 is above the 120/min Tradier documents for market data "
        "there; the worker will wait on its rate headers instead"
    ]
    assert (
        config_warnings(parse_config("watchlist: [AAPL]", env={"TRADIER_BASE_URL": "http://127.0.0.1:8"}))
        == []
    )


def test_config_path_comes_from_flag_then_environment_then_default(tmp_path: Path) -> None:
    """--config beats MARKETCACHE_CONFIG, which beats ./config.yaml."""
    assert resolve_config_path("a.yaml", {"MARKETCACHE_CONFIG": "b.yaml"}) == Path("a.yaml")
    assert resolve_config_path(None, {"MARKETCACHE_CONFIG": "b.yaml"}) == Path("b.yaml")
    assert resolve_config_path(None, {}) == Path("config.yaml")
    path = tmp_path / "c.yaml"
    path.write_text(VALID)
    assert load_config(path, env={}).watchlist == ["AAPL", "MSFT"]


def test_secrets_come_from_the_environment_and_say_what_to_set_when_missing() -> None:
    """A missing key names its variable and the emulator alternative; present keys stay hidden."""
    secrets = Secrets.from_env({"TRADIER_API_KEY": "  tok-123  "})
    assert secrets.api_key("tradier") == "tok-123"
    assert "tok-123" not in repr(secrets)
    with pytest.raises(ConfigError, match=r"POLYGON_API_KEY is not set.*make run"):
        secrets.api_key("polygon")
    assert secrets.values() == ["tok-123"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "datasets: {history: {intraday: {bar: 1m, lookback_days: 15}}}",
            "datasets.history = .*: intraday.lookback_days = 15: Tradier keeps 10 days of 1m bars; "
            "lower it to 10 or use provider: polygon",
            id="tradier-intraday-lookback",
        ),
        pytest.param(
            "datasets: {history: {enabled: false}}",
            "indicators.source = 'computed' needs the daily bars of history",
            id="computed-indicators-without-history",
        ),
        pytest.param(
            "datasets: {indicators: {macd: [26, 12, 9]}}",
            r"datasets.indicators.macd = \[26, 12, 9\]: the fast window must be shorter than the slow one",
            id="macd-fast-after-slow",
        ),
        pytest.param(
            "datasets: {chains: {groups: [{symbols: [SPY], expirationz: 5}]}}",
            r"datasets.chains.groups\[0\].expirationz: unknown key .*did you mean 'expirations'",
            id="group-typo",
        ),
        pytest.param(
            "datasets: {expirations: {provider: polygon}}",
            r"datasets.expirations.provider = 'polygon': Input should be 'tradier'",
            id="expirations-only-from-tradier",
        ),
        pytest.param(
            "datasets: {chains: {strike_window_pct: 0}}",
            "datasets.chains.strike_window_pct = 0: Input should be greater than 0",
            id="zero-strike-window",
        ),
    ],
)
def test_dataset_settings_are_checked_with_the_path_and_the_fix(text: str, message: str) -> None:
    """Bad dataset settings name the field, the value and what to do instead."""
    with pytest.raises(ConfigError, match=message):
        parse_config(VALID + text, env={})


def test_chain_groups_override_the_default_selection() -> None:
    """A symbol in a group gets its selection; any other the datasets.chains default."""
    config = parse_config(
        VALID + "datasets: {chains: {expirations: 2, max_days: 30, "
        "groups: [{symbols: [spy, QQQ], expirations: 5, strike_window_pct: 10}]}}",
        env={},
    )
    chains = config.datasets.chains
    spy = chains.selection_for("SPY")
    assert (spy.expirations, spy.max_days, spy.strike_window_pct) == (5, 60, 10.0)
    aapl = chains.selection_for("AAPL")
    assert (aapl.expirations, aapl.max_days, aapl.strike_window_pct) == (2, 30, None)


def test_cadences_beyond_a_providers_rate_are_warned_about() -> None:
    """When the enabled datasets need more calls per minute than rate_per_min allows, check-config says so."""
    symbols = ", ".join(f"S{i}" for i in range(40))
    config = parse_config(
        f"watchlist: [{symbols}]\nproviders: {{tradier: {{rate_per_min: 60}}}}\n"
        "datasets: {chains: {expirations: 3, cadence_s: {regular: 60}}}",
        env={},
    )
    warnings = config_warnings(config)
    # At the busiest cadences: quotes 4 + chains 120 + intraday bars 8 (+ daily ones) = 132 per minute
    assert any(
        "the datasets served by tradier need about 132 calls/min, above providers.tradier.rate_per_min = 60"
        in w
        for w in warnings
    ), warnings
    quiet = parse_config(VALID, env={})
    assert not any("calls/min" in w for w in config_warnings(quiet))


def test_an_old_interval_s_says_what_replaced_it() -> None:
    """interval_s from an older config.yaml is refused with the cadence_s form to use instead."""
    with pytest.raises(
        ConfigError, match=r"datasets.quotes.interval_s: replaced by cadence_s, .* e.g. cadence_s: \{pre"
    ):
        parse_config(VALID + "datasets: {quotes: {interval_s: 15}}", env={})


def test_priority_names_background_datasets_in_any_case_and_refuses_the_rest() -> None:
    """`priority: [Chains]` is chains; quotes, an unknown name or a repeated one are refused with the fix."""
    assert parse_config("watchlist: [A]\npriority: [Chains, HISTORY]\n", env={}).priority == [
        "chains",
        "history",
    ]
    for bad, says in (
        ("[quotes]", "on-demand fetches and quotes always come first"),
        ("[chain]", "expected datasets of expirations, chains, intraday, history, indicators"),
        ("[chains, Chains]", "name each once"),
    ):
        with pytest.raises(ConfigError, match=re.escape(says)):
            parse_config(f"watchlist: [A]\npriority: {bad}\n", env={})


def test_problems_are_counted_in_the_singular_for_one() -> None:
    """One problem reads "(1 problem)", two "(2 problems)"."""
    with pytest.raises(ConfigError, match=r"is invalid \(1 problem\):\n  worker.tick_s = 0"):
        parse_config(VALID + "worker: {tick_s: 0}", env={})
    with pytest.raises(ConfigError, match=r"is invalid \(2 problems\):"):
        parse_config(VALID + "worker: {tick_s: 0, max_jobs: 0}", env={})


def test_an_unknown_exchange_is_refused_at_load_naming_it_the_fix_and_valid_codes() -> None:
    """schedule.exchange must be an exchange-calendars code: refused at once, not at the first refresh."""
    with pytest.raises(ConfigError) as raised:
        parse_config(VALID + "schedule: {exchange: NYSEX}", env={})
    message = str(raised.value)
    assert "schedule.exchange = 'NYSEX': not an exchange-calendars code (did you mean 'NYSE'" in message
    assert "use one such as XNYS (NYSE), XNAS (Nasdaq)" in message
    assert "exchange_calendars.get_calendar_names()" in message
    with pytest.raises(
        ConfigError, match=r"'xnys': not an exchange-calendars code \(did you mean 'XNYS'\?\)"
    ):
        parse_config(VALID + "schedule: {exchange: xnys}", env={})
    assert parse_config(VALID + "schedule: {exchange: XNAS}", env={}).schedule.exchange == "XNAS"
    assert parse_config(VALID, env={}).schedule.exchange == "XNYS"


def test_check_config_exits_2_on_an_unknown_exchange(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check-config` refuses the file with the field path, exit 2, before anything runs."""
    config = tmp_path / "config.yaml"
    config.write_text(VALID + "schedule: {exchange: LONDON}\n")
    assert main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "(1 problem):\n  schedule.exchange = 'LONDON': not an exchange-calendars code" in err


def test_a_plan_within_rate_per_min_but_beyond_the_planned_rate_is_not_called_above_it() -> None:
    """Needing 120 calls/min of an allowance of 120 is not "above" it: the warning says what is exceeded."""
    config = parse_config(
        "watchlist: [A, B]\nproviders: {tradier: {batch_size: 1}}\n"
        "datasets: {quotes: {cadence_s: {regular: 1}}, expirations: {enabled: false}, "
        "chains: {enabled: false}, history: {enabled: false}, indicators: {enabled: false}}\n",
        env={},
    )
    (warning,) = [w for w in config_warnings(config) if "calls/min" in w]
    assert warning.startswith(
        "the datasets served by tradier need about 120 calls/min, more than the 114.098 the workers plan "
        "to send of providers.tradier.rate_per_min = 120 (the rest is headroom for bursts and latency): "
        "even the quotes are refreshed less often than their cadence_s (quotes every 2 s instead of 1 s "
        "in regular)"
    ), warning
    assert "above" not in warning
