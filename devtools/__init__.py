"""Tools for developing marketcache: a private redis-server and the `make run` launcher. Not shipped."""
