"""Check the course site as a reader meets it, in Chromium.

Where ``make book`` has run for this ``dpo_ref`` and every page is in its execution cache
(CI runs it first), the site is that build, rebuilt from the cache in seconds: nothing is
executed twice. Elsewhere (``make test`` alone on a fresh machine) it is ``make book``'s
build with ``--fast`` (``DPO_FAST=1``: the pages' shortened runs), warnings as errors,
into a temporary folder with a cache of its own: it executes the MyST pages and takes the
notebooks' outputs from the Colab check's ``llama`` runs (tests/test_colab.py, the same
session fixture), so each runs once. Checked: every page of the table of contents built,
every page taken from the execution cache, no traceback in any page's outputs, and in
headless Chromium typeset math, loaded figures, search, Colab buttons. Running every page
at full length, with every claim it makes asserted on its own run, is ``make book``'s job,
not the tests'.
"""

import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parent.parent
REPO_URL = yaml.safe_load((Path(__file__).parent.parent / "_config.yml").read_text())["repository"]["url"]


BUILD: dict = {}  # the site build's log, and whether it is make book's full build


def full_build_is_current() -> bool:
    """``make book``'s execution cache holds every page, at full length, for this
    ``dpo_ref``: its site can be rebuilt from the cache without executing anything."""
    import json

    import build_book  # scripts/, on the path (conftest.py)
    from execute_pages import toc_pages
    from jupyter_cache import get_cache

    build_dir = ROOT / "_build"
    try:
        stamp = json.loads((build_dir / build_book.STAMP).read_text())
    except (OSError, ValueError):
        return False
    if stamp != build_book.build_stamp(False) or not (build_dir / ".jupyter_cache").is_dir():
        return False
    cache = get_cache(str(build_dir / ".jupyter_cache"))
    return all(build_book.is_cached(cache, page) for page in toc_pages())


@pytest.fixture(scope="session")
def site(tmp_path_factory, toy_dir, colab_run):
    log = tmp_path_factory.mktemp("site") / "build.log"
    BUILD["full"] = full_build_is_current()
    if BUILD["full"]:  # make book's own site, rebuilt from its cache: nothing executes
        out, options = ROOT, []
    else:
        # As `make book` builds it (pages executed two at a time into a fresh cache, then
        # jupyter-book), but with the pages' shortened runs: fast pages take 10-100 s.
        # The notebooks already ran so in the Colab check: their outputs come from there.
        out = log.parent
        options = ["--fast", "--outputs-from", str(colab_run["keep"]), "--path-output",
                   str(out)]
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_book.py"), *options],
        capture_output=True, text=True, timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    log.write_text(result.stdout + result.stderr)
    BUILD["log"] = log
    return out / "_build" / "html"


@pytest.mark.slow
def test_the_site_build_takes_every_page_from_the_parallel_execution(site, colab_run):
    log = BUILD["log"].read_text()
    assert "Executing notebook" not in log  # jupyter-book found every page in the cache
    if BUILD["full"]:  # make book's cache: complete, so nothing ran again (and Sphinx,
        # its environment up to date, reads no notebook anew: no "Using cached" lines)
        assert "every page is in the execution cache" in log, log[-2000:]
        return
    assert log.count("Using cached notebook") >= 20
    kept = len(list(colab_run["keep"].glob("*.ipynb")))
    taken = re.search(r"took (\d+) of (\d+) notebooks' outputs from", log)
    assert taken and int(taken[1]) == kept, log[-2000:]  # every passed Colab run
    executed = re.search(r"executed (\d+) pages in \d+ s with 2 kernels", log)
    assert executed, log[-2000:]
    from execute_pages import toc_pages  # scripts/, on the path (conftest.py)

    # every page that executes but the kept notebooks: each page ran once in the session
    assert int(executed[1]) == len(toc_pages()) - kept, log[-2000:]


@pytest.mark.slow
def test_every_toc_page_is_built(site):
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    for name in files:
        assert (site / f"{name}.html").exists(), name


@pytest.mark.slow
def test_no_page_shows_a_traceback(site):
    """Error outputs are rendered as ``output traceback`` blocks; a traceback printed to
    stderr (a caught exception logged, a subprocess) shows up as its first line."""
    shown = []
    for page in sorted(site.rglob("*.html")):
        if "_static" in page.parts or "_sources" in page.parts:
            continue
        html = page.read_text(encoding="utf-8")
        text = re.sub(r"<[^>]+>", "", html)  # highlighting splits the text into spans
        if re.search(r'class="[^"]*\boutput traceback\b', html) or \
                "Traceback (most recent call last)" in text:
            shown.append(str(page.relative_to(site)))
    assert not shown, shown


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
