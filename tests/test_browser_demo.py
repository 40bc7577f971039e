"""The demo notebook as a person uses it: JupyterLab on localhost, `nbs/demo.ipynb` opened in headless Chromium
(Debian's `chromium` + `chromium-driver`, driven by selenium), all cells run, the widgets rendered, a prompt typed,
a bad image path entered. Screenshots go to benchmarks/results/demo/.

`.ci/run` installs the two Debian packages when they are missing; without them this test is skipped, saying so."""
import os, secrets, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT/"benchmarks"/"results"/"demo"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")


def _port():
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    "A JupyterLab server on localhost serving a copy of the demo (its autosave must not touch nbs/)."
    work = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT/"nbs"/"demo.ipynb", work/"demo.ipynb")
    port, token = _port(), secrets.token_hex(16)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline",
           "JUPYTER_CONFIG_DIR": str(work/".jupyter"), "JUPYTER_RUNTIME_DIR": str(work/".runtime")}
    env.pop("IN_TEST", None)   # the demo as a user runs it, not its headless test mode
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--allow-root",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    server = subprocess.Popen(cmd, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=open(work/"lab.log", "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try: urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2); break
        except OSError: time.sleep(0.5)
    else: pytest.fail(f"JupyterLab did not start: {(work/'lab.log').read_text()[-2000:]}")
    yield f"{url}/lab/tree/demo.ipynb?token={token}"
    server.terminate(); server.wait(30)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions(); opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100"): opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


def _wait(driver, find, timeout, what):
    "Poll `find()` until it returns something truthy; fail with `what` and a screenshot otherwise."
    end = time.time() + timeout
    while time.time() < end:
        try:
            got = find()
            if got: return got
        except Exception: pass
        time.sleep(0.5)
    driver.save_screenshot(str(SHOTS/"failure.png"))
    pytest.fail(f"timed out after {timeout} s waiting for {what} (screenshot: {SHOTS/'failure.png'})")


def _menu(driver, top: str, item: str):
    "Click JupyterLab's menu `top` -> `item`."
    from selenium.webdriver.common.by import By
    driver.find_element(By.XPATH, f"//div[contains(@class,'lm-MenuBar-itemLabel') and text()='{top}']").click()
    _wait(driver, lambda: driver.find_element(By.XPATH, f"//div[contains(@class,'lm-Menu-itemLabel') and text()='{item}']"),
          10, f"menu item {item}").click()


def _text_widget(driver, label: str):
    "The <input> of the ipywidgets Text whose description is `label`."
    from selenium.webdriver.common.by import By
    return driver.find_element(By.XPATH, f"//div[contains(@class,'widget-text')][.//label[normalize-space()='{label}']]//input")


def _view_image(driver):
    "The src of the figure in the demo's view (the ipywidgets Output), or None."
    from selenium.webdriver.common.by import By
    imgs = driver.find_elements(By.CSS_SELECTOR, ".widget-output img, .jupyter-widgets-output-area img")
    return imgs[-1].get_attribute("src") if imgs else None


def test_demo_in_a_real_browser(lab, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.get(lab)
    _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell"), 120, "the notebook to open")
    time.sleep(2)   # the kernel chooser, if any, opens just after the notebook (a cleaned notebook names no kernel)
    for accept in browser.find_elements(By.CSS_SELECTOR, ".jp-Dialog .jp-mod-accept"): accept.click()
    _wait(browser, lambda: "Idle" in browser.find_element(By.CSS_SELECTOR, ".jp-StatusBar-Widget, #jp-main-statusbar").text
          or browser.find_elements(By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator[data-status='idle']"), 120, "the kernel")
    _menu(browser, "Run", "Run All Cells")
    first = _wait(browser, lambda: _view_image(browser), 300, "the first overlay image in the widget view")
    prompts = _wait(browser, lambda: _text_widget(browser, "prompts"), 30, "the prompts text box")
    assert _text_widget(browser, "image").get_attribute("value") == "0"
    assert browser.find_elements(By.CSS_SELECTOR, ".widget-hslider, .jupyter-widgets.widget-slider")   # the τ / steps / ensemble sliders
    browser.save_screenshot(str(SHOTS/"1_first_overlay.png"))

    prompts.click(); prompts.send_keys(Keys.CONTROL, "a"); prompts.send_keys("red circle, blue star, green ring", Keys.ENTER)
    _wait(browser, lambda: (_view_image(browser) or first) != first, 120, "the image to change after a new prompt")
    browser.save_screenshot(str(SHOTS/"2_new_prompt.png"))

    source = _text_widget(browser, "image")
    source.click(); source.send_keys(Keys.CONTROL, "a"); source.send_keys("no/such/file.png", Keys.ENTER)
    msg = _wait(browser, lambda: [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".widget-output, .jupyter-widgets-output-area")
                                  if "error:" in e.text], 60, "the error message in the view")
    assert "`source` must be a mini-world index or an image file path" in msg[0], msg
    browser.save_screenshot(str(SHOTS/"3_bad_path.png"))
