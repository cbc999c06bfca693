"""Load: memory stays flat over a stream of 300 images; the web demo serves 20 concurrent requests on loopback
(one of them a bad upload) without errors, and the bad upload does not affect the others."""

import gc
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psutil
import pytest
import torch
from transformers import pipeline

from tests.helpers import random_image, tiny_model, tiny_processor
from tests.robustness.counters import tried

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    return pipeline(task="emotion-segmentation", model=tiny_model().eval(), processor=tiny_processor())


def test_memory_stays_flat_over_300_images(pipe):
    """300 images of varying size through the pipeline (3 emotions, short explanations): after a warm-up of 50,
    resident memory grows by less than 50 MB over the next 250 (a leak of one saliency map per image would not)."""
    rng = np.random.default_rng(0)
    process = psutil.Process()

    def image(i):
        h, w = int(rng.integers(32, 160)), int(rng.integers(32, 160))
        return random_image(h, w, seed=i)

    for i in range(50):
        pipe(image(i), emotions=["awe", "fear", "sadness"], max_new_tokens=4)
    gc.collect()
    start = process.memory_info().rss
    peak = start
    for i in range(50, 300):
        results = pipe(image(i), emotions=["awe", "fear", "sadness"], max_new_tokens=4)
        assert len(results) == 3
        if i % 25 == 0:
            peak = max(peak, process.memory_info().rss)
    gc.collect()
    end = process.memory_info().rss
    growth = (max(end, peak) - start) / 2**20
    assert growth < 50, f"resident memory grew by {growth:.1f} MB over 250 images"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_web_demo_serves_20_concurrent_requests_on_loopback(pipe, tmp_path, monkeypatch):
    from gradio_client import Client, handle_file

    from emosem.app import build_demo

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    good = []
    for i in range(19):
        path = tmp_path / f"art{i:02d}.png"
        random_image(40 + i, 60, seed=i).save(path)
        good.append(path)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00 not an image at all")
    uploads = good[:10] + [bad] + good[10:]

    demo = build_demo(pipe)
    demo.queue(default_concurrency_limit=4)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)

        def request(path):
            t = time.monotonic()
            gallery, text, status = client.predict(handle_file(str(path)), ["awe"], 0, 0.5, api_name="/run")
            return path, gallery, text, status, time.monotonic() - t

        with ThreadPoolExecutor(max_workers=len(uploads)) as pool:
            replies = list(pool.map(request, uploads, timeout=240))
    finally:
        demo.close()
    assert len(replies) == 20
    for path, gallery, text, status, seconds in replies:
        if path == bad:
            assert status.startswith("Error: broken.png: cannot be decoded as an image"), status
            assert not gallery and not text
        else:
            assert status == f"Done: 1 emotion(s) for {path.name}.", status
            assert len(gallery) == 1 and text.startswith("awe (score ")
    tried("concurrent requests", len(replies))
    tried("bad inputs")
