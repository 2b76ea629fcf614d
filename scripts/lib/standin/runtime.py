"""Runs Lambda handler files in-process, the way Lambda's Python runtime presents them.

Each handler module in ``functions/`` is loaded once. A call runs in its own daemon thread so
the function timeout can be enforced (the thread is abandoned, as Lambda abandons the sandbox).
``print`` inside a handler module writes to the log of the invocation running in that thread:
the module gets its own ``print`` that routes per thread, so nothing global (sys.stdout) is
redirected and pytest's capture is left alone.
"""
from __future__ import annotations

import base64
import builtins
import importlib.util
import json
import secrets
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Final

from .world import Function

__all__ = ["ClientContext", "FunctionRuntime", "LambdaContext", "Outcome", "MAX_RESPONSE_BYTES"]

# Lambda's synchronous response limit, as its error message states it (not 6 MiB = 6291456).
MAX_RESPONSE_BYTES: Final = 6291556
LOG_TAIL_BYTES: Final = 4096
FUNCTIONS_DIR: Final = Path(__file__).resolve().parent / "functions"


class _Client:
    """The mobile-SDK ``client`` part of a client context, as the Python runtime builds it."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.installation_id = fields.get("installation_id")
        self.app_title = fields.get("app_title")
        self.app_version_name = fields.get("app_version_name")
        self.app_version_code = fields.get("app_version_code")
        self.app_package_name = fields.get("app_package_name")


class ClientContext:
    """``context.client_context``: only ``client``, ``custom`` and ``env`` reach the function."""

    def __init__(self, decoded: dict[str, Any]) -> None:
        client = decoded.get("client")
        self.client = _Client(client) if isinstance(client, dict) else None
        self.custom = decoded.get("custom")
        self.env = decoded.get("env")


class _CognitoIdentity:
    cognito_identity_id: str | None = None
    cognito_identity_pool_id: str | None = None


class LambdaContext:
    """The context object a Python handler receives."""

    def __init__(self, function: Function, version: str, invoked_arn: str, request_id: str,
                 client_context: ClientContext | None, deadline: float, started: datetime) -> None:
        self.function_name = function.name
        self.function_version = version
        self.invoked_function_arn = invoked_arn
        self.memory_limit_in_mb = str(function.memory_mb)   # a string in Lambda's runtime too
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{function.name}"
        self.log_stream_name = f"{started:%Y/%m/%d}/[{version}]{secrets.token_hex(16)}"
        self.identity = _CognitoIdentity()
        self.client_context = client_context
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass(frozen=True)
class Outcome:
    """What a synchronous invocation produced."""

    payload: bytes                 # the response body
    function_error: str | None     # "Unhandled" when the function failed, else None
    log: str                       # the execution log (START ... REPORT)

    def log_tail(self) -> str:
        """X-Amz-Log-Result: the last 4 KB of the log, base64."""
        return base64.b64encode(self.log.encode()[-LOG_TAIL_BYTES:]).decode()


class FunctionRuntime:
    def __init__(self, functions_dir: Path = FUNCTIONS_DIR) -> None:
        self._dir = functions_dir
        self._modules: dict[str, ModuleType] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def run(self, function: Function, version: str, invoked_arn: str, event: Any,
            client_context: ClientContext | None, request_id: str, *, wait: bool = True) -> Outcome | None:
        """Run the handler; with ``wait`` block until it returns or times out, else return at once."""
        handler = self._handler(function.module)
        if not wait:
            threading.Thread(target=self._call, args=(handler, function, version, invoked_arn, event, None,
                                                      request_id, {}), daemon=True).start()
            return None
        result: dict[str, Any] = {}
        started = time.perf_counter()
        thread = threading.Thread(target=self._call, args=(handler, function, version, invoked_arn, event,
                                                           client_context, request_id, result), daemon=True)
        thread.start()
        thread.join(function.timeout_s)
        duration_ms = (time.perf_counter() - started) * 1000
        if "lines" not in result:
            result = {"lines": list(result.get("partial", [])), "timed_out": True}
        return _outcome(function, version, request_id, result, duration_ms)

    def _call(self, handler: Callable[[Any, Any], Any], function: Function, version: str, invoked_arn: str,
              event: Any, client_context: ClientContext | None, request_id: str, result: dict[str, Any]) -> None:
        lines: list[str] = []
        result["partial"] = lines
        self._local.lines = lines
        context = LambdaContext(function, version, invoked_arn, request_id, client_context,
                                time.monotonic() + function.timeout_s, datetime.now(timezone.utc))
        try:
            value = handler(event, context)
        except Exception as error:  # noqa: BLE001 - any exception is the function's "Unhandled" error
            frames = traceback.extract_tb(error.__traceback__)[1:]   # drop this runner's frame
            result["error"] = error, frames
        else:
            result["value"] = value
        finally:
            self._local.lines = None
        result["lines"] = lines

    def _handler(self, module_name: str) -> Callable[[Any, Any], Any]:
        with self._lock:
            module = self._modules.get(module_name)
            if module is None:
                path = self._dir / f"{module_name}.py"
                spec = importlib.util.spec_from_file_location(f"standin_functions.{module_name}", path)
                if spec is None or spec.loader is None:
                    raise FileNotFoundError(path)
                module = importlib.util.module_from_spec(spec)
                module.print = self._print  # type: ignore[attr-defined]
                spec.loader.exec_module(module)
                self._modules[module_name] = module
        return module.handler  # type: ignore[no-any-return]

    def _print(self, *values: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None,
               flush: bool = False) -> None:
        lines = getattr(self._local, "lines", None)
        if lines is None or file is not None:
            builtins.print(*values, sep=sep, end=end, file=file, flush=flush)
            return
        lines.append((" " if sep is None else sep).join(map(str, values)) + ("\n" if end is None else end))


def _outcome(function: Function, version: str, request_id: str, result: dict[str, Any],
             duration_ms: float) -> Outcome:
    printed = "".join(result["lines"])
    error_text = ""
    function_error: str | None = None
    if result.get("timed_out"):
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        message = f"{stamp} {request_id} Task timed out after {function.timeout_s:.2f} seconds"
        payload = json.dumps({"errorMessage": message}).encode()
        error_text, function_error = message + "\n", "Unhandled"
    elif "error" in result:
        error, frames = result["error"]
        stack = traceback.format_list(frames)
        payload = json.dumps({"errorMessage": str(error), "errorType": type(error).__name__,
                              "requestId": request_id, "stackTrace": stack}).encode()
        error_text = (f"[ERROR] {type(error).__name__}: {error}\nTraceback (most recent call last):\n"
                      + "".join(stack))
        function_error = "Unhandled"
    else:
        try:
            payload = json.dumps(result["value"]).encode()
        except (TypeError, ValueError) as error:
            payload = json.dumps({"errorMessage": f"Unable to marshal response: {error}",
                                  "errorType": "Runtime.MarshalError", "requestId": request_id,
                                  "stackTrace": []}).encode()
            function_error = "Unhandled"
        if len(payload) > MAX_RESPONSE_BYTES:
            payload = json.dumps({
                "errorMessage": f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes).",
                "errorType": "Function.ResponseSizeTooLarge",
            }).encode()
            function_error = "Unhandled"
    billed = max(1, int(duration_ms + 0.999))
    log = (
        f"START RequestId: {request_id} Version: {version}\n"
        f"{printed}{error_text}"
        f"END RequestId: {request_id}\n"
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\tBilled Duration: {billed} ms\t"
        f"Memory Size: {function.memory_mb} MB\tMax Memory Used: {min(function.memory_mb, 40)} MB\t\n"
    )
    return Outcome(payload, function_error, log)
