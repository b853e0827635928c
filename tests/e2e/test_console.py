"""The console in a real browser: Debian's chromium, headless, driven through chromium-driver.

A sandbox of its own (its own run directory, free ports) runs both reference isvcs on the local
target with `up --console`, as a user starts it. The page is read and clicked as a user would:
the overview, langid's samples (✓), a log line appearing, a line holding `<script>` shown as
text, and stopping an isvc. The refusals (foreign Host, cross-site, no token) are plain HTTP.
Screenshots of each page go into the test's output folder.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox.runtime.processes import free_port

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT_S = 60
XSS = "<script>window.__xss=1</script>"


@dataclass
class Console:
    url: str
    port: int
    gateway_port: int
    env: dict[str, str]

    def cli(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "sandbox", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
        )

    def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None = None
    ) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, json.loads(raw) if raw.startswith(b"{") else {"raw": raw}
        finally:
            conn.close()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    run = tmp_path_factory.mktemp("console-run")
    env = {**os.environ, "SANDBOX_RUN_DIR": str(run)}
    gw, port = free_port(), free_port()
    c = Console(f"http://127.0.0.1:{port}/", port, gw, env)
    proc = c.cli("up", "--all", "--mediawiki", "replay", "--port", str(gw), "--console", str(port))
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield c
    finally:
        down = c.cli("down", timeout=300)
        assert down.returncode == 0, down.stderr
        assert "stopped the console" in down.stderr


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/prepare-tools.sh installs)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1400,1100",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, what: str, condition):
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    # A live part of the page (the overview, recent requests) may be redrawn while it is read.
    waiter = WebDriverWait(
        driver, WAIT_S, poll_frequency=0.2, ignored_exceptions=[StaleElementReferenceException]
    )
    try:
        return waiter.until(lambda d: condition(d))
    except TimeoutException:
        raise AssertionError(f"the page never showed {what}") from None


def text_of(driver, selector: str) -> str:
    """The text of the first match, read in one step (the overview is redrawn when it changes)."""
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';", selector
    )


def click(driver, selector: str) -> None:
    """Click the first match as a user does, again if a redraw replaced it in between."""
    from selenium.common.exceptions import StaleElementReferenceException

    def attempt(d) -> bool:
        try:
            css(d, selector)[0].click()
        except (IndexError, StaleElementReferenceException):
            return False
        return True

    wait(driver, f"a clickable {selector}", attempt)


def css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def state_of(driver, isvc: str) -> str | None:
    """The isvc's state badge on the overview (read in one step: the table is redrawn live)."""
    return driver.execute_script(
        "const b = document.querySelector(`tr[data-isvc='${arguments[0]}'] .isvc-state .badge`);"
        "return b ? b.dataset.state : null;",
        isvc,
    )


def screenshot(driver, folder: Path, name: str) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(int(height), 900), 6000))
    path = folder / name
    assert driver.save_screenshot(str(path)), f"no screenshot written to {path}"
    assert path.stat().st_size > 10_000
    driver.set_window_size(1400, 1100)


# -- security (plain HTTP) ------------------------------------------------------------------------
def test_foreign_host_and_cross_site_requests_are_refused(console: Console) -> None:
    own = {"Host": f"127.0.0.1:{console.port}"}
    # DNS rebinding: a foreign name that resolves to 127.0.0.1 reaches the server, and is refused.
    status, body = console.request("GET", "/api/session", {"Host": f"evil.example:{console.port}"})
    assert status == 403 and "Host" in body["error"]
    status, _ = console.request("GET", "/", {"Host": f"evil.example:{console.port}"})
    assert status == 403
    # A cross-site form post, without the token: refused, and langid keeps running.
    form = {"Content-Type": "text/plain", "Origin": "http://evil.example"}
    status, body = console.request(
        "POST",
        "/api/isvcs/langid/actions",
        {**own, **form, "Sec-Fetch-Site": "cross-site"},
        b'{"action": "stop"}',
    )
    assert status == 403, body
    # Without the browser's markers, the missing token alone refuses it.
    status, body = console.request(
        "POST",
        "/api/isvcs/langid/actions",
        {**own, "Content-Type": "application/json"},
        b'{"action": "stop"}',
    )
    assert status == 403 and "X-Console-Token" in body["error"]
    # The page's own token from another origin: refused too.
    status, session = console.request("GET", "/api/session", own)
    assert status == 200
    token = {"X-Console-Token": session["token"], "Content-Type": "application/json"}
    status, _ = console.request(
        "POST", "/api/isvcs/langid/actions", {**own, **token, **form}, b'{"action": "stop"}'
    )
    assert status == 403
    # Same origin with the token passes the guard (a bad action is then the handler's 400).
    status, body = console.request(
        "POST", "/api/isvcs/langid/actions", {**own, **token}, b'{"action": "explode"}'
    )
    assert status == 400 and "action must be one of" in body["error"]
    status, ov = console.request("GET", "/api/overview", own)
    langid = next(i for i in ov["isvcs"] if i["name"] == "langid")
    assert langid["state"] == "running"
    with urllib.request.urlopen(console.url, timeout=30) as r:
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]


# -- the page -------------------------------------------------------------------------------------
def test_overview_shows_every_isvc_and_the_platform(console, browser, tmp_path) -> None:
    browser.get(console.url)
    wait(browser, "both isvcs running", lambda d: state_of(d, "langid") == "running")
    wait(browser, "outlink running", lambda d: state_of(d, "outlink-topic-model") == "running")
    outlink = text_of(browser, 'tr[data-isvc="outlink-topic-model"]')
    assert "articletopic-outlink" in outlink
    assert "outlink-topic-model.articletopic-outlink.wikimedia.org" in outlink
    assert "transformer" in outlink and "predictor" in outlink
    gateway = f"http://127.0.0.1:{console.gateway_port}"
    assert browser.find_element("id", "gateway").text == gateway
    assert "replay" in browser.find_element("id", "mediawiki").text
    platform = set(
        browser.execute_script(
            "return [...document.querySelectorAll('tr[data-component]')]"
            ".map(r => r.dataset.component);"
        )
    )
    assert {"gateway", "mediawiki", "console", "predictor", "transformer"} <= platform
    wait(browser, "the live marker", lambda d: "live" in d.find_element("id", "live").text)
    screenshot(browser, tmp_path, "overview.png")


def test_langid_page_runs_its_samples_and_shows_new_log_lines(console, browser, tmp_path) -> None:
    browser.get(console.url + "#/isvc/langid")
    wait(browser, "the log history", lambda d: len(css(d, "#logview .logline")) > 0)
    samples = css(browser, "tr[data-sample]")
    assert len(samples) >= 3
    browser.find_element("id", "run-all").click()
    wait(
        browser,
        "a result for every sample",
        lambda d: all(c.get_attribute("data-result") for c in css(d, "td.sample-result")),
    )
    results = {
        row.get_attribute("data-sample"): row.find_element("css selector", "td.sample-result")
        for row in css(browser, "tr[data-sample]")
    }
    assert {n: c.get_attribute("data-result") for n, c in results.items()} == dict.fromkeys(
        results, "pass"
    )
    english = results["english"].text
    assert "✓ HTTP 200" in english and "✓ language: equals 'eng_Latn'" in english
    assert "✗" not in english
    # A request the predictor logs (its access log line names the query) appears live.
    marker = f"console-test-{uuid.uuid4().hex[:8]}"
    assert not any(marker in e.text for e in css(browser, "#logview .logline"))
    path = f"/v1/models/langid?{marker}"
    conn = http.client.HTTPConnection("127.0.0.1", console.gateway_port, timeout=30)
    conn.request("GET", path, headers={"Host": "langid.llm.wikimedia.org"})
    assert conn.getresponse().status == 200
    conn.close()
    wait(
        browser,
        "the predictor's new log line",
        lambda d: any(marker in e.text for e in css(d, "#logview .logline")),
    )
    internal = browser.find_element("id", "curl-internal").text
    assert "-H 'Host: langid.llm.wikimedia.org'" in internal
    assert f"127.0.0.1:{console.gateway_port}/v1/models/langid:predict" in internal
    public = browser.find_element("id", "curl-public").text
    assert "/service/lw/inference/v1/models/langid:predict" in public
    wait(browser, "recent requests", lambda d: len(css(d, "#requests tr.request-row")) > 0)
    assert css(browser, "#recent svg.chart rect.bar")
    screenshot(browser, tmp_path, "isvc-langid.png")


def test_a_log_line_holding_script_is_shown_as_text(console, browser, tmp_path) -> None:
    from selenium.webdriver.support.ui import Select

    conn = http.client.HTTPConnection("127.0.0.1", console.gateway_port, timeout=30)
    conn.request("GET", f"/v1/models/{XSS}", headers={"Host": "langid.llm.wikimedia.org"})
    assert conn.getresponse().status == 404
    conn.close()
    browser.get(console.url + "#/isvc/langid")
    wait(browser, "the log selector", lambda d: css(d, "#log-component"))
    Select(browser.find_element("id", "log-component")).select_by_value("gateway")
    wait(
        browser,
        "the gateway's line with <script> as text",
        lambda d: any(XSS in e.text for e in css(d, "#logview .logline")),
    )
    wait(
        browser,
        "the request in the recent requests",
        lambda d: any(XSS in e.text for e in css(d, "#requests tr.request-row")),
    )
    assert browser.execute_script("return window.__xss") is None
    assert not css(browser, "#logview script, #requests script")
    screenshot(browser, tmp_path, "isvc-langid-gateway-log.png")


def test_stopping_an_isvc_from_the_page(console, browser, tmp_path) -> None:
    browser.get(console.url)
    wait(browser, "langid running", lambda d: state_of(d, "langid") == "running")
    click(browser, 'tr[data-isvc="langid"] button[data-action="stop"]')
    dialog = browser.find_element("id", "confirm")
    wait(browser, "the confirmation", lambda d: dialog.is_displayed())
    assert "Stop langid?" in dialog.text
    browser.find_element("id", "confirm-ok").click()
    wait(browser, "langid stopped", lambda d: state_of(d, "langid") == "stopped")
    wait(
        browser,
        "the action's success",
        lambda d: d.find_element("id", "activity-state").get_attribute("data-state") == "ok",
    )
    output = browser.find_element("id", "activity-output").text
    assert "down langid --target local" in output
    assert state_of(browser, "outlink-topic-model") == "running"
    status = console.cli("status", "--json")
    rows = json.loads(status.stdout)
    assert not [r for r in rows if r["isvc"] == "langid"]
    assert [r for r in rows if r["isvc"] == "outlink-topic-model" and r["state"] == "running"]
    time.sleep(0.5)
    screenshot(browser, tmp_path, "overview-langid-stopped.png")


def test_starting_it_again_from_the_page(console, browser) -> None:
    """Start runs `up` with the gateway's port and MediaWiki mode on record."""
    browser.get(console.url)
    wait(browser, "langid stopped", lambda d: state_of(d, "langid") == "stopped")
    click(browser, 'tr[data-isvc="langid"] button[data-action="start"]')
    wait(browser, "the confirmation", lambda d: d.find_element("id", "confirm").is_displayed())
    browser.find_element("id", "confirm-ok").click()
    wait(browser, "langid running again", lambda d: state_of(d, "langid") == "running")
    output = browser.find_element("id", "activity-output").text
    assert f"up langid --target local --port {console.gateway_port}" in output
    gateway = f"http://127.0.0.1:{console.gateway_port}"
    wait(browser, "the gateway", lambda d: d.find_element("id", "gateway").text == gateway)
