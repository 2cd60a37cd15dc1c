"""`deband serve`: the API through FastAPI's TestClient, the command as a real server process."""

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="the web extra (fastapi, uvicorn, python-multipart) is not installed")
pytest.importorskip("multipart", reason="python-multipart is not installed")

from fastapi.testclient import TestClient  # noqa: E402

from deband.apps.serve import Result, ResultStore, ServeOptions, create_app  # noqa: E402
from deband.io.files import read_image, write_image  # noqa: E402
from deband.restore.debander import Debander  # noqa: E402
from deband.restore.images import banding_map  # noqa: E402
from helpers.server import start_server  # noqa: E402


def banded_png(tmp_path, name="banded.png", w=128, h=64, levels=63, flip=False) -> bytes:
    """A horizontal gradient rounded to `levels` steps (bands CAMBI sees), as 8-bit PNG bytes."""
    x = np.linspace(0.2, 0.5, w, dtype=np.float32)[None, :, None].repeat(h, 0).repeat(3, 2)
    if flip:
        x = x[:, ::-1]
    path = tmp_path / name
    write_image(path, (np.round(x * levels) / levels * 255).round().astype(np.uint8))
    return path.read_bytes()


def decode(data: bytes) -> np.ndarray:
    import cv2

    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """A temporary-files folder of the test's own, so that leftovers can be counted."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def client(tiny_weights, private_tmp):
    debander = Debander.load(tiny_weights, "cpu", steps=2)
    options = ServeOptions(max_upload_bytes=200_000, max_pixels=20_000)
    with TestClient(create_app(debander, options), base_url="http://127.0.0.1:8000") as c:
        yield c


def post(client, data: bytes, name="banded.png", **form):
    return client.post("/api/deband", files={"file": (name, data, "image/png")},
                       data={k: str(v) for k, v in form.items()})


def test_upload_gives_pictures_and_16bit_download(client, tmp_path, private_tmp):
    r = post(client, banded_png(tmp_path), steps=1, strength=0.8)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["width"], body["height"], body["bits"], body["steps"], body["strength"]) == (128, 64, 8, 1, 0.8)
    for name in ("before.png", "after.png", "banding-before.png", "banding-after.png"):
        got = client.get(body["files"][name])
        assert got.status_code == 200 and got.headers["content-type"] == "image/png"
        assert decode(got.content).shape == (64, 128, 3) and decode(got.content).dtype == np.uint8
    heat, score = banding_map(read_image(tmp_path / "banded.png").rgb())  # what `deband inspect` draws
    assert np.array_equal(decode(client.get(body["files"]["banding-before.png"]).content)[..., ::-1], heat)
    assert body["cambi_before"] == round(score, 3) > 10  # the bands are seen
    down = client.get(body["downloads"]["png16"])
    assert down.status_code == 200
    assert down.headers["content-disposition"].startswith('attachment; filename="banded-deband.png"')
    pixels = decode(down.content)
    assert pixels.dtype == np.uint16 and pixels.shape == (64, 128, 3)
    assert list(private_tmp.iterdir()) == []  # nothing kept on disk


@pytest.mark.slow
@pytest.mark.parametrize("bits", [16, 8])
def test_download_is_bit_exact_with_deband_image(client, tmp_path, tiny_weights, bits):
    data = banded_png(tmp_path, "in.png")
    body = post(client, data, steps=3, strength=0.7).json()
    served = client.get(body["downloads"][f"png{bits}"]).content
    out = tmp_path / "cli.png"
    cmd = [sys.executable, "-m", "deband.cli", "image", tmp_path / "in.png", "-o", out, "--weights", tiny_weights,
           "--steps", "3", "--strength", "0.7", "--device", "cpu", "--bit-depth", str(bits)]
    r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert served == out.read_bytes()


@pytest.mark.parametrize("data, form, status, says", [
    (b"hello, not an image", {}, 415, "notes.png: not an image deband can read"),
    (None, {"steps": 0}, 422, "steps: "),
    (None, {"steps": 101}, 422, "steps: "),
    (None, {"steps": "two"}, 422, "steps: "),
    (None, {"strength": 0}, 422, "strength: "),
    (None, {"strength": 1.5}, 422, "strength: "),
])
def test_bad_uploads_are_one_line_json_errors(client, tmp_path, private_tmp, data, form, status, says):
    r = post(client, data or banded_png(tmp_path), name="notes.png", **form)
    assert r.status_code == status
    assert list(r.json()) == ["error"] and says in r.json()["error"] and "\n" not in r.json()["error"]
    assert list(private_tmp.iterdir()) == []


def test_truncated_image(client, tmp_path):
    data = banded_png(tmp_path)
    r = post(client, data[: len(data) // 2], name="cut.png")
    assert r.status_code == 422 and r.json()["error"].startswith("cut.png: ")
    assert str(tmp_path) not in r.text and "upload" not in r.json()["error"]  # no server path leaks


def test_too_many_pixels_is_refused_from_the_header(client, tmp_path, private_tmp):
    r = post(client, banded_png(tmp_path, w=200, h=101), name="wide.png")  # 20 200 > 20 000
    assert r.status_code == 413
    assert r.json() == {"error": "wide.png: 200x101 is 20,200 pixels, over the limit of 20,000"}
    assert list(private_tmp.iterdir()) == []


def test_too_large_upload(client, private_tmp):
    r = post(client, b"\0" * 300_000, name="huge.png")  # declared length over the limit
    assert r.status_code == 413 and r.json() == {"error": "upload larger than the limit of 0.191 MB"}

    def chunks():  # no declared length: counted as it arrives
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="huge.png"\r\n\r\n'
        for _ in range(30):
            yield b"\0" * 10_000
        yield b"\r\n--b--\r\n"

    r = client.post("/api/deband", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and r.json() == {"error": "upload larger than the limit of 0.191 MB"}
    assert list(private_tmp.iterdir()) == []


def test_missing_file_and_unknown_result(client):
    r = client.post("/api/deband", data={"steps": "1"})
    assert r.status_code == 422 and r.json() == {"error": "file: Field required"}
    r = client.get("/api/results/nothing/after.png")
    assert r.status_code == 404 and list(r.json()) == ["error"]


def test_concurrent_clients_get_their_own_images(client, tmp_path):
    """Two uploads at once (one gradient rising, one falling): each gets its own image back."""
    uploads = {"rise": banded_png(tmp_path, "rise.png"), "fall": banded_png(tmp_path, "fall.png", flip=True)}
    bodies: dict[str, dict] = {}

    def send(key: str) -> None:
        bodies[key] = post(client, uploads[key], name=f"{key}.png", steps=1).json()

    threads = [threading.Thread(target=send, args=(k,)) for k in uploads]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert bodies["rise"]["id"] != bodies["fall"]["id"]
    for key, direction in (("rise", 1), ("fall", -1)):
        after = decode(client.get(bodies[key]["downloads"]["png16"]).content).astype(np.int64)
        before = decode(client.get(bodies[key]["files"]["before.png"]).content)
        assert np.array_equal(before, decode(uploads[key]))
        row = after[32, :, 1]
        assert np.sign(row[-1] - row[0]) == direction


class HeldIdentity(torch.nn.Module):
    """A model that returns its input once `release` is set; `started` counts the calls that
    began, `most` the most that ran at once."""

    def __init__(self):
        super().__init__()
        self.release, self.started, self.lock = threading.Event(), threading.Semaphore(0), threading.Lock()
        self.running = self.most = 0

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        self.started.release()
        self.release.wait(60)
        with self.lock:
            self.running -= 1
        return x


def test_restores_run_one_at_a_time_off_the_event_loop(tmp_path):
    model = HeldIdentity()
    with TestClient(create_app(Debander(model=model, steps=1)), base_url="http://localhost") as c:
        data = banded_png(tmp_path)
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(post(c, data).status_code)) for _ in range(2)]
        for t in threads:
            t.start()
        assert model.started.acquire(timeout=60)  # the first restore is under way, and held there
        assert c.get("/api/limits").status_code == 200  # the page's other requests are answered meanwhile
        assert model.running == 1 and not model.release.is_set()
        assert not model.started.acquire(timeout=1)  # the second upload waits for the first restore
        model.release.set()
        for t in threads:
            t.join(60)
    assert answers == [200, 200] and model.most == 1  # both restored, one after the other


def test_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for src in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text):
        assert client.get(src).status_code == 200, src
    assert "http://" not in page.text and "https://" not in page.text  # nothing from outside
    assert "default-src 'self'" in page.headers["content-security-policy"]
    limits = client.get("/api/limits").json()
    assert limits["max_upload_bytes"] == 200_000 and limits["steps"]["max"] == 100


def test_store_is_bounded_and_expires():
    now = [0.0]
    store = ResultStore(max_bytes=250, max_age=10, clock=lambda: now[0])
    make = lambda n: Result({"after.png": bytes(n)}, 1, 1, 8, 0.0, 0.0)  # noqa: E731
    first, second = store.put("a", make(100)), store.put("b", make(100))
    assert store.get(first) is not None and len(store) == 2
    third = store.put("c", make(100))  # 300 bytes > 250: the oldest goes
    assert store.get(first) is None and store.get(second) is not None and store.get(third)[0] == "c"
    now[0] = 11.0
    assert store.get(second) is None and store.get(third) is None and len(store) == 0
    alone = store.put("big", make(1000))  # larger than the bound: kept alone, for one download
    assert store.get(alone) is not None and len(store) == 1


# --- the command: a real server process ---------------------------------------------------

def stopped(proc: subprocess.Popen, sig: int) -> tuple[int, str]:
    """Send sig; (exit status, all it said on stderr)."""
    os.kill(proc.pid, sig)
    code = proc.wait(30)
    proc.reader.join(10)
    return code, "".join(proc.said)


@pytest.fixture
def server(tiny_weights):
    proc, url = start_server("--weights", str(tiny_weights))
    yield proc, url
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def upload_request(url: str, png: bytes, **headers: str) -> urllib.request.Request:
    """A POST of `png` as x.png with steps 1 to url + "api/deband", as the page sends it."""
    form = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\nContent-Type: image/png\r\n\r\n'
            + png + b'\r\n--b\r\nContent-Disposition: form-data; name="steps"\r\n\r\n1\r\n--b--\r\n')
    return urllib.request.Request(url + "api/deband", data=form,
                                  headers={"Content-Type": "multipart/form-data; boundary=b", **headers})


def test_real_server_answers_on_loopback(server, tmp_path):
    proc, url = server
    assert url.startswith("http://127.0.0.1:")
    req = upload_request(url, banded_png(tmp_path))
    with urllib.request.urlopen(req, timeout=60) as r:
        import json

        reply = json.load(r)
    with urllib.request.urlopen(url + reply["downloads"]["png16"].lstrip("/"), timeout=30) as r:
        assert decode(r.read()).dtype == np.uint16


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stops_cleanly_on_signals(server, sig):
    proc, _ = server
    code, said = stopped(proc, sig)
    assert code == 130 and said.endswith("deband: server stopped\n") and "Traceback" not in said


@pytest.mark.slow
def test_other_hosts_are_warned_about(tiny_weights):
    proc, url = start_server("--weights", str(tiny_weights), "--host", "127.0.0.2")  # still loopback
    code, said = stopped(proc, signal.SIGTERM)
    assert url.startswith("http://127.0.0.2:") and code == 130
    assert "deband: warning: listening on 127.0.0.2: anyone who can reach it" in said


@pytest.mark.slow
def test_busy_port_is_a_usage_error(server, tiny_weights):
    _, url = server
    port = url.rsplit(":", 1)[1].strip("/")
    r = subprocess.run([sys.executable, "-m", "deband.cli", "serve", "--port", port, "--weights", str(tiny_weights)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "cannot listen on 127.0.0.1 port" in r.stderr


def test_reads_what_read_image_reads(client, tmp_path):
    """TIFF (16-bit), JPEG and WebP uploads go through `deband.io.files.read_image` too."""
    x = (np.linspace(0, 1, 64)[None, :, None].repeat(32, 0).repeat(3, 2) * 65535).astype(np.uint16)
    write_image(tmp_path / "a.tif", x)
    from PIL import Image

    Image.fromarray((x // 257).astype(np.uint8)).save(tmp_path / "a.webp", lossless=True)
    Image.fromarray((x // 257).astype(np.uint8)).save(tmp_path / "a.jpg", quality=90)
    for name, bits in (("a.tif", 16), ("a.webp", 8), ("a.jpg", 8)):
        r = post(client, (tmp_path / name).read_bytes(), name=name, steps=1)
        assert r.status_code == 200, r.text
        assert r.json()["bits"] == bits == read_image(tmp_path / name).bit_depth
        assert decode(client.get(r.json()["downloads"]["png16"]).content).shape == (32, 64, 3)



@pytest.mark.parametrize("host, origin, status", [
    ("127.0.0.1:8000", None, 200),
    ("localhost", "http://localhost", 200),
    ("[::1]:1234", "http://[::1]:1234", 200),
    ("evil.example", None, 403),  # a page on evil.example whose name now points at 127.0.0.1
    ("evil.example:8000", "http://evil.example:8000", 403),
    ("127.0.0.1:8000", "http://evil.example", 403),  # a page elsewhere posting here
    ("127.0.0.1:8000", "http://localhost:3000", 403),  # another server's page on this machine
    ("127.0.0.1:8000", "null", 403),
])
def test_only_this_servers_names_and_its_own_page_are_answered(client, tmp_path, host, origin, status):
    headers = {"host": host} | ({"origin": origin} if origin else {})
    r = client.post("/api/deband", files={"file": ("a.png", banded_png(tmp_path), "image/png")},
                    data={"steps": "1"}, headers=headers)
    assert r.status_code == status, r.text
    assert client.get("/api/limits", headers={"host": host}).status_code == (403 if "evil" in host else 200)
    if status == 403:
        assert list(r.json()) == ["error"] and "\n" not in r.json()["error"]


@pytest.mark.slow
def test_real_server_widens_only_what_it_is_told(tiny_weights, tmp_path):
    proc, url = start_server("--weights", str(tiny_weights), "--allow-host", "deband.lan")
    port = url.rsplit(":", 1)[1].strip("/")

    def status(req: urllib.request.Request) -> int:
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    try:
        assert status(urllib.request.Request(url + "api/limits", headers={"Host": "evil.example"})) == 403
        assert status(urllib.request.Request(url + "api/limits", headers={"Host": f"deband.lan:{port}"})) == 200
        png = banded_png(tmp_path)
        assert status(upload_request(url, png, Host="evil.example", Origin="http://evil.example")) == 403
        assert status(upload_request(url, png, Origin="http://evil.example")) == 403
        assert status(upload_request(url, png, Origin=url.rstrip("/"))) == 200
    finally:
        stopped(proc, signal.SIGTERM)
