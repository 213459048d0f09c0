"""The search page as a person uses it: a real `bench serve` process, Debian's chromium driven by chromium-driver
through selenium, a query typed into the box and the results read from the page."""

import shutil
import urllib.parse

import pytest

from tests.serving import bench_serve

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SETUP = "install them with scripts/setup.sh --browser (./scripts/test does for the whole suite)"


@pytest.fixture(scope="module")
def server():
    with bench_serve("-r", "bm25", "-r", "ilike", "-s", "thematic-curated") as (proc, url):
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail(f"Debian's chromium and chromium-driver are not installed: {SETUP}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium')}", "--window-size=1400,1000"):
        options.add_argument(arg)
    b = webdriver.Chrome(service=Service(driver), options=options)
    b.set_page_load_timeout(60)
    yield b
    b.quit()


def search(browser, url: str, query: str) -> None:
    """Open the page, type the query, press Enter, wait until every column has its answer."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, 60).until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-state")
                                     == "ready")
    box = browser.find_element(By.ID, "q")
    box.clear()
    box.send_keys(query, Keys.ENTER)
    WebDriverWait(browser, 60).until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-state")
                                     == "done")


def columns(browser) -> dict[str, list[dict]]:
    """{retriever: [{id, ref, text, relevance}]} as the page shows them."""
    from selenium.webdriver.common.by import By

    out = {}
    for col in browser.find_elements(By.CSS_SELECTOR, "section.col"):
        out[col.find_element(By.TAG_NAME, "h2").text] = [
            {"id": li.get_attribute("data-id"), "ref": li.find_element(By.CLASS_NAME, "ref").text,
             "text": li.find_element(By.CLASS_NAME, "text").text, "relevance": li.get_attribute("data-relevance"),
             "grade": (li.find_elements(By.CLASS_NAME, "grade") or [None])[0]}
            for li in col.find_elements(By.CSS_SELECTOR, "li.hit")]
    return out


def test_a_query_of_a_set_shows_both_top_tens_with_the_relevant_verses_marked(server, browser, nt_corpus):
    from corpus.books import parse_ref
    from corpus.qsets import load_set

    search(browser, server, "Love your enemies")
    shown = columns(browser)
    assert list(shown) == ["bm25", "ilike"]
    judged = load_set("thematic-curated", "nt").qrels["tc-005"]
    for name, hits in shown.items():
        assert len(hits) == 10, name
        for h in hits:
            assert parse_ref(h["ref"]) == h["id"] and h["text"] == nt_corpus.text(h["id"])
            assert h["relevance"] == (str(judged[h["id"]]) if h["id"] in judged else None)
    luke = next(h for h in shown["bm25"] if h["id"] == "Luke.6.27")
    assert luke["ref"] == "Luke 6:27" and luke["text"].startswith("“But I tell you who hear: love your enemies")
    assert luke["grade"].text == "relevant 2" and "rel-2" in luke["grade"].find_element("xpath", "..") \
        .get_attribute("class")
    from selenium.webdriver.common.by import By

    note = browser.find_element(By.ID, "judged").text
    assert "tc-005" in note and "thematic-curated" in note
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(browser.current_url).query) == {"q": ["Love your enemies"]}


def test_html_in_a_query_is_shown_as_text_and_never_run(server, browser):
    from selenium.webdriver.common.by import By

    query = '<img src=x onerror="document.title=\'owned\'"><script>document.title="owned"</script><b>faith</b>'
    search(browser, server, query)
    assert browser.title == "versebench search"
    assert not browser.find_elements(By.CSS_SELECTOR, "main img, main script, main b, #judged b, #judged img")
    assert browser.find_element(By.ID, "judged").text == f"“{query}” is in none of the loaded query sets: no " \
                                                          "judgments to show."
    assert len(columns(browser)["bm25"]) == 10  # "faith" and the rest, searched as words
