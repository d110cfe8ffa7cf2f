"""The explorer's local web server: one HTML page and a few JSON / PNG endpoints over :class:`ExplorerSession`\\ s.

Standard library only (``http.server``): the page (``page.html``, no script, style or font from anywhere else) asks

- ``GET  /api/bundles`` the bundles on the search path; ``GET /api/controls?bundle=NAME`` one bundle's controls
  (the bundle is loaded on first use and kept);
- ``POST /api/sample`` ``{bundle, conditions, seed, guidance_scale, steps, cine_frames, window, token}`` -> the
  sample's figures (base64 PNG; a cine's looping GIF; a CT's axial, coronal and sagittal planes), the requested and
  measured values and extrapolation warnings; a request replaced in the queue by a newer one answers
  ``{"superseded": true}`` (HTTP 409);
- ``GET  /api/progress?token=`` where the sample request sent with that ``token`` stands: its place in the queue while
  it waits (``ahead``), the sampler's ``step`` of ``total`` while it runs;
- ``GET  /api/figure?bundle=&id=&low=&high=&plane=&index=`` a kept sample redrawn at another intensity window (image
  bundles), a CT plane through another slice;
- ``POST /api/sweep`` the bundle's sweep strip; ``POST /api/export`` the sample written by the bundle's writer;
  ``POST /api/neighbour`` its nearest real training item (or the reference set's build status).

Generation runs one job at a time (:class:`~monai_gen.explore.jobs.LatestJobQueue`). Bad input is answered with the
library's one-line message as ``{"error": ...}`` (HTTP 400), never a traceback; the server binds to a loopback address
only and refuses requests whose ``Host`` is not this machine.
"""

from __future__ import annotations

import base64
import ipaddress
import itertools
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from monai_gen.explore.controls import parse_request
from monai_gen.explore.jobs import JobSuperseded, LatestJobQueue, QueueClosed

__all__ = ["LOOPBACK_NAMES", "check_loopback_host", "ExplorerApp", "ExplorerServer", "make_server"]

logger = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, KeyError, TypeError)
_MAX_BODY = 1 << 20
_JOB_TIMEOUT_S = 600.0
_KEPT_TICKETS = 64  # sample requests whose progress the page may still ask for
_IMAGE_TYPES = {b"\x89PNG": "image/png", b"GIF8": "image/gif"}


def check_loopback_host(host: str) -> str:
    """``host`` if it is this machine's loopback (``127.0.0.1``, ``::1``, ``localhost``).

    Raises:
        ValueError: any other address (the explorer must not be reachable from the network).
    """
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"--host {host!r}: the explorer serves this machine only; give a loopback address ({', '.join(LOOPBACK_NAMES)})."
        )
    return host


def _user_message(error: BaseException) -> str | None:
    """The one-line message of the first bad-input error in ``error``'s causes (configs wrap them), else None."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, _USER_ERRORS):
            return str(seen.args[0]) if isinstance(seen, KeyError) and seen.args else str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


class ExplorerApp:
    """What the endpoints do: sessions per bundle, the job queue, exports and nearest neighbours.

    Args:
        bundle: the bundle the page opens with (name or folder).
        output_dir: where exports are written.
        device: torch device for generation (None: each bundle's default).
        reference_dir: real data folder of the nearest-neighbour panel (None: each bundle's evaluation default).
        cache_dir: folder for the reference cohorts' caches (one subfolder per bundle).
    """

    def __init__(self, bundle: str, *, output_dir: str | os.PathLike, device: str | None = None,
                 reference_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike) -> None:
        self.default_bundle, self.output_dir = str(bundle), Path(output_dir)
        self.device, self.reference_dir, self.cache_dir = device, reference_dir, Path(cache_dir)
        self.queue = LatestJobQueue()
        self._sessions: dict[str, Any] = {}
        self._references: dict[str, Any] = {}
        self._tickets: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._job_numbers = itertools.count()

    def close(self) -> None:
        self.queue.close()

    def session(self, bundle: str | None) -> Any:
        """The loaded session of ``bundle`` (loaded through the queue on first use, then kept)."""
        name = str(self._bundle_root(bundle))
        with self._lock:
            if name in self._sessions:
                return self._sessions[name]
        return self._run(f"load {name}", lambda: self._load(name), replaceable=False)

    def _bundle_root(self, bundle: str | None) -> Path:
        """The folder of ``bundle`` (a name on the search path, or the opening bundle by its name or folder)."""
        from monai_gen.bundle.registry import find_bundle

        default = find_bundle(self.default_bundle)
        return default if bundle in (None, "", default.name) else find_bundle(bundle)

    def _load(self, root: str) -> Any:
        """Load a bundle once (on the queue's thread: a second request for it finds the first one's session)."""
        from monai_gen.explore.session import ExplorerSession

        with self._lock:
            if root in self._sessions:
                return self._sessions[root]
        session = ExplorerSession(root, device=self.device)
        with self._lock:
            return self._sessions.setdefault(root, session)

    def _run(self, kind: str, work: Callable[[], Any], *, replaceable: bool = True, token: str | None = None) -> Any:
        """Run ``work`` on the queue; a ``replaceable`` job (a slider's sample, a sweep, a redraw) waiting there is
        superseded by a newer one of its kind, any other (a load, an export) runs whatever follows it. A ``token``
        names the job for :meth:`progress`."""
        if not replaceable:
            kind = f"{kind} #{next(self._job_numbers)}"
        ticket = self.queue.submit(kind, work)
        if token:
            with self._lock:
                self._tickets[token] = ticket
                while len(self._tickets) > _KEPT_TICKETS:
                    self._tickets.popitem(last=False)
        return ticket.result(timeout=_JOB_TIMEOUT_S)

    def progress(self, query: dict[str, str]) -> dict[str, Any]:
        """Where the request sent with ``token`` stands (``state`` ``"unknown"`` before the server has it)."""
        with self._lock:
            ticket = self._tickets.get(query.get("token", ""))
        if ticket is None:
            return {"state": "unknown", "ahead": 0, "step": 0, "total": 0, "stage": ""}
        return self.queue.progress(ticket)

    def bundles(self) -> dict[str, Any]:
        from monai_gen.bundle.registry import find_bundle, list_bundles, read_bundle_info

        default = read_bundle_info(find_bundle(self.default_bundle))
        infos = {b.name: b for b in list_bundles()}
        infos.setdefault(default.name, default)
        listed = [{"name": b.name, "version": b.version, "task": b.task, "has_weights": (b.root / "models").is_dir()}
                  for b in infos.values()]
        return {"bundles": listed, "default": default.name}

    def controls(self, query: dict[str, str]) -> dict[str, Any]:
        return self.session(query.get("bundle")).controls()

    def sample(self, payload: dict[str, Any]) -> dict[str, Any]:
        session = self.session(payload.get("bundle"))
        request = parse_request(payload, session.conditions)
        window = _window(payload.get("window"))

        def generate_and_draw() -> tuple[Any, dict[str, bytes]]:  # one job: a newer request never discards a sample
            explored = session.generate(request, progress=self.queue.report)
            self.queue.report(1, 1, "drawing")
            return explored, _figures(session.view, explored, window)

        explored, figures = self._run(f"sample {session.root}", generate_and_draw, token=str(payload.get("token") or ""))
        answer = {
            "sample_id": explored.sample_id, "figure": _data_url(next(iter(figures.values()))),
            "figures": {name: _data_url(f) for name, f in figures.items()}, "requested": dict(request.conditions),
            "measured": explored.measured, "seed": request.seed, "guidance_scale": session.guidance_of(request),
            "steps": request.steps or session.default_steps, "seconds": round(explored.seconds, 3),
            "warnings": _extrapolation_warnings(session.conditions, request.conditions),
        }
        if explored.frames is not None:
            answer.update(cine_frames=int(explored.frames.shape[0]), frame_time_ms=explored.frame_time_ms)
        if session.view.planes:
            answer["plane_sizes"] = session.view.plane_sizes(explored.sample)
        return answer

    def figure(self, query: dict[str, str]) -> bytes:
        session = self.session(query.get("bundle"))
        explored = session.sample(query.get("id", ""))
        window = _window([query.get("low"), query.get("high")]) if "low" in query or "high" in query else None
        placed = _placement(session.view, query)
        return self._run(f"figure {session.root} {placed.get('plane', '')}",
                         lambda: _figures(session.view, explored, window, **placed)[placed.get("plane", _FIRST)])

    def sweep(self, payload: dict[str, Any]) -> dict[str, Any]:
        session = self.session(payload.get("bundle"))
        request = parse_request(payload, session.conditions)
        sweep = payload.get("sweep") or {}
        if not isinstance(sweep, dict) or not sweep.get("name"):
            raise ValueError("a sweep needs {\"name\": condition, \"start\": value, \"stop\": value}.")
        strip = self._run(f"sweep {session.root}", lambda: session.sweep(
            request, str(sweep["name"]), start=_float(sweep.get("start"), "sweep start"),
            stop=_float(sweep.get("stop"), "sweep stop"), num_values=int(_float(sweep.get("num_values", 5), "values")),
        ))
        return {"figure": _data_url(strip), "name": sweep["name"]}

    def export(self, payload: dict[str, Any]) -> dict[str, Any]:
        session = self.session(payload.get("bundle"))
        sample_id = str(payload.get("sample_id", ""))
        files = self._run(f"export {session.root}", lambda: session.export(sample_id, self.output_dir),
                          replaceable=False)
        return {"files": [str(f) for f in files], "output_dir": str(self.output_dir)}

    def neighbour(self, payload: dict[str, Any]) -> dict[str, Any]:
        session = self.session(payload.get("bundle"))
        explored = session.sample(str(payload.get("sample_id", "")))
        reference = self._reference(session)
        status = reference.status()
        if status["state"] != "ready":
            reference.start()
            return reference.status()
        found = reference.nearest(explored.sample)
        described = {k: v for k, v in found.row.items() if isinstance(v, (str, int, float)) or v is None}
        caption = f"nearest of {found.count} training items · L2 {found.distance:.3g}"
        figure = self._run(f"neighbour {session.root}",
                           lambda: session.view.reference_figure(found.item, caption=caption), replaceable=False)
        return {**status, "figure": _data_url(figure), "distance": found.distance, "row": described,
                "index": found.index, "count": found.count}

    def _reference(self, session: Any) -> Any:
        from monai_gen.explore.reference import ReferenceSet

        with self._lock:
            key = str(session.root)
            if key not in self._references:
                self._references[key] = ReferenceSet(session.root, cache_dir=self.cache_dir / session.info.name,
                                                     dataset_dir=self.reference_dir)
            return self._references[key]


_FIRST = ""  # the key of a view's one figure in _figures (a CT view has one per plane)


def _figures(view: Any, explored: Any, window: tuple[float, float] | None, *, plane: str | None = None,
             index: int | None = None) -> dict[str, bytes]:
    """The pictures of a kept sample: a cine's GIF, a CT's planes (only ``plane`` when given, through ``index``), or
    the view's one figure."""
    caption = _caption(explored.request)
    if explored.frames is not None:
        return {_FIRST: view.cine_figure(explored.frames, frame_time_ms=explored.frame_time_ms, window=window)}
    if view.planes:
        return {p: view.figure(explored.sample, caption=caption, window=window, plane=p, index=index if p == plane else None)
                for p in ((plane,) if plane else view.planes)}
    return {_FIRST: view.figure(explored.sample, caption=caption, window=window)}


def _placement(view: Any, query: dict[str, str]) -> dict[str, Any]:
    """``{"plane", "index"}`` of a figure request, checked against the view's planes (a view with planes: the first
    one when none is named)."""
    if not query.get("plane"):
        if query.get("index"):
            raise ValueError("index: a slice index needs its plane (plane=axial, coronal or sagittal).")
        return {"plane": view.planes[0]} if view.planes else {}
    if query["plane"] not in view.planes:
        raise ValueError(f"plane {query['plane']!r}: this bundle's view has "
                         f"{'the planes ' + ', '.join(view.planes) if view.planes else 'no planes'}.")
    index = query.get("index")
    return {"plane": query["plane"], "index": None if index in (None, "") else int(_float(index, "index"))}


def _caption(request: Any) -> str:
    shown = " · ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in request.conditions.items())
    return f"{shown or 'unconditioned'} · seed {request.seed}"


def _image_type(picture: bytes) -> str:
    return next((kind for magic, kind in _IMAGE_TYPES.items() if picture.startswith(magic)), "application/octet-stream")


def _data_url(picture: bytes) -> str:
    return f"data:{_image_type(picture)};base64," + base64.b64encode(picture).decode("ascii")


def _float(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}.") from None


def _window(value: Any) -> tuple[float, float] | None:
    """An intensity window ``[low, high]`` from the page (None: the view's default)."""
    if value is None or all(v in (None, "") for v in value):
        return None
    low, high = (_float(v, "window") for v in value)
    if not low < high:
        raise ValueError(f"the intensity window needs low < high, got {low:g} and {high:g}.")
    return low, high


def _extrapolation_warnings(conditions: Any, values: dict[str, Any]) -> list[str]:
    warnings = []
    for name, value in values.items():
        spec = conditions[name]
        if not spec.extrapolates(value):
            continue
        if spec.is_categorical:
            warnings.append(f"{name} = {value} was never in the training data: its token is untrained.")
        else:
            low, high = spec.observed_range
            warnings.append(f"{name} = {value:g} {spec.unit} is outside the trained range {low:g}-{high:g} "
                            f"{spec.unit}: the model extrapolates there.".replace("  ", " "))
    return warnings


class _Handler(BaseHTTPRequestHandler):
    server: ExplorerServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        app = self.server.app
        routes: dict[str, Callable[[], Any]] = {
            "/api/bundles": app.bundles, "/api/controls": lambda: app.controls(query),
            "/api/figure": lambda: app.figure(query), "/api/status": lambda: {"busy": app.queue.busy},
            "/api/progress": lambda: app.progress(query),
        }
        if url.path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, _page(), "text/html; charset=utf-8")
        elif url.path in routes:
            self._answer(routes[url.path])
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no page {url.path}"})

    def do_POST(self) -> None:  # noqa: N802
        app = self.server.app
        routes = {"/api/sample": app.sample, "/api/sweep": app.sweep, "/api/export": app.export,
                  "/api/neighbour": app.neighbour}
        path = urlsplit(self.path).path
        if path not in routes:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no endpoint {path}"})
            return
        try:
            payload = self._json_body()
        except ValueError as error:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
            return
        self._answer(lambda: routes[path](payload))

    def _json_body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise ValueError(f"request body of {length} bytes is too large.")
        try:
            payload = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as error:
            raise ValueError(f"the request body is not JSON: {error}") from None
        if not isinstance(payload, dict):
            raise ValueError("the request body must be a JSON object.")
        return payload

    def _answer(self, call: Callable[[], Any]) -> None:
        if not self._host_is_local():
            self._send_json(HTTPStatus.FORBIDDEN, {"error": "the explorer answers requests addressed to localhost only."})
            return
        try:
            result = call()
        except JobSuperseded as superseded:
            self._send_json(HTTPStatus.CONFLICT, {"superseded": True, "message": str(superseded)})
            return
        except QueueClosed:
            self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "the explorer is shutting down."})
            return
        except Exception as error:
            message = _user_message(error)
            if message is None:
                logger.exception("explorer request %s failed", self.path)
                message = f"internal error ({type(error).__name__}: {error}); the server log has the details."
                self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": message})
            else:
                self._send_json(HTTPStatus.BAD_REQUEST, {"error": message})
            return
        if isinstance(result, bytes):
            self._send(HTTPStatus.OK, result, _image_type(result))
        else:
            self._send_json(HTTPStatus.OK, result)

    def _host_is_local(self) -> bool:
        """Refuse a request sent to another name (DNS rebinding would let a web page reach a local server)."""
        host = (self.headers.get("Host") or "").strip()
        name = host[1:].split("]")[0] if host.startswith("[") else host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return name in LOOPBACK_NAMES

    def _send_json(self, status: HTTPStatus, payload: Any) -> None:
        self._send(status, json.dumps(payload, default=str).encode("utf-8"), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the page went away (reloaded, closed) before the answer
            logger.debug("client of %s left before the answer", self.path)


def _page() -> bytes:
    return resources.files("monai_gen.explore").joinpath("page.html").read_bytes()


class ExplorerServer(ThreadingHTTPServer):
    """A threading HTTP server bound to a loopback address, serving :class:`ExplorerApp`."""

    daemon_threads = True

    def __init__(self, app: ExplorerApp, host: str = "127.0.0.1", port: int = 8765) -> None:
        check_loopback_host(host)
        if ":" in host:
            import socket

            self.address_family = socket.AF_INET6
        self.app = app
        super().__init__((host, int(port)), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in str(host) else host}:{port}/"

    def server_close(self) -> None:
        super().server_close()
        self.app.close()


def make_server(bundle: str, *, host: str = "127.0.0.1", port: int = 8765, output_dir: str | os.PathLike,
                cache_dir: str | os.PathLike, device: str | None = None,
                reference_dir: str | os.PathLike | None = None, preload: bool = True) -> ExplorerServer:
    """An explorer server for ``bundle`` (loaded now when ``preload``); call ``serve_forever()`` on it.

    Raises:
        ValueError: ``host`` is not a loopback address.
        FileNotFoundError: no such bundle.
    """
    from monai_gen.bundle.registry import find_bundle

    check_loopback_host(host)
    find_bundle(bundle)
    app = ExplorerApp(bundle, output_dir=output_dir, device=device, reference_dir=reference_dir, cache_dir=cache_dir)
    try:
        if preload:
            app.session(bundle)
        try:
            return ExplorerServer(app, host, port)
        except OSError as error:
            raise ValueError(f"cannot listen on {host} port {port}: {error.strerror or error}.") from error
    except BaseException:
        app.close()
        raise
