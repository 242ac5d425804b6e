"""The pre-flight check of a shared tracking server: busy is not dead.

Found by tests/test_postgres_scaleout.py: with four launchers logging into one `mlflow server` on 2 cores, the
server took more than the 5 s pre-flight timeout to answer `/health`, and a fifth launch failed with "cannot be
reached (timed out)" although the server was working. A server that accepts the connection but answers slowly is
now asked again (up to `busy_wait`); a refused connection still fails at once (test_robustness_inputs.py).
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from src.lab.tracking import TrackingError, check_reachable


@pytest.fixture
def slow_server() -> Iterator[tuple[str, list[float]]]:
    """An HTTP server whose `/health` answers 200 after `delay[0]` seconds for its first `delay[1]` requests."""
    delay = [0.0, 1e9]
    asked = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            asked.append(1)
            if len(asked) <= delay[1]:
                time.sleep(delay[0])
            try:
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"OK")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (what the timeout tests ask of it): nothing to answer

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", delay
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_slow_server_is_waited_for(slow_server: tuple[str, list[float]]) -> None:
    url, delay = slow_server
    delay[:] = [1.5, 2]  # the first two asks outlast the per-request timeout below; the third is answered
    check_reachable(url, timeout=0.5, busy_wait=20)


def test_a_server_that_never_answers_fails_in_one_line(slow_server: tuple[str, list[float]]) -> None:
    url, delay = slow_server
    delay[0] = 3.0
    with pytest.raises(TrackingError) as err:
        check_reachable(url, timeout=0.2, busy_wait=0.5)
    msg = str(err.value)
    assert "\n" not in msg and url in msg and "did not answer /health within" in msg
