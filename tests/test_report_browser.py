"""The report page in a real headless Chromium: it loads, every image decodes, no console message, a screenshot.

Needs the Debian package `chromium` (`apt-get install -y chromium`); skipped with that reason when it is absent.
Three runs of the browser on a report built from synthetic results:
1. ``--dump-dom`` of the page as written: the DOM has every study section and every <img> is a PNG data URI that
   Pillow decodes; stderr (``--enable-logging=stderr``) has no ``CONSOLE`` line (the page has no script, so any
   console message is an error: a blocked resource, a parse problem).
2. ``--dump-dom`` of a test-only copy with a one-line script that, after ``load``, counts the images the BROWSER
   failed to decode (``complete && naturalWidth > 0``) and writes the count into the title.
3. ``--screenshot`` at 1200×2000: a PNG of that size is saved.
"""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report import STUDIES, make_results

from src import report

CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]


def _chromium() -> str | None:
    for c in CANDIDATES:
        path = c if Path(c).is_file() else shutil.which(c)
        if path:
            return path
    return None


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: install the Debian package with "
                                "`apt-get update && apt-get install -y chromium` (looked for /usr/bin/chromium)")


def _run(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile{len(list(tmp.glob('profile*')))}"
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=120)


def _console(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if re.search(r":CONSOLE[:(]", ln)]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    report.build(make_results(root), root / "reports")
    return root / "reports" / "index.html"


def test_console_check_catches_errors(tmp_path: Path) -> None:
    """The console check is not vacuous: a page that logs an error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><html><body><script>console.error('boom'); missingFn();</script></body></html>")
    out = _run(tmp_path, "--dump-dom", bad.as_uri())
    assert out.returncode == 0
    assert any("boom" in ln for ln in _console(out.stderr))


def test_page_loads_images_decode_no_console_errors(page: Path, tmp_path: Path) -> None:
    from PIL import Image

    out = _run(tmp_path, "--dump-dom", page.as_uri())
    assert out.returncode == 0, out.stderr[-2000:]
    dom = out.stdout
    assert "<h1>nnlab report</h1>" in dom
    for s in STUDIES:
        assert f'id="{s}"' in dom
    srcs = re.findall(r'<img [^>]*src="([^"]*)"', dom)
    assert len(srcs) >= 12
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        payload = src.split(",", 1)[1]
        assert payload
        with Image.open(io.BytesIO(base64.b64decode(payload))) as im:
            im.load()
            assert im.format == "PNG" and im.width > 50 and im.height > 50
    assert _console(out.stderr) == []


def test_browser_decodes_every_image(page: Path, tmp_path: Path) -> None:
    probe = tmp_path / "probe.html"
    script = ("<script>addEventListener('load',()=>{const i=[...document.images];"
              "document.title='IMGCHECK '+i.length+' '+i.filter(x=>!(x.complete&&x.naturalWidth>0)).length;});"
              "</script>")
    probe.write_text(page.read_text().replace("</body>", script + "</body>"))
    out = _run(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    m = re.search(r"<title>IMGCHECK (\d+) (\d+)</title>", out.stdout)
    assert m, out.stdout[:500]
    assert int(m.group(1)) >= 12 and int(m.group(2)) == 0
    assert _console(out.stderr) == []


def test_screenshot_is_saved(page: Path, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "shot.png"
    out = _run(tmp_path, f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri())
    assert out.returncode == 0, out.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.format == "PNG" and im.size == (1200, 2000)
        assert len(set(im.convert("L").getdata())) > 10  # not a blank page
