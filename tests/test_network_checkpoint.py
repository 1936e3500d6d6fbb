"""Weights in and out: safetensors with config, published .pth layout, exact mismatch reports."""

import json

import pytest
import torch
from safetensors.torch import save_file

from daemon.model import build_network
from daemon.model.checkpoint import (
    CheckpointFormatError,
    CheckpointMismatch,
    config_from_shapes,
    load_network,
    load_weights,
    read_state_dict,
    save_network,
)
from daemon.model.config import NetworkConfig

SIZES = dict(latent_dim=8, clip_dim=8, sync_dim=8, text_dim=16, hidden_dim=64, depth=2,
             fused_depth=1, num_heads=1, latent_seq_len=50, clip_seq_len=16, sync_seq_len=48,
             text_seq_len=4, v2=True)


class NotAWeight:
    """An arbitrary pickled object, which weights_only loading refuses."""


def _random_net(seed=0, **changes):
    torch.manual_seed(seed)
    net = build_network(**{**SIZES, **changes})
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)
        net.latent_mean.normal_()
        net.latent_std.uniform_(0.5, 2)
    return net


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_save_writes_safetensors_with_config_and_sidecar_json(tmp_path):
    net = _random_net()
    path = save_network(net, tmp_path / "mine", extra_metadata={"steps": 12})
    assert path.name == "mine.safetensors"
    assert json.loads((tmp_path / "mine.json").read_text())["hidden_dim"] == 64
    state, config = read_state_dict(path)
    assert config == net.config
    loaded = load_network(path)
    assert loaded.config == net.config and _same_weights(net, loaded) and not loaded.training
    # Non-persistent buffers are rebuilt, not left uninitialised.
    assert torch.equal(loaded.latent_rot, net.latent_rot)
    assert torch.equal(loaded.t_embed.freqs, net.t_embed.freqs)
    x = torch.randn(1, 50, 8)
    args = (torch.randn(1, 16, 8), torch.randn(1, 48, 8), torch.randn(1, 4, 16), torch.tensor([0.4]))
    with torch.no_grad():
        assert torch.equal(net.eval()(x, *args), loaded(x, *args))


def test_a_network_that_reads_negation_says_so_in_its_config(tmp_path):
    net = _random_net(2, reads_negation=True)
    assert "reads_negation" not in net.config.constructor_kwargs()
    assert load_network(save_network(net, tmp_path / "negation")).config.reads_negation
    # Configs written before the field load as networks that do not read negation.
    stored = json.loads(_random_net(3).config.to_json())
    del stored["reads_negation"]
    assert not NetworkConfig.from_dict(stored).reads_negation


def test_config_comes_from_the_sidecar_when_metadata_lacks_it(tmp_path):
    net = _random_net(1, v2=False)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "w.safetensors"))
    (tmp_path / "w.json").write_text(net.config.to_json())
    assert load_network(tmp_path / "w.safetensors").config == net.config


@pytest.mark.parametrize("nesting", [None, "weights", "state_dict"])
def test_published_pth_layout_loads_with_non_persistent_buffers_dropped(tmp_path, nesting):
    net = _random_net(2)
    # The published files carry the recomputed buffers as well.
    state = dict(net.state_dict())
    state["t_embed.freqs"] = net.t_embed.freqs.clone()
    state["latent_rot"] = torch.zeros(1, 1, 50, 32, 2, 2)
    state["clip_rot"] = torch.zeros(1, 1, 16, 32, 2, 2)
    obj = state if nesting is None else {nesting: state, "step": 3}
    torch.save(obj, tmp_path / "pub.pth")
    fresh = build_network(**SIZES)
    load_weights(fresh, tmp_path / "pub.pth")
    assert _same_weights(net, fresh)
    assert torch.equal(load_network(tmp_path / "pub.pth", net.config).latent_mean, net.latent_mean)


def test_a_published_variant_is_recognised_from_its_shapes():
    net = build_network("small_16k", device="meta")
    config = config_from_shapes(net.state_dict())
    assert config == net.config
    v2 = build_network("large_44k_v2", device="meta")
    assert config_from_shapes(v2.state_dict()).v2


def test_missing_unexpected_and_mis_shaped_keys_are_named(tmp_path):
    net = _random_net()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    del state["fused_blocks.0.attn.q_norm.weight"]
    state["joint_blocks.0.latent_block.extra.weight"] = torch.zeros(3)
    state["final_layer.conv.weight"] = torch.zeros(9, 64, 7)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointMismatch) as err:
        load_network(tmp_path / "bad.safetensors", net.config)
    e = err.value
    assert e.missing == ["fused_blocks.0.attn.q_norm.weight"]
    assert e.unexpected == ["joint_blocks.0.latent_block.extra.weight"]
    assert e.mis_shaped == {"final_layer.conv.weight": ((9, 64, 7), (8, 64, 7))}
    message = str(e)
    for text in ("bad.safetensors", "missing 1 key(s): fused_blocks.0.attn.q_norm.weight",
                 "unexpected 1 key(s): joint_blocks.0.latent_block.extra.weight",
                 "final_layer.conv.weight (file [9, 64, 7], network [8, 64, 7])",
                 "pass the config"):
        assert text in message


def test_wrong_variant_is_a_mismatch_not_a_crash(tmp_path):
    path = save_network(_random_net(), tmp_path / "tiny_like")
    with pytest.raises(CheckpointMismatch, match="mis-shaped"):
        load_weights(build_network(**{**SIZES, "hidden_dim": 128, "num_heads": 2}), path)


def test_unreadable_files_raise_format_errors(tmp_path):
    with pytest.raises(CheckpointFormatError, match="does not exist"):
        read_state_dict(tmp_path / "nope.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(CheckpointFormatError, match="not a readable safetensors"):
        read_state_dict(tmp_path / "junk.safetensors")
    (tmp_path / "w.onnx").write_bytes(b"x")
    with pytest.raises(CheckpointFormatError, match="unknown weights format"):
        read_state_dict(tmp_path / "w.onnx")
    torch.save({"step": 3, "lr": 0.1}, tmp_path / "opt.pth")
    with pytest.raises(CheckpointFormatError, match="no state dict of tensors"):
        read_state_dict(tmp_path / "opt.pth")
    torch.save({"x": NotAWeight()}, tmp_path / "pickle.pth")
    with pytest.raises(CheckpointFormatError, match="weights_only=True"):
        read_state_dict(tmp_path / "pickle.pth")
