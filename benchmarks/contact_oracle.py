"""How much of the sync gap is the contact detector's, and how much the network's. Prints a table.

    python benchmarks/contact_oracle.py [--weights daemon/model/weights/tiny.safetensors]
        [--seeds 1500000-1500039] [--out oracle.json]

The network places a contact sound where its four contact channels (daemon.model.events) say a
contact is. This generates the same held-out clips twice with the same prompts, noise and
settings (25 Euler steps, guidance 4.5) and scores both with the evaluation's sync section:
once with the channels the shipped detector gives, once with the clips' true contact frames in
those channels (SCALE on each contact's frame, 0 elsewhere: a perfect detector). The rest of
the picture features are the same. The F1 a perfect detector adds is what a better detector can
win; what is still missing with it is the network's to learn. The world's own audio through the
same onset detector is the ceiling of the measurement.

The default seeds are held out (never trained on) and apart from the evaluation's 1000000-.
"""

from __future__ import annotations

import argparse
import collections
import json
import time

import torch

from daemon.model.evaluate import EvalSettings, ModelUnderTest, _seed_range, evaluate_sync
from daemon.model.events import FAMILIES, SCALE, contact_labels, family_of


class TrueContacts(ModelUnderTest):
    """The model under test with its contact channels set from the clip's ground truth."""

    def picture(self, clip) -> tuple[torch.Tensor, torch.Tensor]:
        appearance, sync = super().picture(clip)
        truth = SCALE * torch.from_numpy(contact_labels(clip.events, len(sync)))
        return appearance, torch.cat([sync[:, :-len(FAMILIES)], truth], dim=1)


def _by_family(recall_by_class: dict) -> dict[str, list[int]]:
    found = collections.defaultdict(lambda: [0, 0])
    for cls, row in recall_by_class.items():
        family = family_of(cls)
        found[family][0] += row["found"]
        found[family][1] += row["events"]
    return dict(found)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="daemon/model/weights/tiny.safetensors")
    parser.add_argument("--seeds", default="1500000-1500039")
    parser.add_argument("--out", default=None, help="also write both sync reports as JSON")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds, settings = _seed_range(args.seeds), EvalSettings()
    shipped = ModelUnderTest(args.weights)
    if shipped.visual.contacts is None:
        raise SystemExit(f"{args.weights} takes no contact channels: nothing to compare")
    reports = {}
    for name, model in (("detector", shipped), ("true contacts", TrueContacts(args.weights))):
        started = time.time()
        reports[name] = evaluate_sync(model, seeds, settings)
        print(f"{name}: {len(seeds)} clips in {time.time() - started:.0f} s", flush=True)

    rows = [(name, r["summary"]["model"], _by_family(r["recall_by_class"]["model"]))
            for name, r in reports.items()]
    world = reports["detector"]["summary"]["world_audio"]
    rows.append(("world audio (ceiling)", world,
                 _by_family(reports["detector"]["recall_by_class"]["world_audio"])))
    families = [f for f in FAMILIES if f in rows[0][2]]
    print(f"\nonset P/R/F1 at +-{settings.tolerance * 1000:.0f} ms on {len(seeds)} clips "
          f"({args.seeds}), recall per contact family")
    print(f"{'contact channels':<24}{'P':>7}{'R':>7}{'F1':>7}" + "".join(f"{f:>12}" for f in families))
    for name, s, found in rows:
        cells = "".join(f"{f'{found[f][0]}/{found[f][1]}':>12}" for f in families)
        print(f"{name:<24}{s['precision']:>7.3f}{s['recall']:>7.3f}{s['f1']:>7.3f}{cells}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"weights": args.weights, "seeds": args.seeds, **reports}, f, indent=2)


if __name__ == "__main__":
    main()
