"""The dashboard in a real headless browser (Debian's chromium through Selenium).

Skipped, saying why, where chromium, its driver or selenium is missing. Set
REPLAY_BUFFER_SCREENSHOT=path.png to keep a screenshot of the page (docs/dashboard.png is one).
"""

import os
import shutil
import threading
import time

import numpy as np
import pytest
from service_support import ThreadedServer

from replay_buffer import BufferConfig, ReplayBuffer
from replay_buffer.metrics import MonitorServer
from replay_buffer.service import connect

from conftest import counter_transition

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    BROWSER is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


def batch(n: int, first: int = 0) -> dict:
    rows = [counter_transition(first + i) for i in range(n)]
    return {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]}


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1400"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    yield driver
    driver.quit()


def text_of(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def wait_until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the page did not update"
        time.sleep(0.1)


def test_the_page_shows_the_buffer_live(browser):
    config = BufferConfig(capacity=5000, strategy="prioritized", samples_per_insert=2.0,
                          error_buffer=500.0, min_size_to_sample=100,
                          rate_limit_timeout=1.0)  # fmt: skip
    buffer = ReplayBuffer(config, obs_shape=(4,), action_dim=2)
    server = ThreadedServer(buffer)
    monitor = MonitorServer(server.server.figures_from(server.loop), "127.0.0.1:0")
    stop = threading.Event()

    def actor() -> None:
        with connect(server.unix_url) as client:
            i = 0
            while not stop.is_set():
                client.add_batch(**batch(20, first=i))
                i += 20
                time.sleep(0.01)

    def learner() -> None:  # faster than the actor: the rate limiter holds it back
        rng = np.random.default_rng(0)
        with connect(server.unix_url) as client:
            while not stop.is_set():
                try:
                    keys = client.sample(16)["indices"]
                except TimeoutError:
                    continue
                client.update_priorities(keys, td_errors=rng.exponential(size=16))
                if keys[0] % 7 == 0:
                    try:
                        client.sample(0)  # an error for the "last errors" list
                    except ValueError:
                        pass

    workers = [threading.Thread(target=actor), threading.Thread(target=learner)]
    try:
        for worker in workers:
            worker.start()
        browser.get(monitor.url + "/")
        wait_until(lambda: text_of(browser, "sample-rate") not in ("-", ""))
        time.sleep(8 if os.environ.get("REPLAY_BUFFER_SCREENSHOT") else 2.5)  # chart history
        assert browser.find_element("id", "server-card").is_displayed()
        assert browser.find_element("id", "priority-card").is_displayed()
        if path := os.environ.get("REPLAY_BUFFER_SCREENSHOT"):
            browser.save_screenshot(path)
        stop.set()
        for worker in workers:
            worker.join(30)
        # Nothing moves now: the page's numbers equal stats() once it has polled again.
        stats = buffer.stats()
        expected = f"{stats['inserted']:,}"
        wait_until(lambda: text_of(browser, "inserted") == expected)
        assert text_of(browser, "sampled") == f"{stats['sampled']:,}"
        assert text_of(browser, "capacity") == "5,000"
        assert int(text_of(browser, "size").replace(",", "")) == stats["size"]
        assert "ValueError" in text_of(browser, "errors")
        # And they change while a writer runs.
        with connect(server.unix_url) as client:
            client.add_batch(**batch(50))
        wait_until(lambda: text_of(browser, "inserted") == f"{stats['inserted'] + 50:,}")
        assert "not updating" not in text_of(browser, "status")
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
        monitor.close()
        server.stop()
        buffer.close()
