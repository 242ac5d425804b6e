"""A headless Chromium driven over the Chrome DevTools Protocol, with the standard library only.

Why not `--dump-dom --virtual-time-budget`: a single-page app such as the MLflow UI fetches its data after load,
so a fixed time budget is either too short on a busy machine or wastes time on a quiet one. Here the test waits
for what it expects to see (polling `document.body.innerText`), then takes a screenshot in the same browser.
Why `--remote-debugging-pipe` (fd 3: commands in, fd 4: replies out, NUL-separated JSON): no port, no
websocket client to install.
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
from pathlib import Path
from typing import Any

CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
SKIP_REASON = ("no Chromium: install the Debian package with `apt-get update && apt-get install -y chromium` "
               "(looked for /usr/bin/chromium)")


def chromium() -> str | None:
    for c in CANDIDATES:
        path = c if Path(c).is_file() else shutil.which(c)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium with one page; `close()` (or the context manager) ends the process."""

    def __init__(self, exe: str, profile: Path, width: int = 1600, height: int = 900) -> None:
        to_browser_r, self._w = os.pipe()
        self._r, from_browser_w = os.pipe()
        # Move the child's ends to fds >= 10 first, so that placing them on 3 and 4 never overwrites one another.
        child_r, child_w = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
        os.close(to_browser_r)
        os.close(from_browser_w)

        def on_fds_3_and_4() -> None:
            os.dup2(child_r, 3)
            os.dup2(child_w, 4)

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update", "--remote-debugging-pipe",
                 f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"]
        self.proc = subprocess.Popen([exe, *flags], pass_fds=(3, 4), preexec_fn=on_fds_3_and_4,  # noqa: PLW1509
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(child_r)
        os.close(child_w)
        self._buf = b""
        self._id = 0
        try:
            page = next(t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page")
            self._session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, session: str | None = None, timeout: float = 60.0, **params: Any) -> dict:
        """Send one command and wait for its reply (events in between are dropped)."""
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"Chromium did not answer {method} within {timeout:.0f} s")
            if select.select([self._r], [], [], left)[0]:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed its DevTools pipe")
                self._buf += chunk

    def page(self, method: str, **params: Any) -> dict:
        return self.call(method, session=self._session, **params)

    def goto(self, url: str) -> None:
        self.page("Page.navigate", url=url)

    def js(self, expression: str) -> Any:
        return self.page("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0) -> Any:
        """Poll a JavaScript expression until it is truthy; return its value (TimeoutError with the page text)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.25)
        text = self.js("document.body ? document.body.innerText : ''") or ""
        raise TimeoutError(f"waited {timeout:.0f} s for {expression!r}; the page shows: {text[:1500]!r}")

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.page("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):  # it is going away anyway
                self.call("Browser.close", timeout=5)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for fd in (self._w, self._r):
            with contextlib.suppress(OSError):
                os.close(fd)
