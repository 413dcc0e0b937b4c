"""A whole tiny study on SQLite, shared by read-only tests: its trials, files, front, export, report, dashboard, API."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import ECGSEARCH, TINY, environment, run, sqlite_study, unique_name, worker_command


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, str, object]:
    """One finished tiny study on SQLite (7 trials, 2 of them E18/E16), shared by read-only tests."""
    workspace = tmp_path_factory.mktemp("ws") / "ecgsearch-work"
    name = unique_name("tiny")
    # A usual umask (022): what the study creates must be private all the same.
    result = subprocess.run(worker_command(workspace, name, 7), env=environment(None), capture_output=True,
                            text=True, timeout=300, umask=0o022)  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    return workspace, name, result


def test_a_worker_fills_the_study_to_exactly_its_trial_count(finished) -> None:
    workspace, name, result = finished
    study = sqlite_study(workspace, name)
    trials = study.get_trials()
    assert len(trials) == 7 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.user_attrs["thesis_experiment"] for t in trials if "thesis_experiment" in t.user_attrs) == [
        "E16", "E18"
    ]  # fmt: skip
    assert study.metric_names == ["val_micro_auroc", "size_mb"]
    assert "trial    0  E18" in result.stdout


def test_trials_record_sizes_metrics_history_logs_and_artifacts(finished) -> None:
    workspace, name, _ = finished
    study = sqlite_study(workspace, name)
    e18 = next(t for t in study.get_trials() if t.user_attrs.get("thesis_experiment") == "E18")
    attrs = e18.user_attrs
    assert attrs["identity"]["params"] == 63_715 and abs(attrs["size_mb"] - 0.278) < 0.001
    assert e18.values == [attrs["val_micro_auroc"], attrs["size_mb"]]
    assert 0.0 <= attrs["test_micro_auroc"] <= 1.0 and len(attrs["history"]) == 1
    assert set(attrs["result"]["val"]) >= {"micro_auroc", "macro_auroc", "challenge_score"}
    assert attrs["result"]["val"]["micro_auroc"] == attrs["val_micro_auroc"]
    assert ":pid" in attrs["identity"]["worker"]  # host:pid outside Slurm
    assert Path(attrs["log"]).read_text().startswith(f"trial {e18.number} arch")
    meta = optuna.artifacts.get_all_artifact_meta(e18, storage=study._storage)
    assert {m.filename for m in meta} == {"model.pt", "model.json"}
    assert study.user_attrs["artifact_dir"] == str((workspace / "artifacts").resolve())
    assert len(study.user_attrs["definition_fingerprint"]) == 16 and len(study.user_attrs["data_fingerprint"]) == 16


def test_what_a_study_creates_is_private_and_leaves_no_lock_file(finished) -> None:
    workspace, _, _ = finished
    created = [workspace, *workspace.rglob("*")]
    modes = {str(p.relative_to(workspace.parent)): p.stat().st_mode & 0o777 for p in created}
    assert len(modes) > 10 and not {p: f"{m:04o}" for p, m in modes.items() if m & 0o077}
    assert not [p for p in modes if p.endswith(".lock")]


def test_a_workspace_open_to_others_gets_one_warning_and_group_readable_is_asked_for(tmp_path: Path) -> None:
    shared = tmp_path / "lab-work"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    cmd = [*ECGSEARCH, "--group-readable", "enqueue-thesis", "--study-def", str(TINY), "--study-name", "lab",
           "--workspace", str(shared)]  # fmt: skip
    out = subprocess.run(cmd, env=environment(None), capture_output=True, text=True, timeout=300, umask=0o002)
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {shared} is open to other users (mode 0755); make it private with "
                        f"`chmod -R go-rwx {shared}`"]  # fmt: skip
    assert (shared / "study.db").stat().st_mode & 0o777 == 0o640
    assert (shared / "artifacts").stat().st_mode & 0o777 == 0o750


def test_pareto_lists_the_front(finished) -> None:
    workspace, name, _ = finished
    out = run([*ECGSEARCH, "pareto", "--study-name", name, "--workspace", str(workspace), "--json"], environment(None))
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    study = sqlite_study(workspace, name)
    assert {r["trial"] for r in rows} == {t.number for t in study.best_trials}
    sizes = [r["size_mb"] for r in rows]
    aurocs = [r["val_micro_auroc"] for r in rows]
    assert sizes == sorted(sizes) and aurocs == sorted(aurocs)  # along the front, bigger must be better


def test_export_best_writes_a_working_model_directory(finished, tmp_path: Path) -> None:
    workspace, name, _ = finished
    out = run([*ECGSEARCH, "export", "--best", "--study-name", name, "--workspace", str(workspace),
               "--out", str(tmp_path / "best")], environment(None))  # fmt: skip
    assert out.returncode == 0, out.stderr
    info = json.loads((tmp_path / "best" / "model.json").read_text())
    study = sqlite_study(workspace, name)
    top = max(t.user_attrs["val_micro_auroc"] for t in study.get_trials())
    assert info["exported_from"]["study"] == name
    assert study.get_trials()[info["exported_from"]["trial"]].user_attrs["val_micro_auroc"] == top
    assert (tmp_path / "best" / "model.onnx").stat().st_size > 0
    # Half the smallest trained model: the tiny space can draw models far below any fixed figure.
    budget = f"{min(t.values[1] for t in study.get_trials() if t.values) / 2:.4g}"
    small = run([*ECGSEARCH, "export", "--best", "--max-mb", budget, "--study-name", name, "--workspace",
                 str(workspace), "--out", str(tmp_path / "none")], environment(None))  # fmt: skip
    assert small.returncode == 2 and f"no trained feasible trial within {budget} MB" in small.stderr


def test_hypervolume_hand_worked_on_auroc_and_log_size() -> None:
    from ecgsearch.analysis.hypervolume import hypervolume

    assert hypervolume([(0.75, 6.4)]) == pytest.approx(0.25 * 1.0)
    two = [(0.75, 6.4), (0.6, 0.64)]
    assert hypervolume(two) == pytest.approx(0.25 * 1.0 + 0.1 * 2.0 - 0.1 * 1.0)
    assert hypervolume([*two, (0.7, 6.4), (0.45, 0.01), (0.9, 100.0)]) == pytest.approx(hypervolume(two))
    assert hypervolume([]) == 0.0


def test_report_shows_front_thesis_configs_and_hypervolume(finished, tmp_path: Path) -> None:
    from ecgsearch.analysis.report import report_data

    workspace, name, _ = finished
    out = run([*ECGSEARCH, "report", "--study-name", name, "--workspace", str(workspace), "--out",
               str(tmp_path / "r.html")], environment(None))  # fmt: skip
    assert out.returncode == 0, out.stderr
    page = (tmp_path / "r.html").read_text()
    assert "Pareto front" in page and "Hypervolume on (val micro AUROC, log10 MB)" in page
    assert "Hypervolume in the study's objectives (val_micro_auroc, size_mb) by trial" in page
    assert "<td>E18</td><td>0.278</td><td>0.28</td>" in page and "<td>E1</td><td>-</td><td>33.78</td>" in page
    assert "only the sizes are comparable" in page
    study = sqlite_study(workspace, name)
    data = report_data(study)
    history = [v for _, v in data["hypervolume_history"]]
    # Never shrinks as trials are added; each value is summed afresh, so allow float rounding.
    assert all(later >= earlier - 1e-12 for earlier, later in itertools.pairwise(history)) and history[-1] > 0
    assert data["hypervolume"]["all"] == pytest.approx(history[-1])
    assert max(data["hypervolume"]["searched"], data["hypervolume"]["thesis"]) <= data["hypervolume"]["all"] + 1e-12
    for entry in data["thesis"].values():
        for trial in entry["dominated_by"]:
            other = next(r for r in data["rows"] if r.trial == trial)
            assert other.val_micro_auroc >= entry["measured"].val_micro_auroc
            assert other.size_mb <= entry["measured"].size_mb
        # One seed per trial here: nothing is robustly claimed.
        assert entry["robustly_dominated_by"] == []
    assert data["metric_names"] == study.metric_names == ["val_micro_auroc", "size_mb"]
    assert f'id="plain-count">{data["dominance"]["plain"]}</b>' in page and 'id="robust-count">0</b>' in page
    # Each figure once: on (AUROC, MB) the study's objectives' hypervolume is the one given, and
    # with no trial stopped early the curve by epochs is the curve by trial.
    assert "hv-objectives-searched" not in page and "No trial was stopped early" in page
    for exp, entry in data["thesis"].items():
        if entry["measured"] and entry["dominated_by"]:
            by_trial = {r.trial: r for r in data["rows"]}
            best = max(entry["dominated_by"], key=lambda t: (by_trial[t].val_micro_auroc, -t))
            row = page.split(f"<td>{exp}</td>")[1].split("</tr>")[0]
            assert f"<td>{len(entry['dominated_by'])} (best: {best})</td>" in row


ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
                  "--window-size=1400,1000"]  # fmt: skip


def start_dashboard(workspace: Path, name: str, *where: str, env: dict[str, str] | None = None):
    """A running `ecgsearch dashboard` and the URL it printed (with its token)."""
    server = subprocess.Popen([*ECGSEARCH, "dashboard", "--study-name", name, "--workspace", str(workspace), *where],
                              env=env or environment(None), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)  # fmt: skip
    printed = []
    for line in server.stdout:
        printed.append(line)
        if "/dashboard?token=" in line:
            return server, line.strip()
    raise AssertionError("no URL printed:\n" + "".join(printed))


def http(url: str, method: str = "GET", unix_socket: Path | None = None) -> tuple[int, bytes]:
    """Status and body of one request (to a Unix socket when given)."""
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    if unix_socket is None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    else:
        connection = http.client.HTTPConnection("localhost", timeout=10)
        connection.sock = socket.socket(socket.AF_UNIX)
        connection.sock.connect(str(unix_socket))
    try:
        connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_dashboard_in_a_headless_browser_shows_the_study_and_its_pareto_front(finished) -> None:
    """With the printed URL the page loads (a cookie carries the token on); without it, 403."""
    import shutil
    import urllib.parse

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver_path = shutil.which("chromedriver")
    assert driver_path and shutil.which("chromium"), "install Debian's chromium and chromium-driver (.ci/run does)"
    workspace, name, _ = finished
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server, url = start_dashboard(workspace, name, "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["token"][0]
    assert url == f"{base}/dashboard?token={token}" and len(token) >= 32
    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    browser = None
    try:
        status, body = http(f"{base}/api/studies?token={token}")
        assert status == 200, body
        study_id = next(s["study_id"] for s in json.loads(body)["study_summaries"] if s["study_name"] == name)
        for wrong in ("", "?token=", f"?token={token[:-1]}", f"?token={token}x"):
            assert http(f"{base}/dashboard{wrong}")[0] == 403
            assert http(f"{base}/api/studies{wrong}")[0] == 403
        # Another user on the machine, without the token, cannot delete the study.
        delete = f"import urllib.request as u; u.urlopen(u.Request('{base}/api/studies/{study_id}', method='DELETE'))"
        as_other = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
        refused = subprocess.run([*as_other, "/usr/bin/python3", "-c", delete], capture_output=True, text=True)
        assert "HTTP Error 403" in refused.stderr, refused.stderr
        assert len(sqlite_study(workspace, name).get_trials()) == 7

        browser = webdriver.Chrome(service=Service(driver_path), options=options)
        browser.get(url)
        WebDriverWait(browser, 30).until(lambda b: name in b.find_element(By.TAG_NAME, "body").text)
        browser.get(f"{base}/dashboard/studies/{study_id}")  # no token in this URL: the cookie carries it
        study = sqlite_study(workspace, name)

        def pareto_points(b) -> int:
            plots = b.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")
            return len(plots[0].find_elements(By.CSS_SELECTOR, "path.point")) if plots else 0

        WebDriverWait(browser, 30).until(lambda b: pareto_points(b) == len(study.get_trials()))
        body = browser.find_element(By.TAG_NAME, "body").text
        assert f"{name} (id={study_id})" in body and "Pareto Front" in body
        assert "val_micro_auroc" in body and "size_mb" in body  # the objectives carry their names
        for trial in study.best_trials:
            assert f"Trial {trial.number}\n" in body + "\n"  # listed under Best Trials
        ARTIFACTS.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))

        # The report, read at a glance: the main plot fills the page's width at a readable height,
        # and the E1-E18 table is a row per configuration (counts, not lists of trial numbers).
        from ecgsearch.analysis.report import write_report

        report = write_report(study, ARTIFACTS / "report.html")
        browser.get(report.as_uri())
        WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .main-svg"))
        scatter = browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")[0].size
        assert scatter["height"] >= 600 and scatter["width"] >= 1000, scatter
        rows = browser.find_elements(By.CSS_SELECTOR, "#thesis tr")
        assert len(rows) == 19 and max(row.size["height"] for row in rows[1:]) <= 2 * rows[1].size["height"]
        assert browser.save_screenshot(str(ARTIFACTS / "report.png"))
    finally:
        if browser is not None:
            browser.quit()
        server.terminate()
        server.wait(timeout=30)
    assert token not in server.stdout.read()  # printed once, never logged with a request


def test_dashboard_on_a_unix_socket_is_private_and_asks_for_the_token(finished, tmp_path: Path) -> None:
    workspace, name, _ = finished
    path = tmp_path / "dash.sock"
    token = "a-token-the-lab-chose-" + "x" * 10
    server, url = start_dashboard(workspace, name, "--socket", str(path),
                                  env=environment(None, ECGSEARCH_DASHBOARD_TOKEN=token))  # fmt: skip
    try:
        assert token not in url and url.endswith("/dashboard?token=<the token in $ECGSEARCH_DASHBOARD_TOKEN>")
        assert path.is_socket() and path.stat().st_mode & 0o777 == 0o600
        assert http(f"http://localhost/api/studies?token={token}", unix_socket=path)[0] == 200
        assert http("http://localhost/api/studies", unix_socket=path)[0] == 403
        assert http("http://localhost/api/studies/1", "DELETE", unix_socket=path)[0] == 403
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert not path.exists()


def test_the_python_api_reads_the_front_and_trials_and_exports_the_best(finished, tmp_path: Path) -> None:
    from ecgsearch import api
    from ecgsearch.analysis.results import best_trial, feasible_trained, pareto_rows
    from ecgsearch.errors import UserError

    workspace, name, _ = finished
    study = api.load_study(name, workspace=workspace)
    with pytest.raises(UserError, match=rf"no study 'nope' in sqlite:.*studies there: \['{name}'\]"):
        api.load_study("nope", workspace=workspace)
    front, rows = api.front(study), pareto_rows(study)
    assert list(front.index) == [r.trial for r in rows]  # the front `ecgsearch pareto` lists
    assert list(front["size_mb"]) == [r.size_mb for r in rows] and list(front["thesis"]) == [
        r.thesis or "" for r in rows
    ]
    trials = api.trials(study)
    assert sorted(trials.index) == sorted(t.number for t in feasible_trained(study)) and set(front.index) <= set(
        trials.index
    )
    # One seed each: the mean is the trial's own figure and there is no spread.
    assert (trials["seeds"] == 1).all() and trials["val_micro_auroc_sd"].isna().all()
    assert (trials["val_micro_auroc_mean"] == trials["val_micro_auroc"]).all() and trials["macs"].gt(0).all()
    out = api.export(study, tmp_path / "best")
    assert json.loads((out / "model.json").read_text())["exported_from"]["trial"] == best_trial(study).number
    assert (out / "model.onnx").stat().st_size > 0
    with pytest.raises(UserError, match="has no trial 99"):
        api.export(study, tmp_path / "none", trial=99)
