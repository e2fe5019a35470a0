"""The leaderboard web page in a real browser: headless Chromium driven by Selenium loads
`index.html` from file://, sorts a column, filters a paradigm, opens a row's details, and keeps a
screenshot (build/test-artifacts/leaderboard.png, or $MSDE_TEST_ARTIFACTS). Without a browser the
test fails and says how to install one (`.ci/run` installs it)."""

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from msde_bench.cli import main
from tests.test_leaderboard import make_result, write

ARTIFACTS = Path(os.environ.get("MSDE_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "build" / "test-artifacts"))


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                    None)
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail("no headless browser for the web page test: install Chromium and its driver (Debian: "
                    "apt-get install chromium chromium-driver; .ci/run does it)")
    opts = Options()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1100",
                "--allow-file-access-from-files"):
        opts.add_argument(arg)
    b = webdriver.Chrome(service=Service(driver), options=opts)
    yield b
    b.quit()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    d = tmp_path_factory.mktemp("results")
    evil = make_result(model="x<img src=q onerror=window.pwned=1>", nm=(0.3, 0.2), m=(0.2, 0.1))
    write(d, make_result(nm=(0.8, 0.7), m=(0.5, 0.4)), make_result(paradigm="contrastive", nm=(0.6, 0.5), m=(0.6, 0.5)),
          make_result(model="scn", nm=(0.7, 0.6), m=(0.3, 0.3)), evil)
    out = d.parent / "site" / "README.md"
    res = CliRunner().invoke(main, ["leaderboard", "--results", str(d), "--output", str(out)])
    assert res.exit_code == 0, res.output
    return out.parent / "index.html"


def _rows(browser):
    from selenium.webdriver.common.by import By

    return [[td.text for td in tr.find_elements(By.TAG_NAME, "td")] for tr in browser.find_elements(By.CSS_SELECTOR,
                                                                                                 "tr.row")]


def test_the_page_sorts_filters_and_shows_details_in_a_browser(browser, page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(page.as_uri())
    rows = _rows(browser)
    assert len(rows) == 4
    assert [r[1] for r in rows][:3] == ["resnet18", "resnet18", "scn"]  # ranked by masked accuracy: 0.55, 0.45, 0.3
    assert rows[0][2] == "contrastive" and rows[0][7].startswith("0.550 ± ")
    # a name from a result file is text, never markup
    assert browser.execute_script("return window.pwned === undefined")
    assert "x<img src=q onerror=window.pwned=1>" in [r[1] for r in rows]
    # sort by non-masked accuracy: descending on the first click, ascending on the second
    header = next(th for th in browser.find_elements(By.CSS_SELECTOR, "table.board th") if th.text == "non-masked")
    header.click()
    assert [r[6][:5] for r in _rows(browser)] == ["0.750", "0.650", "0.550", "0.250"]
    header.click()
    assert [r[6][:5] for r in _rows(browser)] == ["0.250", "0.550", "0.650", "0.750"]
    # filter one paradigm
    Select(browser.find_element(By.CSS_SELECTOR, "select[data-filter=paradigm]")).select_by_value("contrastive")
    assert [(r[1], r[2]) for r in _rows(browser)] == [("resnet18", "contrastive")]
    # a row's details: settings, per-fold numbers, a link to its result file
    browser.find_element(By.CSS_SELECTOR, "tr.row").click()
    details = browser.find_element(By.CSS_SELECTOR, "tr.details")
    assert "settings:" in details.text and "paradigm contrastive" in details.text  # a table of settings
    assert len(details.find_elements(By.CSS_SELECTOR, "table.folds tr")) == 3  # header + 2 folds
    link = details.find_element(By.TAG_NAME, "a").get_attribute("href")
    assert link.startswith("file://") and link.endswith(".json") and Path(link[len("file://"):]).is_file()
    Select(browser.find_element(By.CSS_SELECTOR, "select[data-filter=paradigm]")).select_by_value("")
    assert len(browser.find_elements(By.CSS_SELECTOR, "img.figure")) == 2
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "leaderboard.png"))
    assert (ARTIFACTS / "leaderboard.png").stat().st_size > 10_000


def test_the_page_is_one_self_contained_file(page):
    html = page.read_text()
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html  # no CDN
    assert "<script src" not in html and "<link" not in html and "data:image/svg+xml;base64," in html
    assert "<img src=q" not in html and "\\u003cimg src=q" in html  # in the JSON data, < escaped


def test_a_result_file_name_never_becomes_a_script_link(browser, tmp_path):
    """The page beside its result files (one folder): a file called `javascript:...json` is a relative
    link to that file, never a javascript: URL (it ran the script when clicked)."""
    from selenium.webdriver.common.by import By

    from msde_bench import results as R

    d = tmp_path / "one"
    d.mkdir()
    good = make_result(nm=(0.8, 0.7), m=(0.5, 0.4))
    R.write_json_atomic(d / "javascript:window.pwned=2;x.json", R.validate(R.seal(good, "2026-01-01", "test")))
    res = CliRunner().invoke(main, ["leaderboard", "--results", str(d), "--output", str(d / "README.md")])
    assert res.exit_code == 0, res.output
    browser.get((d / "index.html").as_uri())
    browser.find_element(By.CSS_SELECTOR, "tr.row").click()
    link = browser.find_element(By.CSS_SELECTOR, "tr.details a")
    href = link.get_attribute("href")
    assert href.startswith("file://") and href.endswith("javascript%3Awindow.pwned%3D2%3Bx.json"), href
    link.click()
    assert browser.current_url.startswith("file://")  # navigated to the file, ran nothing
    browser.get((d / "index.html").as_uri())
    assert browser.execute_script("return window.pwned === undefined")


@pytest.mark.parametrize("width", [1280, 390])
def test_the_page_never_scrolls_sideways(browser, page, width):
    """At a laptop's 1,280 px and a phone's 390 px the page itself never scrolls sideways: a wide table
    scrolls inside its own box (screenshots kept as artifacts)."""
    from selenium.webdriver.common.by import By

    browser.set_window_size(width, 900)
    try:
        browser.get(page.as_uri())
        browser.find_elements(By.CSS_SELECTOR, "tr.row")[0].click()  # a row's details open too
        page_width, view = browser.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert page_width <= view, (page_width, view)
        assert browser.execute_script("return document.querySelector('meta[name=viewport]') !== null")
        box = browser.find_element(By.CSS_SELECTOR, "div.scroll")
        assert box.find_element(By.CSS_SELECTOR, "table.board")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(ARTIFACTS / f"leaderboard-{width}px.png"))
    finally:
        browser.set_window_size(1400, 1100)


def test_a_rows_details_name_the_seed_and_list_the_options(browser, page):
    from selenium.webdriver.common.by import By

    browser.get(page.as_uri())
    browser.find_elements(By.CSS_SELECTOR, "tr.row")[0].click()
    details = browser.find_element(By.CSS_SELECTOR, "tr.details")
    heads = [th.text for th in details.find_elements(By.CSS_SELECTOR, "table.folds th")]
    assert heads[:2] == ["seed", "fold"]
    settings = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                for tr in details.find_elements(By.CSS_SELECTOR, "table.settings tr")]
    assert ["model", "resnet18"] in settings and not any("{" in value for _, value in settings)
    note = browser.find_element(By.CSS_SELECTOR, "p.note").text
    assert "`" not in note and "**" not in note


def test_the_page_shows_the_markdowns_columns_marks_and_notes(browser, tmp_path):
    """Issue 40 (14): one board model (board.table_view) for both renderings: the page shows the markdown
    table's columns (params included), its cells cell by cell with the same marks († ◦ ‡ and the row
    notes' numbers), the same bold bests, and the notes under the table."""
    import re

    from selenium.webdriver.common.by import By

    from msde_bench.mdtext import plain
    from msde_bench.metrics import summarise

    spread = make_result(model="scn", nm=(0.7, 0.6), m=(0.45, 0.3))
    spread["folds"][1]["train_seconds"] = 40.0  # 10 s and 40 s: the fold times spread widely (‡)
    spread["summary"] = summarise(spread["folds"])
    d = write(tmp_path / "r", make_result(nm=(0.8, 0.7), m=(0.5, 0.4)),
              make_result(paradigm="contrastive", nm=(0.6, 0.5), m=(0.6, 0.5)), spread,
              make_result(model="chance", nm=(0.2, 0.1), m=(0.15, 0.1)))
    notes = tmp_path / "notes.toml"
    notes.write_text('[[note]]\nparadigm = "contrastive"\ntext = "alignment **weight** from its paper"\n')
    out = tmp_path / "site" / "README.md"
    res = CliRunner().invoke(main, ["leaderboard", "--results", str(d), "--output", str(out), "--notes", str(notes)])
    assert res.exit_code == 0, res.output
    md = out.read_text()
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    header, body = lines[0], lines[1:]

    def cells(line):
        return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]

    def as_text(cell):  # what the markdown cell shows
        return plain(re.sub(r" ?<sup>(\d+)</sup>", r" \1", cell))

    browser.get((out.parent / "index.html").as_uri())
    heads = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "table.board th")]
    assert heads == [as_text(c) for c in cells(header)] and "params" in heads and len(heads) == 16
    shown = _rows(browser)
    assert shown == [[as_text(c) for c in cells(line)] for line in body]
    assert any("†" in c for r in shown for c in r) and any("‡" in c for r in shown for c in r)
    assert any("◦" in c for r in shown for c in r) and any(c.endswith(" 1") for r in shown for c in r)
    bold = [s.text for s in browser.find_elements(By.CSS_SELECTOR, "table.board strong")]
    assert bold and sorted(bold) == sorted(m for line in body for m in re.findall(r"\*\*(.+?)\*\*", line))
    page_notes = [p.text for p in browser.find_elements(By.CSS_SELECTOR, "section p.note")]
    assert any(n.startswith("bold: best value of the column. †:") for n in page_notes)
    assert any("‡: the fold times spread widely" in n for n in page_notes)
    assert "1. alignment weight from its paper" in page_notes
