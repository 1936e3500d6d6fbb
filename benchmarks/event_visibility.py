"""How visible each kind of event is to the default visual front end. Prints a table.

    python benchmarks/event_visibility.py [--train-clips 80 --test-clips 30]
        [--detector daemon/model/weights/event_detector.safetensors]

The network can only place a sound on the frame where its event happens if the sync features
(MotionFeatures, 25 fps, after a real H.264 round trip) show that frame. This measures it
without the network: for one event class at a time, a small probe (logistic regression, and a
one-hidden-layer MLP) learns "an event starts on this frame" from the sync features of the
seven frames around it, on world clips of that class alone. Reported is the probe's average
precision (AP) on other clips, next to the share of frames with an event (AP of a probe that
sees nothing). An AP near that share means the front end does not show when the event
happens, whatever the network learns. With `--detector`, the sync features carry the
contact detector's channels (daemon.model.events), as the shipped weights see them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from daemon.model.events import average_precision

CLASSES = ("door_slam", "zap", "click", "impact_glass", "impact_wood", "footsteps_gravel",
           "footsteps_concrete")
CONTEXT = 3  # frames each side


def _clip_rows(seed: int, cls: str, visual) -> tuple[np.ndarray, np.ndarray]:
    from daemon.model.world import EVAL_SYNC, compress_frames, generate_clip

    clip = generate_clip(seed, EVAL_SYNC, classes=(cls,), cuts=False)
    sync = visual.encode_frames(compress_frames(clip.frames, clip.fps, crf=23), clip.fps).sync
    sync = sync.numpy()
    labels = np.zeros(len(sync), np.float32)
    for event in clip.events:
        if event.onset and event.cls == cls and event.frame < len(sync):
            labels[event.frame] = 1.0
    padded = np.pad(sync, ((CONTEXT, CONTEXT), (0, 0)), mode="edge")
    windows = np.concatenate([padded[i:i + len(sync)] for i in range(2 * CONTEXT + 1)], axis=1)
    return windows, labels


def _probe(x: torch.Tensor, y: torch.Tensor, hidden: int, iterations: int = 1500) -> torch.nn.Module:
    torch.manual_seed(0)
    net = (torch.nn.Linear(x.shape[1], 1) if hidden == 0 else torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], hidden), torch.nn.GELU(), torch.nn.Linear(hidden, 1)))
    optimiser = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(iterations):
        i = torch.randint(len(x), (512,), generator=generator)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[i])[:, 0], y[i])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-clips", type=int, default=80)
    parser.add_argument("--test-clips", type=int, default=30)
    parser.add_argument("--classes", default=",".join(CLASSES))
    parser.add_argument("--detector", default=None, help="add this contact detector's channels")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from daemon.model.events import EventDetector
    from daemon.model.visual import MotionFeatures

    visual = MotionFeatures(contacts=EventDetector.load(args.detector) if args.detector else None)
    print(f"{'class':20} {'frames with event':>17} {'AP linear':>9} {'AP MLP':>7}  seconds")
    for cls in args.classes.split(","):
        started = time.time()
        # Probe-training clips from the training range, test clips from the held-out range.
        train = [_clip_rows(900_000 + i, cls, visual) for i in range(args.train_clips)]
        test = [_clip_rows(1_900_000 + i, cls, visual) for i in range(args.test_clips)]
        x = torch.from_numpy(np.concatenate([w for w, _ in train]))
        y = torch.from_numpy(np.concatenate([lab for _, lab in train]))
        x_test = torch.from_numpy(np.concatenate([w for w, _ in test]))
        y_test = np.concatenate([lab for _, lab in test])
        mean, std = x.mean(0), x.std(0) + 1e-4
        x, x_test = (x - mean) / std, (x_test - mean) / std
        scores = []
        for hidden in (0, 128):
            probe = _probe(x, y, hidden)
            with torch.no_grad():
                scores.append(average_precision(probe(x_test)[:, 0].numpy(), y_test))
        print(f"{cls:20} {y_test.mean():17.3f} {scores[0]:9.3f} {scores[1]:7.3f}  "
              f"{time.time() - started:.0f}", flush=True)


if __name__ == "__main__":
    main()
