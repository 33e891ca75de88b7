"""Every command of the README runs as written, its agent examples run whole agents (one through
the MCP server), and its desktop client config starts the MCP server.

The commands are the lines of its `sh` blocks and the inline code that is a whole command
(`python -m ...`, `make ...`, `docker compose ...`). `HANDLING` says, for each, how it is proven:
run here (in the venv, against a private Redis, the emulator and a worker started by the README's
own `python -m worker run`), by another test (named), or not here (and why). A command the README
gains without an entry here fails `test_every_readme_command_is_handled`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from mcp import Client, StdioServerParameters
from mcp.client.stdio import get_default_environment

from agent_tools import TOOL_NAMES
from agent_tools.tools import iso
from devtools.redis_server import free_port
from reader import Quote, keys
from reader.redis_url import DEFAULT_REDIS_URL
from tests.support import PRINT_NOW, RunningEmulator, child_env, process_env, start_shell

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
VENV_BIN = REPO / ".venv" / "bin"

_COMMAND = re.compile(r"(python -m |python bench/|make [a-z]|docker compose |pip install |export |curl )")


def readme_commands(text: str) -> list[str]:
    """The README's commands, in order, each once: `sh` block lines (their `# ...` comment cut)
    and inline code that is a whole command."""
    commands = []
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", text, flags=re.DOTALL):
        if lang != "sh":
            continue
        for line in body.splitlines():
            command = re.sub(r"\s+#\s.*$", "", line).strip()
            if command:
                commands.append(command)
    prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    commands += [span for span in re.findall(r"`([^`\n]+)`", prose) if _COMMAND.match(span)]
    return list(dict.fromkeys(commands))


@dataclass(frozen=True)
class Run:
    """Run here, as written; exit code `exit`, and `shows` in its output."""

    exit: int = 0
    shows: str = ""
    background: bool = False  # a daemon: started, checked to answer, stopped with SIGINT


@dataclass(frozen=True)
class Elsewhere:
    """Proven by another test (`test` is its node id; it must exist)."""

    test: str


@dataclass(frozen=True)
class NotHere:
    """Not run by a test, and why."""

    reason: str


Handling = Run | Elsewhere | NotHere

_ARM = "curl -s -X POST localhost:8080/_emulator/faults -d "
ARM_502 = _ARM + """'{"path": "/v1/markets/quotes", "status": 502, "times": 3}'"""
ARM_HANG = _ARM + """'{"path": "/v1/markets/*", "kind": "hang", "times": null}'"""

EDIT_FLOW = (
    "tests/test_config_schema.py::test_readme_edit_flow_checks_a_copy_then_copies_it_over_the_same_file"
)

HANDLING: dict[str, Handling] = {
    "make run": Elsewhere(
        "tests/test_make_run.py::test_make_run_serves_fresh_quotes_and_ctrl_c_stops_everything"
    ),
    "make test": NotHere("the gate itself: CI runs it (.ci/run), and this test runs under it"),
    ". .venv/bin/activate": Run(shows=str((REPO / ".venv").resolve())),  # sys.prefix: the real path
    "python -m reader quote AAPL MSFT": Run(shows='"MSFT": {'),
    "python -m reader quote KO --wait 0": Run(exit=1, shows="a fetch is queued"),
    "python -m reader chain SPY --side puts": Run(shows='"option_type": "put"'),
    "python -m reader status": Run(shows='"phase": "regular"'),
    "python -m worker run": Run(background=True),
    "python -m worker refresh": Run(shows="refresh.batch_done dataset=quotes"),
    "python -m worker check-config": Run(shows="ok: "),
    "python -m worker status": Run(shows="WORKER"),
    "python -m emulator --port 8080": Run(background=True),
    ARM_502: Run(shows='{"armed": "/v1/markets/quotes"}'),
    ARM_HANG: Run(shows='{"armed": "/v1/markets/*"}'),
    "curl -s -X DELETE localhost:8080/_emulator/faults": Run(shows='{"ok": true}'),
    "curl -s localhost:8080/_emulator/stats": Run(shows='"calls"'),
    "export REDIS_URL=redis://127.0.0.1:6380/0": NotHere(
        "a shell assignment; the reader reading REDIS_URL is tests/test_reader_cli.py's"
    ),
    "pip install -e '.[agents]'": NotHere("needs the package index; make test installs the same extra (dev)"),
    "pip install -e '.[mcp]'": NotHere("needs the package index; make test installs the same extra (dev)"),
    "pip install -e '.[agents,mcp]'": NotHere("needs the package index; make test installs both (dev)"),
    "python -m reader mcp": Elsewhere(
        "tests/test_mcp_stdio.py::"
        "test_stdio_server_launched_as_a_desktop_client_lists_the_tools_and_answers_from_the_cache"
    ),  # it serves on stdin and stdout: a client starts it (and test_readme_desktop_config_starts_the_server)
    "python -m reader mcp --http 127.0.0.1:8000": Elsewhere(
        "tests/test_mcp_stdio.py::test_http_server_serves_the_tools_and_the_resources_ttl_at_slash_mcp"
    ),  # on a free port there
    "export OPENAI_API_KEY=...": NotHere(
        "a placeholder; test_readme_agent_example_runs_a_whole_agent sets one"
    ),
    "python -m worker check-config config.yaml": Run(shows="ok: config.yaml"),
    "python -m worker schema": Run(shows='"$schema": "https://json-schema.org/draft/2020-12/schema"'),
    "python -m worker schema > config.schema.json": Elsewhere(
        "tests/test_config_schema.py::test_schema_command_prints_the_checked_in_schema"
    ),  # it would rewrite a tracked file under the other tests
    "python -m devtools.config_table --write": Elsewhere(
        "tests/test_config_schema.py::test_readme_config_table_is_generated_from_the_models"
    ),  # the same: it rewrites README.md
    # The edit flow copies over config.yaml: run in a copy of the repository by its own test.
    "cp config.yaml /tmp/new.yaml": Elsewhere(EDIT_FLOW),
    "${EDITOR:-vi} /tmp/new.yaml": Elsewhere(EDIT_FLOW),
    "python -m worker check-config /tmp/new.yaml && cp /tmp/new.yaml config.yaml": Elsewhere(EDIT_FLOW),
    "docker compose up -d": NotHere("no docker in CI; tests/test_docs_and_deploy.py checks the compose file"),
    "docker compose restart worker": NotHere("no docker in CI"),
    "docker compose --profile mcp up -d": Elsewhere(
        "tests/test_docs_and_deploy.py::test_compose_mcp_service_serves_http_as_the_reader_on_loopback_only"
    ),
    "docker compose up -d --scale worker=3": Elsewhere(
        "tests/test_docs_and_deploy.py::test_compose_scales_the_worker_each_container_checking_its_own"
    ),
    "make test-dates": NotHere(
        "its own 35-minute target; devtools.test_dates is tested in tests/test_devtools.py"
    ),
    "python -m devtools.test_dates --only dst": NotHere("one instant of make test-dates: about 6 minutes"),
    "make test-fleet": Elsewhere(
        "tests/test_fleet_budget.py::test_three_workers_share_one_allowance_without_a_429"
    ),
    "make bench": Elsewhere(
        "tests/test_bench.py::test_runner_runs_each_script_and_ends_with_one_table_of_their_figures"
    ),
    "make bench BENCH=--full": NotHere("about 7 minutes; each script's short run is in tests/test_bench.py"),
    "python -m bench": Elsewhere(
        "tests/test_bench.py::test_runner_runs_each_script_and_ends_with_one_table_of_their_figures"
    ),
    "python -m bench --check": Elsewhere(
        "tests/test_bench.py::test_runner_exits_1_on_a_failed_script_or_with_check_on_a_missed_target"
    ),
    "python bench/scale.py --help": Run(shows="usage: scale.py"),
}

SMALL_CONFIG = {
    "watchlist": ["AAPL", "MSFT", "SPY"],
    "providers": {"tradier": {"rate_per_min": 1000}},
    "datasets": {"chains": {"expirations": 1}, "history": {"intraday": None}},
}
"""The config the README's commands read here (MARKETCACHE_CONFIG): the shipped one's shape, a
shorter watchlist, so that a refresh pass takes seconds."""


def test_every_readme_command_is_handled() -> None:
    """Each command the README shows is run here, proven by a named test, or said not to be."""
    commands = readme_commands(README.read_text())
    assert set(commands) - set(HANDLING) == set(), "add these README commands to HANDLING"
    assert set(HANDLING) - set(commands) == set(), "these are no longer in the README: drop them"
    for command, handling in HANDLING.items():
        if isinstance(handling, Elsewhere):
            path, _, name = handling.test.partition("::")
            source = (REPO / path).read_text()
            assert not name or f"def {name}(" in source, f"{command!r}: {handling.test} does not exist"


async def _shell(command: str, env: dict[str, str], timeout_s: float = 60) -> tuple[int, str]:
    process = await asyncio.create_subprocess_shell(
        command, cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=timeout_s)
    return process.returncode or 0, out.decode(errors="replace")


async def _stop(process: asyncio.subprocess.Process) -> str:
    if process.returncode is None:
        os.killpg(process.pid, signal.SIGINT)
    out, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    return out.decode(errors="replace")


@pytest.mark.long(seconds=16)
@pytest.mark.processes
async def test_readme_commands_run_as_written(
    redis_url: str, emulator: RunningEmulator, tmp_path: Path
) -> None:
    """The README's commands, as written, in the venv: the worker it says to run, then the reader
    and worker commands against it, then the emulator and its controls (on a free port for 8080)."""
    config = tmp_path / "config.yaml"
    shipped = yaml.safe_load((REPO / "config.yaml").read_text())
    config.write_text(yaml.safe_dump({**shipped, **SMALL_CONFIG}))
    env = await process_env(
        emulator.url,
        REDIS_URL=redis_url,
        TRADIER_API_KEY="readme-token",
        MARKETCACHE_CONFIG=str(config),
        VIRTUAL_ENV=str(REPO / ".venv"),
    )
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env['PATH']}"  # `. .venv/bin/activate`, as the README says
    commands = readme_commands(README.read_text())
    emulator_port = free_port()
    failures: list[str] = []

    def check(command: str, code: int, out: str) -> None:
        handling = HANDLING[command]
        assert isinstance(handling, Run)
        if code != handling.exit or handling.shows not in out:
            expected = f"exit {code} (expected {handling.exit}), shows {handling.shows!r}?"
            failures.append(f"$ {command}\n{expected}\n{out[-2000:]}")

    worker = await start_shell("python -m worker run", env)
    client = redis.Redis.from_url(redis_url)
    try:
        for _ in range(200):  # the worker's first quote batch: the reader commands find data
            if client.exists(keys.quote("MSFT")):
                break
            await asyncio.sleep(0.1)
        for command in commands:
            handling = HANDLING[command]
            if not isinstance(handling, Run) or handling.background:
                continue
            if command.startswith("curl"):
                continue  # below, against the README's own emulator
            if command == ". .venv/bin/activate":
                code, out = await _shell(f'{command} && python -c "import sys; print(sys.prefix)"', env)
            else:
                code, out = await _shell(command, env)
            check(command, code, out)
    finally:
        client.close()
        logged = await _stop(worker)
    if "worker.started" not in logged:
        failures.append(f"$ python -m worker run\n{logged[-2000:]}")

    if shutil.which("curl") is None:
        pytest.skip("curl is not installed: the emulator's control examples were not run")
    # The README's own emulator on the real clock: no worker talks to it, only the curl lines.
    served = await start_shell(
        f"python -m emulator --port {emulator_port}", {**child_env(), "PATH": env["PATH"]}
    )
    try:
        for _ in range(100):
            code, _out = await _shell(f"curl -s localhost:{emulator_port}/_emulator/clock", env)
            if code == 0:
                break
            await asyncio.sleep(0.1)
        for command in commands:
            if command.startswith("curl"):
                code, out = await _shell(command.replace("localhost:8080", f"localhost:{emulator_port}"), env)
                check(command, code, out)
    finally:
        await _stop(served)
    assert not failures, "\n\n".join(failures)


class FakeModel:
    """An OpenAI Responses endpoint that asks for `get_stock_quote(AAPL)`, then answers with what
    the tool returned: the README's agent examples run whole, with no network."""

    def __init__(self) -> None:
        self.requests: list[dict[str, object]] = []

    @staticmethod
    def _response(output: list[dict[str, object]]) -> dict[str, object]:
        usage = {
            "input_tokens": 1,
            "output_tokens": 1,
            "total_tokens": 2,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        return {
            "id": "resp_1", "object": "response", "created_at": 0, "model": "fake", "status": "completed",
            "output": output, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "usage": usage,
        }  # fmt: skip

    @staticmethod
    def _text(output: object) -> str:
        """A tool's output as the model reads it: a function tool's string, or the text items of an
        MCP tool's content."""
        if isinstance(output, list):
            return "".join(item["text"] for item in output if item.get("type") == "input_text")
        return str(output)

    async def responses(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        results = [item for item in body["input"] if item.get("type") == "function_call_output"]
        if not results:
            call = {
                "type": "function_call", "id": "fc_1", "call_id": "call_1", "status": "completed",
                "name": "get_stock_quote", "arguments": json.dumps({"symbol": "AAPL"}),
            }  # fmt: skip
            return web.json_response(self._response([call]))
        text = f"AAPL, from the cache: {self._text(results[0]['output'])}"
        message = {
            "type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }  # fmt: skip
        return web.json_response(self._response([message]))


def _readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


async def test_readme_agent_example_runs_a_whole_agent(redis_url: str) -> None:
    """The README's agent example, as written: the model calls a tool, the tool answers from the
    cache through the example's own Reader, and the final answer is printed."""
    example = next(block for block in _readme_python_blocks() if "function_tools(" in block)
    now = datetime.now(UTC)
    _store_aapl(redis_url, now)
    model = FakeModel()
    printed = await _run_agent_example(example, redis_url, model)
    assert printed.startswith("AAPL, from the cache: {")
    answer = json.loads(printed.split(": ", 1)[1])
    assert answer["symbol"] == "AAPL"
    assert answer["last"] == 231.5
    assert answer["stale"] is False
    first = model.requests[0]
    offered = [tool["name"] for tool in first["tools"]]  # type: ignore[union-attr]
    assert offered == ["get_stock_quote", "get_market_status_and_date_time"]


def _store_aapl(redis_url: str, now: datetime) -> Quote:
    """AAPL's quote, fetched at `now` and fresh for 5 minutes, stored where the examples read."""
    quote = Quote(
        symbol="AAPL", source="tradier", fetched_at=now, fresh_until=now + timedelta(minutes=5), last=231.5
    )
    client = redis.Redis.from_url(redis_url)
    client.set(keys.quote("AAPL"), quote.model_dump_json(exclude_none=True))
    client.close()
    return quote


async def _run_agent_example(example: str, redis_url: str, model: FakeModel) -> str:
    """Run a README agent example as written, in a process, against `model` served as the OpenAI
    Responses endpoint (no key, no network) and the Redis at `redis_url`; what it printed."""
    app = web.Application()
    app.router.add_post("/v1/responses", model.responses)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", example, cwd=REPO,
            env=child_env(
                REDIS_URL=redis_url,
                OPENAI_API_KEY="sk-test",
                OPENAI_BASE_URL=str(server.make_url("/v1")),
                OPENAI_AGENTS_DISABLE_TRACING="1",  # the SDK would export traces to OpenAI
            ),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        await server.close()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def _now_of_a_server_launched_by_the_sdk() -> datetime:
    """What a server the MCP SDK launches reads as now: it gets only the SDK's default environment
    (PATH, HOME, ...) and what the example passes, so no faked clock of this run (make test-dates)."""
    env = get_default_environment()
    probe = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PRINT_NOW, cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await probe.communicate()
    assert probe.returncode == 0
    return datetime.fromisoformat(out.decode().strip())


@pytest.mark.long(seconds=8)
async def test_readme_mcp_agent_example_runs_a_whole_agent_through_the_server(redis_url: str) -> None:
    """The README's Agents SDK example with the MCP server, as written: it launches
    `python -m reader mcp`, the model calls get_stock_quote through it, and the printed answer is
    the cached quote with its as_of and stale."""
    example = next(block for block in _readme_python_blocks() if "MCPServerStdio(" in block)
    now = await _now_of_a_server_launched_by_the_sdk()
    quote = _store_aapl(redis_url, now)
    model = FakeModel()
    printed = await _run_agent_example(example, redis_url, model)
    assert printed.startswith("AAPL, from the cache: {"), printed
    answer = json.loads(printed.split(": ", 1)[1])
    assert (answer["symbol"], answer["last"]) == ("AAPL", 231.5)
    assert answer["as_of"] == iso(quote.fetched_at)
    assert answer["stale"] is False
    offered = [tool["name"] for tool in model.requests[0]["tools"]]  # type: ignore[union-attr]
    assert offered == list(TOOL_NAMES)  # all nine, from the server


def _readme_desktop_config() -> dict[str, Any]:
    (block,) = re.findall(r"```json\n(.*?)```", README.read_text(), flags=re.DOTALL)
    config: dict[str, Any] = json.loads(block)
    return config


async def test_readme_desktop_config_starts_the_server(redis_url: str) -> None:
    """The README's desktop client config is JSON of the `mcpServers` shape whose command, with
    this venv's python for the placeholder path, starts the server over stdio: it lists the tools."""
    (name, entry), *others = _readme_desktop_config()["mcpServers"].items()
    assert (name, others) == ("marketcache", [])
    assert set(entry) == {"command", "args", "env"}
    command = Path(entry["command"])
    assert command.is_absolute()
    assert command.parts[-3:] == (".venv", "bin", "python")  # the clone's venv, as `make run` builds it
    assert entry["env"] == {"REDIS_URL": DEFAULT_REDIS_URL}  # where `make run` puts Redis
    params = StdioServerParameters(
        command=sys.executable, args=entry["args"], env={**entry["env"], "REDIS_URL": redis_url}, cwd=REPO
    )
    async with Client(params, mode="legacy", cache=None) as client:  # a desktop client's handshake
        tools = (await client.list_tools()).tools
    assert [tool.name for tool in tools] == list(TOOL_NAMES)
