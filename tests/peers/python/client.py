"""An MCP client built on the official Python MCP SDK (`mcp`), for the gateway's end-to-end tests.

    client.py URL [--transport sse|streamable-http] [actions...] [--listen SECONDS [--until METHOD]]
    client.py "COMMAND ARGS..." --transport stdio [actions...]

Connects to URL (the transport defaults to `sse` when the URL's path ends in `/sse`, else
`streamable-http`), or starts COMMAND and speaks over its stdin/stdout, initializes, lists every page of tools, prompts, resources and resource
templates, runs the actions in the order given, optionally keeps the session open to hear
notifications, and closes.

stdout carries JSON lines, one object each, flushed as they happen:

    {"event": "initialized", "t": ..., "protocol_version": ..., "server_info": {...}}
    {"event": "notification", "t": ..., "at": ..., "method": ..., "params": {...}}   (as they arrive)
    {"event": "summary", ...}                                                      (always last)

`t` is seconds since the client started (monotonic), `at` the wall clock (Unix seconds). The
summary holds the lists, one entry per action in `results` (`ok` with `result`, or `ok: false`
with `error`), the progress notifications of each call, and every notification received. The
exit status is 0 when the session could be opened (failed actions are reported, not fatal),
1 otherwise, with the error in the summary.

Actions (repeatable, run in order):
    --call NAME [JSON]               tools/call with the JSON object as arguments
    --prompt NAME [JSON]             prompts/get with the JSON object (string values) as arguments
    --read URI                       resources/read
    --complete PROMPT ARGUMENT VALUE completion/complete for a prompt's argument
    --cancel NAME [JSON]             tools/call, cancelled by the client (notifications/cancelled)
                                     as soon as the first progress notification arrives, or after
                                     --cancel-after seconds if none has
    --suite PREFIX                   the calls that exercise server.py's features, with tool and
                                     prompt names prefixed by PREFIX ("" for server.py itself)
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from typing import Any
from urllib.parse import urlparse

import anyio
import httpx2
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import PaginatedRequestParams, PromptReference

STARTED = time.monotonic()


def now() -> dict[str, float]:
    return {"t": round(time.monotonic() - STARTED, 6), "at": time.time()}


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record, sort_keys=True, default=str), flush=True)


def dump(model: Any) -> Any:
    if hasattr(model, "model_dump"):
        # The fields the peer sent, not the defaults the SDK's models add (e.g. of later revisions).
        return model.model_dump(by_alias=True, mode="json", exclude_unset=True)
    return model


def suite(prefix: str) -> list[tuple[str, list[Any]]]:
    """The actions that exercise every feature of server.py, its names prefixed by `prefix`."""
    p = prefix
    return [
        ("call", [p + "echo", {"text": "hello"}]),
        ("call", [p + "add", {"a": 2, "b": 3}]),
        ("call", [p + "shout", {"word": "quiet"}]),
        ("call", [p + "fail", {"message": "expected failure"}]),
        ("call", [p + "slow", {"steps": 3, "interval_ms": 50}]),
        ("call", [p + "echo_meta", {}]),
        ("prompt", [p + "greeting", {"name": "Ada"}]),
        ("prompt", [p + "code_review", {"code": "x = 1", "language": "rust"}]),
        ("read", ["peer://readme"]),
        ("read", ["peer://notes/alpha"]),
        ("complete", [p + "code_review", "language", "ru"]),
    ]


async def list_all(method: Any, key: str) -> list[Any]:
    """Every page of a list method."""
    items: list[Any] = []
    cursor = None
    for _ in range(1000):
        page = await method(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
        items.extend(dump(item) for item in getattr(page, key))
        cursor = page.next_cursor
        if not cursor:
            break
    return items


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.notifications: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.until_seen = anyio.Event()

    def meta(self) -> dict[str, Any] | None:
        """A fresh copy of the `_meta` given by --meta (the SDK adds its progress token to it)."""
        return json.loads(self.args.meta) if self.args.meta else None

    async def on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            self.errors.append(f"{type(message).__name__}: {message}")
            return
        data = dump(message)
        record = {"event": "notification", **now(), "method": data.get("method"), "params": data.get("params")}
        self.notifications.append(record)
        emit(record)
        if self.args.until and record["method"] == self.args.until:
            self.until_seen.set()

    async def run_action(self, session: ClientSession, kind: str, values: list[Any]) -> dict[str, Any]:
        result: dict[str, Any] = {"action": kind, "args": values, **now()}
        progress: list[dict[str, Any]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append({**now(), "progress": value, "total": total, "message": message})
            first_progress.set()

        first_progress = anyio.Event()
        try:
            if kind == "call":
                name, arguments = values[0], values[1] if len(values) > 1 else {}
                reply = await session.call_tool(name, arguments, progress_callback=on_progress, meta=self.meta())
                result.update(ok=True, result=dump(reply))
            elif kind == "cancel":
                name, arguments = values[0], values[1] if len(values) > 1 else {}
                with anyio.move_on_after(self.args.cancel_after) as scope:
                    async with anyio.create_task_group() as group:

                        async def cancel_on_first_progress() -> None:
                            await first_progress.wait()
                            group.cancel_scope.cancel()

                        group.start_soon(cancel_on_first_progress)
                        reply = await session.call_tool(
                            name, arguments, progress_callback=on_progress, meta=self.meta()
                        )
                        # The call finished before any cancellation: report it as it came.
                        result.update(ok=True, cancelled=False, result=dump(reply))
                        group.cancel_scope.cancel()
                if "ok" not in result:
                    result.update(ok=True, cancelled=True, timed_out=scope.cancelled_caught)
            elif kind == "prompt":
                name, arguments = values[0], values[1] if len(values) > 1 else {}
                reply = await session.get_prompt(name, {k: str(v) for k, v in arguments.items()}, meta=self.meta())
                result.update(ok=True, result=dump(reply))
            elif kind == "read":
                reply = await session.read_resource(values[0], meta=self.meta())
                result.update(ok=True, result=dump(reply))
            elif kind == "complete":
                prompt, argument, value = values
                reply = await session.complete(PromptReference(type="ref/prompt", name=prompt), {"name": argument, "value": value})
                result.update(ok=True, result=dump(reply))
            else:
                raise ValueError(f"unknown action {kind}")
        except Exception as error:  # an action's failure is reported, the run goes on
            result.update(ok=False, error=error_of(error))
        if progress:
            result["progress"] = progress
        return result

    async def session(self, read: Any, write: Any, summary: dict[str, Any]) -> None:
        async with ClientSession(read, write, message_handler=self.on_message, read_timeout_seconds=self.args.timeout) as session:
            init = await session.initialize()
            summary["protocol_version"] = init.protocol_version
            summary["server_info"] = dump(init.server_info)
            summary["capabilities"] = dump(init.capabilities)
            emit({"event": "initialized", **now(), "protocol_version": init.protocol_version, "server_info": summary["server_info"]})

            caps = init.capabilities
            summary["tools"] = await list_all(session.list_tools, "tools") if caps.tools else []
            summary["prompts"] = await list_all(session.list_prompts, "prompts") if caps.prompts else []
            summary["resources"] = await list_all(session.list_resources, "resources") if caps.resources else []
            summary["resource_templates"] = (
                await list_all(session.list_resource_templates, "resource_templates") if caps.resources else []
            )

            for kind, values in self.args.actions:
                summary["results"].append(await self.run_action(session, kind, values))

            if self.args.listen > 0:
                with anyio.move_on_after(self.args.listen):
                    if self.args.until:
                        await self.until_seen.wait()
                    else:
                        await anyio.sleep_forever()


def error_of(error: BaseException) -> dict[str, Any]:
    data = getattr(error, "error", None)
    if data is not None and hasattr(data, "code"):
        return {"type": type(error).__name__, "code": data.code, "message": data.message}
    return {"type": type(error).__name__, "message": str(error)}


async def main_async(args: argparse.Namespace) -> int:
    run = Run(args)
    summary: dict[str, Any] = {"event": "summary", "transport": args.transport, "url": args.url, "results": []}
    headers = dict(args.header)
    status = 0
    try:
        with anyio.fail_after(args.deadline):
            if args.transport == "stdio":
                command = shlex.split(args.url)
                server = StdioServerParameters(command=command[0], args=command[1:])
                async with stdio_client(server) as (read, write):
                    await run.session(read, write, summary)
            elif args.transport == "sse":
                async with sse_client(args.url, headers=headers, timeout=args.timeout) as (read, write):
                    await run.session(read, write, summary)
            else:
                timeout = httpx2.Timeout(args.timeout, read=max(args.timeout, args.listen + args.timeout))
                async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
                    async with streamable_http_client(args.url, http_client=http) as (read, write):
                        await run.session(read, write, summary)
    except BaseException as error:  # noqa: BLE001 - the summary reports any failure, then exit 1
        if isinstance(error, KeyboardInterrupt):
            raise
        summary["error"] = error_of(unwrap(error))
        status = 1
    summary["notifications"] = run.notifications
    summary["transport_errors"] = run.errors
    summary.update(now())
    emit(summary)
    return status


def unwrap(error: BaseException) -> BaseException:
    """The first leaf of an exception group (anyio task groups wrap the real error)."""
    while getattr(error, "exceptions", None):  # BaseExceptionGroup (Python 3.11+) or anyio's backport
        error = error.exceptions[0]
    return error


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    parser.add_argument("url")
    parser.add_argument("--transport", choices=["sse", "streamable-http", "stdio"])
    parser.add_argument("--header", action="append", default=[], type=header, help="NAME:VALUE sent on every request")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds for one request (default 30)")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds for the whole run (default 120)")
    parser.add_argument("--meta", help="a JSON object sent as `_meta` of every tools/call, prompts/get and resources/read")
    parser.add_argument("--listen", type=float, default=0.0, help="seconds to stay connected after the actions")
    parser.add_argument("--until", help="stop listening as soon as a notification with this method arrives")
    parser.add_argument("--cancel-after", type=float, default=10.0, help="seconds before --cancel cancels without progress")
    parser.add_argument("--call", nargs="+", action=Action, dest="actions", metavar=("NAME", "JSON"))
    parser.add_argument("--prompt", nargs="+", action=Action, dest="actions", metavar=("NAME", "JSON"))
    parser.add_argument("--read", nargs=1, action=Action, dest="actions", metavar="URI")
    parser.add_argument("--complete", nargs=3, action=Action, dest="actions", metavar=("PROMPT", "ARGUMENT", "VALUE"))
    parser.add_argument("--cancel", nargs="+", action=Action, dest="actions", metavar=("NAME", "JSON"))
    parser.add_argument("--suite", nargs=1, action=Action, dest="actions", metavar="PREFIX")
    parser.set_defaults(actions=[])
    args = parser.parse_args(argv)
    if args.transport is None:
        args.transport = "sse" if urlparse(args.url).path.rstrip("/").endswith("/sse") else "streamable-http"
    expanded = []
    for kind, values in args.actions:
        if kind == "suite":
            expanded.extend(suite(values[0]))
        else:
            expanded.append((kind, values))
    args.actions = expanded
    return args


def header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE, got {text!r}")
    return name.strip(), value.strip()


class Action(argparse.Action):
    """Appends `(kind, values)` to the ordered action list, JSON arguments decoded."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        kind = option_string.lstrip("-") if option_string else self.dest
        values = list(values)
        if kind in ("call", "prompt", "cancel"):
            if len(values) > 2:
                parser.error(f"{option_string} takes NAME and at most one JSON object")
            arguments = json.loads(values[1]) if len(values) > 1 else {}
            if not isinstance(arguments, dict):
                parser.error(f"{option_string} {values[0]}: the arguments must be a JSON object")
            values = [values[0], arguments]
        actions = list(getattr(namespace, self.dest) or [])
        actions.append((kind, values))
        setattr(namespace, self.dest, actions)


def main() -> None:
    args = parse_args(sys.argv[1:])
    sys.exit(anyio.run(main_async, args))


if __name__ == "__main__":
    main()
