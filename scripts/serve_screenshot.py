"""Write docs/serve.png: `mimicbrush serve` with the bundled demo model, after an edit of the bundled
motorcycle example with a reference hint painted across the middle of the reference, as Chromium shows it.
Needs the [test] extra and Debian's Chromium (scripts/setup.sh).

    .venv/bin/python scripts/serve_screenshot.py [docs/serve.png]
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

WIDTH = 800  # pixels of the saved picture; a 256-colour PNG of this width stays under 300 KB


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise SystemExit(f"timed out waiting for {what}")


def main(output: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "mimicbrush_cli", "serve", "--port", str(port)],
                              env=dict(os.environ, GRADIO_ANALYTICS_ENABLED="False"))
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,2400"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=webdriver.ChromeService("/usr/bin/chromedriver"), options=options)
    try:
        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
                    return True
            except OSError:
                return False

        wait_for(answers, 300, "the server")
        browser.get(f"http://127.0.0.1:{port}/")
        wait_for(lambda: browser.find_elements(By.ID, "load-example"), 60, "the page").pop().click()
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#reference img"), 60, "the example")
        time.sleep(2)
        # The hint: a stroke across the middle of the reference, in its own editor.
        browser.find_element(By.CSS_SELECTOR, "#reference-region button[title='Brush']").click()
        canvas = wait_for(lambda: [c for c in browser.find_elements(By.CSS_SELECTOR, "#reference-region canvas")
                                   if c.size["width"]], 60, "the reference's editor")[-1]
        stroke = ActionChains(browser).move_to_element_with_offset(canvas, -90, 0).click_and_hold()
        for _ in range(18):
            stroke.move_by_offset(10, 0)
        stroke.release().perform()
        browser.find_element(By.ID, "run").click()
        wait_for(lambda: browser.find_element(By.ID, "status").text.startswith(("done", "error")), 600, "the edit")
        time.sleep(2)
        page = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
        page = page.crop((0, 0, page.width, min(page.height, int(page.width * 1.8))))
        page = page.resize((WIDTH, round(page.height * WIDTH / page.width)), Image.Resampling.LANCZOS)
        output.parent.mkdir(parents=True, exist_ok=True)
        page.quantize(256, method=Image.Quantize.MEDIANCUT).save(output, optimize=True)
        print(f"wrote {output} ({output.stat().st_size // 1024} KB): {browser.find_element(By.ID, 'status').text}")
    finally:
        browser.quit()
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/serve.png"))
