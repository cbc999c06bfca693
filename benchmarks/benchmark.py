"""EmoSEM performance benchmark at the paper preset (random weights), on the machine it runs on.

    python benchmarks/benchmark.py                      # CPU defaults: ~10 min on 2 cores, writes benchmarks/RESULTS.md
    python benchmarks/benchmark.py --repeats 5 --batch-sizes 1,2,4 --train-batch-size 4
    python benchmarks/benchmark.py --device cuda         # adds (e): bf16 full pipeline at the best batch size, SAM TFLOP/s

Measures (every timing is the median of `--repeats` runs after `--warmup` runs):

(a) seconds per image of the full pipeline (`pipeline("emotion-segmentation")`: preprocessing, encoders,
    decoder, 25-token explanation, post-processing) for 1 emotion and for all 8 emotions, and their ratio;
(b) seconds per training step (DataLoader + forward + backward + AdamW step, the trainer's loader code
    `emosem.training.data.build_train_loader`) from pixels and from the feature cache, and their ratio;
(c) peak resident memory during one inference call (sampled from /proc every 5 ms), and on CUDA the peak
    allocated GPU memory;
(d) images per second of the single-emotion pipeline against batch size;
(e) on CUDA: bf16-autocast full-pipeline images/s at the best batch size next to the paper's 6.11 FPS
    (RTX 4090), and the SAM image encoder's achieved TFLOP/s (FLOPs counted by torch's FlopCounterMode).

Weights are random (no checkpoint is needed; the cost does not depend on the values). The tokenizer is the
offline byte-level BPE of the tiny preset (the paper's distilgpt2 tokenizer needs the Hub); it only
changes which token ids the explanations hold. Explanations run the full 25 tokens (a random model
almost never draws end-of-text among 50257 tokens).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO]

import torch  # noqa: E402

PAPER_FPS = 6.11  # paper, RTX 4090, full pipeline
PAPER_TRAIN_HOURS = 36  # paper, 10 epochs


# --------------------------------------------------------------------------- helpers
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats: int, warmup: int) -> tuple[float, list[float]]:
    """Median seconds of `fn()` over `repeats` runs after `warmup` runs (CUDA synchronised)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def timed_interleaved(fns: dict, device, repeats: dict | int, warmup: int) -> dict:
    """Like `timed` for several functions, alternating them run by run so that a change in the machine's load
    (it may be shared) affects all of them alike. -> {name: (median seconds, [runs])}."""
    reps = repeats if isinstance(repeats, dict) else {k: repeats for k in fns}
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    runs: dict[str, list[float]] = {k: [] for k in fns}
    while any(len(runs[k]) < reps[k] for k in fns):
        for name, fn in fns.items():
            if len(runs[name]) < reps[name]:
                sync(device)
                start = time.perf_counter()
                fn()
                sync(device)
                runs[name].append(time.perf_counter() - start)
    return {k: (statistics.median(v), v) for k, v in runs.items()}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak resident set size while the block runs (a thread samples /proc/self/statm)."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __enter__(self):
        self.before = rss_bytes()
        self.peak = self.before
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def machine_description(device: torch.device) -> dict:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    mem = "unknown"
    with contextlib.suppress(OSError):
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 2**20:.1f} GiB"
    import transformers

    desc = {
        "cpu": cpu,
        "logical cores": os.cpu_count(),
        "torch threads": torch.get_num_threads(),
        "memory": mem,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        desc["gpu"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
    return desc


def load_average() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


# --------------------------------------------------------------------------- set-up
def build(device: torch.device, image_size: int, n_images: int, preset: str = "paper"):
    from datasets_emosem import make_synthetic_artworks
    from modeling_emosem import EmoSEMConfig, EmoSEMModel, EmoSEMProcessor
    from modeling_emosem.tokenizer_emosem import build_tiny_tokenizer

    torch.manual_seed(0)
    config = EmoSEMConfig.from_preset(preset)
    model = EmoSEMModel(config).to(device).eval()
    vocab = min(4096, config.text_config.vocab_size)
    processor = EmoSEMProcessor.from_config(config, tokenizer=build_tiny_tokenizer(vocab, config.emotions))
    rows = make_synthetic_artworks(n_images + 2, seed=0, image_size=image_size, split_fractions=(1.0, 0.0, 0.0))["train"]
    return model, processor, rows


def autocast_ctx(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --------------------------------------------------------------------------- (a), (c), (d)
def bench_inference(pipe, images, device, args, amp: bool) -> dict:
    out = {}
    image = images[0]

    def one(emotions, batch=None, bs=1):
        def run():
            with autocast_ctx(device, amp):
                pipe(batch if batch is not None else image, emotions=emotions, seed=0, batch_size=bs)
        return run

    # (c) first call doubles as warm-up: peak resident memory (and GPU memory) of one single-emotion inference.
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with PeakRSS() as peak:
        one(["awe"])()
    sync(device)
    out["rss_before_gib"] = peak.before / 2**30
    out["rss_peak_gib"] = peak.peak / 2**30
    out["ru_maxrss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if device.type == "cuda":
        out["gpu_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    with PeakRSS() as peak8:
        one(None)()
    out["rss_peak8_gib"] = peak8.peak / 2**30

    # (a) 1 emotion vs all 8, alternating (the first calls above were the warm-up).
    res = timed_interleaved({"one": one(["awe"]), "all8": one(None)}, device, args.repeats, max(args.warmup - 1, 0))
    (out["one"], out["one_runs"]), (out["all8"], out["all8_runs"]) = res["one"], res["all8"]
    out["ratio"] = out["all8"] / out["one"]

    # (d) images/s vs batch size (single emotion), batch sizes alternating run by run. Everything is warm by now;
    # on CUDA one warm-up run per new batch shape.
    res = timed_interleaved({bs: one(["awe"], images[:bs], bs) for bs in args.batch_sizes}, device, args.repeats,
                            1 if device.type == "cuda" else 0)
    out["batches"] = {}
    for bs, (sec, runs) in res.items():
        out["batches"][bs] = {"seconds": sec, "images_per_s": bs / sec, "runs": runs}
        print(f"  batch {bs}: {bs / sec:.3f} images/s", flush=True)
    return out


def preprocessing_seconds(processor, images, repeats: int) -> float:
    sec, _ = timed(lambda: processor.encode_images(images[:1]), torch.device("cpu"), max(repeats, 3), 1)
    return sec


# --------------------------------------------------------------------------- (b)
def bench_training(model, processor, rows, device, args, amp: bool) -> dict:
    from emosem.feature_cache import build_feature_cache
    from emosem.training.config import TrainConfig
    from emosem.training.data import build_train_loader
    from emosem.training.optim import build_optimizer_and_scheduler

    bs = args.train_batch_size
    train_rows = rows.select(range(bs))
    names = list(train_rows.features["emotion"].names)
    out = {"batch_size": bs}
    with tempfile.TemporaryDirectory(prefix="emosem-bench-cache-") as cache_dir:
        sync(device)
        start = time.perf_counter()
        manifest = build_feature_cache(model, processor, train_rows, cache_dir, batch_size=bs, progress=False,
                                       autocast=amp)
        sync(device)
        out["cache_build_s_per_image"] = (time.perf_counter() - start) / bs
        out["cache_mib_per_image"] = sum(
            os.path.getsize(os.path.join(cache_dir, f)) for f in os.listdir(cache_dir) if f.startswith("shard-")
        ) / 2**20 / manifest["dataset"]["num_images"]

        model.train()
        cfg = TrainConfig(preset="paper", per_device_batch_size=bs, gradient_accumulation_steps=1, num_workers=0)
        optimizer, _ = build_optimizer_and_scheduler(model, cfg, num_training_steps=1000)

        def stepper(loader):
            state = {"it": iter(loader)}

            def step():
                try:
                    batch = next(state["it"])
                except StopIteration:
                    state["it"] = iter(loader)
                    batch = next(state["it"])
                batch = {k: v.to(device) for k, v in batch.items()}
                with autocast_ctx(device, amp):
                    loss = model(**batch).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            return step

        cached = stepper(build_train_loader(TrainConfig(**{**cfg.to_dict(), "feature_cache": cache_dir}), model,
                                            processor, train_rows, names))
        pixels = stepper(build_train_loader(cfg, model, processor, train_rows, names))
        # Cached steps warm up the shared trainable part (decoder, LM backward, AdamW state); the encoders of the
        # pixel path already ran during the cache build. Then pixel and cached steps alternate.
        for _ in range(max(args.warmup, 2)):
            cached()
        for _ in range(args.train_warmup):
            pixels()
        res = timed_interleaved({"pixels": pixels, "cache": cached}, device,
                                {"pixels": args.train_repeats, "cache": max(args.repeats, 5)}, 0)
        (out["pixels"], out["pixel_runs"]), (out["cache"], out["cache_runs"]) = res["pixels"], res["cache"]
        out["ratio"] = out["pixels"] / out["cache"]
        model.eval()
        del optimizer
    return out


# --------------------------------------------------------------------------- (e)
def sam_flops(config) -> float:
    """FLOPs of one SAM image-encoder pass (1024 px), counted on the meta device (no compute)."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers.models.sam.modeling_sam import SamVisionEncoder

    vc = config.sam_config.vision_config
    with torch.device("meta"):
        encoder = SamVisionEncoder(vc)
        x = torch.empty(1, 3, vc.image_size, vc.image_size)
        with FlopCounterMode(display=False) as counter:
            encoder(x)
    return float(counter.get_total_flops())


def bench_gpu(model, pipe, images, device, args) -> dict:
    out = {}
    # SAM encoder alone, bf16 autocast, at the largest batch that fits the sweep.
    flops = sam_flops(model.config)
    best = {}
    for bs in args.gpu_batch_sizes:
        imgs = (images * ((bs + len(images) - 1) // len(images)))[:bs]

        def run():
            with autocast_ctx(device, True):
                pipe(imgs, emotions=["awe"], seed=0, batch_size=bs)
        try:
            sec, _ = timed(run, device, args.repeats, args.warmup)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            break
        best[bs] = bs / sec
        print(f"  GPU bf16 batch {bs}: {bs / sec:.1f} images/s", flush=True)
    out["pipeline_images_per_s"] = best
    out["best_batch"] = max(best, key=best.get)
    x = torch.randn(args.sam_batch, 3, model.config.sam_image_size, model.config.sam_image_size, device=device)

    def sam():
        with torch.inference_mode(), autocast_ctx(device, True):
            model.sam.vision_encoder(x)
    sec, _ = timed(sam, device, args.repeats, args.warmup)
    out["sam_batch"] = args.sam_batch
    out["sam_seconds"] = sec
    out["sam_tflops"] = flops * args.sam_batch / sec / 1e12
    out["sam_gflop_per_image"] = flops / 1e9
    return out


# --------------------------------------------------------------------------- report
def write_results(path, machine, args, device, load_start, load_end, inf, pre_s, train, gpu, wall, sam_gflop) -> str:
    lines = [
        "# EmoSEM benchmark results",
        "",
        f"Written by `benchmarks/benchmark.py` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} "
        f"(wall time {wall / 60:.1f} min). Paper preset (SAM ViT-B at 1024 px, CLIP ViT-B/16 at 224 px, 6-layer GPT-2 "
        f"with cross-attention; 276.7M parameters), random weights, synthetic {args.image_size}x{args.image_size} "
        "artworks, 25-token nucleus-sampled explanations.",
        *([] if args.preset == "paper" else ["", f"**Preset {args.preset!r}: a check of the script, not the paper figures.**"]),
        "",
        "## Machine",
        "",
        *[f"- {k}: {v}" for k, v in machine.items()],
        f"- load average (1/5/15 min) at start: {load_start}; at end: {load_end}",
        "",
        f"Command: `python benchmarks/benchmark.py {' '.join(sys.argv[1:])}`".rstrip() + "",
        "",
        *([f"torch runs {torch.get_num_threads()} CPU thread(s) (`--threads`) on {os.cpu_count()} logical cores: on a "
           "machine shared with other jobs, every parallel op waits for all its threads to be scheduled, which "
           "multiplies small-op latency (generation) far more than it saves on large ones.", ""]
          if args.threads and device.type == "cpu" and args.threads < (os.cpu_count() or 1) else []),
        f"Timings are medians of {args.repeats} runs after {args.warmup} warm-up run(s) (training from pixels: "
        f"{args.train_repeats} runs after {args.train_warmup} (the encoders are warm from the cache build); from the "
        f"cache: {max(args.repeats, 5)} after {max(args.warmup, 2)}). The figures compared in a ratio are measured "
        "alternately, run by run, so that a change of load affects both alike. Few repetitions keep the default run near 10 minutes on 2 cores; raise them with "
        "`--repeats`, `--train-repeats`. The machine may be shared with other jobs (see the load average): the "
        "ratios are more meaningful than the absolute seconds.",
        "",
        "## (a) One encoder pass for all emotions",
        "",
        "| emotions per image | seconds per image | runs (s) |",
        "|---|---|---|",
        f"| 1 | {inf['one']:.2f} | {', '.join(f'{t:.2f}' for t in inf['one_runs'])} |",
        f"| 8 (all) | {inf['all8']:.2f} | {', '.join(f'{t:.2f}' for t in inf['all8_runs'])} |",
        "",
        f"**8 emotions / 1 emotion = {inf['ratio']:.2f}x** (target: at most 1.3x) — "
        f"{'met' if inf['ratio'] <= 1.3 else 'NOT met'}. The 8 emotions cost {8 / inf['ratio']:.1f}x less than "
        "8 single-emotion calls.",
        f"Preprocessing (SAM + CLIP image processors, on the CPU) of one image: {pre_s:.3f} s.",
        "",
        "## (b) Training step: pixels vs feature cache",
        "",
        f"Batch of {train['batch_size']} (image, emotion, explanation, mask) rows; one step = DataLoader batch + "
        "forward + backward + AdamW step, through the trainer's own loader (`build_train_loader`). Frozen SAM "
        "encoder, feature mixer and CLIP as in the paper.",
        "",
        "| training step from | seconds per step | runs (s) |",
        "|---|---|---|",
        f"| pixels (encoders every step) | {train['pixels']:.2f} | {', '.join(f'{t:.2f}' for t in train['pixel_runs'])} |",
        f"| feature cache (fp16 safetensors) | {train['cache']:.3f} | {', '.join(f'{t:.3f}' for t in train['cache_runs'])} |",
        "",
        f"**pixels / cache = {train['ratio']:.1f}x** (target: at least 10x) — "
        f"{'met' if train['ratio'] >= 10 else 'NOT met'}.",
        f"Building the cache: {train['cache_build_s_per_image']:.2f} s per image (paid once), "
        f"{train['cache_mib_per_image']:.2f} MiB per image on disk (fp16: SAM 256x64x64 + CLIP 197x768).",
        "",
        "## (c) Memory of inference",
        "",
        f"- resident memory before the call (model loaded): {inf['rss_before_gib']:.2f} GiB",
        f"- peak resident memory during a 1-emotion inference: {inf['rss_peak_gib']:.2f} GiB; "
        f"during an 8-emotion inference: {inf['rss_peak8_gib']:.2f} GiB",
        f"- process peak (ru_maxrss, includes building the model): {inf['ru_maxrss_gib']:.2f} GiB",
    ]
    if "gpu_peak_gib" in inf:
        lines.append(f"- peak allocated GPU memory (1 emotion): {inf['gpu_peak_gib']:.2f} GiB")
    lines += [
        "",
        "## (d) Throughput against batch size (1 emotion per image)",
        "",
        "Batch sizes measured alternately, run by run.",
        "",
        "| batch size | images / s | seconds per batch | runs (s) |",
        "|---|---|---|---|",
        *[f"| {bs} | {v['images_per_s']:.3f} | {v['seconds']:.2f} | {', '.join(f'{t:.2f}' for t in v['runs'])} |"
          for bs, v in inf["batches"].items()],
        "",
        "## (e) GPU",
        "",
    ]
    if gpu is None:
        lines += [
            "Not measured: no GPU in this session. On a CUDA machine run",
            "",
            "    python benchmarks/benchmark.py --device cuda",
            "",
            "which adds the bf16-autocast full-pipeline images/s at the best batch size (next to the paper's "
            f"{PAPER_FPS} FPS on an RTX 4090; target on an H100: at least 60 images/s) and the SAM encoder's "
            "achieved TFLOP/s.",
            f"For reference, one SAM ViT-B encoder pass at 1024 px is {sam_gflop:.0f} GFLOP (FlopCounterMode); on this "
            f"CPU, building the cache (SAM + CLIP) takes {train['cache_build_s_per_image']:.1f} s per image, i.e. the "
            f"SAM encoder achieves at least {sam_gflop / train['cache_build_s_per_image']:.0f} GFLOP/s.",
        ]
    else:
        best = gpu["best_batch"]
        fps = gpu["pipeline_images_per_s"][best]
        lines += [
            "| batch size | images / s (bf16 autocast, full pipeline, 1 emotion) |",
            "|---|---|",
            *[f"| {bs} | {v:.1f} |" for bs, v in gpu["pipeline_images_per_s"].items()],
            "",
            f"**Best: {fps:.1f} images/s at batch {best}**, vs {PAPER_FPS} FPS in the paper (RTX 4090): "
            f"{fps / PAPER_FPS:.1f}x (target on an H100: at least 60 images/s — {'met' if fps >= 60 else 'NOT met'}).",
            f"SAM image encoder alone (bf16 autocast, batch {gpu['sam_batch']}): {gpu['sam_seconds'] * 1e3:.1f} ms per "
            f"batch, {gpu['sam_gflop_per_image']:.0f} GFLOP per image, **{gpu['sam_tflops']:.1f} TFLOP/s achieved**.",
        ]
    text = "\n".join(lines) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per figure (default: 3 on CPU, 5 on CUDA)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up runs (default: 1 on CPU, 2 on CUDA)")
    p.add_argument("--train-repeats", type=int, default=None,
                   help="timed training steps from pixels (default: 2 on CPU, --repeats on CUDA)")
    p.add_argument("--train-warmup", type=int, default=0,
                   help="warm-up steps from pixels (default 0: the encoders are warm from the cache build)")
    p.add_argument("--train-batch-size", type=int, default=None, help="training batch (default: 4, the paper's)")
    p.add_argument("--batch-sizes", default=None, help="(d) batch sizes, e.g. 1,2,4 (default: 1,2 on CPU, 1,2,4,8,16 on CUDA)")
    p.add_argument("--gpu-batch-sizes", default="1,4,8,16,32,64", help="(e) batch sizes searched for the best images/s")
    p.add_argument("--sam-batch", type=int, default=16, help="(e) batch of the SAM TFLOP/s measurement")
    p.add_argument("--image-size", type=int, default=512, help="side of the synthetic test images")
    p.add_argument("--no-autocast", action="store_true", help="CUDA: run in fp32 instead of bf16 autocast for (a)-(d)")
    p.add_argument("--preset", default="paper", help="model preset ('tiny' only to check this script quickly)")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "RESULTS.md"))
    args = p.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    args.repeats = args.repeats or (5 if gpu else 3)
    args.warmup = args.warmup if args.warmup is not None else (2 if gpu else 1)
    args.train_repeats = args.train_repeats or (args.repeats if gpu else 2)
    args.train_batch_size = args.train_batch_size or 4
    args.batch_sizes = [int(b) for b in (args.batch_sizes or ("1,2,4,8,16" if gpu else "1,2")).split(",")]
    args.gpu_batch_sizes = [int(b) for b in args.gpu_batch_sizes.split(",")]
    amp = gpu and not args.no_autocast

    from transformers import pipeline

    wall = time.perf_counter()
    load_start = load_average()
    machine = machine_description(device)
    print("machine:", machine, "load:", load_start, flush=True)
    n_images = max(args.batch_sizes + [args.train_batch_size] + ([8] if gpu else []))
    model, processor, rows = build(device, args.image_size, n_images, args.preset)
    images = [rows[i]["image"] for i in range(n_images)]
    pipe = pipeline(task="emotion-segmentation", model=model, processor=processor, device=device)

    print("(a, c, d) inference ...", flush=True)
    inf = bench_inference(pipe, images, device, args, amp)
    print(f"  1 emotion {inf['one']:.2f} s, 8 emotions {inf['all8']:.2f} s, ratio {inf['ratio']:.2f}", flush=True)
    pre_s = preprocessing_seconds(processor, images, args.repeats)
    print("(b) training steps ...", flush=True)
    train = bench_training(model, processor, rows, device, args, amp)
    print(f"  pixels {train['pixels']:.2f} s, cache {train['cache']:.3f} s, ratio {train['ratio']:.1f}", flush=True)
    gpu_out = None
    if gpu:
        print("(e) GPU ...", flush=True)
        gpu_out = bench_gpu(model, pipe, images, device, args)
    sam_gflop = sam_flops(model.config) / 1e9
    text = write_results(args.out, machine, args, device, load_start, load_average(), inf, pre_s, train, gpu_out,
                         time.perf_counter() - wall, sam_gflop)
    print(text)


if __name__ == "__main__":
    main()
