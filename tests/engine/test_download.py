"""Dataset downloads, against a local HTTP server on 127.0.0.1 (never the internet).

The server serves a generated MedMNIST-style archive, honours ``Range`` requests
(206 + Content-Range) unless told not to, and can be told to drop the
connection after K bytes or to answer with an HTTP error. The pneumoniamnist
spec is patched to point at it, with the archive's own checksum.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import re
import socket
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

import engine.datasets.download as dl
import engine.datasets.locate as base
from engine.datasets import REGISTRY, SPLITS, RemoteFile, load_splits
from engine.datasets.__main__ import main as cli_main
from engine.datasets.download import cached_file, destination, download, manual_steps
from engine.errors import DatasetError, ParamError

ID = "pneumoniamnist"


def _npz_bytes() -> bytes:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 12), ("val", 4), ("test", 6)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(n, 1).astype(np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


PAYLOAD = _npz_bytes()
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format, *args):  # keep test output quiet
        pass

    def do_GET(self):
        state = self.server.state
        state.ranges.append(self.headers.get("Range"))
        if state.status:
            self.send_error(state.status)
            return
        data, start = state.payload, 0
        wanted = self.headers.get("Range")
        if wanted and not state.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.drops > 0:  # send K bytes, then hang up (HTTP/1.0: the socket closes)
            state.drops -= 1
            self.wfile.write(body[: state.drop_after])
            return
        self.wfile.write(body)


class _Server:
    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.ranges: list[str | None] = []  # the Range header of each request (None: none)
        self.status = 0
        self.ignore_range = False
        self.drops = 0
        self.drop_after = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.state = self
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/pneumoniamnist.npz"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _patch_spec(monkeypatch, **changes) -> None:
    spec = REGISTRY[ID]
    monkeypatch.setitem(REGISTRY, ID, replace(spec, download=replace(spec.download, **changes)))


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(dl, "RETRY_WAIT_S", 0.0)


@pytest.fixture
def server(monkeypatch):
    srv = _Server(PAYLOAD)
    _patch_spec(monkeypatch, url=srv.url, checksum=f"md5:{PAYLOAD_MD5}")
    yield srv
    srv.close()


def _dest(tmp_path):
    return tmp_path / ID / f"{ID}.npz"


# --------------------------------------------------------------------------- the spec


def test_published_file_and_checksum():
    remote = REGISTRY[ID].download
    assert remote.url == "https://zenodo.org/records/10519652/files/pneumoniamnist.npz?download=1"
    assert remote.checksum == "md5:28209eda62fecd6e6a2d98b1501bb15f"
    assert remote.filename == "pneumoniamnist.npz"
    assert REGISTRY["pneumoniamnist_224"].download.checksum.endswith(
        "d6a3c71de1b945ea11211b03746c1fe1"
    )
    for key in ("chest_xray", "chest_xray_covid", "ham10000", "faces"):
        spec = REGISTRY[key]
        assert not spec.downloadable and spec.how_to_get and spec.layout, key


def test_remote_file_validates():
    with pytest.raises(ParamError, match="md5:<32 hex digits>"):
        RemoteFile("https://x/f.npz", "md5:abc", "f.npz")
    with pytest.raises(ParamError, match="must start with https://"):
        RemoteFile("ftp://x/f.npz", f"md5:{PAYLOAD_MD5}", "f.npz")
    with pytest.raises(ParamError, match="plain file name"):
        RemoteFile("https://x/f.npz", f"md5:{PAYLOAD_MD5}", "../f.npz")


def test_destination_follows_the_loader(tmp_path):
    assert destination(ID, tmp_path) == _dest(tmp_path)
    assert destination(ID, tmp_path / ID) == _dest(tmp_path)  # a root named like the folder
    assert destination("pneumoniamnist_64", tmp_path).name == "pneumoniamnist_64.npz"


# --------------------------------------------------------------------------- downloads


def test_download_verifies_and_loads(server, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "CHUNK_BYTES", 1024)
    calls = []
    path = download(ID, root=tmp_path, progress=lambda d, t: calls.append((d, t)))
    assert path == _dest(tmp_path) and path.read_bytes() == PAYLOAD
    assert not path.with_name(path.name + ".part").exists()
    assert calls[0] == (0, len(PAYLOAD)) and calls[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert len(calls) > 3 and all(a[0] <= b[0] for a, b in itertools.pairwise(calls))
    splits = load_splits(ID, root=tmp_path)
    assert [len(splits[s]) for s in SPLITS] == [12, 4, 6]
    assert cached_file(ID, root=tmp_path) == path


def test_cached_call_does_not_hit_the_server(server, tmp_path):
    path = download(ID, root=tmp_path)
    assert download(ID, root=tmp_path) == path
    assert server.ranges == [None]  # one request only
    assert download(ID, root=tmp_path, force=True) == path
    assert len(server.ranges) == 2 and path.read_bytes() == PAYLOAD


def test_url_override_is_used(server, tmp_path, monkeypatch):
    _patch_spec(monkeypatch, url=f"http://127.0.0.1:{_closed_port()}/x.npz")
    assert download(ID, root=tmp_path, url=server.url).read_bytes() == PAYLOAD


def test_interrupted_transfer_resumes_with_range(server, tmp_path):
    k = len(PAYLOAD) // 3
    server.drops, server.drop_after = 1, k
    with pytest.raises(DatasetError, match=r"stopped after .* run the download again to resume"):
        download(ID, root=tmp_path, retries=0)
    part = _dest(tmp_path).with_name(f"{ID}.npz.part")
    assert part.stat().st_size == k and not _dest(tmp_path).exists()
    path = download(ID, root=tmp_path)
    assert server.ranges == [None, f"bytes={k}-"]
    assert path.read_bytes() == PAYLOAD and not part.exists()


def test_interruption_is_retried_within_one_call(server, tmp_path):
    server.drops, server.drop_after = 2, 100
    path = download(ID, root=tmp_path, retries=2)
    assert server.ranges == [None, "bytes=100-", "bytes=200-"]
    assert path.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.ignore_range = True
    part = _dest(tmp_path).with_name(f"{ID}.npz.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"junk that must not be kept")
    path = download(ID, root=tmp_path)
    assert server.ranges == ["bytes=26-"]  # asked to resume, got the whole file (200)
    assert path.read_bytes() == PAYLOAD and not part.exists()


def test_complete_part_file_is_finished_on_416(server, tmp_path):
    part = _dest(tmp_path).with_name(f"{ID}.npz.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD)
    assert download(ID, root=tmp_path).read_bytes() == PAYLOAD


def test_checksum_mismatch_deletes_the_file(server, tmp_path, monkeypatch):
    _patch_spec(monkeypatch, checksum="md5:" + "0" * 32)
    with pytest.raises(DatasetError, match=r"checksum mismatch .* has been deleted") as err:
        download(ID, root=tmp_path)
    assert PAYLOAD_MD5 in str(err.value) and "0" * 32 in str(err.value)
    folder = tmp_path / ID
    assert not any(folder.iterdir())


def test_modified_copy_in_the_way_needs_force(server, tmp_path):
    dest = _dest(tmp_path)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"a modified copy")
    with pytest.raises(DatasetError, match=r"not the official file.*--force"):
        download(ID, root=tmp_path)
    assert server.ranges == [] and dest.read_bytes() == b"a modified copy"
    assert download(ID, root=tmp_path, force=True).read_bytes() == PAYLOAD


def test_connection_refused_says_offline_and_how_to_do_it_by_hand(tmp_path, monkeypatch):
    _patch_spec(monkeypatch, url=f"http://127.0.0.1:{_closed_port()}/pneumoniamnist.npz")
    with pytest.raises(DatasetError, match="seems to be offline") as err:
        download(ID, root=tmp_path)
    msg = str(err.value)
    assert "cannot connect to 127.0.0.1" in msg and "by hand" in msg
    assert "/pneumoniamnist.npz" in msg and str(_dest(tmp_path)) in msg
    assert "28209eda62fecd6e6a2d98b1501bb15f" in msg  # the published MD5 to check against


def test_silent_server_times_out(tmp_path, monkeypatch):
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        _patch_spec(monkeypatch, url=f"http://127.0.0.1:{silent.getsockname()[1]}/f.npz")
        with pytest.raises(DatasetError, match=r"did not answer within 0.3 s.*offline"):
            download(ID, root=tmp_path, timeout=0.3)


def test_http_404(server, tmp_path):
    server.status = 404
    with pytest.raises(DatasetError, match=r"answered HTTP 404 \(Not Found\)"):
        download(ID, root=tmp_path)
    assert not any((tmp_path / ID).iterdir())


def test_manual_only_dataset_gives_the_steps():
    with pytest.raises(DatasetError, match="cannot be downloaded automatically") as err:
        download("ham10000")
    msg = str(err.value)
    assert "10.7910/DVN/DBW86T" in msg and "CC BY-NC 4.0" in msg
    assert "HAM10000_metadata.csv" in msg and "lesion_id" in msg
    assert "Nothing was downloaded" in msg
    with pytest.raises(DatasetError, match="nothing to download"):
        download("synthetic")
    steps = manual_steps("chest_xray_covid")
    assert "covid19_hannover" in steps and "data.csv" in steps and "CC BY 3.0" in steps


def test_bad_arguments():
    with pytest.raises(ParamError, match="timeout"):
        download(ID, timeout=0)
    with pytest.raises(ParamError, match="retries"):
        download(ID, retries=-1)
    with pytest.raises(DatasetError, match="unknown dataset"):
        download("nope")


# --------------------------------------------------------------------------- CLI


def test_cli_download_then_cached(server, tmp_path, capsys):
    assert cli_main(["download", ID, "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "downloaded and verified (MD5 OK)" in out and str(_dest(tmp_path)) in out
    assert "CC BY 4.0" in out
    assert cli_main(["--root", str(tmp_path), "download", ID]) == 0  # global --root works too
    assert "already downloaded and verified" in capsys.readouterr().out
    assert len(server.ranges) == 1


def test_cli_errors_exit_2(tmp_path, monkeypatch, capsys):
    assert cli_main(["download", "ham10000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dataset ham10000 cannot be downloaded automatically")
    assert "Expected layout" in err and "Traceback" not in err
    _patch_spec(monkeypatch, url=f"http://127.0.0.1:{_closed_port()}/pneumoniamnist.npz")
    assert cli_main(["download", ID, "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: could not download pneumoniamnist") and "offline" in err
    assert "Traceback" not in err


def test_cli_list_says_how_each_dataset_is_obtained(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(base, "SIBLING_DATA", tmp_path / "absent")
    monkeypatch.setattr(base, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.delenv(base.ENV_VAR, raising=False)
    assert cli_main(["list"]) == 0
    out = capsys.readouterr().out
    assert f"download: automatic: python -m engine.datasets download {ID}\n" in out
    assert "download: by hand (python -m engine.datasets download ham10000" in out
    assert "download: not needed (generated in code)" in out
