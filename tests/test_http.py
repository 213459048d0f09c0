"""`-r http`: a live search service as a retriever, against real HTTP servers on 127.0.0.1 (the standard library's
http.server in a thread, a free port each): good answers in the shapes services give, a slow server, a failing one,
one that fails once and then answers, garbage. Every failure is one line naming the retriever, the url and the query,
exit 2 and nothing written; tolerated failures (`max_failures`) make an INCOMPLETE report that the gate refuses. And
`bench run -r http` against `bench serve -r bm25` scores exactly what `bench run -r bm25` scores."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from corpus.errors import BadInput
from harness.report import Report
from retrievers import base
from retrievers.base import QueryFailed

BENCH = [sys.executable, "-c", "from harness.cli import main; main()"]
REPO = Path(__file__).resolve().parent.parent
VERSES = ["John.3.16", "Rom.5.8", "1John.4.8", "Eph.2.8", "Matt.5.3"]
SEARCH = "/search?q={query}&k={k}"


class Service:
    """A real HTTP server in a thread. `behave(q, k, tries)` -> (status, body, delay): the answer to the `tries`-th
    request for the text `q` (a dict or list is sent as JSON, bytes as they are), after `delay` seconds."""

    def __init__(self, behave):
        self.behave, self.requests, self.lock = behave, [], threading.Lock()
        self.in_flight = self.most_in_flight = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real service does

            def do_GET(self):
                query = parse_qs(urlsplit(self.path).query)
                q, k = query.get("q", [""])[0], query.get("k", ["0"])[0]
                with service.lock:
                    service.requests.append((q, k, self.client_address[1], dict(self.headers)))
                    tries = sum(1 for r in service.requests if r[0] == q)
                    service.in_flight += 1
                    service.most_in_flight = max(service.most_in_flight, service.in_flight)
                try:
                    status, body, delay = service.behave(q, int(k), tries)
                    time.sleep(delay)
                    data = body if isinstance(body, bytes) else json.dumps(body).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
                    pass
                finally:
                    with service.lock:
                        service.in_flight -= 1

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads, self.server.block_on_close = True, False
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.root = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = self.root + SEARCH

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def service():
    made = []

    def start(behave) -> Service:
        made.append(Service(behave))
        return made[-1]

    yield start
    for s in made:
        s.close()


def ranked(q, k, tries):
    """A service that answers every query with VERSES, best first, in the shape `bench serve` gives."""
    return 200, {"query": q, "k": k, "results": [{"id": d, "score": 10.0 - i, "ref": d, "text": "..."}
                                                 for i, d in enumerate(VERSES[:k])]}, 0


def http(nt_corpus, home, url, **options):
    return base.make("http", nt_corpus, home=home, url=url, **{"retries": 0, **options})


QUERIES = {"q1": "for god so loved", "q2": "grace & faith?", "q3": "blessed are the poor"}


# ---- answers ---------------------------------------------------------------------------------------------------------

def test_a_service_answers_like_a_retriever(service, nt_corpus, home):
    s = service(ranked)
    r = http(nt_corpus, home, s.url)
    assert isinstance(r, base.Checked)  # from outside: every answer is held to the contract (verse ids included)
    run = r.search(QUERIES, 3)
    assert run == {q: {"John.3.16": 10.0, "Rom.5.8": 9.0, "1John.4.8": 8.0} for q in QUERIES}
    assert r.failed == {}
    # the text arrives whole (an '&' or '?' is encoded, not a parameter), and k is the run's depth
    assert sorted((q, k) for q, k, *_ in s.requests) == sorted((t, "3") for t in QUERIES.values())


@pytest.mark.parametrize("answer, options, want", [
    # bare ids, no scores: ranked in the order given
    ({"results": ["John 3:16", "Rom.5.8", "Jn 1:1"]}, {}, {"John.3.16": 3.0, "Rom.5.8": 2.0, "John.1.1": 1.0}),
    # nested path, other field names, ties in the order given made strict
    ({"data": {"hits": [{"ref": "Rom.5.8", "s": 2.5}, {"ref": "John.3.16", "s": 2.5}]}},
     {"ids": "data.hits", "id_key": "ref", "score_key": "s"}, {"Rom.5.8": 2.5, "John.3.16": 2.4999998}),
    # the answer is the list itself; more than k is cut to the first k
    ([{"id": d} for d in VERSES], {"ids": ""}, {"John.3.16": 4.0, "Rom.5.8": 3.0, "1John.4.8": 2.0, "Eph.2.8": 1.0}),
])
def test_the_shapes_services_answer_in(service, nt_corpus, home, answer, options, want):
    s = service(lambda q, k, tries: (200, answer, 0))
    got = http(nt_corpus, home, s.url, **options).search({"q": "love"}, 4)["q"]
    assert list(got) == list(want) and got == pytest.approx(want)


def test_an_empty_query_is_not_sent(service, nt_corpus, home):
    s = service(ranked)
    assert http(nt_corpus, home, s.url).search({"a": "  ", "b": "love"}, 2)["a"] == {}
    assert [q for q, *_ in s.requests] == ["love"]


def test_each_worker_keeps_one_connection_and_no_more_than_concurrency_are_in_flight(service, nt_corpus, home):
    s = service(lambda q, k, tries: (*ranked(q, k, tries)[:2], 0.02))
    queries = {f"q{i}": f"word{i}" for i in range(24)}
    assert len(http(nt_corpus, home, s.url, concurrency=3).search(queries, 2)) == 24
    assert s.most_in_flight <= 3
    assert len({port for *_, port, _ in s.requests}) <= 3  # kept alive: one connection per worker


def test_rate_hands_out_request_slots_1_over_rate_apart(nt_corpus, home):
    from retrievers.http import Session

    session = Session(http(nt_corpus, home, "http://127.0.0.1:1" + SEARCH, rate=200).inner, 10)
    # a frozen clock: five requests at one instant get five slots 5 ms apart, however late a busy machine starts
    # the threads (with the real clock, a thread started after its slot had passed got a fresh one: flaky under load)
    session.clock = lambda: 1000.0
    session.pace()
    first = session.next_slot
    threads = [threading.Thread(target=session.pace) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert session.next_slot - first == pytest.approx(4 / 200)  # 5 slots, each 5 ms after the one before


def test_a_password_in_the_url_authenticates_and_is_never_shown(service, nt_corpus, home):
    s = service(lambda q, k, tries: (500, {"error": "down"}, 0))
    url = s.url.replace("http://", "http://me:s3cret@")
    r = http(nt_corpus, home, url)
    assert r.config.url == s.url.replace("http://", "http://me:***@")
    assert base.config_dict(r)["url"] == r.config.url
    with pytest.raises(QueryFailed) as e:
        r.search({"q": "love"}, 2)
    assert "s3cret" not in str(e.value) and "me:***@" in str(e.value)
    assert s.requests[0][3]["Authorization"] == "Basic bWU6czNjcmV0"  # me:s3cret


@pytest.mark.parametrize("url, words", [
    ("", "give the service's url"),
    ("ftp://h/x?q={query}", "only http:// and https://"),
    ("http://127.0.0.1:1/search?q=love", "has no {query}"),
    ("http://127.0.0.1:1/search?q={query}&r={retriever}", "unknown placeholder {retriever}"),
    ("http://{query}/x", "not the host"),
])
def test_urls_that_cannot_work_are_refused_before_any_request(nt_corpus, home, url, words):
    with pytest.raises(BadInput, match="^retriever http: ") as e:
        base.make("http", nt_corpus, home=home, url=url)
    assert words in str(e.value)
    with pytest.raises(BadInput, match="concurrency must be an integer >= 1"):
        base.make("http", nt_corpus, home=home, url=SEARCH.join(["http://h", ""]), concurrency=0)


# ---- failures --------------------------------------------------------------------------------------------------------

def garbage(kind):
    def behave(q, k, tries):
        return 200, {"not json": b"<html>busy</html>", "no path": {"hits": []}, "not a list": {"results": "none"},
                     "wrong type": {"results": [7]}, "unknown verse": {"results": [{"id": "Gen.1.1", "score": 1}]},
                     "rising": {"results": [{"id": "Rom.5.8", "score": 1}, {"id": "John.3.16", "score": 2}]},
                     "twice": {"results": ["Rom.5.8", "Rom.5.8"]}}[kind], 0
    return behave


@pytest.mark.parametrize("kind, words", [
    ("not json", "the answer is not JSON (it starts '<html>busy</html>')"),
    ("no path", "the JSON answer has no 'results' (keys: 'hits')"),
    ("not a list", "results is str, not a list of results"),
    ("wrong type", "result 1 is 7, not a verse id or an object"),
    ("unknown verse", "result 1: 'Gen.1.1' is not a verse of corpus web-nt-"),
    ("rising", "result 2: John.3.16 scores 2, more than 1 before it"),
    ("twice", "Rom.5.8 is in the results twice"),
])
def test_garbage_fails_the_query_in_one_line(service, nt_corpus, home, kind, words):
    s = service(garbage(kind))
    with pytest.raises(QueryFailed) as e:
        http(nt_corpus, home, s.url, retries=3).search({"q": "love"}, 5)
    line = str(e.value)
    assert line.startswith(f"retriever http: {s.url}: query q ('love'): ") and words in line and "\n" not in line
    assert len(s.requests) == 1  # garbage is not asked again


def test_a_server_that_fails_once_is_asked_again(service, nt_corpus, home):
    s = service(lambda q, k, tries: (503, {"error": "warming up"}, 0) if tries == 1 else ranked(q, k, tries))
    assert http(nt_corpus, home, s.url, retries=1, backoff=0.01).search({"q": "love"}, 1) == {"q": {"John.3.16": 10.0}}
    assert len(s.requests) == 2
    with pytest.raises(QueryFailed, match=r"HTTP 503 Service Unavailable: warming up$"):
        http(nt_corpus, home, s.url, retries=0).search({"q": "hope"}, 1)


def test_a_failing_server_is_tried_as_often_as_retries_says(service, nt_corpus, home):
    s = service(lambda q, k, tries: (500, {"error": "index missing"}, 0))
    with pytest.raises(QueryFailed, match=r"HTTP 500 Internal Server Error: index missing \(tried 3 times\)$"):
        http(nt_corpus, home, s.url, retries=2, backoff=0.01).search({"q": "love"}, 1)
    assert len(s.requests) == 3
    bad_request = service(lambda q, k, tries: (400, {"error": "k must be at most 50"}, 0))
    with pytest.raises(QueryFailed, match=r"HTTP 400 Bad Request: k must be at most 50$"):
        http(nt_corpus, home, bad_request.url, retries=2).search({"q": "love"}, 100)
    assert len(bad_request.requests) == 1  # a refusal is not asked again


def test_a_slow_server_times_out(service, nt_corpus, home):
    s = service(lambda q, k, tries: (*ranked(q, k, tries)[:2], 2.0))
    with pytest.raises(QueryFailed, match=r"query q \('love'\): no answer within the timeout of 0.2 s$"):
        http(nt_corpus, home, s.url, timeout=0.2).search({"q": "love"}, 1)


def test_no_server_is_connection_refused(nt_corpus, home):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(QueryFailed, match="connection refused"):
        http(nt_corpus, home, f"http://127.0.0.1:{port}{SEARCH}").search({"q": "love"}, 1)


def test_max_failures_tolerates_that_many_over_the_retrievers_life(service, nt_corpus, home):
    fail = {"hope", "peace", "joy"}
    s = service(lambda q, k, tries: (500, {"error": "no"}, 0) if q in fail else ranked(q, k, tries))
    r = http(nt_corpus, home, s.url, max_failures=2)
    run = r.search({"a": "love", "b": "hope", "c": "peace"}, 1)
    assert run == {"a": {"John.3.16": 10.0}, "b": {}, "c": {}}
    assert r.failed == {"b": "HTTP 500 Internal Server Error: no", "c": "HTTP 500 Internal Server Error: no"}
    assert r.search({"d": "love"}, 1) and r.failed == {}  # `failed` is the last search's
    with pytest.raises(QueryFailed, match=r"query e \('joy'\): .*more than max_failures=2$"):
        r.search({"e": "joy"}, 1)  # the third over the run


# ---- through the command line: one line, exit 2, nothing written; or an INCOMPLETE report ---------------------------

def bench(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([*BENCH, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, "COLUMNS": "200"})  # table rows unwrapped, to read them back


def one_error_line(p: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "Traceback" not in p.stderr, (p.returncode, p.stderr[-3000:])
    return lines[0]


@pytest.fixture(scope="module")
def small_set(tmp_path_factory, nt_corpus):
    """8 keyword queries judged in the NT, as external files."""
    d = tmp_path_factory.mktemp("set")
    verses = set(nt_corpus.ids)
    judged = [r for r in (REPO / "qrels/keyword/qrels.trec").read_text().splitlines(keepends=True)
              if r.split()[2] in verses]
    qids = list(dict.fromkeys(r.split()[0] for r in judged))[:8]
    lines = [q for q in (REPO / "qrels/keyword/queries.tsv").read_text().splitlines(keepends=True)
             if q.split("\t", 1)[0] in qids]
    (d / "q.tsv").write_text("".join(lines))
    (d / "q.trec").write_text("".join(r for r in judged if r.split()[0] in qids))
    return d / "q.tsv", d / "q.trec", {ln.split("\t")[0]: ln.rstrip("\n").split("\t")[1] for ln in lines}


def run_http(small_set, url, out, *options):
    return bench("run", "-r", "http", "-o", f"url={url}", *[a for o in options for a in ("-o", o)],
                 "--queries", small_set[0], "--qrels", small_set[1], "--out", out)


@pytest.mark.parametrize("behave, options, words", [
    (lambda q, k, tries: (*ranked(q, k, tries)[:2], 3.0), ["timeout=0.3", "retries=0"],
     "no answer within the timeout of 0.3 s"),
    (lambda q, k, tries: (500, b"oops", 0), ["retries=1", "backoff=0"], "HTTP 500 Internal Server Error: oops "
                                                                         "(tried 2 times)"),
    (garbage("not json"), [], "the answer is not JSON"),
    (garbage("unknown verse"), [], "'Gen.1.1' is not a verse of corpus"),
])
def test_a_run_against_a_bad_service_is_one_line_exit_2_and_writes_nothing(service, small_set, tmp_path, behave,
                                                                             options, words):
    s = service(behave)
    url = s.url.replace("http://", "http://me:s3cret@")
    line = one_error_line(run_http(small_set, url, tmp_path / "out", *options))
    assert line.startswith(f"error: retriever http: {s.url.replace('http://', 'http://me:***@')}: query ")
    assert words in line and "s3cret" not in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


def test_bench_search_says_a_tolerated_failure_instead_of_no_verse_matched(service):
    s = service(lambda q, k, tries: (500, {"error": "shard 3 down"}, 0))
    line = one_error_line(bench("search", "love", "-r", "http", "-o", f"url={s.url}", "-o", "max_failures=1",
                                "-o", "retries=0"))
    assert line == "error: retriever http: the query failed: HTTP 500 Internal Server Error: shard 3 down"
    ok = service(ranked)
    found = bench("search", "love", "-r", "http", "-o", f"url={ok.url}", "--k", "2", "--json")
    assert [h["docid"] for h in json.loads(found.stdout)] == VERSES[:2], found.stderr


@pytest.mark.slow
def test_tolerated_failures_make_an_incomplete_report_that_the_gate_refuses(service, small_set, tmp_path):
    texts = small_set[2]
    failing = dict(list(texts.items())[:2])
    s = service(lambda q, k, tries: (500, {"error": "shard 3 down"}, 0) if q in failing.values()
                else ranked(q, k, tries))
    p = run_http(small_set, s.url, tmp_path / "out", "max_failures=2", "retries=0")
    assert p.returncode == 0, p.stderr[-3000:]
    said = " ".join(p.stdout.split())
    assert "http INCOMPLETE (2 of 8 queries failed)" in said
    assert "INCOMPLETE: http on q: 2 of 8 queries failed and count as unanswered (first: " in said
    folder = next((tmp_path / "out").iterdir())
    rep = Report.load(folder)
    assert rep.failed_queries == {"q": {"http": {q: "HTTP 500 Internal Server Error: shard 3 down"
                                                 for q in failing}}}
    assert rep.incomplete and Report.load(folder) == Report.from_dict(rep.to_dict())
    assert "**INCOMPLETE: http on q: 2 of 8" in (folder / "report.md").read_text()
    assert "| a | http INCOMPLETE (2 of 8 queries failed) |" in (folder / "report.md").read_text()
    # one more failure than tolerated: the one-line error, and no report
    over = run_http(small_set, s.url, tmp_path / "over", "max_failures=1", "retries=0")
    assert "more than max_failures=1" in one_error_line(over) and not (tmp_path / "over").exists()
    # compare keeps the mark
    cmp = bench("compare", folder, "--out", tmp_path / "cmp")
    assert cmp.returncode == 0 and "INCOMPLETE" in (tmp_path / "cmp" / "compare.md").read_text(), cmp.stderr
    # the gate gives no verdict on it, and writes no baseline from it
    down = service(lambda q, k, tries: (500, {"error": "down"}, 0))
    gate = bench("gate", "-r", "http", "-o", f"url={down.url}", "-o", "max_failures=1000", "-o", "retries=0",
                 "-s", "distractor", "--baseline", tmp_path / "b.json", "--update-baseline", "--allow-dirty",
                 "--verdict", tmp_path / "gate" / "v.json")
    assert "the candidate's run is incomplete, so the gate gives no verdict" in one_error_line(gate)
    assert not (tmp_path / "b.json").exists() and not (tmp_path / "gate" / "v.json").exists()


def test_the_gate_refuses_an_incomplete_baseline(tmp_path):
    from harness import gate

    d = json.loads((REPO / "reports" / "baseline.json").read_text())
    s, r = next(iter(d["results"])), next(iter(next(iter(d["results"].values()))))
    d["failed_queries"] = {s: {r: {"q1": "HTTP 500"}}}
    (tmp_path / "b.json").write_text(json.dumps(d))
    with pytest.raises(BadInput, match="is an incomplete report, so the gate gives no verdict against it"):
        gate.read_baseline(tmp_path / "b.json")


def test_an_incomplete_row_is_marked_and_never_best(tmp_path):
    from harness.report import set_table_rows

    rep = Report.load(REPO / "reports" / "hybrid" / "compare.json")
    s = rep.sets[0]
    names = rep.retrievers(s)
    top = max(names, key=lambda n: rep.results[s][n]["ndcg@10"])
    marked = Report.from_dict({**rep.to_dict(), "failed_queries": {s: {top: {"x": "HTTP 500"}}}})
    _, rows = set_table_rows(marked, s)
    row = rows[names.index(top)]
    assert "INCOMPLETE (1 of" in row[1] and not any("**" in c for c in row[2:])
    assert not any(c[-1] in "ᵃᵇᶜᵈᵉᶠᵍʰ" for c in row[2:])  # no significance letter either
    with pytest.raises(BadInput, match="failed_queries is not"):
        Report.from_dict({**rep.to_dict(), "failed_queries": {s: ["x"]}})


def test_a_password_given_as_an_option_stays_out_of_the_report(nt_corpus):
    """The run's options are recorded as given; a dsn or url with a password was recorded whole (fixed)."""
    from harness.report import new_meta
    from harness.runner import RunConfig

    cfg = RunConfig(retrievers=("ilike", "http"), options={"ilike": {"dsn": "postgresql://me:s3cret@db/x"},
                                                             "http": {"url": "http://u:pw@h/s?q={query}&key=abc"}})
    meta = new_meta(nt_corpus, cfg, {}, {}, [])
    assert meta["run"]["options"] == {"ilike": {"dsn": "postgresql://me:***@db/x"},
                                      "http": {"url": "http://u:***@h/s?q={query}&key=***"}}


# ---- the service `bench serve` makes: the same numbers as in process -------------------------------------------------

@pytest.mark.slow
def test_http_against_bench_serve_scores_what_the_retriever_scores(tmp_path):
    from tests.serving import bench_serve

    with bench_serve("-r", "bm25", "-s", "keyword") as (_, root):
        url = f"{root}search?q={{query}}&k={{k}}"
        via_http = bench("run", "-r", "http", "-o", f"url={url}", "-s", "keyword", "--out", tmp_path / "a", "--json")
    direct = bench("run", "-r", "bm25", "-s", "keyword", "--out", tmp_path / "b", "--json")
    assert via_http.returncode == 0 and direct.returncode == 0, (via_http.stderr[-2000:], direct.stderr[-2000:])
    a, b = json.loads(via_http.stdout), json.loads(direct.stdout)
    assert "failed_queries" not in a and a["meta"]["retrievers"]["http"]["url"] == url
    for m, v in b["results"]["keyword"]["bm25"].items():
        assert abs(a["results"]["keyword"]["http"][m] - v) <= 1e-9, m
    run_a = (next((tmp_path / "a").iterdir()) / "runs" / "keyword" / "http.trec").read_text().splitlines()
    run_b = (next((tmp_path / "b").iterdir()) / "runs" / "keyword" / "bm25.trec").read_text().splitlines()
    assert [ln.rsplit(" ", 1)[0] for ln in run_a] == [ln.rsplit(" ", 1)[0] for ln in run_b]  # same ranks and scores
