"""Training loops (Hugging Face Accelerate): the toy host from scratch, and a MuNG generator
on a frozen host. Next-token cross-entropy on the answer tokens only (labels -100 elsewhere;
the objective is the Monte-Carlo estimate with one noise draw per sample, PiNI Eq. 13).

bf16 autocast on GPU, fp32 on CPU; several GPUs via `accelerate launch -m pini_core mung train`.
Ctrl-C stops and keeps what was trained; a non-finite loss stops with a message (the last
finite weights are kept).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from .config import MuNGRecipe
from .generator import MuNGGenerator
from .injector import MuNGInjector


from pini_core.errors import TrainingStopped  # noqa: E402  (one error hierarchy, issue 12)


class NonFiniteLoss(TrainingStopped, RuntimeError):
    pass


@dataclass
class TrainResult:
    steps: int
    seconds: float
    losses: list
    interrupted: bool = False


def make_accelerator(cpu: bool = False) -> Accelerator:
    use_gpu = torch.cuda.is_available() and not cpu
    return Accelerator(mixed_precision="bf16" if use_gpu else "no", cpu=not use_gpu)


def _loader(bundle, items, batch_size, seed, with_aux=False):
    g = torch.Generator().manual_seed(seed)

    def collate(b):
        batch = bundle.encode([x.image for x in b], [x.question for x in b], [x.answer for x in b])
        return (batch, torch.tensor([x.scene_labels for x in b])) if with_aux else batch

    return DataLoader(items, batch_size=batch_size, shuffle=True, drop_last=len(items) > batch_size,
                      collate_fn=collate, generator=g)


def _loop(accelerator, params_module, optimizer, scheduler, loader, steps, forward, desc, log_every=50,
          on_interrupt=None):
    losses, step, t0 = [], 0, time.time()
    bar = tqdm(total=steps, desc=desc, disable=not accelerator.is_local_main_process)
    interrupted = False
    try:
        while step < steps:
            for batch in loader:
                loss = forward(batch)
                if not torch.isfinite(loss.detach()):
                    raise NonFiniteLoss(
                        f"loss became {loss.item()} at step {step}: lower the learning rate (--lr) or use "
                        "fp32; the weights of the last finite step are kept")
                optimizer.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(params_module.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                losses.append(float(loss.detach()))
                step += 1
                bar.update(1)
                if step % log_every == 0:
                    bar.set_postfix(loss=f"{sum(losses[-log_every:]) / log_every:.4f}")
                if step >= steps:
                    break
    except KeyboardInterrupt:
        interrupted = True
        if on_interrupt:
            on_interrupt(step)
    finally:
        bar.close()
    return TrainResult(step, time.time() - t0, losses, interrupted)


def warmup_steps(recipe: MuNGRecipe, steps: int) -> int:
    """Warm-up steps of generator training: ceil(steps * warmup_ratio) (Hugging Face Trainer,
    as the released codes), or the project's max(1, steps // 20) when the ratio is None."""
    if recipe.warmup_ratio is None:
        return max(1, steps // 20)
    return math.ceil(steps * recipe.warmup_ratio)


class VisionAuxHeads(nn.Module):
    """Training-only scaffolding: shape / colour / count classifiers on the mean-pooled patch
    features the projector receives. They give the from-scratch vision tower a direct signal
    (answer-only next-token loss alone is too weak a signal for a tiny ViT in minutes on CPU);
    they are discarded after training and never shipped."""

    def __init__(self, width: int, n_shapes: int, n_colours: int, n_counts: int):
        super().__init__()
        self.sizes = (n_shapes, n_colours, n_counts)
        self.head = nn.Linear(width, sum(self.sizes))

    def loss(self, feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = self.head(feats.mean(1)).split(self.sizes, -1)
        return sum(F.cross_entropy(lg.float(), labels[:, i]) for i, lg in enumerate(logits))


def _aux_loader(bundle, items, batch_size, seed):
    g = torch.Generator().manual_seed(seed)
    from .toy_mllm import image_to_tensor
    size = bundle.model.config.vision_config.image_size
    collate = lambda b: (torch.stack([image_to_tensor(x.image, size) for x in b]),  # noqa: E731
                         torch.tensor([x.scene_labels for x in b]))
    return DataLoader(items, batch_size=batch_size, shuffle=True, drop_last=len(items) > batch_size,
                      collate_fn=collate, generator=g)


def train_host(bundle, items, *, steps=1500, batch_size=32, lr=1e-3, seed=0, accelerator=None,
               vision_steps=0, vision_lr=3e-3, aux_weight=0.0) -> TrainResult:
    """Train ALL of the toy MLLM from scratch on (image, question, answer) items.

    vision_steps > 0: first train the vision tower alone with the auxiliary scene classifiers
    (cheap steps), like a vision pretraining stage; aux_weight > 0 keeps that loss during the
    end-to-end stage. Both need items with scene_labels (the toy world's)."""
    from pini_core.world.scene import COLOURS, MAX_COUNT, SHAPES
    acc = accelerator or make_accelerator()
    model = bundle.model
    model.train().requires_grad_(True)
    res_v = None
    aux = None
    if vision_steps > 0 or aux_weight > 0:
        if any(x.scene_labels is None for x in items):
            raise ValueError("vision_steps / aux_weight need items with scene_labels (toy-world data)")
        torch.manual_seed(seed)
        aux = VisionAuxHeads(model.config.vision_config.hidden_size, len(SHAPES), len(COLOURS), MAX_COUNT)
    base = model.model if hasattr(model, "model") else model
    layer = model.config.vision_feature_layer

    def vision_feats(pix):
        hs = base.vision_tower(pix, output_hidden_states=True).hidden_states[layer]
        return hs[:, 1:] if model.config.vision_feature_select_strategy == "default" else hs

    if vision_steps > 0:
        tower, heads = base.vision_tower, aux
        vopt = torch.optim.AdamW(list(tower.parameters()) + list(heads.parameters()), lr=vision_lr,
                                 weight_decay=0.05)
        vsched = get_cosine_schedule_with_warmup(vopt, max(1, vision_steps // 10), vision_steps)
        vloader = _aux_loader(bundle, items, batch_size, seed)
        wrapped = nn.ModuleDict({"tower": tower, "heads": heads})
        wrapped, vopt, vloader, vsched = acc.prepare(wrapped, vopt, vloader, vsched)

        def vforward(batch):
            pix, lab = batch
            with acc.autocast():
                return acc.unwrap_model(wrapped)["heads"].loss(vision_feats(pix), lab)

        res_v = _loop(acc, wrapped, vopt, vsched, vloader, vision_steps, vforward, "vision tower")
        if res_v.interrupted:
            bundle.model = model.eval()
            return res_v
    params = list(model.parameters()) + (list(aux.parameters()) if aux is not None and aux_weight > 0 else [])
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = get_cosine_schedule_with_warmup(opt, max(1, steps // 20), steps)
    loader = _loader(bundle, items, batch_size, seed, with_aux=aux_weight > 0)
    holder = nn.ModuleDict({"model": model, **({"aux": aux} if aux is not None and aux_weight > 0 else {})})
    holder, opt, loader, sched = acc.prepare(holder, opt, loader, sched)
    inner = acc.unwrap_model(holder)
    captured = {}
    hook = None
    if aux_weight > 0:
        proj = base.multi_modal_projector
        hook = proj.register_forward_pre_hook(lambda m, a: captured.__setitem__("f", a[0]))

    def forward(batch):
        if aux_weight > 0:
            batch, lab = batch
        with acc.autocast():
            loss = inner["model"](**batch).loss
            if aux_weight > 0:
                loss = loss + aux_weight * inner["aux"].loss(captured.pop("f"), lab)
        return loss

    try:
        res = _loop(acc, holder, opt, sched, loader, steps, forward, "toy MLLM")
    finally:
        if hook is not None:
            hook.remove()
    bundle.model = inner["model"].eval()
    if res_v is not None:
        res = TrainResult(res.steps, res.seconds + res_v.seconds, res.losses, res.interrupted)
        res.vision_steps, res.vision_losses = res_v.steps, res_v.losses
    return res


def train_generator(bundle, generator: MuNGGenerator, items, *, steps=600, batch_size=32, lr=5e-4, seed=0,
                    accelerator=None, recipe: MuNGRecipe | None = None) -> TrainResult:
    """Train only the MuNG generator; the host stays frozen (eval mode, requires_grad False).

    AdamW + cosine with warm-up. `recipe` (config.MUNG_RECIPES, e.g. "qwen_code"): its lr,
    weight decay, betas and warm-up replace `lr` and the defaults (weight decay 0, betas
    (0.9, 0.999), warm-up max(1, steps // 20))."""
    acc = accelerator or make_accelerator()
    host = bundle.model.to(acc.device)
    injector = MuNGInjector(host, generator).attach()
    generator.train()
    r = recipe or MuNGRecipe(lr=lr)
    opt = torch.optim.AdamW(generator.parameters(), lr=r.lr, weight_decay=r.weight_decay, betas=tuple(r.betas))
    sched = get_cosine_schedule_with_warmup(opt, warmup_steps(r, steps), steps)
    loader = _loader(bundle, items, batch_size, seed)
    wrapped, opt, loader, sched = acc.prepare(generator, opt, loader, sched)
    injector.generator = wrapped          # hooks call the (possibly DDP-wrapped) module

    def forward(batch):
        with acc.autocast():
            return host(**batch).loss

    try:
        res = _loop(acc, wrapped, opt, sched, loader, steps, forward, "MuNG generator")
    finally:
        injector.detach()
        generator.eval()
    return res
