"""Test-only reference of the authors' AST-Fusion pipeline, written from their description, not from hf_fusion.

The original AST is a timm DeiT (YuanGongND/ast on timm 0.4.5); timm is not importable here (it needs
torchvision), so the model is written out: timm's module names (``v.patch_embed.proj``, ``v.cls_token``,
``v.dist_token``, ``v.pos_embed``, ``v.blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``,
``v.norm``, heads ``v.head``, ``v.head_dist``, ``mlp_head``), pre-norm blocks, LayerNorm eps 1e-6, exact
GELU. What the authors' code does around it:

- AST is built for ``input_tdim`` fbank frames: the 1024-frame positional embeddings (12 x 101 grid)
  are cut to the middle columns (fewer than 101 time patches) or bilinearly resized (otherwise).
- fbank: waveform minus its mean, Kaldi fbank (transformers' ASTFeatureExtractor numpy path stands in
  for torchaudio here), normalised with task statistics as (x - mu) / (2 sigma).
- task statistics: EVAR's RunningStats over loader batches until >= 5000 clips (incremental updates).
- feature of block l (0-based index in their config): norm(block output), mean of tokens 0 and 1;
  layers concatenated in depth order.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from transformers import ASTFeatureExtractor

FREQ_PATCHES, TIME_PATCHES_1024 = 12, 101  # 128 mel bins and 1024 frames, 16x16 patches, stride 10


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5
        return self.proj((attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, d))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, mlp_hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _DeiT(nn.Module):
    """The ``v`` of YuanGongND's ASTModel (distilled ViT) for a 128 x 1024 fbank."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_hidden: int):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(1, dim, kernel_size=(16, 16), stride=(10, 10))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 2 + FREQ_PATCHES * TIME_PATCHES_1024, dim))
        self.blocks = nn.ModuleList([_Block(dim, heads, mlp_hidden) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, 1000)
        self.head_dist = nn.Linear(dim, 1000)


class ReferenceAST(nn.Module):
    """The original AST module layout (``v`` + ``mlp_head``), random weights, 1024-frame grid."""

    def __init__(self, dim: int = 64, depth: int = 4, heads: int = 4, mlp_hidden: int = 128, seed: int = 0):
        super().__init__()
        self.v = _DeiT(dim, depth, heads, mlp_hidden)
        self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 527))
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "v.norm.weight":
                    p.copy_(1 + 0.3 * torch.randn(p.shape, generator=gen))
                elif p.dim() == 1:
                    p.copy_(0.1 * torch.randn(p.shape, generator=gen))
                else:
                    fan_in = p[0].numel() if p.dim() > 1 else 1
                    p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            # tokens and positions of the size a trained model has (a smooth grid + noise)
            self.v.cls_token.copy_(torch.randn(self.v.cls_token.shape, generator=gen))
            self.v.dist_token.copy_(torch.randn(self.v.dist_token.shape, generator=gen))
            f = torch.linspace(0, 3, FREQ_PATCHES)[:, None, None]
            t = torch.linspace(0, 6, TIME_PATCHES_1024)[None, :, None]
            phase = torch.rand(1, 1, dim, generator=gen) * 6.28
            grid = torch.sin(f + t + phase) + 0.1 * torch.randn(FREQ_PATCHES, TIME_PATCHES_1024, dim, generator=gen)
            self.v.pos_embed[0, 2:] = grid.reshape(-1, dim)
            self.v.pos_embed[0, :2] = torch.randn(2, dim, generator=gen)
        self.eval()

    def checkpoint_state(self) -> dict:
        """The state dict as ``audioset_10_10_0.4593.pth`` stores it (saved through DataParallel)."""
        return {"module." + k: v.detach().clone() for k, v in self.state_dict().items()}

    def load_transformers_state(self, state: dict) -> None:
        """Copy a transformers ``ASTModel`` state dict (v5 names) into this module (q/k/v re-joined)."""
        v = self.v
        with torch.no_grad():
            v.cls_token.copy_(state["embeddings.cls_token"])
            v.dist_token.copy_(state["embeddings.distillation_token"])
            v.pos_embed.copy_(state["embeddings.position_embeddings"])
            v.patch_embed.proj.weight.copy_(state["embeddings.patch_embeddings.projection.weight"])
            v.patch_embed.proj.bias.copy_(state["embeddings.patch_embeddings.projection.bias"])
            v.norm.weight.copy_(state["layernorm.weight"])
            v.norm.bias.copy_(state["layernorm.bias"])
            for i, blk in enumerate(v.blocks):
                p = f"layers.{i}."
                for ours, theirs in ((blk.norm1, "layernorm_before"), (blk.norm2, "layernorm_after"),
                                     (blk.attn.proj, "attention.o_proj"), (blk.mlp.fc1, "mlp.fc1"),
                                     (blk.mlp.fc2, "mlp.fc2")):
                    ours.weight.copy_(state[p + theirs + ".weight"])
                    ours.bias.copy_(state[p + theirs + ".bias"])
                for kind in ("weight", "bias"):
                    joined = torch.cat([state[f"{p}attention.{n}_proj.{kind}"] for n in "qkv"], dim=0)
                    getattr(blk.attn.qkv, kind).copy_(joined)

    def pos_embed_for(self, input_tdim: int) -> torch.Tensor:
        """AST's adaptation of the 1024-frame positional embeddings to ``input_tdim`` frames."""
        dim = self.v.pos_embed.shape[-1]
        t_dim = self.v.patch_embed.proj(torch.zeros(1, 1, 128, input_tdim)).shape[3]
        grid = self.v.pos_embed[:, 2:, :].detach().reshape(1, 1212, dim).transpose(1, 2).reshape(1, dim, 12, 101)
        if t_dim < 101:
            grid = grid[:, :, :, 50 - int(t_dim / 2): 50 - int(t_dim / 2) + t_dim]
        else:
            grid = torch.nn.functional.interpolate(grid, size=(12, t_dim), mode="bilinear")
        grid = grid.reshape(1, dim, 12 * t_dim).transpose(1, 2)
        return torch.cat([self.v.pos_embed[:, :2, :].detach(), grid], dim=1)

    @torch.no_grad()
    def fusion(self, fbank: torch.Tensor, layers_0based) -> torch.Tensor:
        """The authors' AR_AST_Fusion.forward after normalisation: [B, T, 128] -> [B, D * len(layers)]."""
        x = fbank.unsqueeze(1).transpose(2, 3)
        b = x.shape[0]
        x = self.v.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.v.cls_token.expand(b, -1, -1), self.v.dist_token.expand(b, -1, -1), x), dim=1)
        x = x + self.pos_embed_for(fbank.shape[1])
        embeds = []
        for index, blk in enumerate(self.v.blocks):
            x = blk(x)
            if index in layers_0based:
                normed = self.v.norm(x)
                embeds.append((normed[:, 0] + normed[:, 1]) / 2)
        return torch.hstack(embeds)


def reference_fbank(clips, input_tdim: int) -> torch.Tensor:
    """Raw fbank [B, input_tdim, 128] of clips of the task length (waveform minus its mean first, as
    EVAR's AST_Feature), computed by transformers' ASTFeatureExtractor (numpy path)."""
    fe = ASTFeatureExtractor(max_length=input_tdim, do_normalize=False)
    centred = [np.asarray(c, dtype=np.float32) - np.float32(np.mean(c)) for c in clips]
    return torch.as_tensor(fe(centred, sampling_rate=16000, return_tensors="np")["input_values"])


class _EvarRunningMean:
    def __init__(self):
        self.n = 0

    def put(self, x):
        if self.n == 0:
            self.mu = x.mean()
        else:
            self.mu = self.mu + (x.mean() - self.mu) / self.n
        self.n += 1


def evar_norm_stats(clips, input_tdim: int, batch_size: int = 128, max_samples: int = 5000) -> tuple[float, float]:
    """EVAR's calculate_norm_stats: RunningStats over loader batches of raw fbank, stop at >= max_samples."""
    mean, sq = _EvarRunningMean(), _EvarRunningMean()
    count = 0
    for start in range(0, len(clips), batch_size):
        batch = reference_fbank(clips[start:start + batch_size], input_tdim).double()
        mean.put(batch)
        sq.put((batch - mean.mu) ** 2)
        count += batch.shape[0]
        if count >= max_samples:
            break
    return float(mean.mu), float(np.sqrt(float(sq.mu)))


def authors_embedding(model: ReferenceAST, clips, input_tdim: int, stats, layers_0based) -> torch.Tensor:
    mu, sigma = stats
    x = (reference_fbank(clips, input_tdim) - mu) / (sigma * 2)
    return model.fusion(x.float(), layers_0based)
