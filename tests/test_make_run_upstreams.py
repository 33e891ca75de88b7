"""`make run` serves every upstream the config calls from the emulator when that upstream's key is
unset, and leaves an upstream whose key is set to the real API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import yaml

from devtools.run import emulated_upstreams, reader_hint
from reader import Quote, keys
from tests.support import child_env

REPO = Path(__file__).resolve().parent.parent

ONLY_QUOTES = {
    "expirations": {"enabled": False},
    "chains": {"enabled": False},
    "history": {"enabled": False},
    "indicators": {"enabled": False},
}


def _config(tmp_path: Path, datasets: dict[str, object]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"watchlist": ["AAPL", "MSFT"], "datasets": datasets}))
    return path


def test_every_upstream_without_a_key_is_emulated(tmp_path: Path) -> None:
    """Polygon quotes and Tradier chains: both emulated without keys; a key set keeps the real one."""
    config = _config(
        tmp_path,
        {
            **ONLY_QUOTES,
            "quotes": {"provider": "polygon"},
            "chains": {"enabled": True, "provider": "tradier"},
        },
    )
    argv = ["--config", str(config)]
    assert emulated_upstreams(argv, {}) == ["polygon", "tradier"]
    assert emulated_upstreams([f"--config={config}"], {"POLYGON_API_KEY": "k"}) == ["tradier"]
    assert emulated_upstreams(argv, {"POLYGON_API_KEY": "k", "TRADIER_API_KEY": "k"}) == []
    assert emulated_upstreams([], {"MARKETCACHE_CONFIG": str(config), "TRADIER_API_KEY": "k"}) == ["polygon"]
    # A config that does not load: the worker will say why; Tradier is what the defaults call.
    assert emulated_upstreams(["--config", str(tmp_path / "missing.yaml")], {}) == ["tradier"]


def test_the_reader_hint_names_redis_only_off_the_default_port() -> None:
    """The line make run prints carries REDIS_URL exactly when the reader's default would miss it."""
    assert reader_hint("redis://127.0.0.1:6379/0") == "python -m reader quote AAPL"
    assert reader_hint("redis://127.0.0.1:6380/0") == (
        "export REDIS_URL=redis://127.0.0.1:6380/0; python -m reader quote AAPL"
    )


@pytest.mark.long(seconds=9)
def test_make_run_with_polygon_quotes_and_no_key_serves_them_from_the_emulator(
    tmp_path: Path, redis_url: str
) -> None:
    """`make run` (devtools.run) with `provider: polygon` and no key: quotes arrive, from polygon."""
    config = _config(tmp_path, {**ONLY_QUOTES, "quotes": {"provider": "polygon"}})
    run = subprocess.Popen(
        [sys.executable, "-m", "devtools.run", "--config", str(config)],
        cwd=REPO,
        env=child_env(REDIS_URL=redis_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    quote = None
    client = redis.Redis.from_url(redis_url)
    try:
        # Read the key itself: a reader's miss would enqueue an on-demand fetch, which spends
        # Polygon's free allowance (5/min) ahead of the scheduled refresh.
        deadline = time.monotonic() + 30
        while quote is None and time.monotonic() < deadline and run.poll() is None:
            raw = client.get(keys.quote("AAPL"))
            if raw is not None:
                quote = Quote.model_validate_json(raw)
            else:
                time.sleep(0.1)
    finally:
        os.killpg(run.pid, signal.SIGINT)
        out, _ = run.communicate(timeout=30)
        client.close()
    log = out.decode(errors="replace")
    assert quote is not None, log
    assert quote.source == "polygon"
    assert "POLYGON_API_KEY unset: using the local emulator" in log
    assert "TRADIER_API_KEY" not in log  # the config calls no Tradier endpoint
    assert run.returncode == 0, log
