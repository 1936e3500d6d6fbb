"""The class guide: steers sampling toward the sounds a prompt names and away from those a
negative prompt names (classifier guidance).

The network hears its caption faintly beside the picture (model card, "Why the caption was
ignored"): a prompt picks the member of a family less often than it should, and a negative
prompt hardly takes out what the picture shows. This small separate network reads what the
sampler holds at each step, the noisy latent x_t at its t, and says which of the world's sound
classes it holds. Over the first part of the path the sampler also moves along the gradient of
log p(class | x_t) for each class the prompt names and of log p(no class | x_t) for each class
the negative prompt names (`flow.Guidance.classes`). Which classes a prompt names, a linear map
of its MiniLM sentence vector says, trained on the world's phrasing and on phrases of sounds the
world does not have (which name none, so a prompt outside the world steers nothing).

It is trained on world audio only, on its own seeds (`GUIDE_SEEDS`), apart from the audio
classifier that judges prompt adherence: another network (a convolution over the noisy latent,
not an MLP over statistics of decoded audio), other clips (whole world clips and lone sounds
over beds), other labels (every class in the mix).

    python -m daemon.model.guide --out daemon/model/weights/class_guide.safetensors
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .checkpoint import file_metadata
from .text import is_prompt
from .world.captions import CLASSES, class_prompt

logger = logging.getLogger(__name__)

GUIDE_FILE = "class_guide.safetensors"
"""Its name beside the network weights it steers."""
GUIDE_SEEDS = range(300_000, 400_000)
"""Training seeds of the guide: inside the world's training range, apart from the flow
model's own clips (0..~10 000), the contact detector's (500 000..) and the judge's (600 000..)."""
NAMED = 0.5
"""A class counts as named when the text map gives it at least this probability."""
WORD_SCALE = 10.0  # MiniLM sentence vectors have unit length; this spreads their logits


class _Block(nn.Module):
    """A residual convolution over latent frames, modulated by t."""

    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(8, width, affine=False)
        self.film = nn.Linear(width, 2 * width)
        self.conv = nn.Conv1d(width, width, 5, padding=2 * dilation, dilation=dilation)
        self.out = nn.Conv1d(width, width, 1)

    def forward(self, h: Tensor, t_embedding: Tensor) -> Tensor:
        scale, shift = self.film(t_embedding).unsqueeze(-1).chunk(2, 1)
        y = self.norm(h) * (1 + scale) + shift
        return h + self.out(F.gelu(self.conv(F.gelu(y))))


class ClassGuide(nn.Module):
    """(B, N, latent_dim) noisy latents in the sampler's normalised space at (B,) times t ->
    (B, len(CLASSES)) logits of each class being in the sound; and (B, text_dim) MiniLM
    sentence vectors -> the probability that the text names each class (`named`).

    Frames are convolved with a reach of ~1.5 s, then pooled over time both as a mean and as a
    soft maximum, so a class that sounds once (a door slam) counts as much as one that fills
    the clip. The latent statistics the guide was trained under are stored with it: it fits a
    network normalised the same way (`fits`)."""

    def __init__(self, latent_dim: int = 160, width: int = 128, depth: int = 4,
                 text_dim: int = 384) -> None:
        super().__init__()
        self.width, self.depth = width, depth
        self.register_buffer("latent_mean", torch.zeros(1, 1, latent_dim))
        self.register_buffer("latent_std", torch.ones(1, 1, latent_dim))
        self.inp = nn.Conv1d(latent_dim, width, 3, padding=1)
        self.t_embed = nn.Sequential(nn.Linear(32, width), nn.GELU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList(_Block(width, 2 ** (i % 3)) for i in range(depth))
        self.head = nn.Linear(2 * width, len(CLASSES))
        self.words = nn.Linear(text_dim, len(CLASSES))

    @staticmethod
    def _time_features(t: Tensor) -> Tensor:
        freqs = torch.exp(torch.linspace(0, math.log(100), 16, device=t.device))
        angles = t[:, None] * freqs[None] * math.pi
        return torch.cat([angles.sin(), angles.cos()], -1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        h = self.inp(x.transpose(1, 2))  # (B, width, N)
        t_embedding = self.t_embed(self._time_features(t))
        for block in self.blocks:
            h = block(h, t_embedding)
        soft_max = torch.logsumexp(4 * h, -1) / 4 - math.log(h.shape[-1]) / 4
        return self.head(torch.cat([h.mean(-1), soft_max], -1))

    def named(self, pooled: Tensor) -> Tensor:
        """(B, text_dim) sentence vectors -> (B, classes): the probability of each class the
        text names at least `NAMED`, 0 for the rest."""
        p = torch.sigmoid(self.words(pooled.float() * WORD_SCALE))
        return torch.where(p >= NAMED, p, torch.zeros_like(p))

    def names(self, text_encoder, texts: Sequence[str]) -> Tensor:
        """(B, classes): `named` for each text (none for a text that is no prompt)."""
        named = self.named(text_encoder.encode(list(texts)).pooled)
        given = torch.tensor([is_prompt(text) for text in texts], dtype=named.dtype)
        return named * given[:, None]

    def fits(self, latent_mean: Tensor, latent_std: Tensor) -> bool:
        """Whether a network with these latent statistics normalises as the guide was trained."""
        return (latent_mean.shape == self.latent_mean.shape
                and torch.allclose(latent_mean.float().cpu(), self.latent_mean, rtol=1e-3, atol=1e-3)
                and torch.allclose(latent_std.float().cpu(), self.latent_std, rtol=1e-3, atol=1e-3))

    def direction(self, x: Tensor, t: float, toward: Tensor, away: Tensor) -> Tensor:
        """Where to move x (B, N, D) so that the classes named sound more and the ones negated
        less: the gradient of sum(toward * log p(class)) + sum(away * log p(no class)) at x,
        averaged over the latent's frames, each item's scaled to unit RMS (zero for items that
        name nothing).

        Averaged, it is the same change at every moment, a filter on the sound: it says what
        the sound is made of and never when. Frame by frame it also moved hits about (onset F1
        0.858 -> 0.834 on 48 held-out clips, against 0.863 averaged; model card, "The class
        guide")."""
        return self.directions(x, t, [(toward, away)])[0]

    def directions(self, x: Tensor, t: float, named: Sequence[tuple[Tensor, Tensor]]
                   ) -> list[Tensor]:
        """`direction` for each (toward, away) pair, from one forward of the guide."""
        with torch.inference_mode(False), torch.enable_grad():
            # Clones outside inference mode are ordinary tensors autograd can follow.
            xg = x.detach().clone().float().requires_grad_(True)
            logits = self(xg, torch.full((x.shape[0],), float(t), device=x.device))
            grads = []
            for i, (toward, away) in enumerate(named):
                wanted = (toward.clone() * F.logsigmoid(logits)
                          + away.clone() * F.logsigmoid(-logits)).sum()
                grads += torch.autograd.grad(wanted, xg, retain_graph=i < len(named) - 1)
        out = []
        for grad in grads:
            grad = grad.mean(1, keepdim=True).expand_as(x)
            rms = grad.pow(2).mean((1, 2), keepdim=True).sqrt()
            out.append(torch.where(rms > 0, grad / rms.clamp_min(1e-12),
                                   torch.zeros_like(grad)).detach())
        return out

    def save(self, path: str | Path, meta: dict) -> None:
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path),
                  metadata={"classes": json.dumps(CLASSES), "width": str(self.width),
                            "depth": str(self.depth), "meta": json.dumps(meta)})

    @classmethod
    def load(cls, path: str | Path) -> ClassGuide:
        metadata = file_metadata(path)
        if json.loads(metadata.get("classes", "[]")) != list(CLASSES):
            raise ValueError(f"{path} guides toward other sound classes than this build's: "
                             "retrain it (python -m daemon.model.guide)")
        state = load_file(str(path))
        guide = cls(state["latent_mean"].shape[-1], int(metadata.get("width", 128)),
                    int(metadata.get("depth", 4)), state["words.weight"].shape[1])
        try:
            guide.load_state_dict(state)
        except RuntimeError as exc:  # the layers of another build
            raise ValueError(f"{path} was made by another build of the class guide: retrain it "
                             "(python -m daemon.model.guide)") from exc
        return guide.float().eval().requires_grad_(False)


@dataclass(frozen=True)
class ClassSteer:
    """What `flow.guided_velocity` steers by: the guide, and for each item (B, classes) how
    surely its prompt names each class (`toward`) and its negative prompt (`away`)."""

    guide: ClassGuide
    toward: Tensor
    away: Tensor

    @classmethod
    def of(cls, guide: ClassGuide | None, toward: Tensor, away: Tensor) -> ClassSteer | None:
        """The steer by `guide` for these (B, classes) named classes, or None when there is no
        guide or nothing is named."""
        if guide is None or not (toward.any() or away.any()):
            return None
        return cls(guide.to(toward.device), toward, away)

    @classmethod
    def for_texts(cls, guide: ClassGuide | None, text_encoder, prompts: Sequence[str],
                  negatives: Sequence[str]) -> ClassSteer | None:
        """The steer for items with these prompts and negative prompts (one of each per item)."""
        if guide is None:
            return None
        toward, away = guide.names(text_encoder, [*prompts, *negatives]).split(len(prompts))
        return cls.of(guide, toward, away)

    def direction(self, x: Tensor, t: float, toward: float = 1.0, away: float = 1.0) -> Tensor:
        """`toward` times the unit direction toward the named classes plus `away` times the one
        away from the negated classes: two directions, so that each has its own strength (a
        negative prompt's pull is not diluted by the prompt's)."""
        none = torch.zeros_like(self.toward)
        terms = [(strength, pair) for strength, named, pair in (
            (toward, self.toward, (self.toward, none)), (away, self.away, (none, self.away)))
            if strength and named.any()]
        out = torch.zeros_like(x, dtype=torch.float32)
        if terms:  # both terms from one forward of the guide
            directions = self.guide.directions(x, t, [pair for _, pair in terms])
            for (strength, _), d in zip(terms, directions, strict=True):
                out = out + strength * d
        return out


def load_guide(weights: str | Path, latent_mean: Tensor, latent_std: Tensor,
               path: str | Path | None = None) -> ClassGuide | None:
    """The class guide stored beside `weights` (or at `path`), or None: when there is none, or
    when it was trained under other latent statistics than the network's (it would read its
    latents wrong; logged)."""
    if path is None:
        path = Path(weights).parent / GUIDE_FILE
        if not path.exists():
            return None
    elif not Path(path).is_file():
        raise FileNotFoundError(f"no class guide at {path}")
    guide = ClassGuide.load(path)
    if not guide.fits(latent_mean, latent_std):
        logger.warning(
            "%s was trained for a network normalised otherwise than %s: not steering by it "
            "(retrain it: python -m daemon.model.guide --weights %s)", path, Path(weights).name,
            weights)
        return None
    return guide


# ---------------------------------------------------------------------------------------------
# Training on the world

AMBIENCES = ("rain", "ocean", "wind", "fire", "underwater", "city")
ELSEWHERE = ("birds singing", "a dog barking", "people talking", "a crowd cheering",
             "a baby crying", "church bells", "a telephone ringing", "a helicopter overhead",
             "applause", "a cat meowing", "typing on a keyboard", "a car horn",
             "a train passing", "a man speaking", "laughter", "cinematic", "an epic trailer",
             "a quiet room", "room tone", "a clock ticking", "a kettle whistling",
             "a cow mooing", "thunder", "a siren", "a violin solo", "piano", "a drum solo",
             "a choir singing", "a woman whispering", "insects buzzing")
"""Sounds the world does not have: a prompt made of them names no class."""


def guide_example(seed: int) -> tuple[Tensor, Tensor]:
    """One training example: the (N, latent_dim) float16 latent of a world clip's audio and
    its (classes,) 0/1 labels (every class heard in the mix). Half are whole world clips, half
    a lone class (with an ambience beneath it 40 % of the time) over a floor from near silence
    up, as generated sound may have none."""
    from .world.clip import WorldConfig, generate_clip

    rng = np.random.default_rng([seed, 11])
    if rng.random() < 0.5:
        clip = generate_clip(seed)
    else:
        classes = [str(rng.choice(CLASSES))]
        if rng.random() < 0.4:
            ambience = str(rng.choice(AMBIENCES))
            if ambience not in classes:
                classes.append(ambience)
        config = WorldConfig(noise_floor_db=(-100.0, -48.0))
        clip = generate_clip(seed, config, classes=tuple(classes), cuts=False)
    codec = _codec()
    latent = codec.encode(torch.from_numpy(clip.audio)[None])[0].half()
    labels = torch.zeros(len(CLASSES))
    labels[[CLASSES.index(c) for c in clip.classes]] = 1.0
    return latent, labels


_CODEC = None


def _codec():
    global _CODEC
    if _CODEC is None:
        from .codec import MelCodec

        _CODEC = MelCodec()
    return _CODEC


def _one_thread() -> None:
    torch.set_num_threads(1)


def guide_set(seeds, workers: int) -> tuple[Tensor, Tensor]:
    """The examples of `seeds`, made by `workers` processes (in this one for 1). The workers
    are spawned, not forked: a fork of a process whose torch threads are running can hang."""
    if workers <= 1:
        rows = [guide_example(seed) for seed in seeds]
    else:
        with get_context("spawn").Pool(workers, initializer=_one_thread) as pool:
            rows = pool.map(guide_example, list(seeds), chunksize=16)
    return torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])


def phrase_set(count: int, seed: int = 5) -> tuple[list[str], Tensor]:
    """Prompts as an editor types them, naming 1-3 world classes in the world's phrasing (a
    fifth with a sound from `ELSEWHERE` among them), and each `ELSEWHERE` sound alone; with
    the classes each names."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(count):
        chosen = rng.choice(len(CLASSES), int(rng.integers(1, 4)), replace=False)
        named = [class_prompt(CLASSES[c], rng) for c in chosen]
        if rng.random() < 0.2:
            named.insert(int(rng.integers(0, len(named) + 1)), str(rng.choice(ELSEWHERE)))
        text = str(rng.choice([", ", " and ", " with ", " while ", ", then "])).join(named)
        texts.append(text[0].upper() + text[1:] if rng.random() < 0.3 else text)
        y = torch.zeros(len(CLASSES))
        y[torch.as_tensor(chosen)] = 1.0
        labels.append(y)
    for sound in ELSEWHERE:
        texts += [sound] * 8
        labels += [torch.zeros(len(CLASSES))] * 8
    return texts, torch.stack(labels)


def train_words(guide: ClassGuide, text_encoder, phrases: int = 6000, steps: int = 1500,
                log=print) -> dict:
    """Fit the guide's text map (`named`) on `phrase_set`; its held-out exact-set accuracy."""
    texts, labels = phrase_set(phrases)
    pooled = torch.cat([text_encoder.encode(texts[i:i + 256]).pooled
                        for i in range(0, len(texts), 256)]) * WORD_SCALE
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0))
    held, fit = order[:len(texts) // 12], order[len(texts) // 12:]
    words = guide.words.requires_grad_(True)
    optimiser = torch.optim.Adam(words.parameters(), 1e-2)
    for _ in range(steps):
        loss = (F.binary_cross_entropy_with_logits(words(pooled[fit]), labels[fit])
                + 1e-4 * words.weight.pow(2).sum())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    words.requires_grad_(False)
    with torch.no_grad():
        exact = ((words(pooled[held]) > 0) == (labels[held] > 0.5)).all(1).float().mean()
    log(f"text map: held-out phrases named exactly {exact.item():.3f}")
    return {"phrases": len(texts), "held_out_exact": round(exact.item(), 4)}


def noised(data: Tensor, t: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Normalised latents (B, N, D) on the flow path at (B,) times t: (1 - t) noise + t data."""
    noise = torch.randn(data.shape, generator=generator)
    return (1 - t[:, None, None]) * noise + t[:, None, None] * data


def held_out_report(guide: ClassGuide, data: Tensor, labels: Tensor) -> dict:
    """Per t: how often the guide's most likely class is one the clip has."""
    generator = torch.Generator().manual_seed(1)
    report = {}
    with torch.no_grad():
        for t in (0.05, 0.2, 0.5, 0.9):
            times = torch.full((len(data),), t)
            logits = guide(noised(data, times, generator), times)
            top = labels.gather(1, logits.argmax(1, keepdim=True))
            report[f"top_class_heard_t{t}"] = round(top.mean().item(), 4)
    return report


def train(out: Path, weights: Path, clips: int, held_out: int, steps: int, workers: int,
          phrases: int = 6000, log=print) -> dict:
    """Make `clips` training examples, fit the guide to them under the latent statistics of
    the network at `weights`, fit its text map on `phrases` prompts, write it to `out`."""
    from .text import MiniLMText

    torch.manual_seed(0)
    started = time.time()
    state = load_file(str(weights))
    guide = ClassGuide(latent_dim=state["latent_mean"].shape[-1])
    guide.latent_mean.copy_(state["latent_mean"].float())
    guide.latent_std.copy_(state["latent_std"].float())
    latents, labels = guide_set(GUIDE_SEEDS[:clips + held_out], workers)
    data = (latents.float() - guide.latent_mean) / guide.latent_std
    test, test_labels, data, labels = data[:held_out], labels[:held_out], data[held_out:], labels[held_out:]
    log(f"{clips} training clips, {held_out} held out, made in {time.time() - started:.0f} s")
    guide.train().requires_grad_(True)
    guide.words.requires_grad_(False)
    trained = [p for p in guide.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trained, lr=1e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 1e-3, total_steps=steps, pct_start=0.05)
    generator = torch.Generator().manual_seed(0)
    for step in range(1, steps + 1):
        pick = torch.randint(len(data), (32,), generator=generator)
        # t^0.7 draws a little more of the early path, where the sampler steers hardest.
        t = torch.rand(32, generator=generator) ** 0.7
        loss = F.binary_cross_entropy_with_logits(guide(noised(data[pick], t, generator), t),
                                                  labels[pick])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 250 == 0 or step == steps:
            guide.eval()
            log(f"step {step}: loss {loss.item():.3f} held-out {held_out_report(guide, test, test_labels)} "
                f"({time.time() - started:.0f} s)")
            guide.train()
    guide.eval().requires_grad_(False)
    meta = {"clips": clips, "held_out_clips": held_out, "steps": steps,
            "seeds": f"{GUIDE_SEEDS.start}..", "latent_statistics_of": Path(weights).name,
            "held_out": held_out_report(guide, test, test_labels),
            "text_map": train_words(guide, MiniLMText(), phrases, log=log),
            "train_seconds": round(time.time() - started)}
    guide.save(out, meta)
    log(f"wrote {out}: {meta}")
    return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m daemon.model.guide",
                                     description="train the class guide on world clips")
    parser.add_argument("--out", type=Path, default=Path("daemon/model/weights") / GUIDE_FILE)
    parser.add_argument("--weights", type=Path, default=Path("daemon/model/weights/tiny.safetensors"),
                        help="the network it steers (the guide reads latents normalised as it does)")
    parser.add_argument("--clips", type=int, default=4200)
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    train(args.out, args.weights, args.clips, args.held_out, args.steps, args.workers)


if __name__ == "__main__":
    main()
