"""The report in a real headless browser (Debian's chromium and chromium-driver, driven by selenium),
served on localhost: pages load without console errors, tables sort and filter, screenshots are taken.
Skipped, with the reason, where chromium is not installed; .ci/run installs it so CI runs these."""

from __future__ import annotations

import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from kernelbench.cli import main
from test_report import built_site

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver; "
                ".ci/run does)", allow_module_level=True)

from selenium.webdriver.chrome.service import Service  # noqa: E402  (only once selenium is known to be there)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

# The flags a sandboxed machine needs: no GPU, no network chatter, a fresh profile (added per test run).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1360,1000")


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):   # keep the test output to what failed
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The report (`kb report --html`) and the one-file overview (`kb leaderboard --html`), on localhost."""
    db, site = built_site(tmp_path_factory)
    result = CliRunner().invoke(main, ["--db", str(db), "leaderboard", "--html", str(site / "board.html")])
    assert result.exit_code == 0, result.output
    (site / "broken.html").write_text("<!doctype html><title>broken</title><script>undefinedFunction();</script>")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", site
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + (f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def load(browser, url: str) -> list[str]:
    """Open a page; return the errors its console reported (uncaught exceptions, failed loads)."""
    browser.get_log("browser")               # forget what earlier pages said
    browser.get(url)
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def column(browser, table: str, index: int) -> list[str]:
    return [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr td:nth-child({index})")
            if cell.is_displayed()]


def header(browser, table: str, label: str):
    [th] = [th for th in browser.find_elements(By.CSS_SELECTOR, f"#{table} thead th") if th.text.startswith(label)]
    return th


def screenshot(browser, path: Path) -> None:
    assert browser.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000


def test_console_errors_are_seen(browser, server):
    """The check below is only worth something if a page that throws is caught by it."""
    url, _ = server
    errors = load(browser, f"{url}/broken.html")
    assert any("undefinedFunction" in message for message in errors)


def test_overview_loads_sorts_and_filters(browser, server, tmp_path):
    url, _ = server
    assert load(browser, f"{url}/index.html") == []
    assert browser.execute_script("return document.querySelector('.chart img').naturalWidth") > 500
    tasks = column(browser, "tasks", 1)
    assert len(tasks) == 4

    score = header(browser, "tasks", "S")
    score.find_element(By.TAG_NAME, "button").click()          # numbers: largest first
    assert score.get_attribute("aria-sort") == "descending"
    scores = [float(s) for s in column(browser, "tasks", 5)]
    assert scores == sorted(scores, reverse=True) and column(browser, "tasks", 1)[0] == "002_gpu_rmsnorm"
    score.find_element(By.TAG_NAME, "button").click()
    assert score.get_attribute("aria-sort") == "ascending"
    assert [float(s) for s in column(browser, "tasks", 5)] == sorted(scores)

    t_k = header(browser, "tasks", "T_k")
    t_k.find_element(By.TAG_NAME, "button").click()            # missing values ("—") sort last either way
    assert column(browser, "tasks", 8)[-2:] == ["—", "—"]
    t_k.find_element(By.TAG_NAME, "button").click()
    assert column(browser, "tasks", 8)[-2:] == ["—", "—"]

    name = header(browser, "tasks", "task")
    name.find_element(By.TAG_NAME, "button").click()
    assert column(browser, "tasks", 1) == sorted(tasks)

    box = browser.find_element(By.CSS_SELECTOR, '[data-filter="text"]')
    box.send_keys("rmsnorm")
    assert column(browser, "tasks", 1) == ["001_cpu_rmsnorm", "002_gpu_rmsnorm"]
    assert browser.find_element(By.CSS_SELECTOR, ".shown").text == "2 of 4 tasks shown"
    Select(browser.find_element(By.CSS_SELECTOR, 'select[data-filter="ranked"]')).select_by_value("no")
    assert column(browser, "tasks", 1) == [] and browser.find_element(By.CSS_SELECTOR, ".no-match").is_displayed()
    box.clear()
    assert column(browser, "tasks", 1) == ["003_flagged", "004_sparse"]
    screenshot(browser, tmp_path / "overview.png")


def test_task_page_loads_and_sorts(browser, server, tmp_path):
    url, site = server
    [page] = (site / "tasks").glob("*002_gpu_rmsnorm*.html")
    assert load(browser, f"{url}/tasks/{page.name}") == []
    assert browser.execute_script("return document.querySelector('.chart img').naturalWidth") > 500
    assert browser.find_elements(By.CSS_SELECTOR, ".highlight .kn")      # the source, highlighted
    t_k = header(browser, "workloads", "T_k")
    t_k.find_element(By.TAG_NAME, "button").click()
    assert column(browser, "workloads", 1) == ["w3", "w2", "w1"]       # slowest first
    screenshot(browser, tmp_path / "task.png")
    browser.find_element(By.LINK_TEXT, "← leaderboard").click()
    assert browser.current_url.endswith("/index.html")


def test_every_page_and_the_one_file_overview_load_cleanly(browser, server):
    url, site = server
    for page in sorted((site / "tasks").glob("*.html")):
        assert load(browser, f"{url}/tasks/{page.name}") == [], page.name
    assert load(browser, f"{url}/board.html") == []
    assert browser.execute_script("return document.querySelector('.chart img').naturalWidth") > 500
    header(browser, "tasks", "S").find_element(By.TAG_NAME, "button").click()
    assert column(browser, "tasks", 1)[0] == "002_gpu_rmsnorm"
