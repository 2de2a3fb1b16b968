"""A minimal headless-Chromium driver for the report tests: the DevTools protocol over
``--remote-debugging-pipe`` (NUL-separated JSON on file descriptors 3 and 4), so no
websocket library, node package or downloaded browser is needed; only /usr/bin/chromium.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
# Flags that keep a test run quiet and offline (no first-run UI, updates or sync).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    """Path of a Chromium binary, or None."""
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageReport:
    """What a page did: console errors, uncaught exceptions, and evaluated values."""

    errors: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)


class Chromium:
    """One headless Chromium process driven over the DevTools pipe."""

    def __init__(self, binary: str, user_data_dir: Path) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4: move the pipe ends
        # above 10 first so the shell's redirections cannot overwrite one with the other.
        high_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
        high_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
        for fd in (to_child_r, from_child_w):
            os.close(fd)
        args = [*FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"]
        script = f'exec "$0" "$@" 3<&{high_r} 4>&{high_w} {high_r}<&- {high_w}>&-'
        self._proc = subprocess.Popen(
            ["bash", "-c", script, binary, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(high_r, high_w),
        )
        os.close(high_r)
        os.close(high_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        """Stop the browser (Browser.close, then terminate if it lingers)."""
        with contextlib.suppress(OSError, TimeoutError):
            self.send("Browser.close", timeout_s=5)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        for fd in (self._to_child, self._from_child):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from chromium")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise OSError("chromium closed the pipe")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout_s: float = 30.0,
    ) -> dict[str, Any]:
        """Send one command and wait for its reply (events meanwhile go to ``events``)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """The first event named ``method`` (already received or arriving)."""
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + timeout_s
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event


def _errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            description = details.get("exception", {}).get("description", "")
            out.append(f"exception: {details.get('text')} {description}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.append(
                "console: "
                + " ".join(
                    str(a.get("value", a.get("description"))) for a in params.get("args", [])
                )
            )
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            out.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
    return out


def render_page(
    binary: str,
    page: Path,
    user_data_dir: Path,
    screenshot: Path,
    checks: dict[str, str],
    ready: str,
    timeout_s: float = 60.0,
) -> PageReport:
    """Open ``page``, wait until the JS expression ``ready`` is true, evaluate ``checks``,
    save a full-page PNG to ``screenshot``; returns errors and the values."""
    browser = Chromium(binary, user_data_dir)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Runtime", "Log", "Page"):
            browser.send(f"{domain}.enable", session=session)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        browser.wait_event("Page.loadEventFired", timeout_s)
        deadline = time.monotonic() + timeout_s
        while not _evaluate(browser, session, ready):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        report = PageReport(values={k: _evaluate(browser, session, v) for k, v in checks.items()})
        height = int(_evaluate(browser, session, "document.documentElement.scrollHeight") or 900)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": min(height, 16000), "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        time.sleep(0.5)  # let plotly's responsive layout settle at the new size
        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        report.errors = _errors(browser.events)
        return report
    finally:
        browser.close()


def _evaluate(browser: Chromium, session: str, expression: str) -> Any:
    result = browser.send(
        "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session
    )
    return result.get("result", {}).get("value")
