"""The Gradio web demo: the request handler, and the page end to end in headless Chromium.

The browser test drives Debian's `chromium` over the DevTools protocol on a pipe (--remote-debugging-pipe:
no port, no websocket package). Every request stays on 127.0.0.1: the host resolver maps every other name
to nothing, and the test asserts that the page asked for nothing else. Without `chromium` on PATH the browser
test is skipped, or fails where EMOSEM_REQUIRE_CHROMIUM=1 (CI installs it: apt-get install -y chromium).
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from io import BytesIO

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from emosem.app import build_demo, make_handler
from tests.helpers import random_image, tiny_model, tiny_processor

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra intra-op threads only stall on a busy runner
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pipe():
    return pipeline(task="emotion-segmentation", model=tiny_model().eval(), processor=tiny_processor())


# ---------------------------------------------------------------------- the handler, without a browser
def test_handler_returns_overlays_and_explanations(pipe, tmp_path):
    path = tmp_path / "art.png"
    random_image(60, 90).save(path)
    run = make_handler(pipe)
    gallery, text, status = run(str(path), ["awe", "fear"], 0, 0.5)
    assert status.startswith("Done") and "art.png" in status
    assert [caption.split(" ")[0] for _, caption in gallery] == ["awe", "fear"]
    for picture, _ in gallery:
        assert abs(picture.width / picture.height - 90 / 60) < 0.01
    lines = text.splitlines()
    assert len(lines) == 2 and lines[0].startswith("awe (score ") and lines[1].startswith("fear (score ")
    expected = pipe(str(path), emotions=["awe", "fear"], seed=0)
    assert lines[0].endswith(" ".join(expected[0]["explanation"].split()))
    gallery, text, _ = run(str(path), ["all", "awe"], 1, 0.5)
    assert len(gallery) == 8 and len(text.splitlines()) == 8


def test_handler_reports_bad_uploads_in_the_page(pipe, tmp_path):
    run = make_handler(pipe, max_upload_mb=0.01, max_pixels=5000)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (100, 100, 3), dtype=np.uint8)).save(big)
    many = tmp_path / "many.png"
    Image.new("RGB", (100, 100)).save(many)
    small = tmp_path / "small.png"
    random_image(20, 20).save(small)
    cases = [
        (str(broken), ["all"], "Error: broken.png: cannot be decoded"),
        (str(big), ["all"], "big.png: the file is"),
        (str(many), ["all"], "many.png: refused"),
        (str(small), [], "choose at least one emotion"),
        (None, ["all"], "upload an artwork first"),
    ]
    for path, emotions, message in cases:
        gallery, text, status = run(path, emotions, 0, 0.5)
        assert gallery == [] and text == ""
        assert status.startswith("Error: ") and message in status, status
        assert str(tmp_path) not in status  # the page names the file, not the server's temporary path
    assert run(str(small), ["awe"], 0, 0.5)[2].startswith("Done")  # and it still works afterwards


# ---------------------------------------------------------------------- headless Chromium
class Chromium:
    """Headless Chromium on the DevTools protocol over a pipe (fd 3: commands in, fd 4: replies out)."""

    def __init__(self, binary: str, timeout: float = 30.0):
        self.profile = tempfile.mkdtemp(prefix="emosem-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def remap():  # in the child, before exec
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--disable-extensions", "--disable-default-apps",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            f"--user-data-dir={self.profile}", "--remote-debugging-pipe", "about:blank",
        ]
        self.proc = subprocess.Popen(args, preexec_fn=remap, close_fds=False,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.timeout = timeout
        self.session = None
        self.events: list[dict] = []
        self._next = 0
        self._replies: dict[int, dict] = {}
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buffer = b""
        while chunk := os.read(self._from_chrome, 1 << 16):
            buffer += chunk
            while b"\0" in buffer:
                message, buffer = buffer.split(b"\0", 1)
                data = json.loads(message)
                with self._cond:
                    if "id" in data:
                        self._replies[data["id"]] = data
                    else:
                        self.events.append(data)
                    self._cond.notify_all()

    def send(self, method: str, browser_level: bool = False, **params):
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if self.session and not browser_level:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while self._next not in self._replies:
                if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"Chromium did not answer {method}")
            reply = self._replies.pop(self._next)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def open(self, url: str):
        target = self.send("Target.createTarget", browser_level=True, url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", browser_level=True, targetId=target, flatten=True)["sessionId"]
        self.send("Network.enable")
        self.send("Runtime.enable")
        self.send("Page.navigate", url=url)

    def eval(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.eval(expression)
            except RuntimeError as err:  # the page is between two documents (a reload): ask again
                if "navigated or closed" not in str(err) and "context" not in str(err).lower():
                    raise
                value = None
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"the page never satisfied: {expression}")

    def set_file(self, selector: str, path: str):
        root = self.send("DOM.getDocument", depth=-1)["root"]["nodeId"]
        node = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        if not node:
            raise RuntimeError(f"no element matches {selector}")
        self.send("DOM.setFileInputFiles", files=[path], nodeId=node)

    def requested_urls(self) -> list[str]:
        with self._cond:
            return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def close(self):
        try:
            self.send("Browser.close", browser_level=True)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        shutil.rmtree(self.profile, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_UPLOADED = (
    "(() => {{ const t = document.querySelector('#artwork').innerText;"
    " return t.includes('{name}') && !t.includes('Uploading'); }})()"
)
_STATUS = "document.querySelector('#status').innerText"
_TEXT = "document.querySelector('#explanations textarea').value"
_IMAGES = (
    "Array.from(document.querySelectorAll('#overlays img')).filter(i => i.complete && i.naturalWidth > 0)"
    ".map(i => [i.src, i.naturalWidth, i.naturalHeight])"
)


def _upload_and_run(browser: Chromium, path: str):
    # A fresh page for each upload: the same state a user starts from.
    try:
        browser.eval("window.__stale = true; setTimeout(() => location.reload(), 0)")
    except RuntimeError:
        pass  # the reply may lose the race with the navigation
    browser.wait_for("!window.__stale && !!document.querySelector('#artwork input[type=file]')"
                     " && !!document.querySelector('#run')")
    browser.set_file("#artwork input[type=file]", path)
    browser.wait_for(_UPLOADED.format(name=os.path.splitext(os.path.basename(path))[0]))  # shown as stem + ext
    browser.eval("document.querySelector('#run').click()")
    return browser.wait_for(f"(() => {{ const s = {_STATUS}; return /^(Done|Error)/.test(s) && s; }})()")


def test_web_demo_end_to_end_in_headless_chromium(pipe, tmp_path, monkeypatch):
    if shutil.which("chromium") is None:
        message = "needs Debian's chromium on PATH (apt-get install -y chromium)"
        if os.environ.get("EMOSEM_REQUIRE_CHROMIUM") == "1":  # CI sets this: a missing browser is a failure there
            pytest.fail(message)
        pytest.skip(message)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    checkpoint = tmp_path / "checkpoint"
    pipe.save_pretrained(checkpoint)
    art = tmp_path / "painting.png"
    random_image(90, 150, seed=4).save(art)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00 this is not an image")
    huge = tmp_path / "huge.png"
    random_image(300, 300, seed=5).save(huge)  # ~270 kB of noise, over the 0.1 MB limit below
    assert huge.stat().st_size > 100_000 > art.stat().st_size

    demo = build_demo(str(checkpoint), max_upload_mb=0.1)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    browser = Chromium(shutil.which("chromium"))
    try:
        browser.open(f"http://127.0.0.1:{port}/")
        browser.wait_for("!!document.querySelector('#artwork input[type=file]')")

        # An undecodable upload: an error in the page, nothing else.
        status = _upload_and_run(browser, str(broken))
        assert status.startswith("Error: broken.png: cannot be decoded as an image"), status
        assert browser.eval(_TEXT) == ""
        # An oversized upload: the same.
        status = _upload_and_run(browser, str(huge))
        assert status.startswith("Error: huge.png: the file is 0.") and "over the limit of 0.1 MB" in status, status

        # A real artwork, the default "all": eight overlays and eight explanations.
        status = _upload_and_run(browser, str(art))
        assert status == "Done: 8 emotion(s) for painting.png.", status
        lines = browser.eval(_TEXT).splitlines()
        expected = pipe(str(art), emotions=None, seed=0)
        assert lines == [f"{r['emotion']} (score {r['score']:.2f}): {' '.join(r['explanation'].split())}"
                         for r in expected]
        shown = browser.wait_for(f"(() => {{ const a = {_IMAGES}; return a.length === 8 && a; }})()")
        for src, width, height in shown:
            assert abs(width / height - 150 / 90) < 0.01
        src = shown[0][0]
        assert src.startswith(f"http://127.0.0.1:{port}/")
        with urllib.request.urlopen(src, timeout=10) as response:
            picture = Image.open(BytesIO(response.read()))
            picture.load()
        assert picture.format == "PNG" and picture.size == (shown[0][1], shown[0][2])

        # Choose emotions instead of "all": only those are run.
        for name in ("all", "fear"):
            browser.eval("Array.from(document.querySelectorAll('#emotions label'))"
                         f".find(l => l.innerText.trim() === '{name}').querySelector('input').click()")
        browser.eval("document.querySelector('#run').click()")
        browser.wait_for(f"{_STATUS} === 'Done: 1 emotion(s) for painting.png.'")
        assert browser.eval(_TEXT).startswith("fear (score ")
        browser.wait_for(f"(() => {{ const a = {_IMAGES}; return a.length === 1 && a; }})()")

        # The server kept running through the error; the page asked nothing of any other host.
        assert all(u.startswith((f"http://127.0.0.1:{port}/", "data:", "blob:")) for u in browser.requested_urls()), [
            u for u in browser.requested_urls() if "127.0.0.1" not in u
        ]
    finally:
        browser.close()
        demo.close()
