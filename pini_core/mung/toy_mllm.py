"""The embedded toy MLLM: a tiny LLaVA (tiny CLIP vision tower on 64 px world images + tiny
Llama decoder) with a word-level `tokenizers` tokenizer, trained from scratch by the project
(see `pini_core.mung.train`) to serve as the frozen "pretrained host" of the MuNG demo.

Prompt layout:  <bos> <image>*N  question words  <ans>   |  answer <eos>
Loss only on the answer tokens (labels -100 elsewhere).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import LlavaForConditionalGeneration

from pini_core.errors import DataError

from .tiny_hosts import llava_tokens_per_image, tiny_llava_config
from .vqa_data import vocabulary

SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>", "<ans>", "<image>"]
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "checkpoints" / "mung" / "host"
IMAGE_SIZE = 64


class QuestionError(DataError, ValueError):
    """A question (or answer) the host cannot read as written; the message names the words."""


def check_reserved(text: str, reserved, what: str = "question") -> None:
    """Refuse `text` when it contains one of the host's reserved prompt tokens (`<image>`, ...):
    typed by a user they would be read as the image's place in the prompt (or as the end of the
    prompt), which breaks the model's input (`Image features and image tokens do not match`)."""
    found = sorted({t for t in reserved if t and t in text})
    if found:
        raise QuestionError(f"The {what} contains {', '.join(repr(t) for t in found)}, which the model reserves for "
                            f"its prompt layout ({'the image' if any('image' in t for t in found) else 'markers'}); "
                            "please remove it from the text.")


def question_words(text: str) -> list[str]:
    """The toy tokenizer's words for `text`: lower case, '?' split from the word before it
    ("is it?" -> ["is", "it", "?"]), split on white space."""
    return re.sub(r"\?", " ? ", text.lower()).split()


def build_tokenizer(words: list[str] | None = None) -> Tokenizer:
    """Word-level tokenizer: specials first, then the toy-world vocabulary."""
    words = vocabulary() if words is None else words
    vocab = {w: i for i, w in enumerate(SPECIALS + [w for w in words if w not in SPECIALS])}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = WhitespaceSplit()
    return tok


def image_to_tensor(img: Image.Image | np.ndarray, size: int = IMAGE_SIZE) -> torch.Tensor:
    """RGB image -> [3, size, size] in [-1, 1]."""
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    if not isinstance(img, Image.Image):
        raise TypeError(f"expected a PIL image or numpy array, got {type(img).__name__}")
    img = img.convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0)
    return x.permute(2, 0, 1).contiguous()


@dataclass
class ToyMLLM:
    model: LlavaForConditionalGeneration
    tokenizer: Tokenizer

    @property
    def ids(self) -> dict:
        return {s: self.tokenizer.token_to_id(s) for s in SPECIALS}

    @property
    def n_image_tokens(self) -> int:
        return llava_tokens_per_image(self.model.config)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def encode(self, images, questions: list[str], answers: list[str] | None = None) -> dict:
        """Left-padded batch with explicit position ids (same layout for training and generation)."""
        if len(images) != len(questions) or (answers is not None and len(answers) != len(questions)):
            raise ValueError("images, questions (and answers) must have the same length")
        ids = self.ids
        rows, labs = [], []
        for i, q in enumerate(questions):
            q_ids = self.word_ids(q, "question")
            prompt = [ids["<bos>"]] + [ids["<image>"]] * self.n_image_tokens + q_ids + [ids["<ans>"]]
            lab = [-100] * len(prompt)
            if answers is not None:
                a_ids = self.word_ids(answers[i], "answer") + [ids["<eos>"]]
                prompt, lab = prompt + a_ids, lab + a_ids
            rows.append(prompt)
            labs.append(lab)
        length = max(map(len, rows))
        b = len(rows)
        input_ids = torch.full((b, length), ids["<pad>"], dtype=torch.long)
        mask = torch.zeros(b, length, dtype=torch.long)
        labels = torch.full((b, length), -100, dtype=torch.long)
        for i, (r, l) in enumerate(zip(rows, labs)):
            input_ids[i, length - len(r):] = torch.tensor(r)
            mask[i, length - len(r):] = 1
            labels[i, length - len(r):] = torch.tensor(l)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        size = self.model.config.vision_config.image_size
        pixels = torch.stack([image_to_tensor(im, size) for im in images])
        out = dict(input_ids=input_ids, attention_mask=mask, position_ids=pos, pixel_values=pixels)
        if answers is not None:
            out["labels"] = labels
        return out

    def word_ids(self, text: str, what: str = "question") -> list[int]:
        """Token ids of `text`; QuestionError for a reserved token (`<image>`, ...) or for words
        outside the toy vocabulary (named, with the vocabulary), never a silent `<unk>`."""
        check_reserved(text.lower(), SPECIALS, what)
        words = question_words(text)
        if not words:
            raise QuestionError(f"The {what} is empty.")
        vocab = self.tokenizer.get_vocab()
        unknown = list(dict.fromkeys(w for w in words if w not in vocab))
        if unknown:
            known = sorted(w for w in vocab if w not in SPECIALS)
            raise QuestionError(f"The toy model does not know the word{'s' if len(unknown) > 1 else ''} "
                                f"{', '.join(repr(w) for w in unknown)} in the {what} {text.strip()!r}; it would read "
                                f"{'them' if len(unknown) > 1 else 'it'} as <unk>. Its {len(known)} words: "
                                f"{' '.join(known)}.")
        return [vocab[w] for w in words]

    def decode(self, ids: torch.Tensor) -> str:
        eos = self.ids["<eos>"]
        words = []
        for t in ids.tolist():
            if t == eos:
                break
            words.append(self.tokenizer.id_to_token(t))
        return " ".join(words)

    @torch.no_grad()
    def answer(self, images, questions: list[str], injector=None, max_new_tokens: int = 3,
               batch_size: int = 64) -> list[str]:
        """Greedy answers; with `injector` (an attached MuNGInjector) the noise is injected."""
        self.model.eval()
        out = []
        for s in range(0, len(questions), batch_size):
            batch = self.encode(images[s:s + batch_size], questions[s:s + batch_size])
            batch.pop("position_ids")       # generate derives them from the attention mask
            batch = {k: v.to(self.device) for k, v in batch.items()}
            kw = dict(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=self.ids["<pad>"],
                      eos_token_id=self.ids["<eos>"])
            gen = injector.generate(**batch, **kw) if injector is not None else self.model.generate(**batch, **kw)
            out += [self.decode(g[batch["input_ids"].shape[1]:]) for g in gen]
        return out


def new_toy_mllm(seed: int = 0, hidden: int = 96, layers: int = 3, vision_hidden: int = 96,
                 vision_layers: int = 3, patch_size: int = 8) -> ToyMLLM:
    tok = build_tokenizer()
    ids = {s: tok.token_to_id(s) for s in SPECIALS}
    cfg = tiny_llava_config(vocab_size=tok.get_vocab_size(), hidden=hidden, layers=layers, heads=4,
                            image_size=IMAGE_SIZE, patch_size=patch_size, vision_hidden=vision_hidden,
                            vision_layers=vision_layers, image_token_id=ids["<image>"],
                            pad_token_id=ids["<pad>"], bos_token_id=ids["<bos>"], eos_token_id=ids["<eos>"])
    cfg.vision_feature_select_strategy = "default"   # drop CLS: N = (64/8)^2 = 64 patch tokens
    torch.manual_seed(seed)
    return ToyMLLM(LlavaForConditionalGeneration(cfg), tok)


def save_toy_mllm(bundle: ToyMLLM, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Save model (config.json + model.safetensors), tokenizer.json and meta.json atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        bundle.model.save_pretrained(tmp, safe_serialization=True)
        bundle.tokenizer.save(str(tmp / "tokenizer.json"))
        (tmp / "meta.json").write_text(json.dumps(meta or {}, indent=2))
        os.chmod(tmp, 0o755)          # mkdtemp makes 0700
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_toy_mllm(path: str | os.PathLike = DEFAULT_DIR, device: str = "cpu") -> ToyMLLM:
    path = Path(path)
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (path / f).is_file():
            raise FileNotFoundError(
                f"{path / f} is missing: not a toy MLLM folder (train one with "
                "`python -m pini_core mung train --stage host`)")
    model = LlavaForConditionalGeneration.from_pretrained(path).to(device).eval()
    return ToyMLLM(model, Tokenizer.from_file(str(path / "tokenizer.json")))
