"""Segment and explain emotions in images from the command line (the same as `emosem predict`):

    python examples/predict.py paintings/ starry.jpg --model path/to/checkpoint --emotion awe fear --out results/

From Python:

    from transformers import pipeline
    pipe = pipeline("emotion-segmentation", model="path/to/checkpoint", trust_remote_code=True)
    results = pipe("starry.jpg", emotions=["awe", "fear"], seed=0)
    # [{"emotion": "awe", "score": ..., "mask": <PIL L>, "saliency": <float32 HxW>, "explanation": "..."}, ...]
"""

import sys

from emosem.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
