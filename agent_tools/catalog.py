"""One definition of each agent tool, served to the OpenAI Agents SDK and to MCP clients alike.

A `ToolSpec` is derived once from a tool function of `agent_tools.tools`: its name, its
description (the docstring less its `Args:` section) and the JSON Schema of its parameters, each
described by its `Args:` entry. The schema is in the form OpenAI's strict function calling
accepts: every parameter is required, and one with a default takes null for it. `function_tools()`
wraps the specs as Agents SDK `FunctionTool`s and `agent_tools.mcp_server` lists the same specs
as MCP tools; both call `ToolSpec.invoke`, so a model sees the same names, words and answers
through either.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, get_type_hints

import pydantic

from agent_tools.answers import dumps
from agent_tools.tools import TOOLS

if TYPE_CHECKING:
    from agents import FunctionTool

__all__ = ["SPECS", "ToolSpec", "function_tools", "spec"]

_ARG = re.compile(r"^ {4}(\w+): (.*)$")


@dataclass(frozen=True)
class ToolSpec:
    """One agent tool: what a model is told of it, and how it is called.

    `parameters` is a JSON Schema object (OpenAI strict mode: `additionalProperties: false`, every
    property required, optional ones nullable); `needed` the parameters without a default, which a
    caller must pass (the others may be left out). `function` is the tool itself: keyword arguments
    in, compact JSON text out (an answer, or `{"error": ...}`); it never raises for bad arguments.
    """

    name: str
    description: str
    parameters: Mapping[str, Any] = field(repr=False)
    needed: tuple[str, ...] = field(repr=False)
    function: Callable[..., Awaitable[str]] = field(repr=False)

    @classmethod
    def of(cls, function: Callable[..., Awaitable[str]]) -> ToolSpec:
        """The spec of a tool function: its `__name__`, its docstring and its signature."""
        description, described = _docstring(function)
        hints = get_type_hints(function)
        fields: dict[str, Any] = {}
        needed: list[str] = []
        for name, parameter in inspect.signature(function).parameters.items():
            default = ... if parameter.default is inspect.Parameter.empty else parameter.default
            fields[name] = (hints[name], pydantic.Field(default, description=described.get(name)))
            if default is ...:
                needed.append(name)
        model: type[pydantic.BaseModel] = pydantic.create_model(f"{function.__name__}_args", **fields)
        schema: dict[str, Any] = model.model_json_schema()
        for prop in schema.get("properties", {}).values():
            if "default" in prop and prop["default"] is None:
                del prop["default"]  # strict mode: the parameter is required, and null is its default
        schema["additionalProperties"] = False
        schema["required"] = list(schema.get("properties", {}))
        return cls(function.__name__, description, MappingProxyType(schema), tuple(needed), function)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(self.parameters["properties"])

    async def invoke(self, arguments: Mapping[str, Any] | None) -> str:
        """Call the tool with `arguments` (a JSON object's members; a nullable one may be left out,
        meaning null). An argument the tool does not take, or a required one missing, is answered
        `{"error": ...}` naming it and the parameters the tool takes, like every other bad value."""
        arguments = dict(arguments or {})
        unknown = [name for name in arguments if name not in self.parameter_names]
        if unknown:
            return _error(f"{self.name} takes no argument {', '.join(map(repr, unknown))}", self)
        missing = [name for name in self.needed if name not in arguments]
        if missing:
            return _error(f"{self.name} needs the argument {', '.join(map(repr, missing))}", self)
        return await self.function(**arguments)


def _error(problem: str, spec: ToolSpec) -> str:
    takes = ", ".join(spec.parameter_names) or "no arguments"
    return dumps({"error": f"{problem}; it takes: {takes}"})


def _docstring(function: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """The description (the docstring before `Args:`) and each parameter's description (its
    `Args:` entry, continuation lines joined by newlines), as the Agents SDK reads Google style."""
    doc = inspect.getdoc(function) or ""
    head, _, args = doc.partition("\nArgs:\n")
    described: dict[str, str] = {}
    name = None
    for line in args.splitlines():
        match = _ARG.match(line)
        if match:
            name = match[1]
            described[name] = match[2].strip()
        elif name is not None and line.strip():
            described[name] += "\n" + line.strip()
    return head.strip(), described


SPECS: tuple[ToolSpec, ...] = tuple(ToolSpec.of(tool) for tool in TOOLS)
"""The nine tools, in the order an agent is given them."""

_BY_NAME = {s.name: s for s in SPECS}


def spec(name: str) -> ToolSpec:
    """The tool named `name`; `ValueError` naming it and the valid names when there is none."""
    found = _BY_NAME.get(name)
    if found is None:
        raise ValueError(f"no tool named {name!r}: choose from {', '.join(_BY_NAME)}")
    return found


def function_tools(*names: str) -> list[FunctionTool]:
    """The tools as OpenAI Agents SDK `FunctionTool`s: `Agent(tools=function_tools())`.

    `names`: some of `agent_tools.TOOL_NAMES`, in the order wanted (default: all nine). Raises
    `ValueError` naming an unknown one and the valid names, and `ImportError` when the SDK is not
    installed. Arguments that are not a JSON object are answered `{"error": ...}`, as every other
    bad argument.
    """
    unknown = [name for name in names if name not in _BY_NAME]
    if unknown:
        named = ", ".join(map(repr, unknown))
        raise ValueError(f"no tool named {named}: choose from {', '.join(_BY_NAME)}")
    try:
        from agents import FunctionTool
    except ImportError as e:
        raise ImportError(
            "agent_tools.function_tools() needs the OpenAI Agents SDK: pip install 'marketcache[agents]' "
            "(from a clone: pip install -e '.[agents]')"
        ) from e
    chosen = [_BY_NAME[name] for name in names] if names else list(SPECS)
    return [
        FunctionTool(
            name=s.name,
            description=s.description,
            params_json_schema=dict(s.parameters),
            on_invoke_tool=_on_invoke(s),
            strict_json_schema=True,
        )
        for s in chosen
    ]


def _on_invoke(spec: ToolSpec) -> Callable[[Any, str], Awaitable[str]]:
    async def on_invoke_tool(_context: Any, raw_arguments: str) -> str:
        try:
            arguments = json.loads(raw_arguments or "{}")
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            shown = raw_arguments if len(raw_arguments) <= 40 else raw_arguments[:37] + "..."
            return _error(f"the arguments of {spec.name} must be a JSON object, not {shown!r}", spec)
        return await spec.invoke(arguments)

    return on_invoke_tool
