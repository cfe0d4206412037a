"""The procedural image-caption world: scenes, their renderings and captions, toy
few-shot tasks with dataset bias, and the pretraining of the embedded toy CLIP.

    from pini_core.world.scene import sample_scene
    from pini_core.world.render import render
    from pini_core.world.captions import caption
"""
from .scene import BACKGROUNDS, COLOURS, DOMAINS, SHAPES, SIZES, TEXTURES, Obj, Scene, sample_scene

__all__ = ["BACKGROUNDS", "COLOURS", "DOMAINS", "SHAPES", "SIZES", "TEXTURES", "Obj", "Scene",
           "sample_scene"]
