"""Shared helpers for the tab builders: clear errors, the session's backbone and generator,
and the image a tab works on."""
from __future__ import annotations

import functools
import inspect
import logging
import os
import re
import sys
import tempfile
import uuid
from typing import Callable, List, Optional, Tuple

import gradio as gr

from pini_core.errors import PiniError

from demo import backbones
from demo.session import APP_TMP, SessionState, in_use

log = logging.getLogger("pini.app")


def _path_roots() -> List[Tuple[str, int]]:
    """(server folder, how many path components below it are server-made) for every folder
    whose paths must not reach a visitor. Below the app's scratch folder come the process run
    folder, the session and the scratch folder (`pini-app/run-*/<session>/data-*/cat/1.png` ->
    `cat/1.png`); below Gradio's upload cache one hash folder (`gradio/<hash>/photo.png` ->
    `photo.png`). Paths under the other roots are shown by their last name only (-1)."""
    roots: List[Tuple[str, int]] = [(str(APP_TMP), 3)]
    gradio_cache = os.environ.get("GRADIO_TEMP_DIR") or os.path.join(tempfile.gettempdir(), "gradio")
    roots.append((os.path.abspath(gradio_cache), 1))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for extra in (tempfile.gettempdir(), repo, sys.prefix, sys.base_prefix, os.path.expanduser("~")):
        if extra and len(extra) > 1:
            roots.append((os.path.abspath(extra), -1))
    # longest first, so the most specific root wins
    out, seen = [], set()
    for r, n in sorted(roots, key=lambda x: -len(x[0])):
        for form in {r, os.path.realpath(r)}:
            if form not in seen:
                seen.add(form)
                out.append((form, n))
    return out


def scrub_paths(message: str) -> str:
    """`message` without server paths: files of a visitor's upload are shown by their own names
    (as inside their zip, or as they uploaded them), any other server path by its last name."""
    roots = _path_roots()
    pattern = re.compile("(?:" + "|".join(re.escape(r) for r, _ in roots) + r")(?![\w.-])(?:/[^\s'\"]*)?")

    def repl(m: "re.Match[str]") -> str:
        text = m.group(0)
        tail = len(text) - len(text.rstrip(":;,.)]"))  # punctuation after the path stays
        text, end = (text[:-tail], text[-tail:]) if tail else (text, "")
        return _shown(text) + end

    def _shown(text: str) -> str:
        for root, skip in roots:
            if text == root or text.startswith(root + "/"):
                rest = [p for p in text[len(root):].split("/") if p]
                if skip == 3 and len(rest) > 3 and rest[2].startswith(".unpack-"):
                    skip = 4  # a zip being unpacked: <run>/<session>/.unpack-*/d/...
                if skip >= 0 and len(rest) > skip:
                    return "/".join(rest[skip:])
                if skip >= 0 and rest and (skip == 1 or rest[0].startswith("run-")):
                    return "your upload"  # the folder an upload was unpacked / stored in
                return rest[-1] if rest else "(a server folder)"
        return "(a server path)"

    return pattern.sub(repl, message)


def _message(e: BaseException) -> str:
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    return str(e) or type(e).__name__


def _to_gr_error(e: BaseException) -> gr.Error:
    """PiniError (and gr.Error) -> its message, without server paths; anything else is a bug:
    logged with its traceback, shown as a generic line with an id to find it in the log."""
    if isinstance(e, gr.Error):
        e.message = scrub_paths(str(e.message))
        return e
    if isinstance(e, PiniError):
        return gr.Error(scrub_paths(_message(e)), print_exception=False)
    ref = uuid.uuid4().hex[:8]
    log.exception("unexpected error in the app (id %s)", ref)
    return gr.Error(f"Something went wrong on the server (error id {ref}, {type(e).__name__}). "
                    "The details are in the server log; please try again or report it.",
                    print_exception=False)


def friendly(fn: Callable) -> Callable:
    """Turn exceptions into gr.Error with a readable message (never a traceback or a server
    path in the UI), and keep the session's scratch folder from being swept while the handler
    runs. Works for plain and generator handlers."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            with in_use(*args, *kwargs.values()):
                try:
                    yield from fn(*args, **kwargs)
                except Exception as e:  # noqa: BLE001 - converted for the user
                    raise _to_gr_error(e) from e
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with in_use(*args, *kwargs.values()):
            try:
                return fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - converted for the user
                raise _to_gr_error(e) from e
    return wrapper


def session_spec(session: Optional[SessionState], default: str) -> str:
    if isinstance(session, SessionState) and session.backbone_spec:
        return session.backbone_spec
    return default


def backbone(session: SessionState, progress: Optional[gr.Progress] = None):
    """The session's backbone (loading it, with progress, if needed)."""
    spec = session.backbone_spec or backbones.default_spec()
    bb = backbones.CACHE.get_loaded(spec)
    if bb is not None:
        return bb
    if progress is not None:
        progress(0.05, desc=f"Loading {backbones.label_for(spec)} ...")
    return backbones.CACHE.load(spec)


NO_GENERATOR = ("No generator in this session yet for the loaded model. Train one in the **Train** tab "
                "(a toy task on the embedded model takes well under a minute), or load a checkpoint "
                "in the model panel at the top.")


def generator(session: SessionState):
    """The session's PiNI model for the loaded backbone, or gr.Error saying how to get one."""
    spec = session.backbone_spec or backbones.default_spec()
    m = session.generator_for(spec)
    if m is None:
        raise gr.Error(NO_GENERATOR, print_exception=False)
    return m


# ----- the image a tab works on: an example (by name) or an upload -------------------------
def example_choices(spec: str):
    from demo.examples import examples_for

    return [label for label, _ in examples_for(spec)]


def example_path(spec: str, label: Optional[str]) -> Optional[str]:
    """Resolve an example *name* to its file on the server. Names, never paths, travel
    through the API, so no client can make the app open a file of its choosing."""
    if not label:
        return None
    from demo.examples import examples_for

    for name, path in examples_for(spec):
        if name == label:
            return path
    raise gr.Error(f"Unknown example {label!r} for the loaded model; pick one from the list.",
                   print_exception=False)


def picked_image(session: SessionState, example: Optional[str], upload: Optional[str]):
    """(PIL image, description): the upload if there is one, else the chosen example."""
    from pini_core.uploads import open_uploaded_image

    if upload:
        return open_uploaded_image(upload), "your upload"
    path = example_path(session.backbone_spec or backbones.default_spec(), example)
    if path is None:
        raise gr.Error("Pick an example or upload an image first.", print_exception=False)
    return open_uploaded_image(path), f"example '{example}'"


def image_picker(default_spec: str):
    """Example dropdown + upload box; returns (example, upload)."""
    with gr.Row():
        choices = example_choices(default_spec)
        example = gr.Dropdown(choices=choices, value=choices[0] if choices else None,
                              label="Example image", allow_custom_value=False, scale=2)
        upload = gr.File(label="…or upload an image (it replaces the example)", file_types=["image"],
                         type="filepath", scale=2, height=120)
    return example, upload
