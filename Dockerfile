# The marketcache worker (and, under the compose `demo` profile, the emulator; `mcp`, the MCP server).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MARKETCACHE_CONFIG=/etc/marketcache/config.yaml

WORKDIR /app
COPY pyproject.toml README.md ./
COPY reader ./reader
COPY worker ./worker
COPY emulator ./emulator
COPY agent_tools ./agent_tools
# The mcp extra: the compose `mcp` service runs `python -m reader mcp` from this image.
RUN pip install '.[mcp]' && mkdir -p /etc/marketcache
COPY config.yaml /etc/marketcache/config.yaml

USER nobody
CMD ["python", "-m", "worker", "run"]
