"""A scripted OpenAI-compatible server over real HTTP, for tests and benchmarks.

It answers `/v1/models`, `/health` and `/v1/chat/completions` on loopback from a script: a list of
replies consumed in order, or a function of the request. A reply is a dict:
  {"tool_calls": [{"name": ..., "arguments": {...} | "raw json"}], "content": "..."}  native calls
  {"content": "<tool_call>...</tool_call>"}                                           text only
  {"status": 500}                                                                     an HTTP error
  {"sleep": 1.5, ...}                                                                 delay first
  {"drop": true}                                                                      close the connection
  {"reasoning": "...", ...}                                                           reasoning beside the reply
Every request body is kept in `requests` for assertions. An exception in the script (or in the server
itself) is answered with HTTP 500 naming it, kept in `errors`, and re-raised by `stop()` (so by the `with`
block): a broken script fails its test instead of looking like a dropped connection. Like vLLM with
runtime LoRA updating, POST `/v1/load_lora_adapter` adds a served name (listed by /v1/models; a responder
sees it as the request's `model`) and `/v1/unload_lora_adapter` removes it; `adapters` maps names to paths.
"""
from __future__ import annotations

import json
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = dict[str, Any]
Responder = Callable[[dict[str, Any]], Reply]


def completion_body(reply: Reply, model: str, request: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.get("content")}
    message.update({k: reply[k] for k in ("reasoning", "reasoning_content") if k in reply})
    if reply.get("tool_calls"):
        message["tool_calls"] = [{
            "id": call.get("id") or f"call_{uuid.uuid4().hex[:16]}", "type": "function",
            "function": {"name": call["name"], "arguments": call["arguments"] if isinstance(call.get("arguments"), str)
                         else json.dumps(call.get("arguments", {}))}} for call in reply["tool_calls"]]
    prompt_tokens = len(json.dumps(request.get("messages", []))) // 4
    completion_tokens = max(1, len(json.dumps(message)) // 4)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message,
                     "finish_reason": "tool_calls" if reply.get("tool_calls") else reply.get("finish_reason", "stop")}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


class ScriptError(AssertionError):
    """The script or the scripted server raised while answering a request."""


class QuietHTTPServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out or drop the connection on purpose are part of the tests


class ScriptedServer:
    def __init__(self, script: list[Reply] | Responder, model: str = "scripted", max_model_len: int = 32768,
                 host: str = "127.0.0.1", port: int = 0, root: str | None = None, api_key: str | None = None):
        """`root`: the checkpoint path the model card names (vLLM's `root`)."""
        self.model, self.max_model_len, self.root = model, max_model_len, root
        self.api_key = api_key
        """When set, every /v1 request without `Authorization: Bearer <api_key>` gets 401 (like vLLM --api-key)."""
        self.refused = 0
        self.requests: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.adapters: dict[str, str] = {}
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        if callable(script):
            self._responder: Responder = script
        else:
            queue = list(script)

            def from_list(_: dict[str, Any]) -> Reply:
                if not queue:
                    return {"content": "(the script has no more replies)"}
                return queue.pop(0)
            self._responder = from_list
        self.httpd = QuietHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> "ScriptedServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="scripted-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops like a server whose process died: the listening socket and every open connection close (keep-alive
        connections of a shared client would otherwise go on being answered by their handler threads)."""
        self.httpd.shutdown()
        self.httpd.server_close()
        with self._lock:
            open_connections, self._connections = list(self._connections), set()
        for connection in open_connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self.errors:
            raise ScriptError(f"the scripted server's handler failed {len(self.errors)} time(s); "
                              f"first:\n{self.errors[0]}")

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if "messages" in r]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server._connections.add(self.connection)

            def finish(self) -> None:
                with server._lock:
                    server._connections.discard(self.connection)
                super().finish()

            # Headers and body go out in separate writes; with Nagle + delayed ACK that adds ~40 ms a reply.
            disable_nagle_algorithm = True

            def send_json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def authorized(self) -> bool:
                if server.api_key is None or self.headers.get("Authorization") == f"Bearer {server.api_key}":
                    return True
                with server._lock:
                    server.refused += 1
                self.send_json(401, {"error": "Unauthorized"})
                return False

            def do_GET(self) -> None:
                if self.path.startswith("/v1") and not self.authorized():
                    return
                if self.path.rstrip("/").endswith("/models"):
                    self.send_json(200, {"object": "list", "data": [
                        {"id": server.model, "object": "model", "owned_by": "nightowl",
                         "max_model_len": server.max_model_len,
                         **({"root": server.root} if server.root else {})}] + [
                        {"id": name, "object": "model", "owned_by": "nightowl", "root": path, "parent": server.model}
                        for name, path in list(server.adapters.items())]})
                elif self.path.rstrip("/") == "/health":
                    self.send_json(200, {})
                else:
                    self.send_json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                try:
                    self.answer_post()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away (timeouts and drops are part of the tests)
                except Exception as e:
                    server.errors.append(traceback.format_exc())
                    try:
                        self.send_json(500, {"error": {"message": f"scripted server error: {type(e).__name__}: {e}",
                                                       "type": "script_error", "code": 500}})
                    except OSError:
                        pass

            def answer_post(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                if not self.authorized():
                    return
                if self.path.rstrip("/").endswith(("/load_lora_adapter", "/unload_lora_adapter")):
                    self.adapter_update(request)
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self.send_json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                with server._lock:
                    server.requests.append(request)
                    reply = server._responder(request)
                if reply.get("sleep"):
                    time.sleep(reply["sleep"])
                if reply.get("drop"):
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if reply.get("status", 200) != 200:
                    self.send_json(reply["status"], {"error": {"message": reply.get("error", "scripted error"),
                                                               "type": "server_error", "code": reply["status"]}})
                    return
                self.send_json(200, completion_body(reply, request.get("model", server.model), request))

            def adapter_update(self, request: dict[str, Any]) -> None:
                name = str(request.get("lora_name", ""))
                if self.path.rstrip("/").endswith("/load_lora_adapter"):
                    if name in server.adapters:
                        self.send_json(400, {"error": {
                            "message": f"The lora adapter '{name}' has already been loaded."}})
                        return
                    server.adapters[name] = str(request.get("lora_path", ""))
                elif server.adapters.pop(name, None) is None:
                    self.send_json(404, {"error": {"message": f"The lora adapter '{name}' cannot be found."}})
                    return
                self.send_json(200, {})

        return Handler
