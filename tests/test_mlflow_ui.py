"""The MLflow UI in a real headless Chromium: `mlflow ui` on the sweep's store, the page the sweep's last line
points to, the runs table with nnlab's runs, their dataset and model, and the study's claim as description.

Why the URL carries `?workflowType=machine_learning`: MLflow 3.17.2's UI picks its GenAI view (an empty Traces
page) or its model-training view (the runs table) from that parameter or its sidebar switch, and ignores the
experiment's `mlflow.experimentKind` tag for that choice (measured by hand: the same experiment without the
parameter opens on the GenAI Overview). nnlab still sets the tag, which other MLflow versions read. The README
tells the user to open the link the sweep prints last; this test opens exactly that link, in one browser session.
Skipped, with the reason, where Chromium is absent. A screenshot is written to the test's tmp folder (and to
$NNLAB_SCREENSHOTS when set).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cdp import SKIP_REASON, Browser, chromium
from e2e_utils import env_for

CHROMIUM = chromium()
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ui(tracked_sweep: Any) -> Any:
    """`mlflow ui` started as the sweep's last line says, on 127.0.0.1 and a free port; stopped afterwards."""
    hint = next(ln for ln in tracked_sweep.stdout.splitlines() if "to look:" in ln)
    command = re.search(r"to look: (mlflow ui[^,]*),", hint).group(1).split()
    page = re.search(r"http://127\.0\.0\.1:5000/(\S+)", hint).group(1)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", *command[1:], "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1"], cwd=tracked_sweep.repo, env=env_for(tracked_sweep.repo),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:  # noqa: S310
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mlflow ui did not start: {proc.stderr.read() if proc.stderr else ''}"[-2000:])
            time.sleep(0.5)
        yield base, page
    finally:
        proc.terminate()  # SIGTERM to mlflow's main process stops its server workers too
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_runs_table_shows_runs_datasets_models_and_claim(ui: Any, tracked_sweep: Any, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    base, page = ui
    client = MlflowClient(tracking_uri=tracked_sweep.uri)
    exp = client.get_experiment_by_name("s3_optim")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`mlflow.parentRunId` != ''")
    names = sorted(r.info.run_name for r in runs)
    digest = runs[0].inputs.dataset_inputs[0].dataset.digest
    assert page == f"#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
    assert CHROMIUM is not None
    with Browser(CHROMIUM, tmp_path / "profile") as browser:
        browser.goto(f"{base}/{page}")
        browser.wait_for("document.body && document.body.innerText.includes('matching runs') && "
                         "document.body.innerText.includes('sweep ')", timeout=120)
        # The jobs are nested under the sweep's parent run, collapsed: expand it as a user would (its chevron).
        browser.js("document.querySelectorAll('button[data-component-id*=runnamecellrenderer]')"
                   ".forEach(b => b.click())")
        text = browser.wait_for(" && ".join(f"document.body.innerText.includes({n!r})" for n in names)
                                + " && document.body.innerText", timeout=60)
        headers = browser.js("[...document.querySelectorAll('[role=columnheader]')].map(e => e.innerText.trim())")
        shot = browser.screenshot(tmp_path / "mlflow_runs.png")
    assert "Model training" in text and "Runs" in text  # the model-training view, not the GenAI Traces page
    assert "Adam reaches a higher test accuracy" in text  # the experiment's description: the study's claim
    for name in names:
        assert name in text  # the run names, rounded: train.lr=0.05412
    assert text.count(f"moons ({digest})") == 2  # the Dataset column: name and digest of what trained each job
    assert {"Run Name", "Dataset", "Source", "Models"} <= set(headers)
    assert re.search(r"\btrain\.py\s+model\b", text)  # the Source and Models columns of a job
    assert "3 matching runs" in text  # the parent and its two jobs
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("NNLAB_SCREENSHOTS"):
        shutil.copy(shot, Path(os.environ["NNLAB_SCREENSHOTS"]) / shot.name)
