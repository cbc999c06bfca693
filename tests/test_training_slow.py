"""Long training tests (pytest -m slow; CI runs them): exact resume after SIGKILL, two processes, learning."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(REPO, "examples", "train.py")
QUICKSTART = os.path.join(REPO, "examples", "configs", "quickstart.yaml")

pytestmark = pytest.mark.slow


def _env(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"), PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    return env


def _small_run(out, *extra):
    return [TRAIN, "--config", QUICKSTART, "--synthetic", "{n: 120, seed: 5, image_size: 64}",
            "--per_device_batch_size", "4", "--max_steps", "14", "--checkpoint_every", "3", "--keep_checkpoints", "2",
            "--report_to", "none", "--eval_text_metrics", "false", "--eval_every_epoch", "false",
            "--output_dir", str(out),
            # GPT-2 dropout on (the quickstart turns it off): resuming must restore the RNG streams too.
            "--model_overrides", "{trainable_modules: [emotion_projector, mask_tokens, mask_head, prefix_adapter, "
            "language_model, image_encoder], text_config: {resid_pdrop: 0.1, embd_pdrop: 0.1, attn_pdrop: 0.1}}", *extra]


def test_sigkilled_run_resumes_to_the_same_weights(tmp_path):
    env = _env(tmp_path)
    straight = tmp_path / "straight"
    subprocess.run([sys.executable, *_small_run(straight)], check=True, env=env, cwd=REPO, capture_output=True, timeout=900)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, *_small_run(killed)], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = killed / "checkpoints" / "step-000003" / "trainer_state.json"
    deadline = time.time() + 600
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists(), "the run never wrote its first checkpoint"
    assert not (killed / "model.safetensors").exists(), "the run finished before it could be killed"

    resumed = subprocess.run([sys.executable, *_small_run(killed, "--resume", "latest")], env=env, cwd=REPO,
                             capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout + resumed.stderr
    a, b = load_file(straight / "model.safetensors"), load_file(killed / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


def test_two_processes_split_batches_and_agree(tmp_path):
    out = tmp_path / "ddp"
    env = _env(tmp_path)
    env["ACCELERATE_USE_CPU"] = "true"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
           *_small_run(out, "--max_steps", "4", "--checkpoint_every", "2")]
    result = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["num_processes"] == 2
    digests = summary["weights_sha256_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert summary["samples_per_rank"] == [16, 16]  # 4 steps x batch 4 on each rank: the data was split
    # One output folder with one set of weights and checkpoints (not one per rank).
    assert (out / "model.safetensors").exists()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000002"]
