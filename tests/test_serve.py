"""`bench serve` as a client meets it: real retrievers behind a real uvicorn on 127.0.0.1; answers equal to the
retriever's own, concurrent requests batched without changing any answer, bad requests refused in one JSON line."""

import socket
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest

from corpus.books import BOOKS, parse_ref, reference
from corpus.qsets import load_set
from harness.serve import MAX_K, MAX_QUERY_CHARS, build_in_own_thread, make_app, page_policy
from retrievers.base import make
from tests.serving import bench_serve, get, get_json, in_thread

KNOWN = "love your enemies"  # thematic-curated tc-005: Luke 6:27 judged 2, among BM25's top 3


def search_url(base: str, **params) -> str:
    return f"{base}search?{urllib.parse.urlencode(params)}"


@pytest.fixture(scope="module")
def bm25(home, nt_corpus):
    return make("bm25", nt_corpus, home=home)


@pytest.fixture(scope="module")
def ilike(home, nt_corpus):
    """ILIKE's SQLite connection may be used only by the thread that made it: built in the thread that serves it."""
    return build_in_own_thread("ilike", lambda: make("ilike", nt_corpus, home=home))


@pytest.fixture(scope="module")
def curated():
    return load_set("thematic-curated", "nt")


@pytest.fixture(scope="module")
def one(bm25, nt_corpus, curated):
    """bm25 alone, with a wide batch window so concurrent requests surely share searches."""
    with in_thread(make_app({"bm25": bm25}, nt_corpus, [curated], window_s=0.05)) as url:
        yield url


@pytest.fixture(scope="module")
def two(bm25, ilike, nt_corpus, curated):
    with in_thread(make_app({"bm25": bm25, "ilike": ilike}, nt_corpus, [curated])) as url:
        yield url


def test_search_is_the_retrievers_own_answer_with_reference_and_text(one, bm25, nt_corpus):
    status, body = get_json(search_url(one, q="the peace of God which surpasses understanding", k=7))
    assert status == 200
    want = bm25.search({"q": "the peace of God which surpasses understanding"}, 7)["q"]
    assert [(r["id"], r["score"]) for r in body["results"]] == list(want.items())  # same order, same floats
    assert body["query"] == "the peace of God which surpasses understanding" and body["k"] == 7
    assert body["retriever"] == "bm25" and "set" not in body
    for r in body["results"]:
        assert r["text"] == nt_corpus.text(r["id"]) and parse_ref(r["ref"]) == r["id"]
    assert body["results"][0]["ref"] == "Philippians 4:7"


def test_k_defaults_to_ten_and_r_to_the_one_retriever(one):
    status, body = get_json(search_url(one, q="faith"))
    assert status == 200 and body["k"] == 10 and len(body["results"]) == 10 and body["retriever"] == "bm25"


def test_a_query_of_a_set_carries_its_judgments(one, curated):
    status, body = get_json(search_url(one, q="  Love   YOUR enemies ", k=10))  # the same query, typed loosely
    assert status == 200
    assert body["set"] == "thematic-curated" and body["qid"] == "tc-005"
    judged = curated.qrels["tc-005"]
    assert body["relevant"] == sum(g > 0 for g in judged.values())
    for r in body["results"]:
        assert r["relevance"] == judged.get(r["id"])
    assert {r["id"]: r["relevance"] for r in body["results"]}["Luke.6.27"] == 2


@pytest.mark.parametrize("params, words", [
    ({}, "query text"),
    ({"q": ""}, "query text"),
    ({"q": "   "}, "query text"),
    ({"q": "x" * (MAX_QUERY_CHARS + 1)}, f"at most {MAX_QUERY_CHARS}"),
    ({"q": "faith", "k": "0"}, "k must be"),
    ({"q": "faith", "k": str(MAX_K + 1)}, "k must be"),
    ({"q": "faith", "k": "-3"}, "k must be"),
    ({"q": "faith", "k": "2.5"}, "k must be"),
    ({"q": "faith", "k": "ten"}, "k must be"),
    ({"q": "faith", "k": ""}, "k must be"),
    ({"q": "faith", "k": "99999999999999999999"}, "k must be"),
    ({"q": "faith", "r": "colbert"}, "not served"),
])
def test_bad_requests_get_400_and_one_json_line(one, params, words):
    status, body = get_json(search_url(one, **params))
    assert status == 400 and list(body) == ["error"]
    assert words in body["error"] and "\n" not in body["error"] and "Traceback" not in body["error"]


def test_the_caps_themselves_are_allowed(one, bm25):
    q = ("God said to the man and the woman " * 40)[:MAX_QUERY_CHARS]
    status, body = get_json(search_url(one, q=q, k=MAX_K))
    assert status == 200 and len(body["results"]) == MAX_K == len(bm25.search({"q": q}, MAX_K)["q"])


def test_several_retrievers_need_r(two, bm25, ilike):
    status, body = get_json(search_url(two, q="faith"))
    assert status == 400 and "bm25, ilike" in body["error"]
    alone = {"bm25": bm25.search({"q": "faith hope love"}, 5)["q"],
             "ilike": ilike.thread.submit(ilike.retriever.search, {"q": "faith hope love"}, 5).result()["q"]}
    for name, want in alone.items():
        status, body = get_json(search_url(two, q="faith hope love", k=5, r=name))
        assert status == 200 and body["retriever"] == name
        assert [(h["id"], h["score"]) for h in body["results"]] == list(want.items())


def test_unknown_path_and_method_are_json_errors(two):
    status, body = get_json(f"{two}search/more")
    assert status == 404 and list(body) == ["error"] and "/search/more" in body["error"]
    status, body = get_json(f"{two}search?q=faith", method="POST")
    assert status == 405 and "GET" in body["error"]


def test_health_names_what_is_served(two):
    status, body = get_json(f"{two}health")
    assert status == 200 and body["ok"] is True and body["retrievers"] == ["bm25", "ilike"]
    assert body["sets"] == ["thematic-curated"]


def test_html_in_a_query_comes_back_as_data(one):
    q = '<script>alert("x")</script><b>faith</b> & "hope"'
    status, body = get_json(search_url(one, q=q))
    assert status == 200 and body["query"] == q  # JSON is data; the page puts it in with textContent


def test_the_page_is_one_file_that_runs_only_its_own_script(one):
    status, headers, body = get(one)
    page = body.decode("utf-8")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert headers["content-security-policy"] == page_policy(page)
    assert "'sha256-" in headers["content-security-policy"] and "unsafe-inline" not in headers[
        "content-security-policy"]
    # no external assets (the machines have no internet), and no way in for HTML from the server
    assert "http://" not in page and "https://" not in page and " src=" not in page and "<link" not in page
    assert "innerHTML" not in page and "outerHTML" not in page and "insertAdjacentHTML" not in page


def test_concurrent_requests_are_batched_and_each_answer_is_its_own(one, bm25, curated):
    """Batching is invisible: every answer equals the query searched alone, at its own k, whoever shared its
    search. (The wide window and 8 clients make shared searches certain.)"""
    texts = list(curated.queries.values())[:40] + ["faith", "faith", "zzzz nothing matches", "&&"]
    asks = [(t, 10 if i % 3 else 25) for i, t in enumerate(texts)]
    _, before = get_json(f"{one}health")
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda a: get_json(search_url(one, q=a[0], k=a[1])), asks))
    _, after = get_json(f"{one}health")
    for (text, k), (status, body) in zip(asks, got):
        alone = bm25.search({"q": text}, k)["q"]
        assert status == 200 and [(r["id"], r["score"]) for r in body["results"]] == list(alone.items()), text
    searches = after["searches"]["bm25"] - before["searches"]["bm25"]
    assert after["queries"]["bm25"] - before["queries"]["bm25"] == len(asks)
    assert searches < len(asks) / 2, searches


class Fails:
    """bm25 that raises on one query, as a retriever with a bug would."""
    name = "bm25"

    def __init__(self, inner):
        self.inner, self.config = inner, inner.config

    def search(self, queries, k):
        if any("boom" in t for t in queries.values()):
            raise RuntimeError("kaput\nsecond line")
        return self.inner.search(queries, k)


def test_a_failing_search_is_a_500_line_and_spares_its_batch_mates(bm25, nt_corpus):
    errors = []
    app = make_app({"bm25": Fails(bm25)}, nt_corpus, window_s=0.05, on_error=errors.append)
    with in_thread(app) as url, ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda q: get_json(search_url(url, q=q)), ["faith", "boom", "hope", "love"]))
    assert [s for s, _ in got] == [200, 500, 200, 200]
    assert got[1][1] == {"error": "bm25: RuntimeError: kaput second line"} and errors == [got[1][1]["error"]]
    assert got[0][1]["results"][0]["id"] == next(iter(bm25.search({"q": "faith"}, 10)["q"]))


def test_every_book_has_a_reference_that_reads_back():
    for book in BOOKS:
        assert parse_ref(reference(f"{book}.3.4")) == f"{book}.3.4"
    assert reference("1Cor.13.4") == "1 Corinthians 13:4" and reference("Ps.23.1") == "Psalm 23:1"


# ---- the command ----------------------------------------------------------------------------------------------------

def listening_addresses(port: int) -> set[str]:
    """The local addresses a TCP socket listens on at `port`, read from the kernel (/proc/net/tcp and tcp6)."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                out.add(address)
    return out


@pytest.mark.slow
def test_bench_serve_listens_on_127_0_0_1_only_by_default():
    with bench_serve("-r", "ilike", "-s", "thematic-curated") as (proc, url):
        host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
        assert host == "127.0.0.1"
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, little-endian hex
        status, body = get_json(search_url(url, q=KNOWN, k=3))
        assert status == 200 and body["retriever"] == "ilike" and body["qid"] == "tc-005"


def test_a_port_in_use_is_one_line_and_exit_2():
    import subprocess

    from tests.serving import BENCH

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = subprocess.run([*BENCH, "serve", "-r", "ilike", "--port", str(port)], capture_output=True, text=True,
                           timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [f"error: 127.0.0.1:{port} is in use; choose another --port "
                                             f"(0 takes a free one)"]


@pytest.mark.parametrize("args, words", [
    (["--port", "70000"], "--port"),
    (["-r", "colbert"], "unknown retriever"),
    (["-s", "nope"], "unknown query set"),
    (["--scope", "apocrypha"], "--scope"),
])
def test_bad_command_lines_are_one_line_and_exit_2(args, words):
    import subprocess

    from tests.serving import BENCH

    p = subprocess.run([*BENCH, "serve", *args], capture_output=True, text=True, timeout=120)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and words in lines[0], p.stderr

