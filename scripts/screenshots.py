"""Screenshots of every figure and of the MLflow UI pages, taken in headless Chromium.

    python scripts/screenshots.py --out figures/screenshots     (make screenshots)

Builds a small store in a temporary folder (the 12-bit task, which ships with ibcli: tanh and
ReLU runs, binning and KDE, a run without mi results), draws its figures with `ibcli plot` (one
run with --format html,png,svg,pdf, the two runs compared, the training-only run), starts
`ibcli ui` on a free port, and saves a PNG of every HTML figure (at a wide and a narrow window)
and of the UI's runs table, a train run's metric charts and a plot run's report in the artifact
viewer. Look at every picture. Without a Chromium-family browser it prints one line and exits 0
(CI may run it either way). Takes a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Page is drawn: a plotly figure has its SVG, an MLflow page its content (checked every half second).
PLOTLY_DRAWN = "document.querySelectorAll('.plotly-graph-div .main-svg').length > 0"


def find_chromium(given: str | None = None) -> str | None:
    """The browser to drive: `given`, else the one plotly's static export finds, else the usual names."""
    if given:
        return given if shutil.which(given) or Path(given).is_file() else None
    try:
        from ibcli.figure_files import find_browser

        found = find_browser()
    except ImportError:
        found = None
    return found or next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


class Camera:
    """Headless Chromium driven over the DevTools protocol (choreographer, which kaleido brings):
    pages are shot once they are drawn, in real time, so MLflow's single-page app and the
    artifact viewer's frames have loaded (a plain `chromium --screenshot` shoots too early)."""

    def __init__(self, browser: str):
        self.path = browser

    async def __aenter__(self):
        import choreographer

        self.browser = await choreographer.Browser(self.path, headless=True).__aenter__()
        return self

    async def __aexit__(self, *exc):
        await self.browser.__aexit__(*exc)

    async def _value(self, tab, expression: str):
        reply = await tab.send_command("Runtime.evaluate", params={"expression": expression, "returnByValue": True})
        return reply.get("result", {}).get("result", {}).get("value")

    async def shoot(self, url: str, out: Path, width: int = 1400, height: int | None = None, ready: str = PLOTLY_DRAWN,
                    settle: float = 1.5, timeout: float = 90.0) -> Path:
        """Save a PNG of `url` in a `width`-pixel window, `height` tall (None: the whole page),
        once `ready` (a JavaScript expression) holds and `settle` more seconds have passed.

        Raises:
            RuntimeError: the page was not ready within `timeout` seconds.
        """
        tab = await self.browser.create_tab("")
        try:
            # a whole page starts short, so its scroll height is its content's, not the window's
            metrics = {"width": width, "height": height or 300, "deviceScaleFactor": 1, "mobile": False}
            await tab.send_command("Emulation.setDeviceMetricsOverride", params=metrics)
            await tab.send_command("Page.navigate", params={"url": url})
            deadline = time.monotonic() + timeout
            while not await self._value(tab, f"Boolean({ready})"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} was not ready ({ready}) after {timeout:.0f} s")
                await asyncio.sleep(0.5)
            await asyncio.sleep(settle)
            if height is None:
                metrics["height"] = int(await self._value(tab, "document.documentElement.scrollHeight") or 900)
                await tab.send_command("Emulation.setDeviceMetricsOverride", params=metrics)
                await asyncio.sleep(1.0)
            reply = await tab.send_command("Page.captureScreenshot", params={"format": "png"})
            out.write_bytes(base64.b64decode(reply["result"]["data"]))
        finally:
            await self.browser.close_tab(tab)
        return out


def screenshot(browser: str, url: str, out: Path, width: int = 1400, height: int | None = None,
               ready: str = PLOTLY_DRAWN) -> Path:
    """One screenshot (`Camera.shoot`) in a browser session of its own."""

    async def run():
        async with Camera(browser) as camera:
            return await camera.shoot(url, out, width, height, ready)

    return asyncio.run(run())


def _ibcli(args: list[str], cwd: Path) -> dict:
    """Run `ibcli ARGS --json --quiet` in `cwd` with this checkout's ibcli; its JSON summary."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-m", "ibcli.cli", *map(str, args), "--json", "--quiet"], cwd=cwd, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ibcli {' '.join(map(str, args))} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def build_store(work: Path, epochs: int) -> dict:
    """Train, estimate and plot the demo runs in `work` (its runs/ is the store); their ids and folders."""
    common = ["--dataset", "ib12", "--model", "ib", "--epochs", epochs, "--lr", "0.003", "--batch-size", "512",
              "--log-epochs", "log:16", "--log-steps", "log:4"]
    ids = {}
    for activation in ("tanh", "relu"):
        ids[activation] = _ibcli(["train", *common, "--activation", activation], work)["run_id"]
        _ibcli(["mi", ids[activation], "--method", "binning"], work)
        _ibcli(["mi", ids[activation], "--method", "kde", "--noise-var", "0.1", "--noise-var", "0.01"], work)
    ids["training_only"] = _ibcli(["train", *common, "--activation", "sigmoid", "--epochs", max(2, epochs // 4)], work)["run_id"]
    plots = {
        "one": _ibcli(["plot", ids["tanh"], "--output", work / "one", "--format", "html,png,svg,pdf"], work),
        "compare": _ibcli(["plot", ids["tanh"], ids["relu"], "--output", work / "compare"], work),
        "training_only": _ibcli(["plot", ids["training_only"], "--output", work / "training_only"], work),
    }
    return {"runs": ids, "plots": plots}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def shoot_figures(camera: Camera, work: Path, out: Path) -> list[Path]:
    """Every HTML figure, whole, in a 1400-pixel window; the information plane also at 900 pixels
    (narrower than the figure's minimum: it scrolls sideways instead of squeezing its panels)."""
    shots = []
    for folder in ("one", "compare", "training_only"):
        for html in sorted((work / folder).glob("*.html")):
            if html.name != "report.html":
                shots.append(await camera.shoot(html.as_uri(), out / f"{folder}-{html.stem}.png"))
    plane = work / "one" / "information_plane.html"
    shots.append(await camera.shoot(plane.as_uri(), out / "one-information_plane-narrow.png", width=900))
    return shots


def start_ui(work: Path) -> tuple[subprocess.Popen, str]:
    """`ibcli ui --no-open` on a free port in `work`; (its process, the runs table's address).

    Raises:
        RuntimeError: it printed no address within four minutes.
    """
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = work / "ui.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "ibcli.cli", "ui", "--port", str(port), "--no-open"], cwd=work, env=env,
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        found = [line.split("MLflow UI: ")[1].split()[0] for line in log.read_text().splitlines() if "MLflow UI: " in line]
        if found:
            return proc, found[0]
        time.sleep(1)
    stop_ui(proc)
    raise RuntimeError(f"ibcli ui did not start: {log.read_text()[-800:]}")


def stop_ui(proc: subprocess.Popen) -> None:
    """Ctrl-C to the UI's process group (as a terminal would), then wait for it."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def shoot_ui(camera: Camera, url: str, store: dict, out: Path) -> list[Path]:
    """The runs table, a train run's metric charts, a plot run's report in the artifact viewer."""
    base, experiment = url.split("/#/")[0], re.search(r"experiments/(\d+)", url).group(1)
    train, plot = store["runs"]["tanh"], store["plots"]["one"]["plot_run_id"]
    run_page = f"{base}/#/experiments/{experiment}/runs"
    text = "document.body.innerText.includes({!r})".format
    return [
        await camera.shoot(url, out / "ui-runs.png", 1400, 900, ready=text("ib-tanh-adam-ib12-s0"), settle=3),
        await camera.shoot(f"{run_page}/{train}/model-metrics?workflowType=machine_learning", out / "ui-train-run-metrics.png",
                           1400, 1000, ready="document.querySelectorAll('.js-plotly-plot').length >= 6", settle=4),
        await camera.shoot(f"{run_page}/{plot}/artifacts/figures/report.html?workflowType=machine_learning",
                           out / "ui-plot-report.png", 1400, 1000, ready="document.querySelector('iframe') !== null", settle=15),
    ]


async def _shoot_all(browser: str, work: Path, url: str, store: dict, out: Path) -> list[Path]:
    async with Camera(browser) as camera:
        return await shoot_figures(camera, work, out) + await shoot_ui(camera, url, store, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "figures" / "screenshots", help="folder for the PNGs")
    parser.add_argument("--browser", help="Chromium-family browser to drive (default: found like plotly's static export)")
    parser.add_argument("--epochs", type=int, default=200, help="epochs of the demo runs on the 12-bit task")
    parser.add_argument("--keep", action="store_true", help="keep the demo store (its folder is printed)")
    args = parser.parse_args(argv)
    browser = find_chromium(args.browser)
    if browser is None:
        print("screenshots skipped: no Chromium-family browser (install Debian's chromium, or pass --browser PATH)")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ibcli-screenshots-"))
    try:
        store = build_store(work, args.epochs)
        proc, url = start_ui(work)
        try:
            shots = asyncio.run(_shoot_all(browser, work, url, store, args.out))
            (args.out / "ui-output.txt").write_text((work / "ui.log").read_text())
        finally:
            stop_ui(proc)
        static = sorted(p.name for p in (work / "one").iterdir() if p.suffix in (".png", ".svg", ".pdf"))
        print(f"static exports of one run: {', '.join(static)}")
        for shot in shots:
            print(shot)
    finally:
        if args.keep:
            print(f"demo store kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
