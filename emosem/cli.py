"""The `emosem` command: predict, evaluate, demo.

    emosem predict painting.jpg more/ --model CHECKPOINT --emotion awe fear --out results/
    emosem evaluate ...            (the evaluation script's own options; `emosem evaluate --help`)
    emosem demo --model CHECKPOINT (web demo on http://127.0.0.1:7860)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

_DESCRIPTION = """\
EmoSEM: segment and explain the emotion stimuli of artworks.
For an image and an emotion, a trained EmoSEM checkpoint predicts the region of the image that evokes the
emotion (a saliency map and a mask) and writes a first-person explanation of why."""

_PREDICT_EPILOG = """\
For each image IMG the output folder gets IMG.json (scores and explanations), IMG_<emotion>.png (overlay of
the saliency heat map and the mask outline, with the explanation as caption), IMG_<emotion>_mask.png and,
for several emotions, IMG_grid.png. The score of an emotion is the mean saliency inside its mask.

example:
  emosem predict paintings/ starry.jpg --model ./emosem-checkpoint --emotion awe fear --out results/"""

_EMOTION_HELP = (
    "emotion(s) to explain, by name (the checkpoint's list; ArtEmis: amusement, awe, contentment, excitement, "
    "anger, disgust, fear, sadness); repeat or list several; 'all' (the default) for every emotion"
)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emosem", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    predict = commands.add_parser(
        "predict",
        help="segment and explain emotions in images; write JSON and overlay PNGs",
        description="Segment and explain emotions in images; write one JSON per image and overlay PNGs.",
        epilog=_PREDICT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict.add_argument("images", nargs="+", metavar="IMAGES", help="image files and/or folders of images")
    predict.add_argument("--model", required=True, metavar="DIR", help="checkpoint folder (or Hub id) saved by EmoSEM")
    predict.add_argument("--emotion", dest="emotions", nargs="+", action="extend", metavar="E", help=_EMOTION_HELP)
    predict.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    predict.add_argument("--batch-size", type=_positive_int, default=1, metavar="N", help="images per forward pass (default 1)")
    predict.add_argument("--threshold", type=_unit_float, default=0.5, metavar="T",
                         help="saliency above which a pixel is in the mask (default 0.5)")
    predict.add_argument("--seed", type=int, default=0, help="sampling seed; the same seed gives the same output (default 0)")
    predict.add_argument("--max-new-tokens", type=_positive_int, default=None, metavar="N",
                         help="longest explanation in tokens (default: the checkpoint's, 25 in the paper)")
    predict.add_argument("--greedy", action="store_true", help="greedy decoding instead of nucleus sampling")
    predict.add_argument("--recursive", action="store_true", help="also look for images in sub-folders")
    predict.add_argument("--no-grid", dest="grid", action="store_false", help="do not write IMG_grid.png")
    predict.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: the first GPU if any, else cpu)")

    commands.add_parser(
        "evaluate",
        help="evaluate a checkpoint (wraps the evaluation script; `emosem evaluate --help` for its options)",
        add_help=False,
    )

    demo = commands.add_parser(
        "demo",
        help="start the web demo (upload an artwork, choose emotions, see overlays and explanations)",
        description="Start the EmoSEM web demo (Gradio).",
    )
    demo.add_argument("--model", required=True, metavar="DIR", help="checkpoint folder (or Hub id)")
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    demo.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    demo.add_argument("--max-upload-mb", type=float, default=20.0, help="largest accepted upload in MB (default 20)")
    demo.add_argument("--device", default=None, help="torch device (default: the first GPU if any, else cpu)")
    return parser


def _run_predict(args: argparse.Namespace) -> int:
    from emosem.predict import collect_images, load_pipeline, predict_to_folder

    emotions = args.emotions
    if emotions is not None and any(e.strip().lower() == "all" for e in emotions):
        emotions = None
    images = collect_images(args.images, recursive=args.recursive)  # before the model loads: fail fast
    pipe = load_pipeline(args.model, device=args.device)
    call_kwargs = {"threshold": args.threshold, "seed": args.seed}
    if args.max_new_tokens is not None:
        call_kwargs["max_new_tokens"] = args.max_new_tokens
    if args.greedy:
        call_kwargs["do_sample"] = False

    def progress(path, error):
        if error is None:
            print(f"ok    {path}")
        else:
            print(f"error {error}", file=sys.stderr)

    report = predict_to_folder(
        pipe, images, args.out, emotions=emotions, batch_size=args.batch_size,
        grid=args.grid, on_result=progress, **call_kwargs,
    )
    print(f"wrote {len(report.json_files)} JSON and {len(report.png_files)} PNG files to {args.out}")
    if report.errors:
        print(f"emosem predict: {len(report.errors)} image(s) failed: {', '.join(report.errors)}", file=sys.stderr)
        return 1
    return 0


def _run_evaluate(argv: Sequence[str]) -> int:
    try:
        from emosem.evaluation import main as evaluation_main
    except ImportError as err:
        print(f"emosem evaluate: the evaluation module is not available ({err})", file=sys.stderr)
        return 2
    result = evaluation_main(list(argv))
    return result if isinstance(result, int) else 0


def _run_demo(args: argparse.Namespace) -> int:
    from emosem.app import launch

    launch(args.model, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb, device=args.device)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `emosem` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "evaluate":  # everything after it belongs to the evaluation script, --help included
        return _run_evaluate(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "predict":
            return _run_predict(args)
        return _run_demo(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"emosem {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. predict's OutputWriteError: a full disk, named by file
        print(f"emosem {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
