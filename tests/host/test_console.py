"""The console in a real browser: Debian's chromium, headless, driven by
selenium through Debian's chromedriver (its path given, so nothing is
downloaded), against `brownout serve` and five real agents. Screenshots are
kept under each test's tmp dir."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc, wait_for
from tests.host.fleet import doc, live_faults
from tests.host.serveproc import OPERATOR, VIEWER, ServeProc

pytestmark = [pytest.mark.host, pytest.mark.concurrent]

CHROMEDRIVER = "/usr/bin/chromedriver"
CPU = pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=5))


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    assert shutil.which("chromium") and Path(CHROMEDRIVER).exists(), "tests/system-deps.sh"
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=DriverService(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def sign_in(b: WebDriver, serve: ServeProc, token: str) -> None:
    b.get(f"{serve.url}/console/login")
    b.find_element(By.ID, "token").send_keys(token)
    b.find_element(By.ID, "sign-in").click()
    WebDriverWait(b, 10).until(ec.presence_of_element_located((By.ID, "fleet")))


def texts(b: WebDriver, selector: str) -> list[str]:
    """The text of each match, read in one script: the live view re-renders
    its panel as events arrive, so elements found earlier can go stale."""
    found = b.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText)",
        selector,
    )
    return [str(t) for t in found]


def shot(b: WebDriver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    assert b.save_screenshot(str(path)) and path.stat().st_size > 1000
    return path


def test_the_fleet_page_lists_the_five_agents(
    serve: ServeProc, fleet: list[AgentProc], browser: WebDriver, tmp_path: Path
) -> None:
    sign_in(browser, serve, VIEWER)
    rows = browser.find_elements(By.CSS_SELECTOR, "#fleet tbody tr.agent")
    listed = sorted(r.find_element(By.TAG_NAME, "th").text for r in rows)
    assert listed == sorted(a.address for a in fleet)
    assert all("serving" in r.text for r in rows)
    assert browser.find_element(By.ID, "fleet-count").text == "5 agent(s): 5 serving."
    # Filtered by label, from memory: no agent is asked again for a page.
    browser.get(f"{serve.url}/console/?selector=role%3Dnone")
    assert browser.find_element(By.ID, "fleet-count").text.startswith("0 agent(s) match (of 5)")
    browser.get(f"{serve.url}/console/")
    [replica] = browser.find_elements(By.CSS_SELECTOR, "#replicas tbody tr.replica")
    assert replica.find_element(By.TAG_NAME, "th").text == f"{serve.ready['replica']} (this one)"
    assert "lost" not in replica.text and f"pid {serve.ready['pid']}" in replica.text
    shot(browser, tmp_path, "fleet")


def test_a_started_run_shows_its_step_advancing_live(
    serve: ServeProc, fleet: list[AgentProc], browser: WebDriver, tmp_path: Path
) -> None:
    d = doc(
        duration="60s", brownout={"lease-ttl": "3s", "ramp": {"steps": [40, 100], "hold": "3s"}}
    )
    assert serve.call("PUT", "/api/v1/experiments/ramp", {"experiment": d}).status == 200
    sign_in(browser, serve, OPERATOR)
    browser.get(f"{serve.url}/console/runs")
    browser.find_element(By.ID, "start").click()
    wait = WebDriverWait(browser, 30, poll_frequency=0.1)
    wait.until(lambda b: len(texts(b, "#steps tr.step")) >= 1)
    first = texts(browser, "#steps tr.step")[0]
    assert first.startswith("1\t40%"), first
    shot(browser, tmp_path, "run-step-1")
    # No reload: the page follows the event stream.
    wait.until(lambda b: len(texts(b, "#steps tr.step")) == 2)
    assert texts(browser, "#steps tr.step")[1].startswith("2\t100%")
    assert any("step 2/2: 100%" in e for e in texts(browser, "#events li"))
    shot(browser, tmp_path, "run-step-2")
    wait.until(lambda b: texts(b, "#run-status") == ["completed"])
    assert not live_faults(fleet)
    shot(browser, tmp_path, "run-completed")


def test_the_kill_switch_button_leaves_no_fault_within_a_second(
    serve: ServeProc, fleet: list[AgentProc], browser: WebDriver, tmp_path: Path
) -> None:
    for a in fleet:
        with a.client() as c:
            lease = c.acquire_lease("game-day", 60)
            c.inject(lease.lease_id, CPU, 60)
            c.inject(lease.lease_id, CPU, 60)
    assert len(live_faults(fleet)) == 10
    sign_in(browser, serve, OPERATOR)
    browser.find_element(By.ID, "ks-reason").send_keys("customer impact")
    browser.find_element(By.ID, "kill-switch-button").click()
    confirm = WebDriverWait(browser, 10).until(
        ec.element_to_be_clickable((By.ID, "confirm-kill-switch"))
    )
    shot(browser, tmp_path, "kill-switch-confirm")
    t0 = time.monotonic()
    confirm.click()
    assert wait_for(lambda: not live_faults(fleet), 1.0, 0.01), live_faults(fleet)
    took = time.monotonic() - t0
    assert took <= 1.0
    WebDriverWait(browser, 10).until(ec.presence_of_element_located((By.ID, "engaged-summary")))
    summary = browser.find_element(By.ID, "engaged-summary").text
    assert "10 fault(s) reverted on 5 of 5 agent(s)" in summary
    # The faults are another holder's: no lease of the service's to give up.
    assert "0 lease(s) of this service given up" in summary
    assert browser.find_element(By.ID, "ks-state").text == "ENGAGED"
    shot(browser, tmp_path, "kill-switch-engaged")
    browser.find_element(By.ID, "disengage").click()
    WebDriverWait(browser, 10).until(lambda b: texts(b, "#ks-state") == ["not engaged"])


def test_a_viewer_sees_no_kill_switch_button_and_the_api_refuses_it(
    serve: ServeProc, browser: WebDriver, tmp_path: Path
) -> None:
    sign_in(browser, serve, VIEWER)
    assert browser.find_elements(By.ID, "kill-switch-button") == []
    assert "not engaged" in browser.find_element(By.ID, "kill-switch").text
    shot(browser, tmp_path, "viewer")
    refused = serve.call(
        "POST", "/api/v1/kill-switch", {"engaged": True, "reason": "x"}, token=VIEWER
    )
    assert refused.status == 403 and "operator" in refused.body["error"]
    assert not serve.call("GET", "/api/v1/kill-switch", token=VIEWER).body["engaged"]


def test_console_pages_need_a_sign_in_and_reachable_by_keyboard(
    serve: ServeProc, browser: WebDriver
) -> None:
    browser.get(f"{serve.url}/console/runs")
    assert "/console/login" in browser.current_url
    token = browser.find_element(By.ID, "token")
    assert browser.find_element(By.CSS_SELECTOR, "label[for=token]").text == "API token"
    token.send_keys("wrong")
    browser.find_element(By.ID, "sign-in").click()
    # The click starts a navigation; the refusal is on the page that follows it.
    alert = WebDriverWait(browser, 10).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "[role=alert]"))
    )
    assert "not known" in alert.text
    sign_in(browser, serve, OPERATOR)
    # Tab from the top reaches the kill switch's reason and button.
    body = browser.find_element(By.TAG_NAME, "body")
    seen = set()
    for _ in range(15):
        body.send_keys("\ue004")  # Tab
        seen.add(browser.switch_to.active_element.get_attribute("id"))
    assert {"ks-reason", "kill-switch-button"} <= seen, seen


def test_a_console_form_without_its_check_value_changes_nothing(serve: ServeProc) -> None:
    """A cross-site form post, or a stale page, cannot engage the kill switch."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        f"{serve.url}/console/kill-switch/engage",
        data=b"csrf=forged&reason=x&confirm=yes",
        headers={
            "Cookie": f"brownout_token={OPERATOR}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 403 and b"check value is wrong" in err.value.read()
    assert not serve.call("GET", "/api/v1/kill-switch", token=VIEWER).body["engaged"]
