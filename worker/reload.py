"""Hot reload of config.yaml: the tick asks `ConfigWatcher.poll()` whether the file changed.

A valid edit is returned to be applied; an invalid one is logged once, with the field paths the
validation names, and the worker keeps running on the last good config. The file is read only
when its size or modification time changed, so polling every tick costs one `stat`.
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
        self._seen = signature
        try:
            new = load_config(self.path, self._env)
        except ConfigError as e:
            log.error(
                "config.reload_failed path=%s kept=last-good error=%s", self.path, str(e).replace("\n", " ")
            )
            return None
        if new == self.current:
            return None
        return new

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
