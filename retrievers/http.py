"""http: a live search service as a retriever (`-r http -o url='http://127.0.0.1:4000/search?q={query}&k={k}'`).

Each query is one GET of the url template, `{query}` replaced by the query text URL-encoded and `{k}` by the run's
depth. The answer is JSON; `ids` is the dotted path to the list of results in it (default `results`; empty: the
answer itself is the list). A result is a verse id (a string) or an object whose `id_key` field is the id and whose
`score_key` field, when present, the score. The list is in rank order: scores, when given, must not rise along it
(equal scores keep the order given, then are made strictly decreasing, as every retriever's are); results without
scores get strictly decreasing scores by their position. Ids are OSIS (`John.3.16`) or references as an app writes
them (`John 3:16`, `Jn 3:16`), read as `bench eval` reads run files, and must be verses of the corpus. Results past
the k-th are not read. A query with no text gets `{}` without a request.

Requests go out from a pool of `concurrency` threads, each keeping one connection open (http.client), at most `rate`
a second in all (0: no limit). A request that fails (no connection, no answer within `timeout` seconds, HTTP 5xx or
429) is tried again up to `retries` times, after `backoff` x 2^n seconds with a jitter seeded by the query id and try,
so two runs wait the same. Any other HTTP status, an answer that is not JSON or has no list at `ids`, a result of the
wrong type, an unknown verse or rising scores fail the query at once.

A failed query stops the run: one line naming the retriever, the url (password redacted), the query and the problem.
With `max_failures=N`, up to N failed queries over the retriever's life (every set of a run) are tolerated: each gets
`{}` and is listed in `failed` ({qid: problem}) after the search that met it, which the runner records in the report
as incomplete. The answers are checked once more by `retrievers.base.Checked` (http is in `CHECKED`).
"""

import base64
import http.client
import json
import math
import numbers
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from corpus.books import normalize_ref
from corpus.errors import BadInput, redact
from retrievers.base import QueryFailed, _query, check_k, strictly_decreasing

MAX_BYTES = 16 * 2**20  # an answer longer than this is no search result: fail the query instead of filling memory
MAX_CONCURRENCY = 256
PLACEHOLDER = re.compile(r"\{(\w*)\}")
# a connection the server closed while idle fails on its next request; that is tried once more on a fresh one
STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


@dataclass(frozen=True)
class HttpOptions:
    url: str = ""  # required: http(s)://host[:port]/path?...{query}...{k}; recorded with its password redacted
    ids: str = "results"  # dotted path in the JSON answer to the list of results; empty: the answer is the list
    id_key: str = "id"  # a result object's field holding the verse id
    score_key: str = "score"  # a result object's field holding the score (absent: ranked in the order returned)
    concurrency: int = 8  # requests in flight at once, one kept-open connection each
    timeout: float = 10.0  # seconds to connect and for each read of the answer
    retries: int = 2  # further tries of a request that found no server, no answer in time, or HTTP 5xx/429
    backoff: float = 0.2  # seconds before the first retry, doubling each time, times a seeded jitter in [0.5, 1.5)
    rate: float = 0.0  # requests per second at most, over all threads; 0: no limit
    max_failures: int = 0  # failed queries tolerated over the run (each scored as no answer, the report incomplete)


class Failure(Exception):
    """One request's problem, in words; `retry`: worth trying again (the server may answer next time)."""

    def __init__(self, problem: str, retry: bool = False):
        super().__init__(problem)
        self.retry = retry


def make(corpus, options: HttpOptions, *, home: Path, on_progress=None) -> "HttpRetriever":
    return HttpRetriever(corpus, options)


def check_options(o: HttpOptions):
    """The url template split into (scheme, host, port, path template, Authorization header or None); BadInput for
    a url or number that cannot work."""
    if not o.url:
        raise BadInput("give the service's url: -o url='http://HOST:PORT/search?q={query}&k={k}'")
    parts = urlsplit(o.url)
    shown = redact(o.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"url {shown!r}: only http:// and https:// urls with a host are taken")
    unknown = sorted({name for name in PLACEHOLDER.findall(o.url) if name not in ("query", "k")})
    if unknown:
        raise BadInput(f"url {shown!r}: unknown placeholder {{{unknown[0]}}}; the template takes {{query}} and {{k}}")
    if "{query}" not in o.url:
        raise BadInput(f"url {shown!r} has no {{query}}: every query would ask the same thing")
    if "{" in parts.netloc:
        raise BadInput(f"url {shown!r}: placeholders go in the path or the query string, not the host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BadInput(f"url {shown!r}: the port is not a number from 0 to 65535") from None
    for name, value, low in (("concurrency", o.concurrency, 1), ("retries", o.retries, 0),
                             ("max_failures", o.max_failures, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise BadInput(f"option {name} must be an integer >= {low}, got {value!r}")
    if o.concurrency > MAX_CONCURRENCY:
        raise BadInput(f"option concurrency must be at most {MAX_CONCURRENCY}, got {o.concurrency}")
    for name, value, positive in (("timeout", o.timeout, True), ("backoff", o.backoff, False),
                                  ("rate", o.rate, False)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
                or value < 0 or (positive and value == 0):
            raise BadInput(f"option {name} must be a number {'>' if positive else '>='} 0, got {value!r}")
    path = parts.path or "/"
    target = f"{path}?{parts.query}" if parts.query else path
    auth = None
    if parts.username is not None:  # http.client does not read userinfo: send it as Basic authentication
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        auth = "Basic " + base64.b64encode(pair).decode("ascii")
    return parts.scheme, parts.hostname, port, target, auth


class HttpRetriever:
    name = "http"

    def __init__(self, corpus, options: HttpOptions):
        self.scheme, self.host, self.port, self.target, auth = check_options(options)
        self.options, self.position, self.corpus_id = options, corpus.position, corpus.corpus_id
        self.config = replace(options, url=redact(options.url))  # what a report records: no password
        self.headers = {"Accept": "application/json", "User-Agent": "versebench",
                        **({"Authorization": auth} if auth else {})}
        self.failures = 0  # failed queries so far, over every search (the run's max_failures budget)
        self.failed: dict[str, str] = {}  # the last search's failed queries: {qid: problem}
        self.latencies: list[float] = []  # the last search's answered requests, seconds each (bench perf)

    def search(self, queries: dict[str, str], k: int) -> dict[str, dict[str, float]]:
        k = check_k(k)
        self.failed, self.latencies = {}, []
        out: dict[str, dict[str, float]] = {qid: {} for qid in queries}
        asked = {qid: text for qid, text in queries.items() if isinstance(text, str) and text.strip()}
        session = Session(self, k)
        problems: dict[str, str] = {}
        try:
            with ThreadPoolExecutor(max(1, min(self.options.concurrency, len(asked))), "http") as pool:
                futures = {pool.submit(session.answer, qid, text): qid for qid, text in asked.items()}
                try:
                    for done in as_completed(futures):
                        try:
                            out[futures[done]] = done.result()
                        except Failure as f:
                            problems[futures[done]] = str(f)
                            if self.failures + len(problems) > self.options.max_failures:
                                break
                finally:  # stopping (too many failures, an interrupt): no new request or retry; those in flight
                    session.stop.set()  # end by their timeout
                    pool.shutdown(wait=False, cancel_futures=True)
        finally:
            session.close()
        if self.failures + len(problems) > self.options.max_failures:
            raise QueryFailed(self._fatal(queries, problems))
        self.failures += len(problems)
        self.failed = {qid: problems[qid] for qid in queries if qid in problems}
        return out

    def _fatal(self, queries: dict[str, str], problems: dict[str, str]) -> str:
        """The one line that stops the run: the first failed query in the set's order, and how many failed."""
        qid = next(q for q in queries if q in problems)
        line = f"retriever http: {redact(self.options.url)}: query {_query(qid, queries[qid])}: {problems[qid]}"
        if len(problems) > 1:
            line += f" ({len(problems)} queries failed in this search"
            line += f", {self.failures} before it)" if self.failures else ")"
        if self.options.max_failures:
            line += f"; more than max_failures={self.options.max_failures}"
        return line

    def hits(self, payload, k: int) -> dict[str, float]:
        """The results at the `ids` path of one JSON answer as {verse id: score} (at most the first k), or Failure."""
        node, o = payload, self.options
        for part in o.ids.split(".") if o.ids else ():
            if not isinstance(node, dict) or part not in node:
                raise Failure(f"the JSON answer has no {o.ids!r} (keys: {_keys(node)})")
            node = node[part]
        if not isinstance(node, list):
            raise Failure(f"{o.ids or 'the answer'} is {type(node).__name__}, not a list of results")
        ids, scores = [], []
        for i, item in enumerate(node[:k], 1):
            if isinstance(item, str):
                docid, score = item, None
            elif isinstance(item, dict):
                docid, score = item.get(o.id_key), item.get(o.score_key)
                if not isinstance(docid, str):
                    raise Failure(f"result {i}: {o.id_key!r} is {_shown(docid)}, not a verse id")
            else:
                raise Failure(f"result {i} is {_shown(item)}, not a verse id or an object")
            ids.append(self._verse(docid, i))
            scores.append(score)
        return self._scored(ids, scores)

    def _verse(self, docid: str, i: int) -> str:
        osis = docid if docid in self.position else normalize_ref(docid)
        if osis is None or osis not in self.position:
            raise Failure(f"result {i}: {_shown(docid)} is not a verse of corpus {self.corpus_id}")
        return osis

    def _scored(self, ids: list[str], scores: list) -> dict[str, float]:
        if len(set(ids)) < len(ids):
            twice = next(d for i, d in enumerate(ids) if d in ids[:i])
            raise Failure(f"{twice} is in the results twice")
        if all(s is None for s in scores):  # no scores: the order given is the ranking
            return strictly_decreasing((d, float(len(ids) - i)) for i, d in enumerate(ids))
        for i, (d, s) in enumerate(zip(ids, scores), 1):
            if isinstance(s, bool) or not isinstance(s, numbers.Real) or not math.isfinite(s):
                raise Failure(f"result {i}: score {_shown(s)} of {d} is not a finite number")
            if i > 1 and s > scores[i - 2]:
                raise Failure(f"result {i}: {d} scores {s!r}, more than {scores[i - 2]!r} before it; results must "
                              f"come in rank order")
        return strictly_decreasing(zip(ids, scores))


class Session:
    """One search's requests: a connection per worker thread (closed at the end), the shared rate limit, the stop
    flag raised when the run is to stop."""

    def __init__(self, retriever: HttpRetriever, k: int):
        self.r, self.k = retriever, k
        self.stop = threading.Event()
        self.local = threading.local()
        self.lock = threading.Lock()
        self.opened: list[http.client.HTTPConnection] = []
        self.gap = 1.0 / retriever.options.rate if retriever.options.rate else 0.0
        self.next_slot = 0.0
        self.clock = time.monotonic  # what `pace` reads the time from (a test freezes it: slots, not timing)

    def answer(self, qid: str, text: str) -> dict[str, float] | None:
        """One query's hits, trying again as the options say; Failure when it cannot be answered."""
        o = self.r.options
        target = self.r.target.replace("{query}", quote(text, safe="")).replace("{k}", str(self.k))
        for attempt in range(o.retries + 1):
            if self.stop.is_set():  # the search is stopping: this query's answer will not be read
                return None
            self.pace()
            try:
                t0 = time.perf_counter()
                payload = self.get(target)
                hits = self.r.hits(payload, self.k)
                with self.lock:
                    self.r.latencies.append(time.perf_counter() - t0)
                return hits
            except Failure as f:
                if not f.retry or attempt == o.retries:
                    tries = f" (tried {attempt + 1} times)" if attempt else ""
                    raise Failure(f"{f}{tries}") from None
            # the wait ends early when the search stops, so a stopping run does not sit out a long backoff
            self.stop.wait(o.backoff * 2 ** attempt * (0.5 + random.Random(f"{qid}/{attempt}").random()))
        raise AssertionError("not reached: the last try returns or raises")

    def pace(self) -> None:
        """Wait for this request's slot under `rate`: slots are handed out `1/rate` seconds apart, first come first
        served."""
        if not self.gap:
            return
        with self.lock:
            now = self.clock()
            slot = max(now, self.next_slot)
            self.next_slot = slot + self.gap
        self.stop.wait(max(0.0, slot - now))

    def connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, and whether it has served a request before."""
        conn = getattr(self.local, "conn", None)
        if conn is not None:
            return conn, True
        kind = http.client.HTTPSConnection if self.r.scheme == "https" else http.client.HTTPConnection
        conn = kind(self.r.host, self.r.port, timeout=self.r.options.timeout)
        with self.lock:
            self.opened.append(conn)
        self.local.conn = conn
        return conn, False

    def get(self, target: str):
        """The JSON of one GET, or Failure."""
        for fresh in (False, True):
            conn, reused = self.connection()
            try:
                conn.request("GET", target, headers=self.r.headers)
                resp = conn.getresponse()
                body = resp.read(MAX_BYTES + 1)
                if len(body) > MAX_BYTES or resp.will_close:
                    self.drop(conn)
                break
            except Exception as e:  # noqa: BLE001 - whatever the socket or the parser meets is this query's problem
                self.drop(conn)
                if reused and not fresh and isinstance(e, STALE):
                    continue
                raise Failure(_network_problem(e, self.r.options.timeout), retry=_retry_network(e)) from None
        if len(body) > MAX_BYTES:
            raise Failure(f"the answer is longer than {MAX_BYTES // 2**20} MB")
        if resp.status != 200:
            raise Failure(f"HTTP {resp.status} {resp.reason}{_said(body)}",
                          retry=resp.status >= 500 or resp.status == 429)
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise Failure(f"the answer is not JSON (it starts {body[:60].decode('utf-8', 'replace')!r})") from None

    def drop(self, conn) -> None:
        conn.close()
        self.local.conn = None

    def close(self) -> None:
        with self.lock:
            for conn in self.opened:
                conn.close()
            self.opened.clear()


def _network_problem(e: BaseException, timeout: float) -> str:
    if isinstance(e, TimeoutError):
        return f"no answer within the timeout of {timeout:g} s"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused (is the service running?)"
    if isinstance(e, http.client.HTTPException):
        return f"not an HTTP answer ({type(e).__name__}: {str(e)[:80]})"
    return f"{type(e).__name__}: {str(e).strip()[:120]}"


def _retry_network(e: BaseException) -> bool:
    """A socket problem may pass (a server starting, restarting, overloaded); a reply that is not HTTP will not."""
    return isinstance(e, OSError)


def _said(body: bytes) -> str:
    """What an error answer says: its JSON `error` line, else the start of its text."""
    try:
        said = json.loads(body).get("error")
    except (ValueError, AttributeError, RecursionError):
        said = body.decode("utf-8", "replace")
    said = " ".join(str(said or "").split())
    return f": {said[:150]}" if said else ""


def _keys(node) -> str:
    if not isinstance(node, dict):
        return f"none, it is {type(node).__name__}"
    keys = list(node)
    return ", ".join(map(repr, keys[:8])) + (", ..." if len(keys) > 8 else "") if keys else "none"


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
