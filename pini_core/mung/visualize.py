"""Figures of MuNG (paper Fig. 2/3): the generator's attention over image patches, and relevance
(importance) maps of the image patches for the answer before and after noise injection.

Engine functions return numpy arrays; `overlay_figure` turns maps into a matplotlib figure.
Relevance = captum layer attribution at the hooked visual tokens (the LLM-ready tokens, i.e.
after the noise when it is on), summed over the hidden dimension, |.|, one value per patch.
Before/after use the SAME eps (seeded draw) so the only difference is the noise itself.
"""
from __future__ import annotations

import contextlib
from contextlib import contextmanager
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from captum.attr import LayerGradientXActivation, LayerIntegratedGradients  # noqa: E402

from .hosts import image_token_grid  # noqa: E402
from .injector import InjectionRecord, MuNGInjector  # noqa: E402

RELEVANCE_METHODS = ("grad_x_act", "integrated_gradients")


def _to_grid(values: torch.Tensor, grid: tuple[int, int, int]) -> np.ndarray:
    """[N] per-token values -> [rows, cols] (drops leading non-patch tokens such as CLS)."""
    rows, cols, offset = grid
    return values[offset: offset + rows * cols].reshape(rows, cols).detach().float().cpu().numpy()


def attention_maps(record: InjectionRecord, image_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Generator attention of one image over its patches.

    Returns (per_token [T, rows, cols], mean [rows, cols]). per_token[t] is the head-averaged
    weight every visual token (patch) gives to text token t (key order = record.text_ids).
    Each patch's weights sum to 1 over the text tokens, so a plain average over tokens would be
    the constant 1/T; `mean` instead averages the per-token maps after normalising each to sum 1
    over the patches (where the attention to each word lands, averaged over the words) and
    therefore sums to 1."""
    attn = record.output.attn[image_index].mean(0)                  # [N_max, T_max], heads averaged
    n = record.clean[image_index].shape[0]
    t = len(record.text_ids[image_index])
    if t == 0:
        raise ValueError("this sample had no text tokens, so the generator attention is empty")
    grid = record.grids[image_index]
    per_token = np.stack([_to_grid(attn[:n, j], grid) for j in range(t)])
    spread = per_token / np.maximum(per_token.sum(axis=(1, 2), keepdims=True), 1e-12)
    return per_token, spread.mean(0)


def upsample(grid_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a [rows, cols] map to the image size (H, W)."""
    x = torch.as_tensor(grid_map, dtype=torch.float32)[None, None]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


@contextmanager
def _visual_token_tap(spec):
    """An `nn.Identity` that the LLM-ready visual tokens pass through, for captum to attribute to.

    Its hook is registered after MuNG's, so it sees the tokens the decoder receives (noisy when
    the noise is on). It works for every host family: LLaVA's projector returns a tensor
    [B, N, d], Qwen-VL's vision tower a ModelOutput whose `pooler_output` is [sum_i N_i, d]."""
    tap = nn.Identity()

    def hook(module, args, output):
        if hasattr(output, "pooler_output"):
            output.pooler_output = tap(output.pooler_output)
            return output
        return tap(output)

    handle = spec.visual_module.register_forward_hook(hook)
    try:
        yield tap
    finally:
        handle.remove()


def relevance_maps(injector: MuNGInjector, inputs: dict, target_ids: torch.Tensor, *, seed: int = 0,
                   method: str = "grad_x_act", n_steps: int = 16):
    """Patch relevance for `target_ids` [B] (the next token after the prompt) before / after noise.

    inputs: the host's keyword inputs (input_ids, attention_mask, pixel_values, and for Qwen-VL
    image_grid_thw). Returns (before, after): arrays [n_images, rows, cols] when every image has
    the same token grid (LLaVA always), otherwise lists of [rows, cols] arrays, one per image.
    Integrated gradients need batch-first visual tokens, so they are LLaVA-only; Qwen-VL hosts
    (tokens of all images concatenated) support grad_x_act."""
    if method not in RELEVANCE_METHODS:
        raise ValueError(f"method must be one of {RELEVANCE_METHODS}, got {method!r}")
    spec, host = injector.spec, injector.host
    qwen = spec.family != "llava"
    if qwen and method != "grad_x_act":
        raise ValueError(f"{method} needs batch-first visual tokens; {spec.family} concatenates the tokens of all "
                         "images, so use method='grad_x_act' for this host")
    if qwen and inputs.get("image_grid_thw") is None:
        raise ValueError("Qwen-VL relevance maps need image_grid_thw in inputs (the processor returns it)")
    pixel_values = inputs["pixel_values"]
    other = {k: v for k, v in inputs.items() if k != "pixel_values"}
    target_ids = torch.as_tensor(target_ids, device=pixel_values.device)
    keys = sorted(other)
    extra = tuple(other[k] for k in keys)

    fixed = {}  # the eps drawn once for the real batch (set in `attribute`)

    def forward(pix, *vals):
        eps = fixed.get("eps")
        if eps is not None and not qwen and pix.shape[0] != eps.shape[0]:
            # captum runs integrated gradients on the batch repeated n_steps times (step-major:
            # row s * B + b is image b at step s, as captum's _expand_additional_forward_args
            # does with torch.cat); the fixed eps of image b must follow it.
            if pix.shape[0] % eps.shape[0]:
                raise ValueError(f"captum passed {pix.shape[0]} images for a batch of {eps.shape[0]}")
            eps = eps.repeat(pix.shape[0] // eps.shape[0], *([1] * (eps.dim() - 1)))
        with injector.settings(eps=eps) if eps is not None else contextlib.nullcontext():
            logits = host(pixel_values=pix, **dict(zip(keys, vals))).logits[:, -1].float()
        rows = torch.arange(logits.shape[0], device=logits.device)
        return torch.log_softmax(logits, -1)[rows, target_ids.repeat(logits.shape[0] // len(target_ids))]

    def attribute(noise_on: bool) -> torch.Tensor:
        with injector.settings(enabled=noise_on, seed=seed if noise_on else None):
            eps = None
            if noise_on:       # fix eps once so every captum pass (and IG step) shares it
                with torch.no_grad():
                    host(pixel_values=pixel_values, **other)
                eps = injector.last.output.eps.detach()          # [n_images, N_max, d]
            fixed["eps"] = eps
            with _visual_token_tap(spec) as tap:
                if method == "grad_x_act":
                    return LayerGradientXActivation(forward, tap).attribute(pixel_values, additional_forward_args=extra)
                return LayerIntegratedGradients(forward, tap).attribute(
                    pixel_values, additional_forward_args=extra, n_steps=n_steps)

    maps = []
    for on in (False, True):
        rel = attribute(on).float().sum(-1).abs()       # LLaVA [B, N]; Qwen [sum_i N_i]
        if qwen:
            thw = other["image_grid_thw"]
            per_image = torch.split(rel, (thw.prod(-1) // spec.merge_size ** 2).tolist())
            grids = [image_token_grid(spec, host, r.shape[0], g) for r, g in zip(per_image, thw)]
        else:
            per_image = list(rel)
            grids = [image_token_grid(spec, host, rel.shape[1])] * len(per_image)
        out = [_to_grid(r, g) for r, g in zip(per_image, grids)]
        maps.append(np.stack(out) if len({m.shape for m in out}) == 1 else out)
    return maps[0], maps[1]


@dataclass
class Explanation:
    """Everything the app shows for one (image, question)."""
    image: np.ndarray                 # [H, W, 3] uint8, as fed to the host
    question: str
    tokens: list                      # key text tokens of the generator (strings)
    attention_per_token: np.ndarray   # [T, rows, cols]
    attention_mean: np.ndarray        # [rows, cols]
    relevance_before: np.ndarray      # [rows, cols] (no noise)
    relevance_after: np.ndarray       # [rows, cols] (with noise, same eps)
    answer_before: str
    answer_after: str
    target: str                       # the answer word the relevance is computed for

    def upsampled(self, grid_map: np.ndarray) -> np.ndarray:
        return upsample(grid_map, self.image.shape[:2])


def explain(bundle, injector: MuNGInjector, image, question: str, *, seed: int = 0, target: str | None = None,
            method: str = "grad_x_act", n_steps: int = 16) -> Explanation:
    """Attention + relevance maps for the toy MLLM (`ToyMLLM`) with an attached injector.

    target: the answer word to explain (default: the answer WITH noise)."""
    from .toy_mllm import image_to_tensor
    size = bundle.model.config.vision_config.image_size
    pix = image_to_tensor(image, size)
    img = ((pix.permute(1, 2, 0).numpy() + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)
    with injector.settings(enabled=False):
        before = bundle.answer([image], [question])[0]
    with injector.settings(seed=seed):
        after = bundle.answer([image], [question], injector=injector)[0]
    batch = bundle.encode([image], [question])
    batch = {k: v.to(bundle.device) for k, v in batch.items()}
    with torch.no_grad(), injector.settings(seed=seed):
        logits = bundle.model(**batch).logits[0, -1]
    rec = injector.last
    if target is None:            # the first answer token greedy decoding picks with the noise
        tid = int(logits.argmax())
        target = bundle.tokenizer.id_to_token(tid)
    else:
        tid = bundle.tokenizer.token_to_id(target)
        if tid is None:
            from .toy_mllm import QuestionError

            raise QuestionError(f"target {target!r} is not a word of the host's vocabulary")
    per_token, mean = attention_maps(rec, 0)
    tokens = [bundle.tokenizer.id_to_token(int(t)) for t in rec.text_ids[0]]
    rb, ra = relevance_maps(injector, batch, torch.tensor([tid]), seed=seed, method=method, n_steps=n_steps)
    return Explanation(img, question, tokens, per_token, mean, rb[0], ra[0], before, after, target)


def overlay_figure(image: np.ndarray, maps: dict, *, cmap: str = "jet", alpha: float = 0.5,
                   title: str | None = None):
    """One panel per named map, each upsampled and overlaid on the image (maps min-max normalised)."""
    n = len(maps) + 1
    fig, axes = plt.subplots(1, n, figsize=(2.4 * n, 2.6))
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=9)
    for ax, (name, m) in zip(axes[1:], maps.items()):
        up = upsample(m, image.shape[:2]) if m.shape != image.shape[:2] else m
        lo, hi = float(up.min()), float(up.max())
        flat = hi - lo <= 1e-6 * max(abs(hi), abs(lo), 1e-12)      # do not amplify rounding noise
        up = np.zeros_like(up) if flat else (up - lo) / (hi - lo)
        ax.imshow(image)
        ax.imshow(up, cmap=cmap, alpha=alpha, vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def explanation_figure(ex: Explanation, max_tokens: int = 6):
    """Paper-style figure: per-token + mean generator attention, relevance before / after."""
    maps = {f"attn '{t}'": m for t, m in list(zip(ex.tokens, ex.attention_per_token))[:max_tokens]}
    maps["attn (mean)"] = ex.attention_mean
    maps[f"relevance before ({ex.answer_before})"] = ex.relevance_before
    maps[f"relevance after ({ex.answer_after})"] = ex.relevance_after
    return overlay_figure(ex.image, maps, title=ex.question)


def benchmark(repeats: int = 5, method: str = "grad_x_act", figure: str | None = None) -> dict:
    """Median seconds of `explain` and of `explanation_figure` on the shipped toy (CPU);
    `figure`: also save the first question's figure there (PNG)."""
    import time

    from .checkpoint import load_generator
    from .cli import DEFAULT_GENERATOR
    from .injector import attach
    from .toy_mllm import load_toy_mllm
    from .vqa_data import make_vqa
    bundle = load_toy_mllm()
    inj = attach(bundle.model, load_generator(DEFAULT_GENERATOR, host=bundle.model))
    items = make_vqa(repeats, "shifted", seed=123)
    t_ex, t_fig = [], []
    for it in items:
        t0 = time.perf_counter()
        ex = explain(bundle, inj, it.image, it.question, seed=0, method=method)
        t1 = time.perf_counter()
        fig = explanation_figure(ex)
        t_fig.append(time.perf_counter() - t1)
        if figure and len(t_fig) == 1:
            from .. import atomic

            with atomic.atomic_path(figure) as tmp:
                fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)
        t_ex.append(t1 - t0)
    inj.detach()
    return {"method": method, "threads": torch.get_num_threads(), "explain_s": float(np.median(t_ex)),
            "figure_s": float(np.median(t_fig)), "total_s": float(np.median(np.add(t_ex, t_fig)))}


def add_arguments(parser) -> None:
    parser.description = ("Time MuNG's explanation figures (generator attention + relevance before/after the noise) "
                          "on the shipped toy MLLM: median seconds of `explain` and of the figure, per method.")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=5, help="questions timed (the median is reported)")
    parser.add_argument("--methods", nargs="+", choices=RELEVANCE_METHODS, default=list(RELEVANCE_METHODS),
                        help="relevance methods to time")
    parser.add_argument("--figure", default=None,
                        help="also save the first question's figure here (PNG; with several methods, "
                             "METHOD is inserted before the suffix)")


def run(args) -> int:
    import json

    from ..errors import ConfigError

    if args.threads < 1 or args.repeats < 1:
        raise ConfigError("--threads and --repeats must be >= 1")
    torch.set_num_threads(args.threads)
    for method in args.methods:
        figure = args.figure
        if figure and len(args.methods) > 1:
            stem, dot, suffix = figure.rpartition(".")
            figure = f"{stem}_{method}.{suffix}" if dot else f"{figure}_{method}"
        print(json.dumps(benchmark(repeats=args.repeats, method=method, figure=figure), indent=2))
    return 0
