"""One explorer server over the shipped ECG bundle for the explore tests (its network loads once), on a free port."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest


@pytest.fixture(scope="package")
def explorer(tmp_path_factory, shared_data):
    """``(server, base_url)``: a running :class:`ExplorerServer` on 127.0.0.1 with exports and caches under tmp, and
    the 10 CPSC 2018 records as the nearest-neighbour reference (a small real cohort)."""
    from monai_gen.explore.server import make_server

    root = tmp_path_factory.mktemp("explore")
    server = make_server("ecg_generative_diffusion", port=0, output_dir=root / "exports", cache_dir=root / "cache",
                         device="cpu", reference_dir=shared_data / "ecg" / "cpsc2018")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, server.url
    server.shutdown()
    server.server_close()
    thread.join(10)


def call(url: str, body: dict | None = None, *, headers: dict | None = None) -> tuple[int, dict | bytes]:
    """``(HTTP status, JSON or bytes)`` of a GET (``body`` None) or a JSON POST."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            status, kind, payload = response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as error:
        status, kind, payload = error.code, error.headers.get_content_type(), error.read()
    return status, json.loads(payload) if kind == "application/json" else payload
