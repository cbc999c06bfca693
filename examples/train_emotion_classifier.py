"""Train the Emotion-Alignment judge: a text -> emotion classifier on ArtEmis utterances (9 labels).

    python examples/train_emotion_classifier.py --artemis-csv artemis_dataset_release_v0.csv \
        --base-model bert-base-uncased --output-dir judges/bert-artemis

Uses the official ArtEmis splits (seed 2021, 85/5/10 by artwork) and ArtEmis' neural-net filtering,
fine-tunes any Hugging Face encoder (a local folder or a Hub id), prints the test accuracy, and saves
the model with that accuracy in ``config.emosem_judge`` so that `metrics/emotion_alignment` can name
the judge next to every EA figure. The logic lives in ``emosem.emotion_classifier``.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

# Run from a plain checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emosem.emotion_classifier import train_emotion_classifier  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artemis-csv", required=True, help="ArtEmis CSV (art_style, painting, emotion, utterance, repetition)")
    parser.add_argument("--base-model", required=True, help="HF encoder folder or Hub id, e.g. bert-base-uncased")
    parser.add_argument("--output-dir", required=True, help="where the judge is saved (save_pretrained)")
    parser.add_argument("--judge-name", default=None, help="name recorded for the base model (default: --base-model)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--max-length", type=int, default=64, help="tokens per utterance (truncated)")
    parser.add_argument("--max-train-samples", type=int, default=None, help="subsample the train split (debugging)")
    parser.add_argument("--no-deep-net-filter", action="store_true",
                        help="keep high-repetition artworks and very short/long utterances (ArtEmis filters them for neural nets)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    record = train_emotion_classifier(
        args.artemis_csv,
        args.base_model,
        args.output_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        max_length=args.max_length,
        seed=args.seed,
        device=args.device,
        for_deep_nets=not args.no_deep_net_filter,
        max_train_samples=args.max_train_samples,
        judge_name=args.judge_name,
        progress=not args.no_progress,
    )
    print(f"test accuracy: {100 * record['test_accuracy']:.2f}% on {record['num_test']} ArtEmis test utterances")
    print(f"saved to {args.output_dir}; config.emosem_judge = {json.dumps(record)}")
    return record


if __name__ == "__main__":
    main()
