"""marketcache worker: refreshes market data from upstream APIs into Redis on a schedule."""
