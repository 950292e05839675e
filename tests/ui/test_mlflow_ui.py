"""The MLflow UI on a real store, in a real browser: a 2x2 sweep from train.py, `mer ui`'s
server, headless Chromium driven by playwright. Each test saves a full-page screenshot under
<pytest tmp>/tests_output/ui/ and prints its path (see them with `pytest -s` or `-rP`).

What the UI offers here (MLflow 3.17): the runs table is AG Grid (run-name cells
`[role=gridcell][col-id="attributes.`Run Name`"]`, one `[role=row][row-id=<run id>]` per run,
a sweep's runs nested under its parent until its expand button is clicked); a run's page is
`#/experiments/<id>/runs/<run id>` with two `[role=table]`s (Metric/Value, Parameter/Value);
the compare view is `#/compare-runs?runs=<JSON list of run ids>&experiments=<JSON list>`
(what the table's Compare button opens). Without `workflowType=machine_learning` in the
address a fresh browser shows the GenAI pages (its default), whatever the experiment's tags."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT, base_overrides, run_script
from helpers import free_port

if importlib.util.find_spec("pytest_timeout"):
    pytestmark = pytest.mark.timeout(900)

CHROMIUM = Path("/usr/bin/chromium")
ML_VIEW = "workflowType=machine_learning"
SAVED_VIEW = "viewStateShareKey=mer-comparison"  # the comparison view `mer ui` saves on the experiment
WAIT_MS = 45_000
VARIED = {"optim.lr": ("0.01", "0.001"), "model.dropout": ("0.3", "0.5")}
RUN_NAME_CELL = '[role=gridcell][col-id="attributes.`Run Name`"]'
EXPAND_CHILDREN = 'button[data-component-id$="runnamecellrenderer.tsx_46"]'
CLOSE_ASSISTANT = 'button[data-component-id="mlflow.assistant.chat_panel.close"]'
GENAI_OVERVIEW_TEXTS = ("Token Usage", "Tokens per Trace", "Detect Issues")


# ---------------------------------------------------------------- browser


def _apt_install_chromium() -> str | None:
    """Install Debian's chromium; None when done, else why not (one line)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "no /usr/bin/chromium, and installing it needs root with apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def install() -> subprocess.CompletedProcess:
        return subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, capture_output=True,
                              text=True, timeout=600)

    done = install()
    if done.returncode != 0 and any(s in done.stderr for s in ("Unable to locate package", "no installation candidate",
                                                                "Failed to fetch", "apt-get update")):
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True, timeout=600)
        done = install()
    if done.returncode != 0 or not CHROMIUM.exists():
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return f"apt-get install chromium failed: {last}"
    return None


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        why = _apt_install_chromium()
        if why:
            pytest.skip(why)
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(request):
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install playwright; the dev extra has it)")
    chromium = request.getfixturevalue("chromium")  # installed only once playwright is there to drive it
    playwright = sync_api.sync_playwright().start()
    try:
        chrome = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=["--no-sandbox"])
    except Exception as error:  # a browser that does not start is an environment problem, not a UI one
        playwright.stop()
        pytest.skip(f"Chromium does not start under playwright: {str(error).splitlines()[0]}")
    # One context for the module: a tall window so that a full-page screenshot holds the
    # run page's tables (the UI scrolls inside a panel, which full_page does not unroll).
    context = chrome.new_context(viewport={"width": 1600, "height": 2400})
    context.set_default_timeout(WAIT_MS)
    yield context
    context.close()
    chrome.close()
    playwright.stop()


@pytest.fixture
def page(browser):
    page = browser.new_page()
    yield page
    page.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = tmp_path_factory.getbasetemp() / "tests_output" / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(page, shots: Path, name: str) -> Path:
    path = shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def open_page(page, url: str, ready: str):
    """Go to `url` and wait until the selector `ready` is visible; the assistant panel, which
    takes a third of the width, is closed."""
    page.goto(url)
    page.locator(ready).first.wait_for()
    if ready == RUN_NAME_CELL:  # the page's title and description load apart from the table
        page.get_by_role("heading", name="Runs", exact=True).wait_for()
    close = page.locator(CLOSE_ASSISTANT)
    if close.is_visible():
        close.click()
    return page


def two_column_table(page, header: str) -> dict[str, str]:
    """A run page's Metric/Value or Parameter/Value table as shown: {name: value}."""
    page.get_by_role("heading", name=f"{header}s (").first.wait_for()  # "Metrics (13)", "Parameters (0)"
    table = page.locator("[role=table]").filter(has=page.locator("[role=columnheader]", has_text=header))
    if table.count() == 0:
        return {}
    shown = {}
    for text in table.first.locator("[role=row]").all_inner_texts():
        cells = [c.strip() for c in text.split("\n") if c.strip()]
        if len(cells) == 2 and cells[0] != header:
            shown[cells[0]] = cells[1]
    return shown


# ---------------------------------------------------------------- store and server


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, tiny_tree, shared_dirs) -> dict:
    """A 2x2 sweep (lr x dropout) at 2 epochs by the real train.py, in a store of its own."""
    tmp = tmp_path_factory.mktemp("ui_sweep")
    store = tmp / "mlflow.db"
    uri = f"sqlite:///{store}"
    grid = [f"{key}={','.join(values)}" for key, values in VARIED.items()]
    result = run_script("train.py", "-m", *base_overrides(tmp, tiny_tree, shared_dirs), f"logger.tracking_uri={uri}",
                        *grid, "trainer.max_epochs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("mer")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.info.run_name.startswith("sweep ")]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == 4, [r.info.run_name for r in runs]
    return {"uri": uri, "tmp": tmp, "experiment_id": experiment.experiment_id, "parent": parents[0], "children": children}


@pytest.fixture(scope="module")
def fold_sweep(sweep, tiny_tree, shared_dirs) -> dict:
    """Two folds of one cell by the real train.py, in an experiment of its own in the same store."""
    tmp = sweep["tmp"] / "folds"
    result = run_script("train.py", "-m", *base_overrides(tmp, tiny_tree, shared_dirs), f"logger.tracking_uri={sweep['uri']}",
                        "logger.experiment_name=mer-folds", "protocol=kfold", "protocol.k=2", "protocol.fold=0,1",
                        "trainer.max_epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(sweep["uri"])
    experiment = client.get_experiment_by_name("mer-folds")
    (pooled,) = client.search_runs([experiment.experiment_id], "tags.`mer.role` = 'pooled_cell'")
    return {"experiment_id": experiment.experiment_id, "pooled": pooled}


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def ui(sweep) -> dict:
    """`mer ui` on the sweep's store (it prints the runs table's address, then execs
    `mlflow ui`), on a free port; stopped (its whole process group) at teardown."""
    port = free_port()
    log = sweep["tmp"] / "mlflow-ui.log"
    bin_dir = str(Path(sys.executable).parent)  # `mlflow` of this environment, as `mer ui` finds it on PATH
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "mer.commands.cli", "ui", "--tracking-uri", sweep["uri"], "--port", str(port)],
                                  cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not _answers(f"http://127.0.0.1:{port}/health"):
            if server.poll() is not None:
                pytest.fail(f"mer ui ended ({server.returncode}) before answering:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"mer ui did not answer on port {port} within 180 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        printed = {key.strip(): value.strip() for key, _, value in
                   (line.partition(": ") for line in log.read_text().splitlines() if line.startswith(("runs table:", "models:")))}
        assert {"runs table", "models"} <= set(printed), f"mer ui printed no runs-table or models address:\n{log.read_text()[:2000]}"
        yield {"runs_table": printed["runs table"], "models": printed["models"], "base": f"http://127.0.0.1:{port}/#",
               "log": log}
    finally:
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(server.pid, sig)  # the group of the server this fixture started, nothing else
            except ProcessLookupError:
                break
            try:
                server.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue


def run_page_url(ui: dict, sweep: dict, run_id: str) -> str:
    return f"{ui['base']}/experiments/{sweep['experiment_id']}/runs/{run_id}?{ML_VIEW}"


def run_row(page, run_id: str):
    """A run's row: its id, or in a grouped table `<group id>.<run id>`."""
    return page.locator(f'[role=row][row-id="{run_id}"], [role=row][row-id$=".{run_id}"]')


def show_sweep_children(page, sweep: dict) -> None:
    """Expand the sweep parent's row, where the table nests them, until its child rows are in the table."""
    first_child = run_row(page, sweep["children"][0].info.run_id)
    if first_child.count() == 0:
        run_row(page, sweep["parent"].info.run_id).locator(EXPAND_CHILDREN).first.click()
    first_child.first.wait_for()


# ---------------------------------------------------------------- tests


def test_the_printed_address_opens_the_runs_table_not_the_genai_overview(page, ui, sweep, shots):
    experiment_id = sweep["experiment_id"]
    assert ui["runs_table"].endswith(f"/#/experiments/{experiment_id}/runs?{ML_VIEW}&{SAVED_VIEW}"), ui["runs_table"]
    open_page(page, ui["runs_table"], RUN_NAME_CELL)
    page.get_by_text(sweep["parent"].info.run_name, exact=True).first.wait_for()
    screenshot(page, shots, "a_runs_table")
    assert f"/experiments/{experiment_id}/runs" in page.url, f"redirected to {page.url}"
    assert page.get_by_role("heading", name="Runs", exact=True).count() == 1, "no 'Runs' page title"
    headers = {h.strip() for h in page.get_by_role("columnheader").all_inner_texts()}
    assert {"Run Name", "Created"} <= headers, headers
    body = page.inner_text("body")
    assert not [t for t in GENAI_OVERVIEW_TEXTS if t in body], "the GenAI overview is shown"
    assert "Runs of mer" in body, "the experiment's description (mlflow.note.content) is not shown"


def test_child_run_names_in_the_table_carry_the_varied_keys(page, ui, sweep, shots):
    open_page(page, ui["runs_table"], RUN_NAME_CELL)
    show_sweep_children(page, sweep)
    shown = {}
    for child in sweep["children"]:
        row = run_row(page, child.info.run_id).locator(RUN_NAME_CELL)
        row.first.wait_for()
        shown[child.info.run_id] = row.first.inner_text().split("\n")[-1].strip()
    screenshot(page, shots, "b_runs_table_sweep_expanded")
    assert shown == {c.info.run_id: c.info.run_name for c in sweep["children"]}, shown
    missing = {name for name in shown.values() if "lr=" not in name or "dropout=" not in name}
    assert not missing, f"run names in the table without lr=/dropout=: {sorted(missing)}"
    # The varied keys come first in the name, so a truncated cell still tells the runs apart.
    assert all(name.split()[0].startswith(("lr=", "dropout=")) for name in shown.values()), shown


def test_the_sweep_parent_run_page_shows_its_best_cell_metric(page, ui, sweep, shots):
    parent = sweep["parent"]
    open_page(page, run_page_url(ui, sweep, parent.info.run_id), "text=Parameters (")
    page.get_by_role("heading", name=parent.info.run_name).first.wait_for()
    metrics = two_column_table(page, "Metric")
    screenshot(page, shots, "c_sweep_parent_run_page")
    name = "best_cell_by_test_acc/test/acc_mean"
    assert name in metrics, f"the parent run's page shows no {name}; metrics shown: {metrics or 'none'}"
    stored = MlflowClient(sweep["uri"]).get_run(parent.info.run_id).data.metrics[name]
    assert float(metrics[name]) == pytest.approx(stored, abs=1e-6), (metrics[name], stored)


def test_a_fold_sweep_shows_its_cell_pooled_in_a_run_of_its_own(page, ui, fold_sweep, shots):
    pooled = fold_sweep["pooled"]
    open_page(page, run_page_url(ui, fold_sweep, pooled.info.run_id), "text=Parameters (")
    page.get_by_role("heading", name=pooled.info.run_name).first.wait_for()
    assert pooled.info.run_name.startswith("pooled ") and "fold=" not in pooled.info.run_name
    metrics = two_column_table(page, "Metric")
    screenshot(page, shots, "e_pooled_cell_run_page")
    assert float(metrics["pooled/test/acc"]) == pytest.approx(pooled.data.metrics["pooled/test/acc"], abs=1e-6), metrics


def test_a_child_run_page_shows_the_short_param_names(page, ui, sweep, shots):
    child = sweep["children"][0]
    open_page(page, run_page_url(ui, sweep, child.info.run_id), "text=Parameters (")
    page.get_by_role("heading", name=child.info.run_name).first.wait_for()
    params = two_column_table(page, "Parameter")
    screenshot(page, shots, "d_child_run_page")
    missing = {"lr", "dropout", "epochs", "seed"} - set(params)
    assert not missing, f"params not shown on the run page: {sorted(missing)}; shown: {sorted(params)}"
    assert params["epochs"] == "2"
    assert (params["lr"], params["dropout"]) == (child.data.params["lr"], child.data.params["dropout"])


def test_compare_view_of_the_sweep_runs(page, ui, sweep, shots):
    open_page(page, ui["runs_table"], RUN_NAME_CELL)
    show_sweep_children(page, sweep)
    ids = [c.info.run_id for c in sweep["children"]]
    for run_id in ids:
        run_row(page, run_id).locator("input.ag-checkbox-input").first.click()
    page.get_by_role("button", name="Compare", exact=True).click()
    page.get_by_text(f"Comparing {len(ids)} Runs").first.wait_for()
    address = urlsplit(page.url)
    route, _, query = address.fragment.partition("?")
    fields = {key: json.loads(values[0]) for key, values in parse_qs(query).items()}
    assert route == "/compare-runs", unquote(page.url)
    assert sorted(fields["runs"]) == sorted(ids) and fields["experiments"] == [sweep["experiment_id"]], unquote(page.url)
    for child in sweep["children"]:
        page.get_by_text(child.info.run_name, exact=True).first.wait_for()
    page.locator(".js-plotly-plot .main-svg").first.wait_for()  # the parallel-coordinates plot, drawn last
    screenshot(page, shots, "e_compare_sweep_runs")
    body = page.inner_text("body")
    assert "Run details" in body and "Parameters" in body and "Metrics" in body


def test_the_printed_address_opens_the_comparison_columns_whole_names_datasets_and_models(page, ui, sweep, shots):
    page.set_viewport_size({"width": 2800, "height": 1400})  # every chosen column on screen at once
    open_page(page, ui["runs_table"], RUN_NAME_CELL)
    page.get_by_text("mer: compare cells").first.wait_for()  # the saved view is the one open
    page.get_by_text(f"Group: {sweep['parent'].data.tags['mer.sweep_id']}").first.wait_for()  # the sweep's runs together
    for child in sweep["children"]:  # shown in their group, none folded away
        run_row(page, child.info.run_id).first.wait_for()
    screenshot(page, shots, "f_comparison_view")
    headers = {h.strip() for h in page.get_by_role("columnheader").all_inner_texts()}
    missing = {"test/acc", "test/uf1", "lr", "dropout", "epochs", "seed", "Dataset", "Models"} - headers
    assert not missing, f"columns not shown: {sorted(missing)}; shown: {sorted(headers)}"
    for child in sweep["children"]:
        row = run_row(page, child.info.run_id)  # the pinned name column's row and the scrolling one's
        name = row.locator(f"{RUN_NAME_CELL} a").first
        assert name.inner_text().strip() == child.info.run_name
        width, room = name.evaluate("e => [e.scrollWidth, e.clientWidth]")
        assert width <= room, f"{child.info.run_name!r} is cut: {width} px of text in {room} px"
        dataset = row.locator('[role=gridcell][col-id="attributes.`Dataset`"]').first.inner_text()
        assert "builtin" in dataset and "Training" in dataset, dataset
        assert row.locator('[role=gridcell][col-id="attributes.`Models`"]').first.inner_text().strip() == "model"
        shown = row.locator('[role=gridcell][col-id="metrics.`test/acc`"]').first.inner_text().strip()
        assert float(shown) == pytest.approx(child.data.metrics["test/acc"], abs=1e-4), shown


def test_the_models_tab_lists_each_runs_logged_model(page, ui, sweep, shots):
    assert ui["models"].endswith(f"/#/experiments/{sweep['experiment_id']}/models?{ML_VIEW}"), ui["models"]
    open_page(page, ui["models"], "text=Model name")
    for child in sweep["children"]:
        page.get_by_text(child.info.run_name, exact=True).first.wait_for()
    screenshot(page, shots, "g_models_tab")
    client = MlflowClient(sweep["uri"])
    logged = client.search_logged_models([sweep["experiment_id"]])
    assert sorted(m.source_run_id for m in logged) == sorted(c.info.run_id for c in sweep["children"])
    body = page.inner_text("body")
    assert body.count("Ready") >= len(sweep["children"]), "the logged models are not all shown as Ready"
