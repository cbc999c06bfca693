"""Test-wide settings: no network, a private HF cache, deterministic CPU math."""

import os
import tempfile

# Set before transformers/datasets/evaluate are imported anywhere in the test session.
_HF_HOME = tempfile.mkdtemp(prefix="emosem-hf-home-")
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

# Tiny models: one thread is as fast and does not oversubscribe the 2-core machines.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
