"""Hot reload of config.yaml: the tick asks `ConfigWatcher.poll()` whether the file changed.

A valid edit is returned to be applied; an invalid one is logged once, with the field paths the
validation names, and the worker keeps running on the last good config. The file is read only
when its size or modification time changed, so polling costs one `stat`; a file that changes
while it is read (an editor mid-save) is read again at the next poll instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from worker.config import Config, load_config
from worker.errors import ConfigError

log = logging.getLogger(__name__)


class ConfigWatcher:
    """Watches `path`, whose contents gave `current`."""

    def __init__(self, path: Path, current: Config, env: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.current = current
        self._env = env
        self._seen = self._signature()

    def poll(self) -> Config | None:
        """The new config if the file changed to a valid one that differs; else None."""
        signature = self._signature()
        if signature == self._seen:
            return None
        problem = ""
        try:
            new: Config | None = load_config(self.path, self._env)
        except ConfigError as e:
            new = None
            problem = str(e).replace("\n", " ")
        if self._signature() != signature:
            return None  # written to while we read it: read it again at the next poll
        self._seen = signature
        if new is None:
            log.error("config.reload_failed path=%s kept=last-good error=%s", self.path, problem)
            return None
        return None if new == self.current else new

    def accepted(self, config: Config) -> None:
        """Record `config` as the running one."""
        self.current = config

    def _signature(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def __repr__(self) -> str:
        return f"<ConfigWatcher {self.path}>"
