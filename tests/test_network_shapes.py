"""The network's layout: published variants key for key, the tiny default, per-call lengths."""

import io
import json

import pytest
import torch

from daemon.model import PRESETS, ConfigError, InputShapeError, NetworkConfig, build_network

PUBLISHED = ["small_16k", "small_44k", "medium_44k", "large_44k", "large_44k_v2"]


@pytest.fixture(scope="module")
def manifest(shared_dir):
    return json.loads((shared_dir / "reference" / "mmaudio_state_dict_shapes.json").read_text())


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_variant_matches_manifest_key_for_key(name, manifest):
    net = build_network(name, device="meta")
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert sorted(set(manifest[name]) - set(ours)) == []
    assert sorted(set(ours) - set(manifest[name])) == []
    assert {k: s for k, s in ours.items() if manifest[name][k] != s} == {}


def test_non_persistent_buffers_stay_out_of_the_state_dict():
    net = build_network("tiny", device="meta")
    buffers = dict(net.named_buffers())
    for key in ("t_embed.freqs", "latent_rot", "clip_rot"):
        assert key in buffers
        assert key not in net.state_dict()


def test_tiny_has_the_front_end_sizes_and_describes_itself():
    c = PRESETS["tiny"]
    assert (c.latent_dim, c.clip_dim, c.sync_dim, c.text_dim) == (160, 64, 64, 384)
    assert (c.hidden_dim, c.num_heads, c.head_dim, c.depth, c.fused_depth, c.v2) == (
        128, 2, 64, 4, 2, True)
    assert (c.latent_seq_len, c.clip_seq_len, c.sync_seq_len, c.text_seq_len) == (250, 64, 200, 32)
    assert (c.latent_rate, c.clip_rate, c.sync_rate) == (31.25, 8.0, 25.0)
    out = io.StringIO()
    text = build_network("tiny").describe(file=out)
    total = sum(p.numel() for p in build_network("tiny", device="meta").parameters())
    assert f"{total:,}" in text and out.getvalue().strip() == text
    assert "joint_blocks" in text and "fused_blocks" in text


def test_build_network_takes_the_published_constructor_keywords():
    sizes = dict(latent_dim=20, clip_dim=32, sync_dim=48, text_dim=24, hidden_dim=64, depth=3,
                 fused_depth=2, num_heads=1, latent_seq_len=50, clip_seq_len=16,
                 sync_seq_len=48, text_seq_len=12, v2=False)
    net = build_network(**sizes)
    assert net.config.constructor_kwargs() == sizes
    assert len(net.joint_blocks) == 1 and len(net.fused_blocks) == 2
    # The last joint block's picture and text streams only give keys and values.
    assert net.joint_blocks[0].clip_block.pre_only and not hasattr(net.joint_blocks[0].clip_block, "ffn")
    latent = torch.randn(2, 50, 20)
    v = net(latent, torch.randn(2, 16, 32), torch.randn(2, 48, 48), torch.randn(2, 12, 24),
            torch.rand(2))
    assert v.shape == latent.shape


def test_config_round_trips_and_rejects_bad_sizes():
    c = PRESETS["tiny"]
    assert NetworkConfig.from_json(c.to_json()) == c
    with pytest.raises(ConfigError, match="num_heads"):
        c.with_(num_heads=3)
    with pytest.raises(ConfigError, match="multiple of 8"):
        c.with_(sync_seq_len=201)
    with pytest.raises(ConfigError, match="fused_depth"):
        c.with_(fused_depth=4)
    with pytest.raises(ConfigError, match="unknown network config fields"):
        NetworkConfig.from_dict({**json.loads(c.to_json()), "width": 3})
    with pytest.raises(ConfigError, match="tiny"):
        build_network("huge")


def _small_net(**changes):
    sizes = dict(latent_dim=8, clip_dim=8, sync_dim=8, text_dim=16, hidden_dim=64, depth=2,
                 fused_depth=1, num_heads=1, latent_seq_len=50, clip_seq_len=16,
                 sync_seq_len=48, text_seq_len=4, v2=True)
    sizes.update(changes)
    torch.manual_seed(0)
    net = build_network(**sizes)
    with torch.no_grad():  # random weights everywhere, so every input matters
        for p in net.parameters():
            p.normal_(0, 0.2)
    return net.eval()


def test_lengths_are_set_per_call_with_aligned_rotary_tables():
    net = _small_net()
    # Shorter and longer than the trained 50/16/48 tokens.
    for n, nc, ns in ((20, 6, 16), (50, 16, 48), (130, 41, 120)):
        cond = net.preprocess_conditions(torch.randn(1, nc, 8), torch.randn(1, ns, 8),
                                         torch.randn(1, 4, 16), n)
        assert cond.latent_rot.shape == (n, 32, 2) and cond.clip_rot.shape == (nc, 32, 2)
        assert cond.sync.shape == (1, n, 64)
        # Picture frame j sits at the latent position of its instant: j * n / nc.
        pos = torch.atan2(cond.clip_rot[:, 0, 1], cond.clip_rot[:, 0, 0])
        expected = torch.remainder(torch.arange(nc) * n / nc + torch.pi, 2 * torch.pi) - torch.pi
        assert torch.allclose(pos, expected, atol=1e-4)
        v = net.predict_flow(torch.randn(1, n, 8), torch.tensor([0.5]), cond)
        assert v.shape == (1, n, 8) and torch.isfinite(v).all()
    # The trained lengths use the stored tables.
    cond = net.preprocess_conditions(torch.randn(1, 16, 8), torch.randn(1, 48, 8),
                                     torch.randn(1, 4, 16))
    assert cond.latent_rot is net.latent_rot and cond.clip_rot is net.clip_rot


def test_per_call_length_matters_to_the_result():
    # Same 20 frames inside a 20-token call and a 40-token call: attention spans differ.
    net = _small_net()
    clip, sync, text = torch.randn(1, 6, 8), torch.randn(1, 16, 8), torch.randn(1, 4, 16)
    x = torch.randn(1, 20, 8)
    a = net(x, clip, sync, text, torch.tensor([0.3]))
    b = net(torch.cat([x, x], 1), clip, torch.cat([sync, sync], 1), text, torch.tensor([0.3]))
    assert a.shape == (1, 20, 8) and b.shape == (1, 40, 8)
    assert not torch.allclose(a, b[:, :20], atol=1e-3)


def test_bad_condition_shapes_are_named():
    net = _small_net()
    with pytest.raises(InputShapeError, match="sync_f has 47 tokens"):
        net.preprocess_conditions(torch.randn(1, 16, 8), torch.randn(1, 47, 8), torch.randn(1, 4, 16))
    with pytest.raises(InputShapeError, match="clip_f must be"):
        net.preprocess_conditions(torch.randn(1, 16, 9), torch.randn(1, 48, 8), torch.randn(1, 4, 16))
    cond = net.preprocess_conditions(torch.randn(1, 16, 8), torch.randn(1, 48, 8),
                                     torch.randn(1, 4, 16), 50)
    with pytest.raises(InputShapeError, match="prepared for batch"):
        net.predict_flow(torch.randn(1, 40, 8), torch.tensor([0.1]), cond)
