"""The reference search service behind `bench serve`: any retrievers as JSON over HTTP, and a one-page search box.

API (the `-r http` adapter is written against it; extra fields may be added, none changed):
- `GET /search?q=TEXT&k=10&r=NAME` -> `{"query", "k", "retriever", "results": [{"id", "score", "ref", "text"}]}`
  in rank order; `id` is the corpus verse id and `score` exactly what the retriever's `search` returned (JSON
  round-trips a float bit for bit). `r` may be left out when one retriever is served. When the query's text
  (lower case, whitespace collapsed) is a query of a loaded set, the answer adds `set`, `qid` and `relevant` (how
  many verses the set judges relevant), and each result its `relevance` grade (null: not judged).
- Bad requests -> 400, an unknown path -> 404, a wrong method -> 405, a failure of ours -> 500; always
  `{"error": "<one line>"}`, never a traceback.
- `GET /health` -> `{"ok": true, "retrievers": [...], ...}`; `GET /` -> the page (serve.html, no external assets).

Retrievers' `search(queries, k)` takes many queries at once, and one call for eight queries costs little more than
one for one query, so concurrent requests are gathered (`Batcher`): per retriever and k, the requests that arrive
within `window_s` of the first, or while the retriever is busy, go to one `search` in the retriever's own thread.
One search at a time per retriever, since retrievers are not assumed thread-safe, and always in the thread that built
it where that is known (`build_in_own_thread`), since some hold what only that thread may use (SQLite's connection:
ILIKE). Nothing is cached across requests.
"""

import asyncio
import base64
import hashlib
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from corpus.books import reference
from corpus.errors import one_line

PAGE = Path(__file__).with_name("serve.html")
MAX_QUERY_CHARS = 1000
MAX_K = 1000
DEFAULT_K = 10
WINDOW_S = 0.002  # how long a lone request waits for batch-mates: small beside a search (several ms)
MAX_BATCH = 32
_DIGITS = re.compile(r"[0-9]{1,7}")


class BadRequest(Exception):
    """A request the service refuses with 400 and this one-line message."""


@dataclass(frozen=True)
class Judged:
    """A query of a loaded set: where it comes from and its judgments."""
    set: str
    qid: str
    qrels: dict  # docid -> grade


def normalise(text: str) -> str:
    """What makes a typed query the same as a set's query: lower case, whitespace collapsed."""
    return " ".join(text.lower().split())


def judged_queries(sets) -> dict[str, Judged]:
    """{normalised query text: Judged} over the query sets, in the order given (the first set holding a text wins)."""
    out: dict[str, Judged] = {}
    for qs in sets:
        for qid, text in qs.queries.items():
            out.setdefault(normalise(text), Judged(qs.name, qid, dict(qs.qrels.get(qid, {}))))
    return out


@dataclass(frozen=True)
class Served:
    """A retriever and the one thread that built it and makes all its searches."""
    retriever: object
    thread: ThreadPoolExecutor


def build_in_own_thread(name: str, build: Callable[[], object]) -> Served:
    """`build()` run in a new thread, which will then make all the retriever's searches."""
    thread = ThreadPoolExecutor(1, thread_name_prefix=f"search-{name}")
    try:
        return Served(thread.submit(build).result(), thread)
    except BaseException:
        thread.shutdown(wait=False, cancel_futures=True)
        raise


@dataclass
class _Batch:
    k: int
    items: list = field(default_factory=list)  # (query text, future)
    full: asyncio.Event = field(default_factory=asyncio.Event)


class Batcher:
    """One retriever's searches: concurrent requests at the same k answered by one `search` call.

    A request joins the open batch for its k or opens one; a batch closes when `window_s` has passed and the
    retriever is free, or when it holds `max_batch` requests. Each query is its own entry of the call, so its answer
    is the one it would get alone; if the call raises, each query is searched alone so only the one at fault fails."""

    def __init__(self, served: Served, window_s: float = WINDOW_S, max_batch: int = MAX_BATCH):
        self.retriever, self._thread = served.retriever, served.thread
        self.window_s, self.max_batch = window_s, max_batch
        self.calls = self.queries = 0  # searches made and queries answered, for /health
        self._open: dict[int, _Batch] = {}
        self._tasks: set[asyncio.Task] = set()  # held so the loop does not drop them unfinished
        self._busy: asyncio.Lock | None = None

    async def search(self, text: str, k: int) -> dict[str, float]:
        loop = asyncio.get_running_loop()
        batch = self._open.get(k)
        if batch is None:
            batch = self._open[k] = _Batch(k)
            task = loop.create_task(self._answer(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        future = loop.create_future()
        batch.items.append((text, future))
        if len(batch.items) >= self.max_batch:
            self._close(batch)
        return await future

    def _close(self, batch: _Batch) -> None:
        if self._open.get(batch.k) is batch:
            del self._open[batch.k]
        batch.full.set()

    async def _answer(self, batch: _Batch) -> None:
        if self._busy is None:  # made here, inside the server's event loop
            self._busy = asyncio.Lock()
        try:
            await asyncio.wait_for(batch.full.wait(), self.window_s)
        except TimeoutError:
            pass
        async with self._busy:  # while waiting here the batch still gathers requests
            self._close(batch)
            items = [(text, f) for text, f in batch.items if not f.done()]  # a client gone is not searched for
            if not items:
                return
            try:
                answers = await asyncio.get_running_loop().run_in_executor(
                    self._thread, self._search_all, [text for text, _ in items], batch.k)
            except Exception as e:  # noqa: BLE001 - every waiting request hears of it
                answers = [e] * len(items)
        for (_, future), answer in zip(items, answers):
            if future.done():
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)

    def _search_all(self, texts: list[str], k: int) -> list:
        """In the worker thread: one `search` for all, or on failure one per query (a failure is returned, not raised,
        so the others still get their answers)."""
        queries = {f"q{i}": t for i, t in enumerate(texts)}
        self.calls += 1
        try:
            run = self.retriever.search(queries, k)
        except Exception:  # noqa: BLE001 - which query raised is found below
            if len(texts) == 1:
                raise
            return [self._search_one(t, k) for t in texts]
        self.queries += len(texts)
        return [run.get(q) or {} for q in queries]

    def _search_one(self, text: str, k: int):
        self.calls += 1
        try:
            answer = self.retriever.search({"q": text}, k).get("q") or {}
        except Exception as e:  # noqa: BLE001 - this request's 500
            return e
        self.queries += 1
        return answer

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)


def read_query(params) -> tuple[str, int]:
    """(q, k) from the query string, or BadRequest saying what is wrong."""
    q = params.get("q")
    if q is None or not q.strip():
        raise BadRequest("give the query text: /search?q=...")
    if len(q) > MAX_QUERY_CHARS:
        raise BadRequest(f"q is {len(q)} characters long; at most {MAX_QUERY_CHARS}")
    k = params.get("k")
    if k is None:
        return q, DEFAULT_K
    if not _DIGITS.fullmatch(k) or not 1 <= int(k) <= MAX_K:
        raise BadRequest(f"k must be a whole number from 1 to {MAX_K}, got {k[:20]!r}")
    return q, int(k)


def choose(params, names: list[str]) -> str:
    """The served retriever `r` names; with one served, `r` may be left out."""
    r = params.get("r")
    if r is None or r == "":
        if len(names) == 1:
            return names[0]
        raise BadRequest(f"several retrievers are served; choose one with r= ({', '.join(names)})")
    if r not in names:
        raise BadRequest(f"r={r[:60]!r} is not served here; served: {', '.join(names)}")
    return r


def answer(q: str, k: int, name: str, hits: dict[str, float], corpus, judged: Judged | None) -> dict:
    """The /search body. Scores go out as the retriever made them; the order is theirs (scores strictly decrease)."""
    ranked = sorted(hits.items(), key=lambda kv: -kv[1])
    results = [{"id": d, "score": float(s), "ref": reference(d), "text": corpus.text(d)} for d, s in ranked]
    out = {"query": q, "k": k, "retriever": name, "results": results}
    if judged is not None:
        out |= {"set": judged.set, "qid": judged.qid, "relevant": sum(g > 0 for g in judged.qrels.values())}
        for r in results:
            r["relevance"] = judged.qrels.get(r["id"])
    return out


def page_policy(page: str) -> str:
    """Content-Security-Policy for the page: only its own inline script and style (by hash) run, and it may talk only
    to this server. Should a verse ever reach the page unescaped, the browser still runs none of it."""
    def hashes(tag):
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
                        for body in re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.S))

    return (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; connect-src 'self'; "
            f"img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def make_app(retrievers: dict, corpus, sets=(), *, window_s: float = WINDOW_S, max_batch: int = MAX_BATCH,
             on_error: Callable[[str], None] | None = None) -> Starlette:
    """The ASGI app serving `retrievers` over `corpus`, marking the judgments of `sets` (QuerySets). `retrievers`:
    {name: Served}, or {name: retriever} for one that any thread may search (it gets a thread of its own).
    `on_error(line)` hears of every 500 (the server's log; the client gets the same line)."""
    names = list(retrievers)
    if not names:
        raise ValueError("make_app: no retrievers to serve")
    served = {n: r if isinstance(r, Served) else Served(r, ThreadPoolExecutor(1, thread_name_prefix=f"search-{n}"))
              for n, r in retrievers.items()}
    batchers = {n: Batcher(s, window_s, max_batch) for n, s in served.items()}
    judged = judged_queries(sets)
    page = PAGE.read_text("utf-8")
    page_headers = {"Content-Security-Policy": page_policy(page), "X-Content-Type-Options": "nosniff",
                    "Cache-Control": "no-store"}
    json_headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": one_line(message)}, status_code=status, headers=json_headers)

    async def search(request: Request) -> JSONResponse:
        try:
            q, k = read_query(request.query_params)
            name = choose(request.query_params, names)
        except BadRequest as e:
            return error(400, str(e))
        try:
            hits = await batchers[name].search(q, k)
            body = answer(q, k, name, hits, corpus, judged.get(normalise(q)))
        except Exception as e:  # noqa: BLE001 - a retriever's failure: one line to the client and the log
            line = one_line(f"{name}: {type(e).__name__}: {e}")
            if on_error is not None:
                on_error(line)
            return error(500, line)
        return JSONResponse(body, headers=json_headers)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "retrievers": names, "corpus": corpus.corpus_id,
                             "sets": list(dict.fromkeys(j.set for j in judged.values())),
                             "searches": {n: b.calls for n, b in batchers.items()},
                             "queries": {n: b.queries for n, b in batchers.items()}}, headers=json_headers)

    async def home(request: Request) -> HTMLResponse:
        return HTMLResponse(page, headers=page_headers)

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        what = {404: f"no such path {request.url.path[:80]!r}; try /search?q=..., /health or /",
                405: f"{request.method} is not allowed here; use GET"}.get(exc.status_code, exc.detail)
        return error(exc.status_code, what)

    async def internal(request: Request, exc: Exception) -> JSONResponse:
        line = one_line(f"internal error ({type(exc).__name__}: {exc})")
        if on_error is not None:
            on_error(line)
        return error(500, line)

    @asynccontextmanager
    async def lifespan(app):
        yield
        for b in batchers.values():
            b.close()

    routes = [Route("/search", search, methods=["GET"]), Route("/health", health, methods=["GET"]),
              Route("/", home, methods=["GET"])]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: internal},
                     lifespan=lifespan)
