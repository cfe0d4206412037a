"""Attach a MuNG generator to a frozen host with forward hooks (PEFT style: the host is untouched).

Two hooks:
* a forward pre-hook on the host records the call's text context (input_ids, attention_mask,
  labels, mm_token_type_ids) - this also works inside `generate()`, whose first (prefill) call
  carries the full prompt and the images;
* a forward hook on the visual-token module (see hosts.py) replaces its output by
  tokens + noise, the noise coming from the generator fed with that sample's text embeddings
  (`get_input_embeddings()(input_ids)`); by default excluding image/video placeholders, padding
  and the answer tokens (positions with labels != -100: the noise must not see the answer);
  `MuNGConfig.keys` selects the released codes' rules instead (`_key_positions`).
A sample's image can only attend to its own text: keys are gathered per image from its row.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from .generator import MuNGGenerator, MuNGOutput, NOISE_MODES
from .hosts import HostSpec, image_token_grid, inspect_host


@dataclass
class InjectionRecord:
    """What the last visual-token hook call did (for tests, visualisation and the app)."""
    clean: list[torch.Tensor]        # per image [N_i, d] tokens before noise
    noisy: list[torch.Tensor]        # per image [N_i, d] tokens after noise
    output: MuNGOutput               # padded batch output of the generator (attn etc.)
    image_to_sample: list[int]
    text_ids: list[torch.Tensor]     # per image: the token ids used as keys (in key order)
    grids: list[tuple[int, int, int]]  # per image: (rows, cols, offset) of its token grid


class MuNGInjector:
    def __init__(self, host: nn.Module, generator: MuNGGenerator, *, mode: str = "sample"):
        self.host = host
        self.generator = generator
        self.spec: HostSpec = inspect_host(host)
        cfg = generator.config
        if cfg.visual_dim != self.spec.hidden_size or cfg.text_dim != self.spec.text_dim:
            raise ValueError(
                f"this MuNG generator was built for visual/text dims {cfg.visual_dim}/{cfg.text_dim} but the "
                f"{self.spec.family} host has {self.spec.hidden_size}/{self.spec.text_dim}: train a generator "
                "for this host (or load the host it was trained on)")
        self.mode = mode
        self.keys = cfg.keys  # read once: `generator` may later be swapped for a DDP-wrapped one
        self.eps: list[torch.Tensor] | torch.Tensor | None = None
        self.torch_generator: torch.Generator | None = None
        self.enabled = True
        self.last: InjectionRecord | None = None
        self._ctx: dict | None = None
        self._manual_ctx: dict | None = None
        self._handles: list = []

    # ----------------------------------------------------------------- attach / detach
    def attach(self) -> "MuNGInjector":
        if self._handles:
            return self
        self.host.requires_grad_(False)
        self.host.eval()
        self._handles = [
            self.host.register_forward_pre_hook(self._capture_context, with_kwargs=True),
            self.host.register_forward_hook(self._clear_context),
            self.spec.visual_module.register_forward_hook(self._inject, with_kwargs=True),
        ]
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._ctx = None

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    @contextlib.contextmanager
    def settings(self, *, mode: str | None = None, eps=None, seed: int | None = None, enabled: bool | None = None):
        """Temporarily change the noise mode ("sample" | "mean" (eps=0) | "off"), fix eps (a tensor
        [B_img, N, d] or a list of per-image [N_i, d]), or seed the draw so two runs share eps."""
        old = (self.mode, self.eps, self.torch_generator, self.enabled)
        if mode is not None:
            if mode not in NOISE_MODES:
                raise ValueError(f"mode must be one of {NOISE_MODES}, got {mode!r}")
            self.mode = mode
        if eps is not None:
            self.eps = eps
        if seed is not None:
            self.torch_generator = torch.Generator().manual_seed(int(seed))
        if enabled is not None:
            self.enabled = enabled
        try:
            yield self
        finally:
            self.mode, self.eps, self.torch_generator, self.enabled = old

    @contextlib.contextmanager
    def text_context(self, input_ids, attention_mask=None, labels=None, mm_token_type_ids=None):
        """Give the text context explicitly (when calling the visual module or an inner model directly)."""
        self._manual_ctx = dict(input_ids=input_ids, attention_mask=attention_mask, labels=labels,
                                mm_token_type_ids=mm_token_type_ids)
        try:
            yield self
        finally:
            self._manual_ctx = None

    def generate(self, **inputs):
        """host.generate(**inputs) with the text context set: transformers 5 computes the image
        features before the first forward (mm_encoder_outputs), outside any host forward call."""
        if inputs.get("input_ids") is None:
            raise ValueError("MuNG generation needs input_ids (the generator attends to the prompt's tokens)")
        with self.text_context(inputs["input_ids"], inputs.get("attention_mask"),
                               mm_token_type_ids=inputs.get("mm_token_type_ids")):
            return self.host.generate(**inputs)

    # ----------------------------------------------------------------- hooks
    def _capture_context(self, module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is not None and kwargs.get("pixel_values") is None and kwargs.get("pixel_values_videos") is None:
            self._ctx = None          # decode steps: no images, keep nothing stale
            return None
        self._ctx = dict(input_ids=input_ids, attention_mask=kwargs.get("attention_mask"),
                         labels=kwargs.get("labels"), mm_token_type_ids=kwargs.get("mm_token_type_ids"))
        return None

    def _clear_context(self, module, args, output):
        self._ctx = None

    def _inject(self, module, args, kwargs, output):
        if not self.enabled:
            return None
        ctx = self._manual_ctx or self._ctx
        if ctx is None or ctx.get("input_ids") is None:
            raise RuntimeError(
                "MuNG needs the sample's text tokens: call the host with input_ids (not only inputs_embeds), "
                "generate with `injector.generate(...)`, or wrap the call in `injector.text_context(input_ids, ...)`")
        if self.spec.family == "llava":
            tokens = output
            if not torch.is_tensor(tokens) or tokens.dim() != 3:
                raise RuntimeError(f"unexpected LLaVA projector output {type(output).__name__}")
            per_image = list(tokens.unbind(0))
            grid_thw = None
        else:
            tokens = output.pooler_output if hasattr(output, "pooler_output") else output
            grid_thw = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
            if grid_thw is None:
                raise RuntimeError("Qwen-VL vision tower called without grid_thw")
            sizes = (grid_thw.prod(-1) // self.spec.merge_size ** 2).tolist()
            per_image = list(torch.split(tokens, sizes))
        new = self._apply(per_image, ctx, grid_thw)
        if self.spec.family == "llava":
            return torch.stack(new, 0)
        merged = torch.cat(new, 0)
        if hasattr(output, "pooler_output"):
            output.pooler_output = merged
            return output
        return merged

    # ----------------------------------------------------------------- core
    def _token_kind(self, ctx, n_total: int) -> torch.Tensor:
        """[B, L] bool: positions holding this call's visual tokens (images, else videos)."""
        ids = ctx["input_ids"]
        mm = ctx.get("mm_token_type_ids")
        candidates = []
        if mm is not None:
            candidates += [mm == 1, mm == 2]
        candidates.append(ids == self.spec.image_token_id)
        if self.spec.video_token_id is not None:
            candidates.append(ids == self.spec.video_token_id)
        for c in candidates:
            if int(c.sum()) == n_total:
                return c
        raise RuntimeError(f"found no placeholder tokens matching the {n_total} visual tokens in input_ids")

    def _key_positions(self, ids: torch.Tensor, placeholder: torch.Tensor, ctx: dict) -> torch.Tensor:
        """[B, L] bool: the tokens each sample's images attend to, by `MuNGConfig.keys`.

        prompt (default): no placeholders / special ids / padding / answer (labels != -100);
        after_image (the authors' LLaVA code): non-padding tokens after the row's last visual
        placeholder, the answer included; non_image (the authors' Qwen code): every token that
        is not a visual placeholder, padding and answer included."""
        rule = self.keys
        mask = ctx.get("attention_mask")
        if rule == "non_image":
            return ~placeholder
        if rule == "after_image":
            pos = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
            last = torch.where(placeholder, pos, torch.full_like(pos, -1)).max(dim=1, keepdim=True).values
            keep = pos > last
            return keep & mask.to(torch.bool) if mask is not None else keep
        keep = torch.ones_like(ids, dtype=torch.bool)
        for tid in self.spec.exclude_token_ids:
            keep &= ids != tid
        keep &= ~placeholder
        if mask is not None:
            keep &= mask.to(torch.bool)
        if ctx.get("labels") is not None:
            keep &= ctx["labels"] == -100
        return keep

    def _apply(self, per_image: list[torch.Tensor], ctx: dict, grid_thw) -> list[torch.Tensor]:
        ids = ctx["input_ids"]
        n_per = [t.shape[0] for t in per_image]
        placeholder = self._token_kind(ctx, sum(n_per))
        # assign images to samples in order of appearance (row-major over the batch)
        counts = placeholder.sum(1).tolist()
        image_to_sample, row, used = [], 0, 0
        for n in n_per:
            while row < len(counts) and used + n > counts[row]:
                if used != counts[row]:
                    raise RuntimeError("visual tokens do not line up with the image placeholders of the batch")
                row, used = row + 1, 0
            if row >= len(counts):
                raise RuntimeError("more visual tokens than image placeholders in input_ids")
            image_to_sample.append(row)
            used += n
        keep = self._key_positions(ids, placeholder, ctx)
        with torch.no_grad():
            emb = self.host.get_input_embeddings()(ids)
        lengths = [int(keep[s].sum()) for s in image_to_sample]
        t_max = max(max(lengths), 1)
        b, d_t = len(per_image), emb.shape[-1]
        text = emb.new_zeros(b, t_max, d_t)
        mask = torch.zeros(b, t_max, dtype=torch.bool, device=ids.device)
        text_ids = []
        for i, s in enumerate(image_to_sample):
            sel = keep[s].nonzero(as_tuple=True)[0]
            text[i, : len(sel)] = emb[s, sel]
            mask[i, : len(sel)] = True
            text_ids.append(ids[s, sel])
        n_max = max(n_per)
        vis = per_image[0].new_zeros(b, n_max, per_image[0].shape[-1])
        for i, t in enumerate(per_image):
            vis[i, : t.shape[0]] = t
        eps = self.eps
        if isinstance(eps, (list, tuple)):
            pad = vis.new_zeros(vis.shape, dtype=torch.float32)
            for i, e in enumerate(eps):
                pad[i, : e.shape[0]] = e
            eps = pad
        out = self.generator(vis, text, mask.to(vis.device), eps=eps, generator=self.torch_generator, mode=self.mode)
        new = [out.tokens[i, :n] for i, n in enumerate(n_per)]
        grids = []
        for i, n in enumerate(n_per):
            grids.append(image_token_grid(self.spec, self.host, n, None if grid_thw is None else grid_thw[i]))
        self.last = InjectionRecord(clean=[t.detach() for t in per_image], noisy=[t.detach() for t in new],
                                    output=out, image_to_sample=image_to_sample, text_ids=text_ids, grids=grids)
        return new


def attach(host: nn.Module, generator: MuNGGenerator, **kw) -> MuNGInjector:
    """Attach `generator` to the frozen `host`; returns the injector (call .detach() to remove)."""
    return MuNGInjector(host, generator, **kw).attach()
