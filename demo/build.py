"""Assemble the tabs into one gr.Blocks and launch it with safe serving settings."""
from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
from typing import Any, Dict, Optional

import gradio as gr

from demo import backbones
from demo.context import BuildContext
from demo.session import APP_TMP, ScratchSpace, SessionState, cleanup_session, new_space, session_ttl_s, sweep_every_s

log = logging.getLogger("pini.app")

TITLE = "π-noise: beneficial noise for vision-language models"
MAX_UPLOAD = "200mb"  # Gradio's own cap per uploaded file; images are further limited in pini_core.uploads
DEFAULT_CONCURRENCY = 2  # visualisation/classification calls running at once
QUEUE_SIZE = 64

INTRO = f"""# {TITLE}
A frozen CLIP, plus small networks that **generate noise which helps the task** (PiNI: π-noise
injection). Pick a model, look at the noise, classify, train your own generator, and see why
such noise carries information about the task. Everything you train or upload stays in *your*
browser session.
"""


# Phone layout (390 px wide): tabs wrap onto rows (gr.Tabs(overflow_behavior="wrap")) instead of
# hiding behind "•••"; tables scroll sideways with whole words per cell instead of wrapping letter
# by letter; dropdown text is not cut; figures scale to the column width.
CSS = """
.pini-table table td, .pini-table table th { white-space: nowrap; }
.pini-table .table-wrap, .pini-table .table-container { overflow-x: auto; }
@media (max-width: 640px) {
  .row { flex-wrap: wrap !important; }
  .row > * { min-width: min(100%, 300px) !important; flex-basis: 100% !important; }
  .form { flex-wrap: wrap !important; }
  .form > .block { min-width: min(100%, 300px) !important; flex: 1 1 100% !important; }
  .wrap-inner input { min-width: 0; }
  button[role="tab"] { padding-left: 8px; padding-right: 8px; }
}
"""


class PiniBlocks(gr.Blocks):
    """gr.Blocks whose server, through Gradio's lifespan hook (`launch(app_kwargs=...)`), sweeps
    idle sessions' scratch folders while it runs and removes all of them when it stops."""

    scratch: ScratchSpace

    def launch(self, *args, app_kwargs: Optional[Dict[str, Any]] = None, **kwargs):
        app_kwargs = dict(app_kwargs or {})
        app_kwargs["lifespan"] = self._lifespan(app_kwargs.get("lifespan"))
        kwargs.setdefault("css", CSS)
        return super().launch(*args, app_kwargs=app_kwargs, **kwargs)

    def _lifespan(self, user_lifespan):
        space = self.scratch

        @contextlib.asynccontextmanager
        async def lifespan(fastapi_app):
            async def janitor():
                while True:
                    await asyncio.sleep(sweep_every_s())
                    try:
                        removed = await asyncio.to_thread(space.sweep)
                        if removed:
                            log.info("removed the scratch folders of %d idle session(s)", len(removed))
                    except Exception:  # noqa: BLE001 - the janitor must keep running
                        log.exception("sweeping idle sessions failed")

            task = asyncio.create_task(janitor())
            try:
                async with contextlib.AsyncExitStack() as stack:
                    if user_lifespan is not None:
                        await stack.enter_async_context(user_lifespan(fastapi_app))
                    yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                space.close()

        return lifespan

    def close(self, verbose: bool = True) -> None:
        """Stop the server and remove every session's scratch folder."""
        super().close(verbose)
        self.scratch.close()


def build_app(default_model: Optional[str] = None) -> gr.Blocks:
    """The whole app (all tabs) on the backbone `default_model` (see `backbones.default_spec`)."""
    from demo import tab_classify, tab_learn, tab_model, tab_mung, tab_noise, tab_prompt, tab_train

    spec = backbones.default_spec(default_model)
    APP_TMP.mkdir(parents=True, exist_ok=True)
    space = new_space(APP_TMP)  # this app's scratch folders (and those of dead app processes removed)
    atexit.register(space.close)  # also when the process ends without a clean shutdown of the server
    # delete_cache: every hour, remove cached files (uploads, returned images, checkpoints)
    # older than two hours, so a long-running Space does not fill its disk.
    with PiniBlocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 7200)) as app:
        app.scratch = space
        # time_to_live: Gradio drops (and delete_callback cleans) the state of a session whose state
        # was not updated for that long; the scratch janitor covers sessions Gradio never stores.
        session = gr.State(SessionState(backbone_spec=spec, scratch_root=str(space.root)),
                           time_to_live=session_ttl_s(), delete_callback=cleanup_session)
        gr.Markdown(INTRO)
        ctx = BuildContext(session=session, default_spec=spec)
        wire_model, gen_status = tab_model.build(session, spec, ctx.example_dropdowns)
        ctx.generator_status.append(gen_status)
        with gr.Tabs(overflow_behavior="wrap"):
            with gr.Tab("Noise on images", id="noise"):
                tab_noise.build(ctx)
            with gr.Tab("Classify", id="classify"):
                tab_classify.build(ctx)
            with gr.Tab("Prompt distribution", id="prompt"):
                tab_prompt.build(ctx)
            with gr.Tab("MuNG (multimodal LLMs)", id="mung"):
                tab_mung.build(ctx)
            with gr.Tab("Train", id="train"):
                tab_train.build(ctx)
            with gr.Tab("Learn π-noise", id="learn"):
                tab_learn.build(ctx)
        wire_model(app)
        for item in ctx.page_load:
            fn, inputs, outputs = item[:3]
            kw = dict(item[3]) if len(item) > 3 else {}
            app.load(fn, inputs, outputs, api_visibility="private", **kw)
    # Results on open: the backbone and every tab's default result are computed now, in the
    # background, and cached (demo/preview.py); the page-load handlers above find them there.
    from demo import preview

    preview.start(spec, ctx.warm)
    # Training has its own concurrency group (tab_train.TRAININGS_AT_ONCE), so it never takes the
    # slots of the quick tabs.
    app.queue(default_concurrency_limit=DEFAULT_CONCURRENCY, max_size=QUEUE_SIZE)
    return app


def launch_kwargs(server_name: Optional[str] = None, server_port: Optional[int] = None) -> Dict[str, Any]:
    """Serving settings: nothing outside the app's own files is readable through the server.

    Gradio 6 serves only (a) files users uploaded, (b) files the app returned (copied into
    Gradio's cache), (c) `allowed_paths` (none here) and static paths (none here).
    `blocked_paths` additionally fences the repository's weights and the app's scratch
    folders of other sessions from any direct /file= request.
    """
    import tempfile

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    blocked = [os.path.join(repo, "checkpoints"), os.path.join(repo, ".git")]
    home, tmp = os.path.expanduser("~"), os.path.abspath(tempfile.gettempdir())
    if not (tmp + os.sep).startswith(home.rstrip(os.sep) + os.sep):
        blocked.append(home)  # caches, keys, tokens
    return dict(
        server_name=server_name, server_port=server_port,
        allowed_paths=[],
        blocked_paths=blocked,
        max_file_size=MAX_UPLOAD,
        show_error=True,  # our errors are written for people (never tracebacks)
        enable_monitoring=False,
        footer_links=["api", "gradio"],
        ssr_mode=False,
        mcp_server=False,
    )
