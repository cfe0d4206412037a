"""Shared helpers for the tab builders: clear errors, the session's backbone and generator,
and the image a tab works on."""
from __future__ import annotations

import functools
import inspect
import logging
from typing import Callable, Optional

import gradio as gr

from demo import backbones
from demo.engine import EngineMissing
from demo.session import SessionState

log = logging.getLogger("pini.app")

# Exceptions whose message is written for people (see pini_core's error classes).
_USER_ERRORS = (ValueError, KeyError, FileNotFoundError, EngineMissing)


def _message(e: BaseException) -> str:
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    return str(e) or type(e).__name__


def _is_user_error(e: BaseException) -> bool:
    if isinstance(e, _USER_ERRORS):
        return True
    # pini_core's own error classes (BackboneError, UploadError, ...) carry advice.
    return type(e).__module__.startswith("pini_core")


def _to_gr_error(e: BaseException) -> gr.Error:
    if isinstance(e, gr.Error):
        return e
    if _is_user_error(e):
        return gr.Error(_message(e), print_exception=False)
    log.exception("unexpected error in the app")
    return gr.Error(f"Something went wrong ({type(e).__name__}: {_message(e)[:300]}). "
                    "The details are in the server log; please try again or report it.",
                    print_exception=False)


def friendly(fn: Callable) -> Callable:
    """Turn exceptions into gr.Error with a readable message (never a traceback in the UI).
    Works for plain and generator handlers."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - converted for the user
                raise _to_gr_error(e) from e
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
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
