"""The pool of model servers: health checks, per-server concurrency caps, backoff, paused dispatch.

An attempt holds one endpoint for its whole life (session affinity: the trajectory's growing prefix stays
in that server's prefix cache). A server that fails is taken out with exponential backoff and put back once
GET /v1/models answers again; while none is healthy, `acquire` waits.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import httpx

from agent.model import ModelAuthRefused, auth_refused_message, normalize_base_url
from orchestrator.errors import UsageError


class Endpoint:
    def __init__(self, url: str, cap: int):
        self.url, self.cap = normalize_base_url(url), cap
        self.in_flight = 0
        self.healthy = True
        self.failures = 0
        self.retry_at = 0.0
        self.last_error = ""


def probe(url: str, model: str, api_key_env: str = "NIGHTOWL_API_KEY", timeout_s: float = 5.0) -> str | None:
    """None when the server answers /models and serves `model`, else why not.

    Sends the API key the model client sends; a server that refuses it raises `ModelAuthRefused` (the
    user's set-up to fix, not an endpoint to wait for).
    """
    key = os.environ.get(api_key_env) or "EMPTY"
    try:
        r = httpx.get(f"{url}/models", timeout=timeout_s, headers={"Authorization": f"Bearer {key}"})
    except httpx.HTTPError as e:
        return f"unreachable ({type(e).__name__})"
    if r.status_code in (401, 403):
        raise ModelAuthRefused(auth_refused_message(url, r.status_code, api_key_env))
    if r.status_code != 200:
        return f"/models answered {r.status_code}"
    try:
        ids = [m.get("id") for m in r.json().get("data", [])]
    except ValueError:
        return "/models answered something that is not JSON"
    return None if model in ids else f"{NOT_SERVED} {model!r} (it serves: {', '.join(map(str, ids)) or 'nothing'})"


NOT_SERVED = "does not serve"


class EndpointPool:
    def __init__(self, urls: list[str], model: str, cap_per_server: int, backoff_s: float = 2.0,
                 max_backoff_s: float = 60.0, on_change: Callable[[str, bool, str], None] = lambda u, h, r: None,
                 api_key_env: str = "NIGHTOWL_API_KEY"):
        if not urls:
            raise UsageError("give at least one --base-url")
        self.model, self.api_key_env = model, api_key_env
        self.endpoints = [Endpoint(u, cap_per_server) for u in dict.fromkeys(urls)]
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.on_change = on_change
        self.cond = threading.Condition()

    def check_all(self) -> None:
        """Probes every endpoint now (at start-up), so dispatch starts on the healthy ones.

        Servers that are down are waited for; servers that all answer but none of which serves the model are a
        set-up error (waiting would never end).
        """
        reasons = []
        for ep in self.endpoints:
            reason = self.probe(ep)
            if reason:
                self.mark_failed(ep, reason)
            reasons.append(reason)
        if all(r and r.startswith(NOT_SERVED) for r in reasons):
            served = "; ".join(f"{ep.url} {r}" for ep, r in zip(self.endpoints, reasons))
            raise UsageError(f"no server serves model {self.model!r}: {served} (pass a served name to --model)")

    def any_healthy(self) -> bool:
        with self.cond:
            return any(ep.healthy for ep in self.endpoints)

    def acquire(self, should_give_up: Callable[[], bool], poll_s: float = 0.2) -> Endpoint | None:
        """The least loaded healthy endpoint with room; waits while there is none (None if told to give up)."""
        with self.cond:
            while True:
                if should_give_up():
                    return None
                ep = self.try_acquire()
                if ep is not None:
                    return ep
                self.cond.wait(poll_s)

    def try_acquire(self) -> Endpoint | None:
        """The least loaded healthy endpoint with room, or None at once."""
        with self.cond:
            free = [ep for ep in self.endpoints if ep.healthy and ep.in_flight < ep.cap]
            if not free:
                return None
            ep = min(free, key=lambda e: e.in_flight / e.cap)
            ep.in_flight += 1
            return ep

    def release(self, ep: Endpoint) -> None:
        with self.cond:
            ep.in_flight -= 1
            self.cond.notify_all()

    def mark_failed(self, ep: Endpoint, reason: str) -> None:
        with self.cond:
            was = ep.healthy
            ep.healthy = False
            ep.failures += 1
            ep.last_error = reason
            ep.retry_at = time.monotonic() + min(self.max_backoff_s, self.backoff_s * 2 ** (ep.failures - 1))
        if was:
            self.on_change(ep.url, False, reason)

    def mark_ok(self, ep: Endpoint) -> None:
        with self.cond:
            was = ep.healthy
            ep.healthy, ep.failures, ep.last_error = True, 0, ""
            self.cond.notify_all()
        if not was:
            self.on_change(ep.url, True, "")

    def recheck_due(self) -> None:
        """Probes the unhealthy endpoints whose backoff is over; the health thread calls this."""
        for ep in [e for e in self.endpoints if not e.healthy and time.monotonic() >= e.retry_at]:
            try:
                reason = self.probe(ep)
            except ModelAuthRefused as e:  # a server restarted with another key: keep it out, say why
                reason = str(e)
            if reason:
                self.mark_failed(ep, reason)
            else:
                self.mark_ok(ep)

    def confirm(self, ep: Endpoint) -> bool:
        """After a model error: is the server still fine? Marks it failed when not."""
        try:
            reason = self.probe(ep)
        except ModelAuthRefused as e:
            reason = str(e)
        if reason:
            self.mark_failed(ep, reason)
            return False
        return True

    def probe(self, ep: Endpoint) -> str | None:
        return probe(ep.url, self.model, self.api_key_env)

    def snapshot(self) -> list[dict[str, object]]:
        with self.cond:
            return [{"url": e.url, "healthy": e.healthy, "in_flight": e.in_flight, "cap": e.cap,
                     "last_error": e.last_error} for e in self.endpoints]
