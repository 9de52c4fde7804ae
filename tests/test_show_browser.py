"""The `forge show` page as a browser draws it: headless Chromium screenshots the HTML file."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from forge.cli import main
from forge.draw import OBJECT_COLORS

BROWSER = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)
SKY = (185, 200, 215)  # the synthetic scenes' sky colour


def _near(pixels: np.ndarray, color: tuple[int, int, int], tolerance: int = 12) -> np.ndarray:
    return (np.abs(pixels.astype(np.int16) - np.array(color)) <= tolerance).all(axis=2)


@pytest.mark.skipif(BROWSER is None, reason="no Chromium here (Debian: apt-get install chromium)")
def test_chromium_renders_the_preview_page(tmp_path, demo_db):
    page = tmp_path / "preview.html"
    result = CliRunner().invoke(main, ["show", "--db", str(demo_db), "--n", "4", "--size", "320",
                                       "--family", "depth_order", "--out", str(page)])
    assert result.exit_code == 0, result.output
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=1",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([BROWSER, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.stdout.count("<figure>") == 4 and dom.stdout.count("<img") == 4, dom.stderr[-2000:]

    shot = tmp_path / "shot.png"
    done = subprocess.run([BROWSER, *flags, "--window-size=1400,1800", f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    # four 320x240 images, two thirds sky each, at least partly on screen: the images decoded and display
    assert _near(pixels, SKY).sum() > 2 * 320 * 240 * 0.6
    # box outlines and label backgrounds in a's red and b's blue, beyond the 13x13 legend swatches
    for color in OBJECT_COLORS[:2]:
        assert _near(pixels, color).sum() > 4 * 13 * 13 + 400
