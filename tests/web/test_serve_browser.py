"""`mimicbrush serve` in a real browser: Debian's Chromium driven by Selenium, the server started as
a user starts it (a subprocess of the CLI) with the tiny model on a free local port."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mimicbrush_cli.imaging import load_image, load_mask

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SOURCE, REFERENCE = EXAMPLES / "motorcycle_left.png", EXAMPLES / "motorcycle_right.png"
# The paste-back blurs the mask 10 times with a 3x3 Gaussian: it reaches at most 10 px beyond the mask.
BLEND_REACH = 10


def browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("the browser tests need Chromium and its driver: apt-get install -y chromium chromium-driver "
                    "(scripts/setup.sh and .ci/run install them)")
    return chromium, driver


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    with open(log, "w") as handle:
        process = subprocess.Popen([sys.executable, "-m", "mimicbrush_cli", "serve", "--weights", str(tiny_model_dir),
                                    "--port", str(port), "--device", "cpu", "--max-upload-mb", "1",
                                    "--max-megapixels", "1"], stdout=handle, stderr=subprocess.STDOUT,
                                   env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                pytest.fail(f"mimicbrush serve exited with {process.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"mimicbrush serve did not answer within 180 s:\n{log.read_text()}")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver

    chromium, driver_path = browser_paths()
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,2000"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=webdriver.ChromeService(driver_path), options=options)
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(condition, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def status_text(browser) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, "status").text


def upload(browser, element_id: str, path: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, f"#{element_id} input[type=file]").send_keys(str(path))


def paint_stroke(browser, editor_id: str = "source", below: int = 0) -> None:
    """Drag the brush across the middle of an editor's picture (or `below` pixels of the screen lower), left to
    right."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, f"#{editor_id} button[title='Brush']").click()
    canvas = wait_for(lambda: [c for c in browser.find_elements(By.CSS_SELECTOR, f"#{editor_id} canvas")
                               if c.size["width"]], what=f"the canvas of #{editor_id}")[-1]
    actions = ActionChains(browser).move_to_element_with_offset(canvas, -60, below).click_and_hold()
    for step in range(1, 13):
        actions.move_by_offset(10, 0)
    actions.release().perform()


def set_number(browser, element_id: str, value: int) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    field = browser.find_element(By.CSS_SELECTOR, f"#{element_id} input[type=number]")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(str(value), Keys.TAB)


def run_edit(browser) -> str:
    from selenium.webdriver.common.by import By

    # The last edit's "done" line is no answer: wait for the status to change (the page says "editing…" at
    # the click), then for this edit's outcome.
    before = status_text(browser)
    browser.find_element(By.ID, "run").click()
    changed = False

    def outcome():
        nonlocal changed
        text = status_text(browser)
        changed = changed or text != before
        return changed and text.startswith(("done", "error")) and text

    return wait_for(outcome, timeout=120, what="the edit to finish")


def click_box(browser, picker_id: str, field_id: str, first: tuple[int, int], second: tuple[int, int]) -> str:
    """Click two corners (offsets from the centre) on a picker's picture; the box its text field then holds."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    picture = browser.find_element(By.CSS_SELECTOR, f"#{picker_id} img")
    ActionChains(browser).move_to_element_with_offset(picture, *first).click().perform()
    time.sleep(1)
    ActionChains(browser).move_to_element_with_offset(picture, *second).click().perform()
    field = browser.find_element(By.CSS_SELECTOR, f"#{field_id} textarea, #{field_id} input")
    return wait_for(lambda: field.get_attribute("value"), what=f"the box clicked on #{picker_id}")


def download(browser, element_id: str, name: str) -> Path:
    from selenium.webdriver.common.by import By

    for old in browser.downloads.glob(name):
        old.unlink()
    browser.find_element(By.CSS_SELECTOR, f"#{element_id}").click()
    return wait_for(lambda: next(iter(browser.downloads.glob(name)), None), what=f"the download of {name}")


def test_paint_edit_download_and_recover_from_bad_uploads(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server)
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#source input[type=file]"), what="the page")
    time.sleep(2)  # a user's first upload comes after gradio has wired the page's events
    # A file chosen before the page has wired its events reaches the editor without its upload event
    # (which shows the source in the box picker): clear the editor and choose it again.
    for attempt in range(3):
        upload(browser, "source", SOURCE)
        try:
            wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#box-picker img"), timeout=10,
                     what="the source in the box picker")
            break
        except AssertionError:
            if attempt == 2:
                raise
            browser.find_element(By.CSS_SELECTOR, "#source button[title='Clear canvas']").click()
            wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#source button[title='Upload']"),
                     what="the cleared editor")
    upload(browser, "reference", REFERENCE)
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#reference img"), what="the reference preview")
    paint_stroke(browser)
    set_number(browser, "steps", 4)

    assert run_edit(browser).startswith("done"), status_text(browser)
    assert browser.find_elements(By.CSS_SELECTOR, "#before-after img")
    command = browser.find_element(By.ID, "command").text
    assert re.search(r"mimicbrush edit source\.png reference\.png mask\.png -o edited\.png --steps 4", command), command

    result = np.asarray(Image.open(download(browser, "download-result", "edited*.png")).convert("RGB"))
    mask = load_mask(download(browser, "download-mask", "mask*.png"))
    source = load_image(SOURCE)
    assert result.shape == source.shape
    # The stroke: a horizontal band through the middle of the source.
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert 0 < rows.size < source.shape[0] // 3 and cols.size > source.shape[1] // 10
    assert rows[0] < source.shape[0] // 2 < rows[-1]
    reach = cv2.dilate(mask.astype(np.uint8), np.ones((2 * BLEND_REACH + 1,) * 2, np.uint8)).astype(bool)
    np.testing.assert_array_equal(result[~reach], source[~reach])
    assert not np.array_equal(result[mask], source[mask])

    # A text file offered as the reference: one line in the page, and the server keeps serving.
    notes = browser.downloads / "notes.png"
    notes.write_text("not an image\n")
    upload(browser, "reference", notes)
    wait_for(lambda: "not a readable image" in status_text(browser), what="the upload error")
    assert status_text(browser) == "error: reference image notes.png is not a readable image"
    # Over the server's limits: a 2.4 MB file (--max-upload-mb 1), a 1.2 MP image (--max-megapixels 1).
    noise = browser.downloads / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (800, 1000, 3), dtype=np.uint8)).save(noise)
    assert noise.stat().st_size > 2 * 1024 * 1024
    upload(browser, "reference", noise)
    wait_for(lambda: any("exceed the maximum allowed size" in toast.text
                         for toast in browser.find_elements(By.CSS_SELECTOR, ".toast-body")), what="the size error")
    large = browser.downloads / "large.png"
    Image.new("RGB", (1200, 1000), (90, 120, 200)).save(large)
    upload(browser, "reference", large)
    wait_for(lambda: "over the limit" in status_text(browser), what="the pixel-count error")
    assert status_text(browser) == "error: reference image large.png is 1200x1000 = 1.2 MP, over the limit of 1.0 MP"

    upload(browser, "reference", REFERENCE)
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#reference img"), what="the reference preview")
    assert run_edit(browser).startswith("done"), status_text(browser)


def test_bundled_example_edits_with_its_own_mask_a_clicked_box_and_a_painted_reference_hint(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(server)
    wait_for(lambda: browser.find_elements(By.ID, "load-example"), what="the page").pop().click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#mask-image img"), what="the example's mask")
    set_number(browser, "steps", 4)
    assert run_edit(browser).startswith("done"), status_text(browser)
    mask = load_mask(download(browser, "download-mask", "mask*.png"))
    np.testing.assert_array_equal(mask, load_mask(EXAMPLES / "motorcycle_mask.png"))

    # Two clicks on the picture give a box, which replaces the example's mask.
    box_text = click_box(browser, "box-picker", "mask-box", (-40, -20), (30, 25))
    x0, y0, x1, y1 = (int(value) for value in box_text.split(","))
    assert x0 < 741 // 2 < x1 and y0 < 500 // 2 < y1 and x1 - x0 > 741 // 10, box_text
    assert run_edit(browser).startswith("done"), status_text(browser)
    mask = load_mask(download(browser, "download-mask", "mask*.png"))
    expected = np.zeros((500, 741), bool)
    expected[y0:y1, x0:x1] = True
    np.testing.assert_array_equal(mask, expected)

    # A stroke painted on the reference is a reference hint: the command line names it, and it downloads.
    paint_stroke(browser, "reference-region")
    assert run_edit(browser).startswith("done"), status_text(browser)
    assert "--reference-mask reference_mask.png" in browser.find_element(By.ID, "command").text
    region = load_mask(download(browser, "download-reference-region", "reference_mask*.png"))
    reference = load_image(EXAMPLES / "motorcycle_right.png")
    assert region.shape == reference.shape[:2]
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    assert 0 < rows.size < reference.shape[0] // 3 and cols.size > reference.shape[1] // 10
    assert rows[0] < reference.shape[0] // 2 < rows[-1]
    # A typed box is used instead of the painting.
    field = browser.find_element(By.CSS_SELECTOR, "#reference-box textarea, #reference-box input")
    field.send_keys("10,20,200,180")
    assert run_edit(browser).startswith("done"), status_text(browser)
    command = browser.find_element(By.ID, "command").text
    assert "--reference-box 10,20,200,180" in command and "--reference-mask" not in command
    # Clearing the reference's editor clears the painting, not the reference's picture: a stroke painted after
    # it, lower down, is the hint alone, at the reference's size.
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    browser.find_element(By.CSS_SELECTOR, "#reference-region button[title='Clear canvas']").click()
    time.sleep(2)
    paint_stroke(browser, "reference-region", below=60)
    assert run_edit(browser).startswith("done"), status_text(browser)
    assert "--reference-mask reference_mask.png" in browser.find_element(By.ID, "command").text
    lower = load_mask(download(browser, "download-reference-region", "reference_mask*.png"))
    rows = np.flatnonzero(lower.any(axis=1))
    assert lower.shape == reference.shape[:2] and rows.size and rows[0] > reference.shape[0] // 2, rows
