"""π-noise demo: `python app.py [--model SPEC] [--port N] [--host 0.0.0.0]`.

Opens on the embedded toy CLIP (offline) unless --model or $PINI_MODEL names another,
e.g. `python app.py --model ViT-B-16:openai`. The tabs are built in `demo/`; every
computation lives in `pini_core`.

Visitors type models in the model box; by default they cannot make the server open a path
(`NAME:/path`, `local-dir:/path`), download from `hf-hub:` or build architectures over 200 M
parameters. `--allow-dir DIR`, `--allow-hub`, `--allow-model NAME` and `--max-params-m M` (or
$PINI_APP_ALLOW_DIR, $PINI_APP_ALLOW_HUB, $PINI_APP_ALLOW_MODELS, $PINI_APP_MAX_PARAMS_M) allow more.
Each session's scratch files are bounded ($PINI_APP_SESSION_MB) and removed after
$PINI_APP_SESSION_TTL idle seconds and at shutdown.
"""
from __future__ import annotations

import argparse
import os
import sys

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
    p.add_argument("--allow-dir", action="append", default=None, metavar="DIR",
                   help="let visitors load weights (NAME:/path, local-dir:/path) from inside DIR (repeatable). "
                        "Default: $PINI_APP_ALLOW_DIR (folders separated by ':'), else no server paths at all.")
    p.add_argument("--allow-model", action="append", default=None, metavar="NAME",
                   help="let visitors build the open_clip architecture NAME whatever its size (repeatable; '*' = "
                        "all). Default: $PINI_APP_ALLOW_MODELS (comma-separated).")
    p.add_argument("--max-params-m", type=float, default=None, metavar="M",
                   help="largest architecture visitors may build, in millions of parameters "
                        "(default $PINI_APP_MAX_PARAMS_M or 200: ViT-B fits, ViT-L does not)")
    p.add_argument("--allow-hub", action="store_true",
                   help="let visitors load hf-hub:ORG/NAME models (default: $PINI_APP_ALLOW_HUB=1, else no)")
    return p.parse_args(argv)


def apply_policy(args: argparse.Namespace) -> None:
    """Put the visitor policy flags into the environment the app reads (flags beat variables).
    Exits with code 2 and a message for a folder that does not exist or a bad limit."""
    from demo import backbones

    if args.allow_dir:
        bad = [d for d in args.allow_dir if not os.path.isdir(d)]
        if bad:
            raise SystemExit(f"error: --allow-dir {bad[0]!r} is not a folder")
        os.environ[backbones.ENV_ALLOW_DIR] = os.pathsep.join(os.path.abspath(d) for d in args.allow_dir)
    else:
        bad = [d for d in os.environ.get(backbones.ENV_ALLOW_DIR, "").split(os.pathsep) if d.strip()
               and not os.path.isdir(d)]
        if bad:
            raise SystemExit(f"error: ${backbones.ENV_ALLOW_DIR} names {bad[0]!r}, which is not a folder")
    if args.allow_model:
        os.environ[backbones.ENV_ALLOW_MODELS] = ",".join(args.allow_model)
    if args.max_params_m is not None:
        if not args.max_params_m > 0:
            raise SystemExit("error: --max-params-m must be positive")
        os.environ[backbones.ENV_MAX_PARAMS_M] = str(args.max_params_m)
    if args.allow_hub:
        os.environ[backbones.ENV_ALLOW_HUB] = "1"
    from pini_core.errors import PiniError

    try:
        backbones.max_params()
    except PiniError as e:
        raise SystemExit(f"error: {e}") from None


def main(argv=None) -> None:
    args = parse_args(argv)
    apply_policy(args)
    import signal

    # `kill` (SIGTERM) ends like Ctrl-C: the server stops and the sessions' scratch folders are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from demo.build import build_app, launch_kwargs

    app = build_app(args.model)
    app.launch(**launch_kwargs(args.host, args.port), prevent_thread_lock=True)
    # The page is served; now load the default model in the background so the first visitor
    # does not wait for it (a failure is reported in the page's model panel).
    from demo.backbones import warm_up

    warm_up(args.model)
    try:
        app.block_thread()
    finally:
        app.close()


if __name__ == "__main__":
    main()
