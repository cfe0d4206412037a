"""π-noise demo: `python app.py [--model SPEC] [--port N] [--host 0.0.0.0]`.

Opens on the embedded toy CLIP (offline) unless --model or $PINI_MODEL names another,
e.g. `python app.py --model ViT-B-16:openai`. The tabs are built in `demo/`; every
computation lives in `pini_core`.
"""
from __future__ import annotations

import argparse
import os

# Telemetry off unless the user turns it on (set before gradio / huggingface_hub import).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Run the π-noise web app (Gradio).")
    p.add_argument("--model", default=None,
                   help="backbone the page opens on: 'embedded' (default, offline), NAME:TAG such as "
                        "ViT-B-16:openai, NAME:/path/weights.safetensors or local-dir:/path. "
                        "Default: $PINI_MODEL or 'embedded'.")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME"),
                   help="interface to listen on (default 127.0.0.1; 0.0.0.0 to share on your network)")
    p.add_argument("--port", type=int, default=None, help="port (default $GRADIO_SERVER_PORT or 7860)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    from demo.build import build_app, launch_kwargs

    app = build_app(args.model)
    app.launch(**launch_kwargs(args.host, args.port), prevent_thread_lock=True)
    # The page is served; now load the default model in the background so the first visitor
    # does not wait for it (a failure is reported in the page's model panel).
    from demo.backbones import warm_up

    warm_up(args.model)
    app.block_thread()


if __name__ == "__main__":
    main()
