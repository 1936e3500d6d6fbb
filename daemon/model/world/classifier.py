"""A small audio classifier of the world's sound classes, the judge of prompt adherence.

It is separate from the V2A model and trained only on world audio: an MLP over log-mel
statistics (per-band mean, spread, peak and floor over time, plus spectral-flux and envelope
statistics that tell hits from beds). Evaluation asks it what a generated clip sounds like.

    python -m daemon.model.world.classifier --out daemon/model/weights/world_classifier.safetensors
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .captions import CLASSES
from .clip import WorldConfig, generate_clip

CLASSIFIER_SEEDS = range(600_000, 700_000)
"""Training seeds of the classifier: inside the world's training range, apart from the
model's own training clips (0..~10 000)."""


FEATURE_GROUPS = {"band mean": slice(0, 80), "band spread": slice(80, 160),
                  "band 95th percentile": slice(160, 240), "band 10th percentile": slice(240, 320),
                  "envelope and flux": slice(320, 334)}
"""Where each kind of statistic sits in `audio_features` (80 mel bands, then 14 scalars)."""


def audio_features(audio: np.ndarray, rate: int = 16_000) -> np.ndarray:
    """(n,) mono 16 kHz -> (334,) float32 statistics of its log-mel spectrogram."""
    from daemon.model.codec import MelCodec

    codec = _codec(MelCodec)
    x = torch.as_tensor(np.asarray(audio, np.float32)).reshape(1, -1)
    usable = (x.shape[1] // codec.hop) * codec.hop
    mel = codec.log_mel(x[:, :usable])[0].numpy()  # (T, 80) natural-log mel
    # Level-independent: relative to the clip's loudest frame.
    mel = mel - mel.max()
    mel = np.maximum(mel, -16.0)
    energy = np.log(np.exp(mel).sum(axis=1) + 1e-9)  # (T,)
    flux = np.maximum(np.diff(mel, axis=0), 0).mean(axis=1)
    loud = energy > energy.max() - 6
    stats = [mel.mean(0), mel.std(0), np.percentile(mel, 95, axis=0), np.percentile(mel, 10, axis=0),
             [energy.mean(), energy.std(), energy.max() - np.median(energy), loud.mean(),
              flux.mean(), flux.std(), np.percentile(flux, 99), (flux > flux.mean() + 3 * flux.std()).mean() * 62.5,
              np.abs(np.diff(energy)).mean(), np.corrcoef(energy[:-1], energy[1:])[0, 1]
              if energy.std() > 0 else 1.0, mel[loud].mean() if loud.any() else 0.0,
              float(np.argmax(mel.mean(0))) / 80, float((mel.mean(0) * np.arange(80)).sum()
                                                         / (mel.mean(0).sum() - 1e-9)) / 80,
              mel[:, 40:].mean() - mel[:, :40].mean()]]
    return np.nan_to_num(np.concatenate([np.ravel(s) for s in stats]).astype(np.float32))


_CODECS: dict = {}


def _codec(cls):
    if cls not in _CODECS:
        _CODECS[cls] = cls()
    return _CODECS[cls]


class AudioClassifier(nn.Module):
    def __init__(self, inputs: int = 334, classes: int = len(CLASSES), hidden: int = 256):
        super().__init__()
        self.register_buffer("mean", torch.zeros(inputs))
        self.register_buffer("std", torch.ones(inputs))
        self.net = nn.Sequential(nn.Linear(inputs, hidden), nn.GELU(), nn.Dropout(0.2),
                                 nn.Linear(hidden, hidden // 2), nn.GELU(), nn.Dropout(0.2),
                                 nn.Linear(hidden // 2, classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.mean) / self.std)

    @torch.no_grad()
    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(334,) `audio_features` -> the probabilities of all CLASSES."""
        self.eval()
        return torch.softmax(self(torch.from_numpy(features)[None])[0], -1).numpy()

    def predict(self, audio: np.ndarray) -> tuple[str, np.ndarray]:
        """Most likely class of `audio` (16 kHz mono) and the probabilities of all CLASSES."""
        probs = self.probabilities(audio_features(audio))
        return CLASSES[int(probs.argmax())], probs

    def save(self, path: str | Path, record: dict) -> None:
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path),
                  metadata={"classes": json.dumps(CLASSES), "training": json.dumps(record)})

    @classmethod
    def load(cls, path: str | Path) -> AudioClassifier:
        state = load_file(str(path))
        model = cls(inputs=state["mean"].shape[0])
        model.load_state_dict(state)
        return model.eval()


NOISE_FLOORS_DB = (-100.0, -48.0)
"""The noise floor under a training example, dB: from near silence to the world's loudest. The
world's own clips keep theirs between -62 and -48 dB, but what a model generates may have none,
and the class of a sound does not depend on the hiss beneath it (a judge trained on the world's
floors alone called 29 % of lone world sounds over near silence something else)."""


def class_example(seed: int, cls: str, duration: float = 4.0) -> np.ndarray:
    """World audio of one class alone over a noise floor of any level (`NOISE_FLOORS_DB`); half
    the time over a faint second sound (another class 15-25 dB down), as generated audio rarely
    comes out clean."""
    config = WorldConfig(duration=duration, noise_floor_db=NOISE_FLOORS_DB)
    audio = generate_clip(seed, config, classes=(cls,), cuts=False).audio
    rng = np.random.default_rng([seed, 3])
    if rng.random() < 0.5:
        other = str(rng.choice([c for c in CLASSES if c != cls]))
        extra = generate_clip(seed + 50_000, config, classes=(other,), cuts=False).audio
        rms = np.sqrt(np.mean(audio ** 2)) + 1e-9
        extra *= rms / (np.sqrt(np.mean(extra ** 2)) + 1e-9) * 10 ** (-rng.uniform(15, 25) / 20)
        audio = audio + extra
    return audio


def build_set(per_class: int, first_seed: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for k, cls in enumerate(CLASSES):
        for i in range(per_class):
            seed = first_seed + k * 1000 + i
            xs.append(audio_features(class_example(seed, cls)))
            ys.append(k)
    return np.stack(xs), np.array(ys)


def train_classifier(per_class: int = 60, held_out: int = 15, epochs: int = 400,
                     seed: int = 0) -> tuple[AudioClassifier, dict]:
    torch.manual_seed(seed)
    started = time.time()
    x, y = build_set(per_class, CLASSIFIER_SEEDS.start)
    xt, yt = build_set(held_out, CLASSIFIER_SEEDS.start + 500)
    model = AudioClassifier(inputs=x.shape[1])
    model.mean.copy_(torch.from_numpy(x.mean(0)))
    model.std.copy_(torch.from_numpy(x.std(0) + 1e-3))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-3)
    xx, yy = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xx))
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            loss = nn.functional.cross_entropy(model(xx[idx]), yy[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(xt)).argmax(-1).numpy()
    accuracy = float((pred == yt).mean())
    per_class_acc = {c: float((pred[yt == k] == k).mean()) for k, c in enumerate(CLASSES)}
    record = {"train_examples": int(len(y)), "held_out_examples": int(len(yt)),
              "noise_floors_db": list(NOISE_FLOORS_DB),
              "held_out_accuracy": accuracy, "held_out_per_class": per_class_acc,
              "epochs": epochs, "seconds": round(time.time() - started)}
    return model, record


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="train the world audio classifier")
    parser.add_argument("--out", default="daemon/model/weights/world_classifier.safetensors")
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--held-out", type=int, default=15)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, record = train_classifier(args.per_class, args.held_out)
    model.save(args.out, record)
    print(json.dumps({k: v for k, v in record.items() if k != "held_out_per_class"}, indent=2))
    print(json.dumps(record["held_out_per_class"], indent=2))


if __name__ == "__main__":
    main()
