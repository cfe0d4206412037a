"""Data layer: dataset registry, ImageFolder and CoOp layouts, templates (Table 6),
few-shot sampling, transforms and safe image loading.

Import the submodules directly (``pini_core.data.registry``, ``.images``, ``.fewshot``,
``.templates``, ``.imagefolder``, ``.coop``, ``.transforms``); this package module stays
empty so that importing the registry does not pull in torch.
"""
