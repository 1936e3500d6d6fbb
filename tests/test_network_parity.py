"""Numerics against the reference file: two random-weight networks (v1 and v2 layouts)."""

import json

import pytest
import torch
from safetensors import safe_open

from daemon.model import build_network
from daemon.model.checkpoint import check_state_dict
from daemon.model.flow import Guidance, guided_velocity, prepare_guidance


@pytest.fixture(scope="module")
def parity(shared_dir):
    path = shared_dir / "reference" / "mmaudio_network_parity.safetensors"
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        meta = f.metadata()
    return tensors, json.loads(meta["configs"]), float(meta["cfg_strength"])


def _load(parity, variant):
    tensors, configs, cfg = parity
    prefix = f"{variant}/weights/"
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    io = {k.rsplit("/", 1)[1]: v for k, v in tensors.items() if k.startswith(f"{variant}/io/")}
    net = build_network(**configs[variant])
    check_state_dict(net, state)
    net.load_state_dict(state, strict=True)
    return net.eval(), io, cfg


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_flow_matches_reference(parity, variant):
    net, io, _ = _load(parity, variant)
    with torch.no_grad():
        flow = net(io["latent"], io["clip_f"], io["sync_f"], io["text_f"], io["t"])
    assert (flow - io["flow"]).abs().max().item() < 1e-4


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_guided_flow_matches_reference(parity, variant):
    net, io, cfg = _load(parity, variant)
    n = io["latent"].shape[1]
    # MMAudio's guidance is ours with the prompt steered as hard as the picture.
    guidance = Guidance.mmaudio(cfg)
    with torch.no_grad():
        branches = prepare_guidance(net, io["clip_f"], io["sync_f"], io["text_f"], n, guidance)
        velocity = guided_velocity(net, branches, guidance)(io["latent"], float(io["cfg_t"]))
    assert (velocity - io["cfg_flow"]).abs().max().item() < 1e-4
