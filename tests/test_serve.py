"""inpaint serve: the HTTP API in-process (every error path, the size limit, two requests at
once, the same result as inpaint.fill) and the page in headless Chromium (skipped without it)."""

import io
import shutil
import threading
import time

import numpy as np
import pytest
from PIL import Image

from .conftest import ASTRONAUT, needs_dlib, run_without_tensorflow

pytest.importorskip("starlette")
pytest.importorskip("httpx")

FAST = {"iters": "3"}


def png_bytes(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def shipped():
    import inpaint

    return inpaint.load_model()


@pytest.fixture(scope="module")
def client(shipped):
    from starlette.testclient import TestClient

    from inpaint.serve import create_app

    return TestClient(create_app(shipped), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def photo():
    import inpaint

    return inpaint.read_image(ASTRONAUT)


def post_fill(client, photo_bytes, data=None, files=None, name="astronaut.png"):
    files = {"image": (name, photo_bytes, "image/png"), **(files or {})}
    return client.post("/api/fill", data={**FAST, **(data or {})}, files=files)


def test_importing_inpaint_and_its_cli_loads_no_web_library():
    run_without_tensorflow("import inpaint, inpaint.cli, sys\n"
                           "assert 'starlette' not in sys.modules and 'uvicorn' not in sys.modules")


def test_health_answers_json(client):
    import inpaint

    r = client.get("/api/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and "mouth" in r.json()["regions"]
    assert r.json()["version"] == inpaint.__version__


def test_page_and_its_files_are_served_from_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from another host
    assert client.get("/static/app.js").status_code == 200


@needs_dlib
def test_fill_gives_the_library_fill_and_keeps_pixels_outside_the_hole(client, photo):
    import inpaint

    r = post_fill(client, png_bytes(photo), {"region": "mouth"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    got = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    want = inpaint.fill(photo, region="mouth", options=inpaint.SearchOptions(iters=3))
    assert np.array_equal(got, want)
    assert not np.array_equal(got, photo)


@needs_dlib
def test_fill_answers_the_photos_own_format_when_asked(client):
    r = client.post("/api/fill", data={**FAST, "region": "nose", "format": "same"},
                    files={"image": ("a.jpg", ASTRONAUT.read_bytes(), "image/jpeg")})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert 'filename="a-filled.jpg"' in r.headers["content-disposition"]


@needs_dlib
def test_fill_answers_grey_and_16_bit_photos_in_their_mode(client, photo):
    gray = np.asarray(Image.fromarray(photo).convert("L"))
    for src in (gray, gray.astype(np.uint16) * 257 + 100):
        r = post_fill(client, png_bytes(src), {"region": "nose"})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        out = Image.open(io.BytesIO(r.content))
        assert out.mode == Image.fromarray(src).mode
        changed = np.asarray(out) != src
        assert 0 < changed.sum() < 20000  # the nose; the rest exact, 16 bits too


@needs_dlib
def test_mask_fills_only_its_black_pixels(client, photo):
    mask = np.full(photo.shape[:2], 255, np.uint8)
    mask[118:128, 195:215] = 0  # on the cheek (face box 175-265, 76-166)
    r = post_fill(client, png_bytes(photo), files={"mask": ("m.png", png_bytes(mask))})
    assert r.status_code == 200
    got = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    changed = np.any(got != photo, axis=-1)
    assert changed.any() and not changed[mask == 255].any()


@needs_dlib
def test_two_requests_at_once_both_get_their_result(client, photo):
    data, codes = png_bytes(photo), []

    def go(region):
        codes.append(post_fill(client, data, {"region": region}).status_code)

    threads = [threading.Thread(target=go, args=(r,)) for r in ("mouth", "nose")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert codes == [200, 200]


@pytest.mark.parametrize("data, files, status, words", [
    ({"region": "mouth"}, {"image": ("x.png", b"not an image at all")}, 400, "not an image"),
    ({"region": "ears"}, None, 400, "unknown region 'ears'"),
    ({"region": "mouth", "colour": "red"}, None, 400, "unknown field 'colour'"),
    ({"region": "mouth", "iters": "many"}, None, 400, "iters must be a int"),
    ({"region": "mouth", "iters": "-1"}, None, 400, "iterations must be in [0, "),
    ({"box": "1,2,3"}, None, 400, "box must be X,Y,W,H"),
    ({"box": "500,500,100,100"}, None, 422, "must have a positive size and lie inside"),
    ({}, None, 400, "nothing to fill"),
    ({"region": "mouth", "format": "gif"}, None, 400, "format must be"),
    ({"region": "mouth", "mask": "text"}, None, 400, "mask must be a file"),
])
def test_bad_input_is_a_4xx_with_json_naming_it(client, photo, data, files, status, words):
    r = post_fill(client, png_bytes(photo), data, files)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_missing_image_truncated_file_and_wrong_mask_size_are_4xx(client, photo):
    r = client.post("/api/fill", data={"region": "mouth"})
    assert r.status_code == 400 and "'image'" in r.json()["error"]
    whole = png_bytes(photo)
    r = post_fill(client, whole[: len(whole) // 2], {"region": "mouth"})
    assert r.status_code == 400 and "astronaut.png" in r.json()["error"]
    assert "/tmp" not in r.json()["error"]
    small = png_bytes(np.zeros((10, 10), np.uint8))
    r = post_fill(client, whole, files={"mask": ("m.png", small)})
    assert r.status_code == 400 and "the photo's size, 512x512" in r.json()["error"]


@needs_dlib
def test_a_photo_without_a_face_is_422(client):
    r = post_fill(client, png_bytes(np.full((80, 90, 3), 128, np.uint8)), {"region": "mouth"})
    assert r.status_code == 422 and "no face" in r.json()["error"]


def test_upload_over_the_limit_is_413_and_the_server_goes_on(client, photo, monkeypatch):
    from inpaint import serve

    big = b"0" * (serve.MAX_UPLOAD_BYTES + 1)
    r = client.post("/api/fill", files={"image": ("big.png", big)})
    assert r.status_code == 413 and "limit" in r.json()["error"]
    assert client.get("/api/health").status_code == 200
    monkeypatch.setattr(serve, "MAX_PIXELS", 1000)
    r = post_fill(client, png_bytes(photo), {"region": "mouth"})
    assert r.status_code == 413 and "over this server's limit" in r.json()["error"]


def test_unknown_route_is_json_404(client):
    r = client.get("/api/nothing")
    assert r.status_code == 404 and "error" in r.json()


@needs_dlib
def test_faces_gives_outlines_and_region_hulls(client, photo):
    r = client.post("/api/faces", files={"image": ("a.png", png_bytes(photo))})
    body = r.json()
    assert r.status_code == 200 and len(body["faces"]) == 1
    face = body["faces"][0]
    left, top, right, bottom = face["box"]
    mouth = np.array(face["regions"]["mouth"][0])
    assert (mouth[:, 0] > left).all() and (mouth[:, 1] < bottom + 20).all()
    assert face["grow"] > 1


def wait_until(condition, what: str, timeout: float = 60.0) -> None:
    """Wait for an event (a flag another thread sets), failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_progress_of_a_running_fill_by_its_job_id(client, photo, monkeypatch):
    from inpaint import serve

    seen, release = threading.Event(), threading.Event()

    def slow_fill(image, *, progress, **kw):  # stands in for inpaint.fill: reports, then waits
        progress({"stage": "search", "face": 1, "faces": 1, "iteration": 7, "iterations": 30})
        seen.set()
        assert release.wait(60)
        return image

    monkeypatch.setattr(serve, "fill", slow_fill)
    answers = []
    thread = threading.Thread(target=lambda: answers.append(
        post_fill(client, png_bytes(photo), {"region": "mouth", "job": "abc-1"})))
    thread.start()
    try:
        assert seen.wait(60)
        r = client.get("/api/progress", params={"job": "abc-1"})
        body = r.json()
        assert r.status_code == 200 and body["state"] == "running" and body["stage"] == "search"
        assert (body["iteration"], body["iterations"], body["face"]) == (7, 30, 1)
        assert body["seconds"] >= 0 and body["queue"] == 1
        again = post_fill(client, png_bytes(photo), {"region": "mouth", "job": "abc-1"})
        assert again.status_code == 400 and "already queued or running" in again.json()["error"]
    finally:
        release.set()
        thread.join(60)
    assert answers[0].status_code == 200
    r = client.get("/api/progress", params={"job": "abc-1"})
    assert r.status_code == 200 and r.json()["state"] == "unknown"  # done
    bad = post_fill(client, png_bytes(photo), {"region": "mouth", "job": "../x"})
    assert bad.status_code == 400 and "job must be" in bad.json()["error"]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@needs_dlib
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_page_fills_a_painted_stroke_in_a_browser(shipped, photo, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    import socket

    import uvicorn

    from inpaint.serve import create_app

    Image.fromarray(photo).save(tmp_path / "astronaut.png")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(shipped), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    errors = []
    try:
        wait_until(lambda: server.started, "uvicorn to start")
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.goto(f"http://127.0.0.1:{port}/")
            page.set_input_files("#file", str(tmp_path / "astronaut.png"))
            page.wait_for_selector("#regions button")
            page.evaluate("document.querySelector('#more').open = true;"
                          "document.querySelector('#size').value = 8")
            page.fill("#iters", "3")
            box = page.locator("#overlay").bounding_box()
            s = box["width"] / photo.shape[1]
            page.mouse.move(box["x"] + 195 * s, box["y"] + 122 * s)
            page.mouse.down()
            page.mouse.move(box["x"] + 215 * s, box["y"] + 122 * s, steps=5)
            page.mouse.up()
            page.click("#fill")
            page.wait_for_selector("#result-tools:not([hidden])", timeout=120_000)
            page.screenshot(path=str(tmp_path / "page.png"))
            data = page.evaluate("() => fetch(document.querySelector('#download').href)"
                                 ".then(r => r.arrayBuffer()).then(b => Array.from(new Uint8Array(b)))")
            # before/after: the toggle hides the result, the slider shows it again
            page.click("#toggle")
            assert page.eval_on_selector("#after", "c => c.style.visibility") == "hidden"
            page.fill("#compare", "50")
            assert page.eval_on_selector("#after", "c => c.style.visibility") == "visible"
            # a click on the mouth picks the region, as its button does; a second click drops it
            page.check("input[name=tool][value=region]")
            mx, my = np.mean(page.evaluate("faces[0].regions.mouth[0]"), axis=0)
            page.mouse.click(box["x"] + mx * s, box["y"] + my * s)
            page.wait_for_selector("#regions button.on")
            assert page.inner_text("#regions button.on") == "mouth"
            page.mouse.click(box["x"] + mx * s, box["y"] + my * s)
            assert page.locator("#regions button.on").count() == 0
            page.mouse.click(box["x"] + 5 * s, box["y"] + 5 * s)  # off every region: said so
            assert "Click inside" in page.inner_text("#error")
            browser.close()
    finally:
        server.should_exit = True
        thread.join(10)
    assert errors == []  # no script error on the page
    got = np.asarray(Image.open(io.BytesIO(bytes(data))).convert("RGB"))
    changed = np.any(got != photo, axis=-1)
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 200
    assert xs.min() >= 195 - 16 and xs.max() <= 215 + 16 and ys.min() >= 122 - 16 and ys.max() <= 122 + 16
