"""Build the course site as an instructor does (every page and notebook executed, warnings are errors) and
check it as a reader meets it, in headless Chromium: typeset math, loaded figures, search, Colab buttons."""

import functools
import http.server
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parent.parent
REPO_URL = yaml.safe_load((Path(__file__).parent.parent / "_config.yml").read_text())["repository"]["url"]


@pytest.fixture(scope="session")
def site(tmp_path_factory, toy_dir):
    out = tmp_path_factory.mktemp("site")
    # As `make book` builds it: pages executed two at a time into a fresh cache, then jupyter-book.
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_book.py"), "--path-output", str(out)],
        capture_output=True, text=True, timeout=2700,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    (out / "build.log").write_text(result.stdout + result.stderr)
    return out / "_build" / "html"


@pytest.mark.slow
def test_the_site_build_takes_every_page_from_the_parallel_execution(site):
    log = (site.parent.parent / "build.log").read_text()
    assert "executed" in log and "with 2 kernels" in log
    assert "Executing notebook" not in log  # jupyter-book found every page in the cache
    assert log.count("Using cached notebook") >= 20


@pytest.mark.slow
def test_every_toc_page_is_built(site):
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    for name in files:
        assert (site / f"{name}.html").exists(), name


@pytest.fixture(scope="session")
def browser(site):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(60)
    driver.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield driver
    driver.quit()
    server.shutdown()


def wait_for(driver, script, timeout=30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script))


@pytest.mark.slow
def test_derivation_math_is_typeset(browser):
    browser.get(f"{browser.base}/book/03_deriving_dpo.html")
    # MathJax 3 replaces each formula by an <mjx-container>; raw TeX left on the page means it did not run.
    count = wait_for(browser, "const n = document.querySelectorAll('mjx-container').length; return n > 20 ? n : 0;")
    assert count > 20


@pytest.mark.slow
def test_notebook_figures_load(browser):
    browser.get(f"{browser.base}/notebooks/06_1_identity.html")
    wait_for(browser, "return document.readyState === 'complete';")
    sizes = browser.execute_script(
        "return [...document.querySelectorAll('article img, .bd-article img')]"
        ".filter(i => !i.src.includes('colab-badge')).map(i => [i.src, i.complete && i.naturalWidth]);")
    assert sizes, "no figures on the notebook page"
    assert all(width and width > 100 for _, width in sizes), sizes


@pytest.mark.slow
def test_search_finds_bradley(browser):
    browser.get(f"{browser.base}/search.html?q=Bradley")
    hits = wait_for(browser, "const l = document.querySelectorAll('#search-results li'); return l.length ? [...l].map(x => x.innerText) : null;", 60)
    assert any("Bradley" in hit for hit in hits)


@pytest.mark.slow
def test_colab_button_points_at_the_notebook(browser):
    browser.get(f"{browser.base}/notebooks/06_2_sigma_ablation.html")
    wait_for(browser, "return document.readyState === 'complete';")
    hrefs = browser.execute_script("return [...document.querySelectorAll('a')].map(a => a.href).filter(h => h.includes('colab.research.google.com'));")
    expected = REPO_URL.replace("https://github.com/", "https://colab.research.google.com/github/") + "/blob/main/notebooks/06_2_sigma_ablation.ipynb"
    assert expected in hrefs, hrefs
    browser.get(f"{browser.base}/book/03_deriving_dpo.html")  # a markdown chapter: Colab cannot open .md
    wait_for(browser, "return document.readyState === 'complete';")
    assert not browser.execute_script("return [...document.querySelectorAll('.dropdown-launch-buttons a')].filter(a => a.href.includes('colab')).length;")
