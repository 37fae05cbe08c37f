"""The review web app: FastAPI routes over a :class:`ctcid.review.ReviewSession`, served by uvicorn.

Everything it needs ships inside the package (Jinja2 templates, one small script, one style sheet), so it
works offline. Routes:

``GET /``
    The first page of the review queue, rendered on the server (the cells' ``<img>`` elements are in the HTML);
    query ``queue`` (mixed, candidates, undecided, random), ``sample``, ``flag`` (clean, flagged or a QC flag),
    ``reviewer``.
``GET /api/queue``
    The same page as JSON (also ``limit``, ``skip``).
``POST /api/decisions``
    ``{"cell_id": ..., "decision": "ctc" | "wbc" | "unsure"}`` (optional ``sample_id`` when cell ids repeat
    between samples, ``reviewer``); 200 with the stored row and the sample's counts, 404 for an unknown cell,
    400 for an unknown decision, 422 for a malformed body.
``POST /api/undo``
    Withdraws the reviewer's latest decision (optional body ``{"reviewer": ...}``).
``GET /api/counts``, ``GET /api/disagreements``
    Reviewed counts per sample and the cells reviewers disagree on.
``GET /labels.csv``, ``GET /reviewed_counts.csv``
    The consensus labels and the counts as files.
``GET /cells/{row}.png``
    One cell, every channel through the fixed display windows (``scale``, ``saliency=1``).
``GET /static/{name}``
    The script and the style sheet, from a fixed list (no path is ever joined from a request).

Bound to a loopback address, requests must name that host (no DNS rebinding); bound elsewhere, every request
must carry the session token, as header ``X-Ctcid-Token`` or query ``?token=``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import socket
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict

from ..errors import CtcidError, arg
from .queue import QUEUES
from .session import ReviewRequestError, ReviewSession

__all__ = ["create_app", "is_loopback", "serve"]

TOKEN_HEADER = "x-ctcid-token"
_MEDIA = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


class _Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cell_id: str | int
    decision: str
    sample_id: str | None = None
    reviewer: str | None = None


class _Undo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reviewer: str | None = None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable only from this machine.

    Examples
    --------
    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Guard:
    """ASGI middleware: the token (when set) and the Host header (when hosts are restricted) on every request."""

    def __init__(self, app: Any, token: str | None, hosts: set[str] | None):
        self.app = app
        self.token = token
        self.hosts = hosts

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.hosts is not None:
            host = headers.get("host", "")
            name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]", 1)[0]
            if name not in self.hosts:
                await PlainTextResponse("unknown host", status_code=403)(scope, receive, send)
                return
        if self.token is not None:
            given = headers.get(TOKEN_HEADER)
            if given is None:
                query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
                given = (query.get("token") or [None])[0]
            if given is None or not secrets.compare_digest(given.encode(), self.token.encode()):
                body = {
                    "detail": f"this server needs its token: header X-Ctcid-Token or ?token= ({scope['path']})"
                }
                await JSONResponse(body, status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _package_files(folder: str) -> dict[str, bytes]:
    root = resources.files("ctcid.review").joinpath(folder)
    return {p.name: p.read_bytes() for p in root.iterdir() if p.is_file() and not p.name.startswith(".")}


def _templates() -> Any:
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(
        loader=PackageLoader("ctcid.review", "templates"),
        autoescape=select_autoescape(["html"]),
        auto_reload=False,
    )


def _lifespan(sess: ReviewSession, owned: bool, dirty: threading.Event, every_s: float, warm_rows: int) -> Any:
    """Start-up: the counts writer (``reviewed_counts.csv`` at most every ``every_s`` while decisions come in)
    and the first page's images; shut-down: a last counts file, and the session closed when the app owns it."""
    stop = threading.Event()

    def write_counts_loop() -> None:
        while not stop.wait(every_s):
            if dirty.is_set():
                dirty.clear()
                try:
                    sess.write_counts()
                except OSError:
                    dirty.set()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        writer = threading.Thread(target=write_counts_loop, name="ctcid-review-counts", daemon=True)
        writer.start()
        if warm_rows and sess.dataset is not None:
            first = sess.page("mixed", limit=warm_rows)
            threading.Thread(target=sess.warm, args=(first,), name="ctcid-review-warm", daemon=True).start()
        try:
            yield
        finally:
            stop.set()
            writer.join(timeout=5)
            with contextlib.suppress(OSError):
                sess.write_counts()
            if owned:
                sess.close()

    return lifespan


def _who(sess: ReviewSession, name: str | None) -> str:
    return sess.check_reviewer(name) if name else sess.reviewer


def _page_routes(app: FastAPI, sess: ReviewSession, page_size: int) -> None:
    """``GET /`` (the server-rendered page) and ``GET /api/queue`` (the same cells as JSON)."""
    env = _templates()

    @app.get("/", response_class=HTMLResponse)
    def index(
        queue: str = "mixed", sample: str = "", flag: str = "", reviewer: str = "", token: str = ""
    ) -> HTMLResponse:
        name = _who(sess, reviewer)
        rows = sess.page(queue, sample=sample or None, flag=flag or None, reviewer=name, limit=page_size)
        keep = {k: v for k, v in (("reviewer", reviewer), ("token", token)) if v}
        html = env.get_template("index.html").render(
            title=sess.folder.resolve().name,
            session=sess,
            cells=[sess.cell(int(r), name) for r in rows],
            counts=sess.counts().to_dict("records"),
            disagreements=sess.disagreements().to_dict("records"),
            progress=sess.progress(name),
            channels=sess.dataset.channels if sess.dataset is not None else [],
            queues=QUEUES,
            queue=queue,
            sample=sample,
            flag=flag,
            reviewer=name,
            token=token,
            query=("?" + urlencode(keep)) if keep else "",
            amp=("&" + urlencode(keep)) if keep else "",
        )
        return HTMLResponse(html)

    @app.get("/api/queue")
    def api_queue(
        queue: str = "mixed",
        sample: str = "",
        flag: str = "",
        reviewer: str = "",
        limit: int = Query(default=page_size, ge=1, le=500),
        skip: int = Query(default=0, ge=0),
    ) -> dict[str, Any]:
        name = _who(sess, reviewer)
        rows = sess.page(queue, sample=sample or None, flag=flag or None, reviewer=name, limit=limit, skip=skip)
        return {"cells": [sess.cell(int(r), name) for r in rows], "progress": sess.progress(name)}


def _decision_routes(app: FastAPI, sess: ReviewSession, dirty: threading.Event) -> None:
    """Decisions, undo, counts and disagreements."""

    @app.post("/api/decisions")
    def api_decide(body: _Decision) -> dict[str, Any]:
        out = sess.decide(body.cell_id, body.decision, reviewer=body.reviewer, sample_id=body.sample_id)
        dirty.set()
        out["progress"] = sess.progress(out["reviewer"])
        return out

    @app.post("/api/undo")
    def api_undo(body: _Undo | None = None) -> dict[str, Any]:
        name = _who(sess, body.reviewer if body else None)
        out = sess.undo(name)
        dirty.set()
        return {"undone": out, "progress": sess.progress(name)}

    @app.get("/api/counts")
    def api_counts() -> dict[str, Any]:
        return {"samples": sess.counts().to_dict("records"), "progress": sess.progress()}

    @app.get("/api/disagreements")
    def api_disagreements() -> dict[str, Any]:
        return {"cells": sess.disagreements().to_dict("records")}


def _file_routes(app: FastAPI, sess: ReviewSession) -> None:
    """Downloads, cell images and the package's static files; no path is ever built from a request."""
    static = _package_files("static")

    def csv(text: str, name: str) -> Response:
        return Response(
            text, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'}
        )

    @app.get("/labels.csv")
    def labels_csv() -> Response:
        return csv(sess.labels().to_csv(index=False), "labels.csv")

    @app.get("/reviewed_counts.csv")
    def counts_csv() -> Response:
        return csv(sess.counts().to_csv(index=False), "reviewed_counts.csv")

    @app.get("/cells/{name}")
    def cell_png(name: str, scale: int = 2, saliency: int = Query(default=0, ge=0, le=1)) -> Response:
        stem, _, ext = name.partition(".")
        if ext != "png" or not (stem.isascii() and stem.isdigit()) or len(stem) > 12:
            raise ReviewRequestError("no such cell image; cells are /cells/ROW.png", status=404)
        png = sess.panel(int(stem), saliency=bool(saliency), scale=scale)
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/static/{name}")
    def static_file(name: str) -> Response:
        body = static.get(name)
        if body is None:
            raise ReviewRequestError("no such file", status=404)
        return Response(body, media_type=_MEDIA.get(Path(name).suffix, "application/octet-stream"))


def create_app(
    session: ReviewSession | str | os.PathLike[str],
    *,
    reviewer: str | None = None,
    token: str | None = None,
    allowed_hosts: list[str] | None = None,
    page_size: int = 48,
    counts_every_s: float = 2.0,
    warm: bool = True,
) -> FastAPI:
    """The review app of a predict output folder (or of an open session).

    Parameters
    ----------
    session
        A :class:`ReviewSession`, or the predict output folder to open one on (closed when the app stops).
    reviewer
        Default reviewer name when a session is opened here.
    token
        When given, every request must carry it (header ``X-Ctcid-Token`` or ``?token=``).
    allowed_hosts
        When given, requests whose ``Host`` header names another host are refused (403).
    page_size
        Cells per page.
    counts_every_s
        ``reviewed_counts.csv`` is rewritten at most this often while decisions come in, and when the app stops.
    warm
        Render the first page's images in the background at start-up.

    Examples
    --------
    >>> from fastapi.testclient import TestClient
    >>> client = TestClient(create_app("predict-out", reviewer="ana"))     # doctest: +SKIP
    >>> client.post("/api/decisions", json={"cell_id": "P1_c01", "decision": "ctc"}).status_code  # doctest: +SKIP
    200
    """
    owned = not isinstance(session, ReviewSession)
    sess = ReviewSession(session, reviewer=reviewer) if owned else session
    dirty = threading.Event()
    lifespan = _lifespan(sess, owned, dirty, counts_every_s, page_size if warm else 0)
    app = FastAPI(title="ctcid review", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.session = sess
    hosts = None if allowed_hosts is None else {h.strip("[]") for h in allowed_hosts}
    app.add_middleware(_Guard, token=token, hosts=hosts)

    @app.exception_handler(ReviewRequestError)
    async def _review_error(_request: Request, exc: ReviewRequestError) -> JSONResponse:
        return JSONResponse({"detail": exc.reason}, status_code=exc.status)

    @app.exception_handler(CtcidError)
    async def _ctcid_error(_request: Request, exc: CtcidError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    _page_routes(app, sess, page_size)
    _decision_routes(app, sess, dirty)
    _file_routes(app, sess)
    return app


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CtcidError(
            f"cannot listen on {host}:{port} ({exc.strerror}); choose another {arg('port', ...)} or "
            f"{arg('host', ...)}"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(
    folder: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    reviewer: str | None = None,
    open_browser: bool = True,
    log: Callable[[str], None] | None = None,
) -> None:
    """Open the review of ``folder`` and serve it until interrupted (Ctrl-C).

    Bound to a loopback address (the default), the app answers this machine only. Bound to another address, a
    random token is made and printed in the URL; every request must carry it.
    """
    import uvicorn

    say = log or print
    session = ReviewSession(folder, reviewer=reviewer)
    try:
        local = is_loopback(host)
        token = None if local else secrets.token_urlsafe(18)
        sock = _bind(host, port)
        bound = sock.getsockname()[1]
        app = create_app(session, token=token, allowed_hosts=list(LOOPBACK_NAMES) if local else None)
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{bound}/" + (f"?token={token}" if token else "")
        prog = session.progress()
        say(
            f"reviewing {prog['cells']} cells of {len(session.samples)} samples ({prog['reviewed']} reviewed) "
            f"as {session.reviewer}"
        )
        say(f"decisions are saved to {session.store.path} as they are made")
        if token:
            say(f"listening on {host}:{bound}; requests need the token {token} (header X-Ctcid-Token or ?token=)")
        say(f"open {url}  (Ctrl-C stops; nothing is lost)")
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
        if open_browser:

            def _open() -> None:
                import time
                import webbrowser

                for _ in range(100):
                    if server.started:
                        break
                    time.sleep(0.05)
                webbrowser.open(url.replace("0.0.0.0", "127.0.0.1"))

            threading.Thread(target=_open, daemon=True).start()
        server.run(sockets=[sock])
    finally:
        session.close()
