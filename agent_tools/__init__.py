"""marketcache's agent tools: the nine tools an LLM agent asks the cache with, as plain async
functions (`agent_tools.tools`), as OpenAI Agents SDK tools (`function_tools()`), and over the
Model Context Protocol (`python -m reader mcp`, `agent_tools.mcp_server`).

This package imports `reader` (the small read side) and nothing of `worker`; `reader` imports
nothing of it, except its command line's `mcp` subcommand, which starts the server.

    from agents import Agent
    from agent_tools import function_tools
    agent = Agent(name="markets", tools=function_tools())
"""

from agent_tools.catalog import SPECS, ToolSpec, function_tools
from agent_tools.tools import MAX_ANSWER_CHARS, TOOL_NAMES, TOOLS, use_reader

__all__ = ["MAX_ANSWER_CHARS", "SPECS", "TOOLS", "TOOL_NAMES", "ToolSpec", "function_tools", "use_reader"]
