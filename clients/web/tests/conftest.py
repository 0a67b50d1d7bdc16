"""The web UI against a live lensd in a real browser: lensd (the Python client tests' server, plus
the demo SAE), the Streamlit app on a free loopback port, and Debian's chromium driven through
its chromedriver by Selenium. Screenshots go to $LENSD_TEST_ARTIFACTS (default
build/web-ui-screenshots)."""
import importlib.util
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
APP = REPO / "clients" / "web" / "lensd_ui" / "app.py"
SCREENSHOTS = pathlib.Path(os.environ.get("LENSD_TEST_ARTIFACTS",
                                          REPO / "build" / "web-ui-screenshots"))


def _python_client_server():
    """clients/python/tests/conftest.py's Server (one way to start a test lensd)."""
    spec = importlib.util.spec_from_file_location(
        "lensd_python_conftest", REPO / "clients" / "python" / "tests" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _streamlit_flags():
    """web_ui_flags from deploy/web_ui_env.sh, so the tests run the UI as users do."""
    out = subprocess.run(["bash", "-c", f'source "{REPO}/deploy/web_ui_env.sh" && '
                          'printf "%s\\n" "${web_ui_flags[@]}"'],
                         check=True, capture_output=True, text=True).stdout
    return out.split()


@pytest.fixture(scope="session")
def server():
    s = _python_client_server()("--saes=kjv-gpt2/res3-topk")
    # Enough text under the data root for a job that runs until it is cancelled.
    verse = "And God said, Let there be light: and there was light. "
    pathlib.Path(s.dir, "data", "long.jsonl").write_text(
        "".join(json.dumps({"text": verse * 8}) + "\n" for _ in range(5000)))
    yield s
    s.stop()


class WebUi:
    def __init__(self, server):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, LENSD_ADDRESS=server.address, LENSD_TOKEN=server.tokens["train"],
                   HOME=tempfile.mkdtemp(prefix="lensd-ui-home-"))
        self.log = open(pathlib.Path(server.dir, "web_ui.log"), "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(APP), *_streamlit_flags(),
             f"--server.port={self.port}", "--server.address=127.0.0.1"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                pass
            if self.process.poll() is not None or time.time() > deadline:
                raise RuntimeError("the web UI did not start:\n" +
                                   pathlib.Path(server.dir, "web_ui.log").read_text())
            time.sleep(0.2)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="session")
def web_ui(server):
    ui = WebUi(server)
    yield ui
    ui.stop()


def make_browser():
    """Debian's chromium, headless, through Debian's chromedriver (no browser download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1600,1300",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='lensd-chromium-')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(60)
    return driver


@pytest.fixture(scope="session")
def browser():
    driver = make_browser()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def client(server):
    import lensd
    with lensd.Client(server.address, token=server.tokens["train"], model="kjv-gpt2") as c:
        yield c
