"""Log lines: secrets are redacted from whatever reaches the output, arq's per-job chatter is dropped."""

from __future__ import annotations

import logging
import sys

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
