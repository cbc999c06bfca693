"""EmoSEM web demo (Gradio). Locally:

    python examples/app.py --model path/to/checkpoint      # http://127.0.0.1:7860

As a Hugging Face Space: copy this file as `app.py`, list `emosem` (this package) in requirements.txt and set
the Space variable EMOSEM_MODEL to the checkpoint's repo id; the Space runs `python app.py`.
"""

import argparse
import os
import sys

from emosem.app import DEFAULT_MAX_UPLOAD_MB, launch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="EmoSEM web demo: upload an artwork, see what evokes each emotion.")
    parser.add_argument("--model", default=os.environ.get("EMOSEM_MODEL"),
                        help="checkpoint folder or Hub id (default: $EMOSEM_MODEL)")
    in_space = "SPACE_ID" in os.environ  # Spaces must listen on all interfaces
    parser.add_argument("--host", default="0.0.0.0" if in_space else "127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB)
    args = parser.parse_args(argv)
    if not args.model:
        parser.error("pass --model or set EMOSEM_MODEL")
    launch(args.model, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
