"""A person can open a training run in MLflow's UI: start the UI (`python -m finstream.models
ui`, what `make mlflow-ui` runs), load the run's page and the registered model's page in
headless Chromium (Debian's, installed by stack/chromium.sh), and find the run's metrics and the
model's champion alias in the rendered DOM. Screenshots are left under .local/test-screenshots/
for the developer to look at. Used by test_train.py, after its training (one training less)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import urllib.request

from finstream.core.config import local_dir
from tests.integration.conftest import ROOT, wait_until

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# No background connections (this machine's network is closed to them), a fresh profile.
HEADLESS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--window-size=1400,1000", "--virtual-time-budget=20000")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(url: str, profile, screenshot=None) -> str:
    """The DOM after the page's scripts ran (and, if asked, a screenshot of it)."""
    args = [CHROMIUM, *HEADLESS, f"--user-data-dir={profile}"]
    if screenshot:
        subprocess.run([*args, f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=True)
    return subprocess.run([*args, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout


def assert_visible_in_mlflow_ui(pipeline, tmp_path, run, model: str) -> None:
    """Starts the UI on the pipeline's store, and finds the run's metrics and the model's
    champion alias in the pages Chromium renders (screenshots left in .local/test-screenshots)."""
    port = free_port()
    ui = subprocess.Popen([".venv/bin/python", "-m", "finstream.models", "ui", "--port", str(port)], cwd=ROOT,
                          env={**os.environ, **pipeline.env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    shots = local_dir() / "test-screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    try:
        def answers() -> bool:
            try:
                return urllib.request.urlopen(f"{base}/health", timeout=2).read() == b"OK"
            except OSError:
                return False

        wait_until(answers, 90, "the MLflow UI", 0.5)
        run_page = render(f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}", tmp_path / "p1",
                          shots / "mlflow-run.png")
        assert run.info.run_name in run_page
        for metric in ("linear.holdout.rmse", "persistence.holdout.loss"):
            assert metric in run_page, f"{metric} not in the rendered run page"
        model_page = render(f"{base}/#/models/{model}", tmp_path / "p2", shots / "mlflow-model.png")
        assert model in model_page and "champion" in model_page
        assert (shots / "mlflow-run.png").stat().st_size > 10_000
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(30)
