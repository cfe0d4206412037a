"""MuNG: beneficial noise injected into the visual tokens of a frozen multimodal LLM.

    from pini_core.mung import MuNGConfig, MuNGGenerator, attach, load_generator, load_host
    host = load_host("checkpoints/mung/host")             # or a local HF LLaVA / Qwen2(.5)-VL folder
    injector = attach(host.model, load_generator("checkpoints/mung/generator", host=host.model))
    host.answer([image], ["which colour has the star ?"], injector=injector)

See docs/mung.md.
"""
from .checkpoint import load_generator, save_generator
from .config import MuNGConfig
from .generator import MuNGGenerator, MuNGOutput
from .hf_host import HFHost, load_host
from .injector import InjectionRecord, MuNGInjector, attach

__all__ = ["MuNGConfig", "MuNGGenerator", "MuNGOutput", "MuNGInjector", "InjectionRecord", "attach",
           "load_generator", "save_generator", "HFHost", "load_host"]
