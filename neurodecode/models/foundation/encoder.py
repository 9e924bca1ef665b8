"""The foundation encoder: tokens (any montage, any length) -> one vector per token, and its files."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .tokens import TOKEN_META

__all__ = ["Block", "FourierPositions", "FoundationEncoder", "load_encoder", "save_encoder", "train_flops_per_sample"]


class FourierPositions(torch.nn.Module):
    """(x, y, z, t) -> a d_model vector: sines and cosines at log-spaced frequencies, then an MLP.

    Space in decimetres (frequencies 0.05-4 cycles per dm: from the whole head to neighbouring
    electrodes), time in seconds (0.01-1 cycle per s: patches are at most 2 per second apart at
    the default 0.5 s).
    """

    def __init__(self, d_model: int, n_freqs: int = 16):
        super().__init__()
        space = torch.logspace(math.log10(0.05), math.log10(4.0), n_freqs)
        time = torch.logspace(math.log10(0.01), math.log10(1.0), n_freqs)
        self.register_buffer("freqs", 2 * math.pi * torch.stack([space, space, space, time]))  # (4, F)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(8 * n_freqs, d_model), torch.nn.GELU(),
                                       torch.nn.Linear(d_model, d_model))

    def forward(self, coords):
        angles = (coords.float()[..., :, None] * self.freqs).flatten(-2)
        return self.mlp(torch.cat([angles.sin(), angles.cos()], dim=-1))


class Block(torch.nn.Module):
    """Pre-norm transformer block: SDPA self-attention, then a GELU MLP, each residual."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.norm1, self.norm2 = torch.nn.LayerNorm(d_model), torch.nn.LayerNorm(d_model)
        self.qkv = torch.nn.Linear(d_model, 3 * d_model)
        self.proj = torch.nn.Linear(d_model, d_model)
        hidden = int(round(mlp_ratio * d_model))
        self.mlp = torch.nn.Sequential(torch.nn.Linear(d_model, hidden), torch.nn.GELU(),
                                       torch.nn.Linear(hidden, d_model))
        self.drop = torch.nn.Dropout(dropout)

    def forward(self, x, attn_mask=None):
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        attended = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.proj(attended.transpose(1, 2).reshape(b, n, d)))
        return x + self.drop(self.mlp(self.norm2(x)))


class FoundationEncoder(torch.nn.Module):
    """Tokens (batch, n_tokens, 5 + patch_size) -> embeddings (batch, n_tokens, d_model).

    Parameters
    ----------
    patch_size : int
        Samples per patch.
    sfreq : float
        The sampling rate every input is resampled to.
    d_model, n_layers, n_heads : int
    mlp_ratio : float
    dropout : float

    Notes
    -----
    ``forward(tokens, mask=None, padded=True)``: ``mask`` (batch, n_tokens) bool replaces those
    tokens' patch embeddings by a learned mask embedding (their positions are kept); ``padded``
    False promises that every token is valid, so attention runs without a mask (the fused
    flash kernel); True builds a key-padding mask from the ``valid`` column.
    """

    def __init__(self, patch_size: int = 64, sfreq: float = 128.0, d_model: int = 256, n_layers: int = 4,
                 n_heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"FoundationEncoder: d_model={d_model} is not a multiple of n_heads={n_heads}")
        self.config = {"patch_size": int(patch_size), "sfreq": float(sfreq), "d_model": int(d_model),
                       "n_layers": int(n_layers), "n_heads": int(n_heads), "mlp_ratio": float(mlp_ratio),
                       "dropout": float(dropout)}
        self.patch_size, self.sfreq, self.d_model = int(patch_size), float(sfreq), int(d_model)
        self.embed = torch.nn.Linear(patch_size, d_model)
        self.positions = FourierPositions(d_model)
        self.mask_embedding = torch.nn.Parameter(torch.zeros(d_model))
        self.blocks = torch.nn.ModuleList(Block(d_model, n_heads, mlp_ratio, dropout) for _ in range(n_layers))
        self.norm = torch.nn.LayerNorm(d_model)
        self.apply(_init_weights)
        torch.nn.init.normal_(self.mask_embedding, std=0.02)

    def forward(self, tokens, mask=None, padded: bool = True):
        patch = self.embed(tokens[..., TOKEN_META:])
        if mask is not None:
            patch = torch.where(mask[..., None], self.mask_embedding.to(patch.dtype), patch)
        x = patch + self.positions(tokens[..., 1:TOKEN_META])
        attn_mask = (tokens[..., 0] > 0.5)[:, None, None, :] if padded else None
        for block in self.blocks:
            x = block(x, attn_mask)
        return self.norm(x)

    def pooled(self, tokens, padded: bool = True):
        """Mean of the valid tokens' embeddings: (batch, d_model)."""
        h = self.forward(tokens, padded=padded).float()
        valid = (tokens[..., 0] > 0.5).float()[..., None]
        return (h * valid).sum(1) / valid.sum(1).clamp_min(1.0)


def _init_weights(module):
    if isinstance(module, torch.nn.Linear):
        torch.nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            torch.nn.init.zeros_(module.bias)


def train_flops_per_sample(model: torch.nn.Module, n_tokens: int, d_model: int, n_layers: int) -> float:
    """Training FLOPs of one sample: 6 x trainable parameters x tokens, plus attention (12 L N^2 d).

    The parameter term counts every trainable weight as applied to every token (true of this
    model: embeddings, blocks and heads all act per token); attention adds QK^T and AV, 2 N^2 d
    multiply-adds each per layer forward, times 3 for the backward pass.
    """
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return 6.0 * params * n_tokens + 12.0 * n_layers * n_tokens ** 2 * d_model


def save_encoder(encoder: FoundationEncoder, path) -> Path:
    """Write an encoder's configuration and weights (``torch.save``; read back with :func:`load_encoder`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": 1, "config": dict(encoder.config),
                "state_dict": {k: v.detach().cpu() for k, v in encoder.state_dict().items()}}, path)
    return path


def load_encoder(path) -> FoundationEncoder:
    """An encoder written by :func:`save_encoder`, with every weight loaded strictly (tensors only)."""
    saved = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or saved.get("format") != 1:
        raise ValueError(f"{path}: not an encoder written by neurodecode.models.foundation.save_encoder")
    encoder = FoundationEncoder(**saved["config"])
    encoder.load_state_dict(saved["state_dict"], strict=True)
    return encoder.eval()
