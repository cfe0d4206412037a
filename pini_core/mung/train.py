"""MuNG training (Hugging Face Accelerate): a MuNG generator on a frozen host, and the toy host
from scratch. Next-token cross-entropy on the answer tokens only (labels -100 elsewhere;
the objective is the Monte-Carlo estimate with one noise draw per sample, PiNI Eq. 13).

The generator trains through the project's one training loop, `pini_core.trainer.fit`, with a
`pini_core.experiment.Recipe` (`config.MUNG_RECIPES`): AdamW, transformers' cosine with
warm-up, gradient clipping and a step budget all come from the recipe. There, as for PiNI,
Ctrl-C keeps the weights of the last finished epoch (pass over the data), and a non-finite
loss raises NonFiniteLoss after restoring them.
The host's pretraining (`train_host`: two stages, auxiliary heads, every weight trains) keeps
its own small loop, `_loop`, but shares the schedule code (`trainer.lr_at`); Ctrl-C there keeps
what was trained.

bf16 autocast on GPU, fp32 on CPU; several GPUs via `accelerate launch -m pini_core mung train`.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from pini_core.experiment import Recipe
from pini_core.trainer import fit, lr_at, make_optimizer, warmup_steps_of

from .config import MUNG_RECIPES
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


def _loop(accelerator, params_module, optimizer, recipe: Recipe, loader, forward, desc, log_every=50,
          on_interrupt=None):
    """The host pretraining's loop: `recipe.max_steps` steps cycling through `loader`, the learning
    rate of each step from `trainer.lr_at` (the project's one schedule code), gradients clipped to
    `recipe.max_grad_norm`."""
    losses, step, t0, steps = [], 0, time.time(), recipe.max_steps
    bar = tqdm(total=steps, desc=desc, disable=not accelerator.is_local_main_process)
    interrupted = False
    try:
        while step < steps:
            for batch in loader:
                for g in optimizer.param_groups:
                    g["lr"] = lr_at(recipe, 0, step)
                loss = forward(batch)
                if not torch.isfinite(loss.detach()):
                    raise NonFiniteLoss(
                        f"loss became {loss.item()} at step {step}: lower the learning rate (--lr) or use "
                        "fp32; the weights of the last finite step are kept")
                optimizer.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                if recipe.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(params_module.parameters(), recipe.max_grad_norm)
                optimizer.step()
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


def warmup_steps(recipe: Recipe, steps: int) -> int:
    """Warm-up steps of generator training over `steps` steps: ceil(steps * warmup_ratio) (the
    Hugging Face Trainer's rule, as the released codes), or the recipe's warmup_steps."""
    return warmup_steps_of(dataclasses.replace(recipe, max_steps=steps))


def _host_recipe(lr: float, steps: int, warmup: int, weight_decay: float) -> Recipe:
    """The host pretraining stages' recipe: AdamW, transformers' cosine with `warmup` steps."""
    return Recipe(optimizer="adamw", lr=lr, weight_decay=weight_decay, schedule="hf_cosine_warmup",
                  max_steps=steps, warmup_steps=warmup, max_grad_norm=1.0)


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
        vrecipe = _host_recipe(vision_lr, vision_steps, max(1, vision_steps // 10), 0.05)
        vopt = make_optimizer(list(tower.parameters()) + list(heads.parameters()), vrecipe)
        vloader = _aux_loader(bundle, items, batch_size, seed)
        wrapped = nn.ModuleDict({"tower": tower, "heads": heads})
        wrapped, vopt, vloader = acc.prepare(wrapped, vopt, vloader)

        def vforward(batch):
            pix, lab = batch
            with acc.autocast():
                return acc.unwrap_model(wrapped)["heads"].loss(vision_feats(pix), lab)

        res_v = _loop(acc, wrapped, vopt, vrecipe, vloader, vforward, "vision tower")
        if res_v.interrupted:
            bundle.model = model.eval()
            return res_v
    params = list(model.parameters()) + (list(aux.parameters()) if aux is not None and aux_weight > 0 else [])
    recipe = _host_recipe(lr, steps, max(1, steps // 20), 0.01)
    opt = make_optimizer(params, recipe)
    loader = _loader(bundle, items, batch_size, seed, with_aux=aux_weight > 0)
    holder = nn.ModuleDict({"model": model, **({"aux": aux} if aux is not None and aux_weight > 0 else {})})
    holder, opt, loader = acc.prepare(holder, opt, loader)
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
        res = _loop(acc, holder, opt, recipe, loader, forward, "toy MLLM")
    finally:
        if hook is not None:
            hook.remove()
    bundle.model = inner["model"].eval()
    if res_v is not None:
        res = TrainResult(res.steps, res.seconds + res_v.seconds, res.losses, res.interrupted)
        res.vision_steps, res.vision_losses = res_v.steps, res_v.losses
    return res


class MuNGMethod(nn.Module):
    """A MuNG generator on a frozen host as a `trainer.fit` method: `compute_loss(batch, labels)`
    is the host's next-token loss (answer tokens only) with the generator's noise injected by
    the injector's hooks. Only the generator is a submodule (trained, snapshotted, saved); the
    host is `frozen_model`, a plain attribute, so fit checks it is frozen but never copies it."""

    needs_pixels = True  # the noise enters the host's visual tokens (no feature caching)

    def __init__(self, host: nn.Module, generator: MuNGGenerator):
        super().__init__()
        self.generator = generator
        object.__setattr__(self, "frozen_model", host)  # not registered: not in parameters()/state_dict()

    def compute_loss(self, inputs: dict, labels: torch.Tensor) -> torch.Tensor:
        return self.frozen_model(**inputs).loss


def train_generator(bundle, generator: MuNGGenerator, items, *, steps: int | None = None,
                    batch_size: int | None = None, lr: float | None = None, seed=0, accelerator=None,
                    recipe: Recipe | None = None) -> TrainResult:
    """Train only the MuNG generator with `pini_core.trainer.fit`; the host stays frozen (eval
    mode, requires_grad False).

    recipe: a `pini_core.experiment.Recipe` (`config.MUNG_RECIPES`, e.g. "qwen_code"); default
    MUNG_RECIPES["project"]. steps / batch_size / lr, when given, replace its max_steps /
    batch_size / lr. accelerator: its device and precision (default `make_accelerator()`: bf16
    autocast on GPU, fp32 on CPU). Ctrl-C keeps the weights of the last finished pass over the
    data (`interrupted`; `steps` counts the steps taken); a non-finite loss raises NonFiniteLoss."""
    r = recipe if recipe is not None else MUNG_RECIPES["project"]
    overrides = {k: v for k, v in dict(max_steps=steps, batch_size=batch_size, lr=lr).items() if v is not None}
    r = dataclasses.replace(r, **overrides)
    acc = accelerator or make_accelerator()
    host = bundle.model.to(acc.device)
    injector = MuNGInjector(host, generator).attach()
    method = MuNGMethod(host, generator)
    try:
        res = fit(method, None, items, r, seed=seed, accelerator=acc, device=acc.device,
                  collate=lambda b: bundle.encode([x.image for x in b], [x.question for x in b],
                                                  [x.answer for x in b]),
                  to_inputs=lambda batch: (batch, batch["labels"]), desc="MuNG generator")
    finally:
        injector.detach()
        generator.eval()
    if res.cause == "nonfinite":
        raise NonFiniteLoss(f"{res.reason} (lower the learning rate (--lr) or use fp32)")
    return TrainResult(res.steps, res.seconds, res.losses, res.cause == "interrupt")
