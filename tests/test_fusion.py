"""Eq.1-3 against direct reference computations and the paper's shapes."""

import pytest
import torch
import torch.nn.functional as F

from hf_fusion.models.fusion import align_layer, concat_layers, fuse, temporal_pool


def reference_eq1(z, t_o):
    """Paper code path: [B, C, F, T] -> max_pool2d over (1, k) -> flatten C x F."""
    k = z.shape[-1] // t_o
    pooled = F.max_pool2d(z, kernel_size=(1, k), stride=(1, k)) if k > 1 else z
    return pooled[..., :t_o].reshape(z.shape[0], -1, t_o)


@pytest.mark.parametrize(
    "shape,t_o",
    [
        ((2, 64, 32, 500), 31),  # CNN14 block 1 for a 10 s clip at 32 kHz (C, F, T)
        ((2, 256, 8, 125), 31),  # CNN14 block 3
        ((2, 2048, 2, 31), 31),  # CNN14 block 6
        ((2, 256, 16, 24), 6),  # VGGish layer 10 per example
        ((3, 4, 5, 7), 2),  # non-divisible: kernel 3, one leftover frame dropped
    ],
)
def test_eq1_cnn_matches_max_pool2d_reference(shape, t_o):
    z = torch.randn(shape)
    out = align_layer(z, t_o)
    assert out.shape == (shape[0], shape[1] * shape[2], t_o)
    torch.testing.assert_close(out, reference_eq1(z, t_o))


def test_eq1_flatten_is_channel_major():
    z = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)
    out = align_layer(z, 4)
    # row c*F + f holds channel c, frequency f
    torch.testing.assert_close(out[0, 1 * 3 + 2], z[0, 1, 2])


def test_eq1_frame_sequence_and_no_time_axis():
    seq = torch.randn(2, 10, 9)
    torch.testing.assert_close(align_layer(seq, 3), seq.reshape(2, 10, 3, 3).amax(-1))
    vec = torch.randn(2, 7)
    rep = align_layer(vec, 6)
    assert rep.shape == (2, 7, 6)
    assert torch.equal(rep, vec[..., None].repeat(1, 1, 6))


def test_eq1_errors_name_the_problem():
    with pytest.raises(ValueError, match="fewer than the T_o=8"):
        align_layer(torch.randn(1, 4, 5), 8, name="layer 3")
    with pytest.raises(ValueError, match=r"got shape \(1, 2, 3, 4, 5\)"):
        align_layer(torch.randn(1, 2, 3, 4, 5), 2)
    with pytest.raises(ValueError, match="positive integer"):
        align_layer(torch.randn(1, 4, 5), 0)


def test_eq2_concat_and_mismatch_error():
    a, b = torch.randn(2, 3, 5), torch.randn(2, 4, 5)
    out = concat_layers([a, b])
    assert out.shape == (2, 7, 5)
    assert torch.equal(out[:, 3:], b)
    with pytest.raises(ValueError, match="same B and T_o"):
        concat_layers([a, torch.randn(2, 4, 6)])
    with pytest.raises(ValueError, match="at least one"):
        concat_layers([])


def test_eq3_mean_plus_max_is_a_sum():
    x = torch.tensor([[[1.0, 3.0, 2.0], [0.0, -1.0, 4.0]]])
    torch.testing.assert_close(temporal_pool(x), torch.tensor([[2.0 + 3.0, 1.0 + 4.0]]))
    torch.testing.assert_close(temporal_pool(x, "mean"), torch.tensor([[2.0, 1.0]]))
    with pytest.raises(ValueError, match="unknown pooling"):
        temporal_pool(x, "median")


def test_paper_dims_cnn14_fusion_3_6():
    """Block 3 (256 ch x 8 mel) and block 6 (2048 x 2) of a 10 s 32 kHz clip -> 6144-d (docs/reference.md)."""
    b3 = torch.randn(1, 256, 8, 125)
    b6 = torch.randn(1, 2048, 2, 31)
    frames, emb = fuse([align_layer(b3, 31), align_layer(b6, 31)])
    assert frames.shape == (1, 6144, 31) and emb.shape == (1, 6144)


@pytest.mark.parametrize("pooling", ["mean+max", "mean", "max"])
def test_masked_eq3_equals_the_clip_alone_bit_for_bit(pooling):
    """A padded clip's Eq.3 over its valid frames is exactly its Eq.3 alone, whatever the padding length
    (a sum over the zeros of the padding would group the float additions differently)."""
    torch.manual_seed(0)
    lengths = [37, 5, 64, 1, 50]
    alone = [torch.randn(1, 300, n) for n in lengths]
    for pad_to in (64, 77, 200):
        frames = torch.zeros(len(lengths), 300, pad_to)
        for b, clip in enumerate(alone):
            frames[b, :, : clip.shape[-1]] = clip
        mask = torch.arange(pad_to)[None, :] < torch.tensor(lengths)[:, None]
        batched = temporal_pool(frames, pooling, mask=mask)
        for b, clip in enumerate(alone):
            assert torch.equal(batched[b], temporal_pool(clip, pooling)[0]), (pooling, pad_to, b)


def test_masked_eq3_with_a_gap_in_the_mask():
    """A mask with invalid frames in the middle (not built by this package) still averages the valid ones."""
    frames = torch.arange(12.0).reshape(1, 2, 6)
    mask = torch.tensor([[True, False, True, True, False, False]])
    torch.testing.assert_close(temporal_pool(frames, "mean", mask=mask), torch.tensor([[(0 + 2 + 3) / 3, (6 + 8 + 9) / 3]]))
    torch.testing.assert_close(temporal_pool(frames, "max", mask=mask), torch.tensor([[3.0, 9.0]]))


def test_repeated_frames_are_real_memory():
    """Eq.1 on a [B, D] tap repeats it T_o times as a contiguous copy (not a stride-0 view)."""
    z = torch.randn(2, 5)
    aligned = align_layer(z, 4)
    assert aligned.shape == (2, 5, 4) and aligned.is_contiguous() and aligned.stride(-1) == 1
    assert torch.equal(aligned, z[:, :, None].repeat(1, 1, 4))
