"""Evaluate an EmoSEM checkpoint on APOLO (or the synthetic set): per-sample predictions, metrics, Table 1.

    python examples/evaluate.py --model outputs/quickstart --dataset synthetic --out outputs/quickstart/eval
    python examples/evaluate.py --model DIR --apolo-root apolo --image-root apolo_images --split test \
        --judge judge/ --clip-model clip-vit-base-patch32/ --out eval/
"""

import os
import sys

# This folder holds evaluate.py, which would shadow the `evaluate` library for scripts run from here.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]


from emosem.evaluation import main  # noqa: E402

if __name__ == "__main__":
    main()
