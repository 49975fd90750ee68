"""An upstream MCP server built on the official Python MCP SDK (`mcp`), for the gateway's tests.

One program, three transports, chosen by a flag:

    server.py --transport stdio              # JSON-RPC on stdin/stdout
    server.py --transport sse                # legacy HTTP+SSE (protocol 2024-11-05): GET /sse
    server.py --transport streamable-http    # Streamable HTTP: /mcp

The HTTP transports bind 127.0.0.1 on a port the system chooses (unless --port names one) and,
once the server accepts connections, print exactly one line on stdout, a JSON object:

    {"ready": true, "transport": "sse", "url": "http://127.0.0.1:PORT/sse", "pid": PID}

Everything else (the SDK's and uvicorn's logs, the records below) goes to stderr. Over stdio
nothing but the protocol is written on stdout.

What it offers (see README.md beside this file for the exact names and results):
tools `echo`, `add`, `shout` (its argument has a `pattern`), `fail` (answers isError),
`slow` (progress notifications, notices cancellation), `echo_meta` (returns the `_meta` it
received), `add_tool` (adds a tool, then sends notifications/tools/list_changed); prompts
`greeting` and `code_review` with arguments, completion for `code_review`'s `language`; the
static resource `peer://readme` and the template `peer://notes/{topic}`.

Observable records, as JSON lines (one object per line):
- `PEER_CANCEL_LOG=<file>`: `{"event": "cancelled", "tool": "slow", ...}` when a `slow` call is
  cancelled by the client (also written to stderr as `PEER cancelled ...`).
- `PEER_REQUEST_LOG=<file>`: one line per inbound request and notification: its method, the
  `_meta` it carried, and the `traceparent`/`tracestate` HTTP headers of its POST, if any.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from typing import Annotated, Any

import anyio
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.mcpserver import Context, MCPServer, UserMessage
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import Completion, PromptReference
from pydantic import Field

CANCEL_LOG_VAR = "PEER_CANCEL_LOG"
REQUEST_LOG_VAR = "PEER_REQUEST_LOG"

README_TEXT = "This server is a test peer of the gateway; it is built on the official Python MCP SDK."
NOTES = {"alpha": "First note.", "beta": "Second note."}
LANGUAGES = ["go", "javascript", "python", "rust", "typescript"]


def append_record(var: str, record: dict[str, Any]) -> None:
    """Appends `record` as one JSON line to the file the environment variable `var` names."""
    path = os.environ.get(var)
    if not path:
        return
    line = json.dumps(record, sort_keys=True) + "\n"
    # One write per line, opened in append mode: concurrent records do not interleave.
    with open(path, "a", encoding="utf-8") as log:
        log.write(line)


def build_server(name: str) -> MCPServer:
    server = MCPServer(name, version="1.0.0", log_level="WARNING")

    @server.tool(description="Returns its text unchanged.")
    def echo(text: str) -> str:
        return text

    @server.tool(description="Adds two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool(description="Upper-cases one lowercase ASCII word.")
    def shout(
        word: Annotated[str, Field(pattern=r"^[a-z]+$", description="One lowercase ASCII word.")],
    ) -> str:
        return word.upper()

    @server.tool(description="Always fails: the result has isError set and carries the message.")
    def fail(message: str = "the tool failed on purpose") -> str:
        raise ToolError(message)

    @server.tool(description="Counts to `steps`, one progress notification per step, `interval_ms` apart.")
    async def slow(ctx: Context, steps: int = 5, interval_ms: int = 200) -> str:
        done = 0
        try:
            for done in range(1, steps + 1):
                await anyio.sleep(interval_ms / 1000)
                await ctx.report_progress(done, steps, f"step {done} of {steps}")
        except anyio.get_cancelled_exc_class():
            record = {"event": "cancelled", "tool": "slow", "request_id": ctx.request_id, "steps_done": done}
            print(f"PEER cancelled {json.dumps(record, sort_keys=True)}", file=sys.stderr, flush=True)
            append_record(CANCEL_LOG_VAR, record)
            raise
        return f"counted to {steps}"

    @server.tool(description="Returns the _meta of its request (traceparent, tracestate, progressToken, ...).")
    def echo_meta(ctx: Context) -> dict[str, Any]:
        # The wire form (`progressToken`, not the SDK's `progress_token`), as the request carried it.
        params = ctx.request_context.params or {}
        meta = params.get("_meta") or {}
        return {"meta": dict(meta)}

    @server.tool(description="Adds a tool named `name` that returns `text`, then announces the new list.")
    async def add_tool(ctx: Context, name: str, text: str = "added") -> str:
        def added() -> str:
            return text

        server.add_tool(added, name=name, description=f"Added at run time; returns {text!r}.")
        await ctx.session.send_tool_list_changed()
        return f"added {name}"

    @server.prompt(description="A greeting for `name`.")
    def greeting(name: str) -> str:
        return f"Hello, {name}!"

    @server.prompt(description="Asks for a review of `code` written in `language`.")
    def code_review(code: str, language: str = "python") -> list[UserMessage]:
        return [UserMessage(f"Review this {language} code:\n{code}")]

    @server.resource("peer://readme", name="readme", description="A static text.", mime_type="text/plain")
    def readme() -> str:
        return README_TEXT

    @server.resource("peer://notes/{topic}", name="note", description="The note on `topic`.", mime_type="text/plain")
    def note(topic: str) -> str:
        return NOTES.get(topic, f"No note on {topic}.")

    @server.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> Completion | None:
        if isinstance(ref, PromptReference) and ref.name == "code_review" and argument.name == "language":
            values = [language for language in LANGUAGES if language.startswith(argument.value)]
            return Completion(values=values, total=len(values), has_more=False)
        return None

    async def record_request(ctx: Any, call_next: Any) -> Any:
        if os.environ.get(REQUEST_LOG_VAR):
            params = ctx.params or {}
            headers = getattr(ctx.request, "headers", None)
            record = {
                "method": ctx.method,
                "request_id": ctx.request_id,
                "meta": params.get("_meta"),
                "headers": {key: headers.get(key) for key in ("traceparent", "tracestate") if headers and key in headers},
            }
            append_record(REQUEST_LOG_VAR, record)
        return await call_next(ctx)

    server.middleware.append(record_request)

    # The SDK advertises `listChanged: false` unless told otherwise; this server does send
    # list-changed notifications (add_tool), so it says so in `initialize` on every transport.
    lowlevel = server._lowlevel_server  # noqa: SLF001 - the SDK offers no public seam for this
    default_options = lowlevel.create_initialization_options

    def initialization_options(notification_options: NotificationOptions | None = None, *args: Any, **kwargs: Any):
        options = notification_options or NotificationOptions(
            prompts_changed=True, resources_changed=True, tools_changed=True
        )
        return default_options(options, *args, **kwargs)

    lowlevel.create_initialization_options = initialization_options
    return server


async def serve_http(server: MCPServer, transport: str, host: str, port: int) -> None:
    import uvicorn

    if transport == "sse":
        app = server.sse_app(host=host)
        path = "/sse"
    else:
        app = server.streamable_http_app(host=host)
        path = "/mcp"

    # Bound here, so the chosen port is known before uvicorn starts; uvicorn serves this socket.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]

    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    uv_server = uvicorn.Server(config)

    async def announce_when_started() -> None:
        deadline = time.monotonic() + 30
        while not uv_server.started:
            if uv_server.should_exit or time.monotonic() > deadline:
                return
            await anyio.sleep(0.01)
        ready = {"ready": True, "transport": transport, "url": f"http://{host}:{bound_port}{path}", "pid": os.getpid()}
        print(json.dumps(ready), flush=True)

    async with anyio.create_task_group() as group:
        group.start_soon(announce_when_started)
        await uv_server.serve(sockets=[sock])
        group.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--transport", choices=["stdio", "sse", "streamable-http"], default="stdio")
    parser.add_argument("--name", default="python-peer", help="the server name in `initialize` (default python-peer)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (HTTP transports; default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (HTTP transports; default 0: any free port)")
    args = parser.parse_args()

    server = build_server(args.name)
    if args.transport == "stdio":
        server.run("stdio")
    else:
        anyio.run(serve_http, server, args.transport, args.host, args.port)


if __name__ == "__main__":
    main()
