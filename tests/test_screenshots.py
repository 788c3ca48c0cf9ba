"""scripts/screenshots.py: skips in one line without a browser; with one, a figure's picture shows the figure.

The whole script (training a demo store, every figure, the UI) takes minutes: run it with
`make screenshots`, not in the test suite.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "screenshots.py"


def _script():
    spec = importlib.util.spec_from_file_location("screenshots", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_a_browser_it_skips_in_one_line(tmp_path, capsys):
    out = tmp_path / "shots"
    assert _script().main(["--browser", str(tmp_path / "no-such-chromium"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith("screenshots skipped: no Chromium-family browser")
    assert not out.exists()


def test_a_figure_screenshot_shows_the_figure(tmp_path):
    screenshots = _script()
    browser = screenshots.find_chromium()
    if browser is None:
        pytest.skip("no Chromium-family browser")
    pytest.importorskip("choreographer")
    Image = pytest.importorskip("PIL.Image")
    from ibcli import plots
    from ibcli.figure_files import write_html

    fig = plots.training_curves(pd.DataFrame({"epoch": [0, 1, 2, 3], "key": "train_loss", "value": [2.0, 1.0, 0.6, 0.5]}))
    write_html({"curves": fig}, tmp_path)
    shot = screenshots.screenshot(browser, (tmp_path / "curves.html").as_uri(), tmp_path / "curves.png", width=1000)
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape[1] == 1000 and image.shape[0] >= fig.layout.height  # the whole page
    blue = (image[..., 2] > 150) & (image[..., 0] < 80)  # the train curve's D3 blue (#1f77b4)
    assert blue.sum() > 200
