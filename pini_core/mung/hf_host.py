"""Real hosts from a local Hugging Face folder (LLaVA, Qwen2-VL, Qwen2.5-VL): model + processor.

`HFHost` offers the same interface as the toy MLLM (`encode`, `answer`, `model`, `device`), so
`train_generator`, the CLI and the visualisations work with it. Prompts use the processor's
chat template when it has one (else LLaVA-1.5's "USER: <image>\\n{q} ASSISTANT:"); the labels
cover the answer tokens (+ EOS) only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor


def is_hf_host_dir(path) -> bool:
    p = Path(path)
    return (p / "config.json").is_file() and ((p / "preprocessor_config.json").is_file()
                                              or (p / "processor_config.json").is_file())


@dataclass
class HFHost:
    model: torch.nn.Module
    processor: object

    @classmethod
    def load(cls, path, device: str = "cpu", dtype=None) -> "HFHost":
        path = Path(path)
        if not is_hf_host_dir(path):
            raise FileNotFoundError(f"{path} is not a Hugging Face model folder with a processor "
                                    "(config.json + preprocessor_config.json)")
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype or torch.float32).to(device).eval()
        processor = AutoProcessor.from_pretrained(path)
        return cls(model, processor)

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    def reserved_tokens(self) -> set:
        """Tokens a question must not contain: the processor's image / video placeholders and the
        tokenizer's special tokens."""
        tok = self.processor.tokenizer
        out = {getattr(self.processor, a, None) for a in ("image_token", "video_token")}
        out |= set(getattr(tok, "all_special_tokens", None) or [])
        return {t for t in out if isinstance(t, str) and t.strip()}

    def prompt(self, question: str) -> str:
        if getattr(self.processor, "chat_template", None):
            msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
            return self.processor.apply_chat_template(msgs, add_generation_prompt=True)
        return f"USER: {self.processor.image_token}\n{question} ASSISTANT:"

    def encode(self, images, questions: list[str], answers: list[str] | None = None) -> dict:
        tok = self.processor.tokenizer
        tok.padding_side = "left"
        from .toy_mllm import check_reserved

        for q in questions:  # a typed "<image>" would add an image slot the pixels do not fill
            check_reserved(q, self.reserved_tokens(), "question")
        prompts = [self.prompt(q) for q in questions]
        texts = prompts if answers is None else [p + " " + a + (tok.eos_token or "") for p, a in zip(prompts, answers)]
        batch = dict(self.processor(images=list(images), text=texts, return_tensors="pt", padding=True))
        if answers is not None:
            plain = self.processor(images=list(images), text=prompts, return_tensors="pt", padding=True)
            n_prompt = plain["attention_mask"].sum(1)
            n_full = batch["attention_mask"].sum(1)
            labels = torch.full_like(batch["input_ids"], -100)
            for i in range(len(texts)):
                k = int(n_full[i] - n_prompt[i])          # answer (+ EOS) tokens at the end of the row
                if k <= 0:
                    raise ValueError(f"answer {answers[i]!r} produced no tokens")
                labels[i, -k:] = batch["input_ids"][i, -k:]
            batch["labels"] = labels
        if self.model.config.model_type == "llava":     # left padding: positions start at each row's first token
            m = batch["attention_mask"]
            batch["position_ids"] = (m.cumsum(-1) - 1).clamp(min=0)
        return batch

    @torch.no_grad()
    def answer(self, images, questions: list[str], injector=None, max_new_tokens: int = 16,
               batch_size: int = 8) -> list[str]:
        out = []
        for s in range(0, len(questions), batch_size):
            batch = self.encode(images[s:s + batch_size], questions[s:s + batch_size])
            batch.pop("position_ids", None)
            batch = {k: v.to(self.device) for k, v in batch.items()}
            kw = dict(max_new_tokens=max_new_tokens, do_sample=False)
            gen = injector.generate(**batch, **kw) if injector is not None else self.model.generate(**batch, **kw)
            new = gen[:, batch["input_ids"].shape[1]:]
            out += [t.strip() for t in self.processor.batch_decode(new, skip_special_tokens=True)]
        return out


def load_host(path, device: str = "cpu"):
    """The toy MLLM folder (tokenizer.json + meta.json) or a Hugging Face folder with a processor."""
    from .toy_mllm import load_toy_mllm
    if is_hf_host_dir(path):
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
        return HFHost.load(path, device=device, dtype=dtype)
    return load_toy_mllm(path, device=device)


def export_toy_as_hf(bundle, path) -> Path:
    """Write a toy MLLM as a standard Hugging Face LLaVA folder (model + LlavaProcessor), so it can
    be loaded like any real host (`HFHost.load`, `AutoModelForImageTextToText`, `AutoProcessor`)."""
    from transformers import CLIPImageProcessor, LlavaProcessor, PreTrainedTokenizerFast
    cfg = bundle.model.config
    if cfg.vision_feature_select_strategy != "default":
        raise ValueError("export_toy_as_hf expects vision_feature_select_strategy='default'")
    tok = PreTrainedTokenizerFast(tokenizer_object=bundle.tokenizer, bos_token="<bos>", eos_token="<eos>",
                                  pad_token="<pad>", unk_token="<unk>", extra_special_tokens=["<image>", "<ans>"])
    size = cfg.vision_config.image_size
    ip = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                            image_mean=[0.5] * 3, image_std=[0.5] * 3, do_convert_rgb=True)
    # transformers 5 LlavaProcessor: N = (H/p)(W/p) + extra - 1 with the "default" (drop CLS) strategy
    proc = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=cfg.vision_config.patch_size,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1)
    path = Path(path)
    bundle.model.save_pretrained(path)
    proc.save_pretrained(path)
    return path
