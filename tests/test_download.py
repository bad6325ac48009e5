"""download(): cache hits, Range resume of interrupted transfers, sha256 checks, HTTP errors.

Everything is served by a threaded http.server on 127.0.0.1 inside the test; nothing touches the internet.
"""
import hashlib
import http.server
import re
import threading
import time

import pytest

from toolkit.download import DownloadError, cached_path, download

PAYLOAD = bytes(range(256)) * 1000  # 256 kB, every byte position distinguishable
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Server:
    """Serves PAYLOAD at /net.pkl with Range support; can drop the connection part-way (once)."""

    def __init__(self):
        self.requests = []  # (path, Range header or None)
        self.accept_encodings = []
        self.cut_after = None  # bytes to send before hanging up on the next request
        self.ignore_range = False
        self.range_offset_error = 0  # a faulty server answers a Range request from the wrong offset
        self.bytes_sent = 0
        self.delay_s = 0.0  # wait before answering, so that concurrent clients overlap
        self.send_length = True  # False: no Content-Length, the body ends when the connection closes
        self.drip_s = None  # send the body one byte at a time, this many seconds apart
        self.body = PAYLOAD
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                server.accept_encodings.append(self.headers.get("Accept-Encoding"))
                time.sleep(server.delay_s)
                if self.path != "/net.pkl":
                    self.send_error(404, "Not Found")
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and not server.ignore_range:
                    start = int(match.group(1)) - server.range_offset_error
                    if start >= len(PAYLOAD):
                        self.send_error(416, "Range Not Satisfiable")
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                else:
                    self.send_response(200)
                body = server.body[start:]
                if server.send_length:
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.close_connection = True
                self.end_headers()
                if server.cut_after is not None:
                    body, server.cut_after = body[: server.cut_after], None
                    self.close_connection = True
                try:
                    for piece in [body] if server.drip_s is None else [body[i:i + 1] for i in range(len(body))]:
                        self.wfile.write(piece)
                        self.wfile.flush()
                        server.bytes_sent += len(piece)
                        time.sleep(server.drip_s or 0)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up, as it should
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = _Server()
    yield srv
    srv.close()


def test_download_then_cache_hit_skips_network(server, tmp_path):
    path = download(server.url + "/net.pkl", cache_dir=tmp_path, sha256=PAYLOAD_SHA, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert path == cached_path(server.url + "/net.pkl", tmp_path)
    assert not list(tmp_path.glob("*.part"))
    assert len(server.requests) == 1
    assert server.accept_encodings == ["identity"]  # byte ranges must count file bytes, not gzip bytes
    again = download(server.url + "/net.pkl", cache_dir=tmp_path, sha256=PAYLOAD_SHA, progress=False)
    assert again == path and len(server.requests) == 1


def test_concurrent_downloads_of_one_url_fetch_it_once(server, tmp_path):
    """Four torchrun ranks (here threads) resolving the same --resume URL: one transfer, four good copies."""
    server.delay_s = 0.3
    results, errors = [], []

    def fetch():
        try:
            results.append(download(server.url + "/net.pkl", cache_dir=tmp_path, sha256=PAYLOAD_SHA, progress=False))
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 4
    assert all(path.read_bytes() == PAYLOAD for path in results)
    assert len(server.requests) == 1 and server.bytes_sent == len(PAYLOAD)


def test_existing_part_file_is_resumed_with_range(server, tmp_path):
    url = server.url + "/net.pkl"
    part = cached_path(url, tmp_path).with_suffix(".pkl.part")
    part.write_bytes(PAYLOAD[:100_000])
    path = download(url, cache_dir=tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("/net.pkl", "bytes=100000-")]
    assert server.bytes_sent == len(PAYLOAD) - 100_000


def test_interrupted_download_resumes_from_received_bytes(server, tmp_path):
    server.cut_after = 70_000
    path = download(server.url + "/net.pkl", cache_dir=tmp_path, sha256=PAYLOAD_SHA, progress=False)
    assert path.read_bytes() == PAYLOAD
    first, second = (rng for _, rng in server.requests)
    resumed_at = int(re.fullmatch(r"bytes=(\d+)-", second).group(1))
    assert first is None and 0 < resumed_at <= 70_000  # whole chunks received before the drop are kept


def test_interrupted_without_retries_keeps_part_and_says_how_to_resume(server, tmp_path):
    url = server.url + "/net.pkl"
    server.cut_after = 100_000
    with pytest.raises(DownloadError, match="run the same command again to resume"):
        download(url, cache_dir=tmp_path, progress=False, retries=0)
    kept = cached_path(url, tmp_path).with_suffix(".pkl.part").read_bytes()
    assert 0 < len(kept) <= 100_000 and kept == PAYLOAD[: len(kept)]
    assert not cached_path(url, tmp_path).exists()
    assert download(url, cache_dir=tmp_path, progress=False).read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    url = server.url + "/net.pkl"
    cached_path(url, tmp_path).with_suffix(".pkl.part").write_bytes(b"junk" * 10)
    server.ignore_range = True
    assert download(url, cache_dir=tmp_path, progress=False).read_bytes() == PAYLOAD


def test_range_answered_from_the_wrong_offset_restarts_cleanly(server, tmp_path):
    url = server.url + "/net.pkl"
    cached_path(url, tmp_path).with_suffix(".pkl.part").write_bytes(PAYLOAD[:1000])
    server.range_offset_error = 10
    assert download(url, cache_dir=tmp_path, sha256=PAYLOAD_SHA, progress=False).read_bytes() == PAYLOAD
    assert [rng for _, rng in server.requests] == ["bytes=1000-", None]


def test_unreachable_server_says_to_check_the_connection(server, tmp_path):
    url = server.url + "/net.pkl"
    server.close()
    with pytest.raises(DownloadError, match="check the network connection"):
        download(url, cache_dir=tmp_path, progress=False, retries=1)
    assert [p.suffix for p in tmp_path.iterdir()] == [".lock"]  # only the empty lock file stays


def test_sha_mismatch_deletes_and_errors(server, tmp_path):
    url = server.url + "/net.pkl"
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download(url, cache_dir=tmp_path, sha256="0" * 64, progress=False)
    assert [p.suffix for p in tmp_path.iterdir()] == [".lock"]  # only the empty lock file stays


def test_corrupted_cache_entry_is_fetched_again(server, tmp_path):
    url = server.url + "/net.pkl"
    cached = cached_path(url, tmp_path)
    cached.write_bytes(b"truncated")
    assert download(url, cache_dir=tmp_path, sha256=PAYLOAD_SHA, progress=False).read_bytes() == PAYLOAD
    assert len(server.requests) == 1


def test_404_is_a_clear_error(server, tmp_path):
    with pytest.raises(DownloadError, match=r"HTTP 404.*check that the URL"):
        download(server.url + "/missing.pkl", cache_dir=tmp_path, progress=False)
    assert not any(p.name.endswith(".pkl") for p in tmp_path.iterdir())


def test_cache_dir_defaults_to_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv("AFRO_FASHION_CACHE", str(tmp_path))
    assert cached_path("https://example.invalid/a/b.pkl").parent == tmp_path / "downloads"


def test_non_http_url_is_rejected(tmp_path):
    with pytest.raises(DownloadError, match="only http"):
        download("ftp://127.0.0.1/x.pkl", cache_dir=tmp_path)


# ----------------------------------------------------------------------------- hostile servers


def test_a_stream_without_length_beyond_the_size_cap_is_not_kept(server, tmp_path):
    server.send_length = False
    url = server.url + "/net.pkl"
    with pytest.raises(DownloadError, match="more than the limit of"):
        download(url, cache_dir=tmp_path, progress=False, max_bytes=100_000)
    assert [p.suffix for p in tmp_path.iterdir()] == [".lock"]  # neither the file nor a .part stays


def test_the_size_cap_comes_from_the_environment_and_an_announced_size_is_refused_at_once(server, tmp_path,
                                                                                           monkeypatch):
    monkeypatch.setenv("AFRO_FASHION_DOWNLOAD_MAX_MB", "0.1")  # 104,857 bytes < 256 kB
    with pytest.raises(DownloadError, match="announces 256000 bytes"):
        download(server.url + "/net.pkl", cache_dir=tmp_path, progress=False)
    assert [p.suffix for p in tmp_path.iterdir()] == [".lock"]
    monkeypatch.setenv("AFRO_FASHION_DOWNLOAD_MAX_MB", "lots")
    with pytest.raises(DownloadError, match="must be a positive number"):
        download(server.url + "/net.pkl", cache_dir=tmp_path, progress=False)


def test_a_dripping_server_runs_into_the_overall_deadline(server, tmp_path):
    server.drip_s = 0.05  # 20 bytes/s: 256 kB would take 3.5 hours, every read well within the read timeout
    started = time.monotonic()
    with pytest.raises(DownloadError, match="did not finish in time"):
        download(server.url + "/net.pkl", cache_dir=tmp_path, progress=False, deadline_s=1.0)
    assert time.monotonic() - started < 10


def test_the_deadline_comes_from_the_environment_and_covers_retries(server, tmp_path, monkeypatch):
    server.body, server.drip_s = PAYLOAD[:60], 0.1  # 6 s in all
    monkeypatch.setenv("AFRO_FASHION_DOWNLOAD_DEADLINE_S", "1")
    started = time.monotonic()
    with pytest.raises(DownloadError, match="did not finish in time.*resume"):
        download(server.url + "/net.pkl", cache_dir=tmp_path, progress=False, retries=5)
    assert time.monotonic() - started < 4
