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
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from .generator import MuNGGenerator
from .injector import MuNGInjector


class NonFiniteLoss(RuntimeError):
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


def _loader(bundle, items, batch_size, seed):
    g = torch.Generator().manual_seed(seed)
    collate = lambda b: bundle.encode([x.image for x in b], [x.question for x in b], [x.answer for x in b])
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


def train_host(bundle, items, *, steps=1500, batch_size=32, lr=1e-3, seed=0, accelerator=None) -> TrainResult:
    """Train ALL of the toy MLLM from scratch on (image, question, answer) items."""
    acc = accelerator or make_accelerator()
    model = bundle.model
    model.train().requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = get_cosine_schedule_with_warmup(opt, max(1, steps // 20), steps)
    loader = _loader(bundle, items, batch_size, seed)
    model, opt, loader, sched = acc.prepare(model, opt, loader, sched)

    def forward(batch):
        with acc.autocast():
            return model(**batch).loss

    res = _loop(acc, model, opt, sched, loader, steps, forward, "toy MLLM")
    bundle.model = acc.unwrap_model(model).eval()
    return res


def train_generator(bundle, generator: MuNGGenerator, items, *, steps=600, batch_size=32, lr=5e-4, seed=0,
                    accelerator=None) -> TrainResult:
    """Train only the MuNG generator; the host stays frozen (eval mode, requires_grad False)."""
    acc = accelerator or make_accelerator()
    host = bundle.model.to(acc.device)
    injector = MuNGInjector(host, generator).attach()
    generator.train()
    opt = torch.optim.AdamW(generator.parameters(), lr=lr, weight_decay=0.0)
    sched = get_cosine_schedule_with_warmup(opt, max(1, steps // 20), steps)
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
