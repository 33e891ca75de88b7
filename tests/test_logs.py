"""Log lines: secrets are redacted from whatever reaches the output, arq's per-job chatter is dropped,
and `--log-format json` writes one object per line."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timedelta

import pytest

from worker.logs import DropJobChatter, RedactingFormatter, fields, setup_logging


def _record(name: str, msg: str, *args: object, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_formatter_redacts_secrets_in_messages_and_tracebacks() -> None:
    """A key that slips into a message or a traceback is printed as ***."""
    formatter = RedactingFormatter(["sekrit-123", ""])
    try:
        raise RuntimeError("header Authorization: Bearer sekrit-123")
    except RuntimeError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "url=%s", ("?apiKey=sekrit-123",), sys.exc_info()
        )
    text = formatter.format(record)
    assert "sekrit-123" not in text
    assert "url=?apiKey=***" in text
    assert text.endswith("RuntimeError: header Authorization: Bearer ***")


def test_arq_job_lines_are_dropped_but_its_other_lines_kept() -> None:
    """arq's per-job start/finish lines go; its startup lines and warnings stay; ours always stay."""
    drop = DropJobChatter()
    assert not drop.filter(_record("arq.worker", "%6.2fs \u2192 %s(%s)%s", 0.5, "tick", "", ""))
    assert not drop.filter(_record("arq.worker", "%6.2fs \u2190 %s \u25cf %s", 0.0, "tick", ""))
    assert drop.filter(_record("arq.worker", "Starting worker for %d functions: %s", 2, "a, b"))
    assert drop.filter(_record("arq.worker", "job %s expired", "x", level=logging.WARNING))
    assert drop.filter(_record("worker.refresh", "refresh.batch_done \u2192 x"))


def test_setup_logging_installs_one_redacting_handler(capsys: pytest.CaptureFixture[str]) -> None:
    """After setup, a logged secret reaches stderr redacted, as one line with fields."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("INFO", ["tok-xyz"])
        logging.getLogger("worker.test").info("event %s", fields(key="tok-xyz", n=3))
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    err = capsys.readouterr().err
    assert "worker.test event key=*** n=3" in err
    assert "tok-xyz" not in err


def test_json_format_writes_one_object_per_line_with_the_fields_as_members(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--log-format json`: each record is one parseable JSON line (UTC time, level, logger, event,
    its fields typed), a library's line is kept whole as `message`, and secrets stay redacted."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    secret = "tok-0123456789abcdefXYZ"
    try:
        setup_logging("INFO", [secret], "json")
        logging.getLogger("worker.refresh").info(
            "refresh.batch_done %s",
            fields(
                dataset="quotes", symbols=3, elapsed_s=0.21, unmatched="-", error=f'"HTTP 401 key {secret}"'
            ),
        )
        logging.getLogger("arq.worker").warning("job %s expired", "abc")
        try:
            raise RuntimeError(f"Bearer {secret}")
        except RuntimeError:
            logging.getLogger("worker.jobs").exception("job.crashed %s", fields(job="j1"))
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    entries = [json.loads(line) for line in lines]
    first = entries[0]
    assert datetime.fromisoformat(first.pop("time")).utcoffset() == timedelta(0)
    assert first == {
        "level": "INFO",
        "logger": "worker.refresh",
        "event": "refresh.batch_done",
        "dataset": "quotes",
        "symbols": 3,
        "elapsed_s": 0.21,
        "unmatched": None,  # a text line's "-" (none): null, so the field keeps one type
        "error": "HTTP 401 key ***",
    }
    assert {k: v for k, v in entries[1].items() if k != "time"} == {
        "level": "WARNING",
        "logger": "arq.worker",
        "event": None,
        "message": "job abc expired",
    }
    assert entries[2]["event"] == "job.crashed"
    assert entries[2]["job"] == "j1"
    assert entries[2]["exception"].endswith("RuntimeError: Bearer ***")
    assert all(secret not in line for line in lines)


def test_worker_commands_take_log_format_json() -> None:
    """`run` and `refresh` accept `--log-format json`; text stays the default."""
    from worker.__main__ import _parser

    parser = _parser()
    assert parser.parse_args(["run", "--log-format", "json"]).log_format == "json"
    assert parser.parse_args(["refresh"]).log_format == "text"
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--log-format", "yaml"])
