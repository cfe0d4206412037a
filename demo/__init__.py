"""The Gradio app: one builder module per tab (tab_*.py) plus shared state and helpers.

`app.py` only parses options and calls `demo.build.build_app` / `demo.build.launch`.
Every computation lives in `pini_core`; these modules turn its results into widgets.
Heavy modules (torch, open_clip, matplotlib) are imported lazily, inside handlers,
so that the page is served quickly.
"""
