"""A channel-agnostic EEG foundation model: tokens are single-channel patches placed in (x, y, z, t).

Every channel of a window is cut into patches of ``patch_size`` samples at one sampling rate
(``sfreq``, 128 Hz by default); each patch is a token, embedded linearly and given a position
from its electrode's 3-D coordinates and its time in the window (Fourier features of the four
numbers through an MLP). Any montage and any length give a set of tokens the same transformer
(pre-norm blocks on :func:`torch.nn.functional.scaled_dot_product_attention`) reads. See
``docs/foundation.md``.

Token layout (one row per token, ``5 + patch_size`` columns): ``valid`` (1, or 0 for padding),
``x, y, z`` (electrode position, in decimetres), ``t`` (patch centre, seconds from the window's
start), then the patch's samples, divided by the standard deviation of the whole window (over
channels and time, so that the relative power of channels, which motor imagery lives on, is kept).

* :class:`FoundationEncoder`: tokens -> one vector per token.
* :class:`MaskedPretrainer` and :func:`pretrain`: masked modelling through the one
  :class:`~neurodecode.training.Trainer` (bf16, ``torch.compile``, DDP, checkpoints): half the
  tokens are replaced by a learned mask embedding, and the model predicts the masked patches'
  codes from a fitted tokenizer (:mod:`neurodecode.transforms.tokenizers`) or, with
  ``objective="reconstruct"``, their samples.
* :class:`EEGCorpus`: the pretraining data streamed from shards on disk (memory-mapped float16
  arrays and a JSON index each, written by :func:`write_corpus`), one random window per item, any
  number of files, read lazily by DataLoader workers.
* :class:`FoundationClassifier`: a scikit-learn classifier that fine-tunes a (pretrained) encoder
  or fits a logistic regression on its frozen pooled embeddings (linear probing).
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import random
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from .._utils.checks import check_signal_info, check_signals, unpack_data
from ..training import Trainer, TrainConfig, predict_logits, resolve_device
from ..training.distributed import local_rank
from ..transforms.tokenizers import PatchCodes, mean_loss
from .published import standard_positions

__all__ = ["EEGCorpus", "FoundationClassifier", "FoundationEncoder", "MaskedPretrainer", "load_encoder",
           "pretrain", "resample_trials", "save_encoder", "train_flops_per_sample", "trials_to_tokens",
           "write_corpus"]

#: Columns of a token before its samples: valid, x, y, z, t.
TOKEN_META = 5
#: Electrode coordinates are given in metres and fed in decimetres (a head spans about 2 units).
POSITION_SCALE = 10.0
#: The corpus format this module writes and reads.
CORPUS_FORMAT = 1


# -- tokens ------------------------------------------------------------------------------------

def _window_scale(X: np.ndarray) -> np.ndarray:
    scale = X.std(axis=(-2, -1), keepdims=True, dtype=np.float64)
    return np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)


def trials_to_tokens(X, positions, patch_size: int, sfreq: float, dtype=np.float32) -> np.ndarray:
    """Trials at the model's rate to the token layout of the module docstring.

    Parameters
    ----------
    X : ndarray, shape (n_trials, n_channels, n_times)
        At the encoder's sampling rate; a remainder shorter than a patch is dropped.
    positions : array-like, shape (n_channels, 3)
        Electrode positions in metres.
    patch_size : int
    sfreq : float
    dtype : numpy dtype
        Of the tokens (float16 for the corpus's windows: half the bytes to move).

    Returns
    -------
    tokens : ndarray, shape (n_trials, n_channels * n_patches, 5 + patch_size)
        Channel-major: token ``c * n_patches + p`` is patch ``p`` of channel ``c``.
    """
    X = np.asarray(X)
    if X.dtype not in (np.float16, np.float32):
        X = X.astype(np.float32)
    n, n_chans, n_times = X.shape
    n_patches = n_times // patch_size
    if n_patches < 1:
        raise ValueError(f"trials of {n_times} samples at {sfreq} Hz are shorter than one patch "
                         f"({patch_size} samples)")
    X = X[..., :n_patches * patch_size]
    out = np.empty((n, n_chans, n_patches, TOKEN_META + patch_size), dtype=dtype)
    out[..., 0] = 1.0
    out[..., 1:4] = (np.asarray(positions, dtype=np.float32) * POSITION_SCALE)[None, :, None, :]
    out[..., 4] = ((np.arange(n_patches) + 0.5) * patch_size / sfreq)[None, None, :]
    # One pass from the input into the tokens (no float32 copy of a float16 window).
    np.multiply(X.reshape(n, n_chans, n_patches, patch_size), (1.0 / _window_scale(X)).astype(np.float32)[..., None],
                out=out[..., TOKEN_META:], casting="unsafe")
    return out.reshape(n, n_chans * n_patches, TOKEN_META + patch_size)


def resample_trials(X, sfreq: float, new_sfreq: float) -> np.ndarray:
    """Polyphase resampling along the last axis (scipy's anti-aliasing FIR); unchanged when equal.

    Returns
    -------
    ndarray of float32, shape (..., ceil(n_times * new_sfreq / sfreq))
    """
    from scipy.signal import resample_poly

    if math.isclose(sfreq, new_sfreq, rel_tol=1e-9):
        return np.asarray(X, dtype=np.float32)
    ratio = Fraction(float(new_sfreq) / float(sfreq)).limit_denominator(1000)
    return resample_poly(np.asarray(X, dtype=np.float64), ratio.numerator, ratio.denominator, axis=-1).astype(
        np.float32)


# -- the network -------------------------------------------------------------------------------

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


class MaskedPretrainer(torch.nn.Module):
    """Masked modelling around an encoder; ``forward(tokens)`` returns each sample's loss.

    Parameters
    ----------
    encoder : FoundationEncoder
    targets : PatchCodes or None
        Raw patches -> codes (a fitted tokenizer's :meth:`torch_encoder`), frozen: the objective is
        the cross-entropy of the masked tokens' codes. None: the objective is the mean squared
        error of the masked tokens' samples (as the encoder sees them, window-normalised).
    n_codes : int or None
        Codebook size (with ``targets``).
    mask_ratio : float
        Share of the valid tokens masked in each sample (drawn independently per token).
    padded : bool
        False when every token of every sample is valid (then attention needs no mask).
    """

    def __init__(self, encoder: FoundationEncoder, targets: PatchCodes | None = None, n_codes: int | None = None,
                 mask_ratio: float = 0.5, padded: bool = True):
        super().__init__()
        self.encoder, self.targets = encoder, targets
        self.mask_ratio, self.padded = float(mask_ratio), bool(padded)
        if targets is not None:
            targets.requires_grad_(False)
            if n_codes is None:
                raise ValueError("MaskedPretrainer: n_codes is needed with targets")
        out = encoder.patch_size if targets is None else int(n_codes)
        self.head = torch.nn.Linear(encoder.d_model, out)
        _init_weights(self.head)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.targets is not None:
            self.targets.eval()
        return self

    def forward(self, tokens):
        valid = tokens[..., 0] > 0.5
        mask = (torch.rand(valid.shape, device=tokens.device) < self.mask_ratio) & valid
        h = self.encoder(tokens, mask=mask, padded=self.padded)
        predicted = self.head(h).float()
        if self.targets is not None:
            codes = self.targets(tokens[..., TOKEN_META:])
            per_token = torch.nn.functional.cross_entropy(predicted.flatten(0, 1), codes.flatten(),
                                                          reduction="none").view(codes.shape)
        else:
            per_token = ((predicted - tokens[..., TOKEN_META:].float()) ** 2).mean(-1)
        weight = mask.float()
        return (per_token * weight).sum(1) / weight.sum(1).clamp_min(1.0)


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


# -- the corpus on disk ------------------------------------------------------------------------

def write_corpus(records, out_dir, *, sfreq: float, shard_mb: float = 4.0, max_mb: float | None = None) -> dict:
    """Write recordings at one sampling rate as float16 shards: ``shard-NNNNN.npy`` + ``.json`` each.

    Each shard's ``.npy`` is one flat float16 array holding its recordings one after the other
    (each as channels x samples, divided by the recording's standard deviation); its ``.json``
    lists them (offset, channels, samples, scale, channel names, positions and metadata).
    ``corpus.json`` lists the shards. Readers memory-map the arrays, so a corpus of any size is
    read window by window.

    Parameters
    ----------
    records : iterable of dict
        ``data`` (n_channels, n_times) float array at ``sfreq``, ``positions`` (n_channels, 3) in
        metres, ``ch_names``, and any JSON-serialisable metadata (``dataset``, ``subject``...).
    out_dir : path
    sfreq : float
    shard_mb : float
        A shard is closed once it holds this many megabytes.
    max_mb : float or None
        Stop when the corpus holds this many megabytes (the last recording is cut to fit).

    Returns
    -------
    manifest : dict
        What ``corpus.json`` holds: ``sfreq``, ``shards``, ``n_recordings``, ``n_samples`` (per
        channel, summed over recordings), ``bytes``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    limit = None if max_mb is None else int(max_mb * 1e6 / 2)
    shards, pending, index, offset, total, n_samples, n_recordings = [], [], [], 0, 0, 0, 0

    def flush():
        nonlocal pending, index, offset
        if not pending:
            return
        name = f"shard-{len(shards):05d}"
        np.save(out_dir / f"{name}.npy", np.concatenate(pending))
        (out_dir / f"{name}.json").write_text(json.dumps({"format": CORPUS_FORMAT, "sfreq": sfreq,
                                                          "recordings": index}))
        shards.append(name)
        pending, index, offset = [], [], 0

    for record in records:
        data = np.asarray(record["data"], dtype=np.float32)
        if data.ndim != 2 or not np.isfinite(data).all():
            raise ValueError(f"write_corpus: a recording must be a finite (n_channels, n_times) array; got "
                             f"{data.shape}")
        if limit is not None:
            room = (limit - total) // data.shape[0]
            if room < 1:
                break
            data = data[:, :room]
        # Stored in units of the recording's standard deviation: float16 then keeps 3 digits for any
        # amplitude (a file in the wrong unit would otherwise overflow its 65504 ceiling).
        scale = float(data.std()) if np.isfinite(data.std()) and data.std() > 0 else 1.0
        flat = (data / scale).astype(np.float16).ravel()
        meta = {k: v for k, v in record.items() if k not in ("data", "positions", "ch_names")}
        index.append({"offset": offset, "n_chans": int(data.shape[0]), "n_times": int(data.shape[1]), "scale": scale,
                      "ch_names": list(record["ch_names"]),
                      "positions": np.asarray(record["positions"], dtype=float).round(6).tolist(), **meta})
        pending.append(flat)
        offset += flat.size
        total += flat.size
        n_samples += data.shape[1]
        n_recordings += 1
        if offset * 2 >= shard_mb * 1e6:
            flush()
    flush()
    manifest = {"format": CORPUS_FORMAT, "sfreq": sfreq, "shards": shards, "n_recordings": n_recordings,
                "n_samples": n_samples, "bytes": total * 2}
    (out_dir / "corpus.json").write_text(json.dumps(manifest, indent=1))
    return manifest


class EEGCorpus(torch.utils.data.Dataset):
    """Random windows of a sharded corpus, as token arrays, read lazily from memory-mapped files.

    Item ``i`` is a window drawn with a generator seeded by ``(seed, i)``: a recording, with
    probability proportional to its number of channel samples, then a start sample, uniformly.
    Each window holds ``n_tokens`` tokens: ``n_tokens // n_channels`` patches of every channel
    (a 64-channel recording gives 8 patches, 4 s at 128 Hz; a 4-channel one 128 patches, 64 s),
    so that montages of any size fill the same sequence and batches need no padding when the
    channel counts divide ``n_tokens``. Recordings with more channels than ``n_tokens`` give a
    random subset of channels, one patch each.

    Parameters
    ----------
    roots : path or list of paths
        Corpus folders (each with ``corpus.json``) or shard index files (``shard-NNNNN.json``).
    n_tokens : int
    patch_size : int
    samples_per_epoch : int or None
        ``len()`` of the dataset; None: the corpus's samples over ``n_tokens * patch_size``
        (each sample seen about once per epoch).
    include : callable or None
        ``include(recording_metadata) -> bool`` keeps only some recordings (held-out subjects).
    seed : int

    Attributes
    ----------
    sfreq : float
    padded : bool
        True when some windows have padding tokens (channel counts not dividing ``n_tokens``, or
        recordings shorter than a window).
    recordings : list of dict
        The index of every recording kept.
    """

    def __init__(self, roots, *, n_tokens: int = 512, patch_size: int = 64, samples_per_epoch: int | None = None,
                 include=None, seed: int = 0):
        paths = [Path(r) for r in ([roots] if isinstance(roots, (str, Path)) else roots)]
        shard_files = []
        for path in paths:
            if path.is_dir():
                manifest = json.loads((path / "corpus.json").read_text())
                shard_files += [path / f"{name}.json" for name in manifest["shards"]]
            elif path.suffix == ".json" and path.is_file():
                shard_files.append(path)
            else:
                raise FileNotFoundError(f"EEGCorpus: {path} is neither a corpus folder (with corpus.json) nor a "
                                        "shard index (shard-NNNNN.json)")
        self.n_tokens, self.patch_size, self.seed = int(n_tokens), int(patch_size), int(seed)
        self.recordings, self._arrays, self.sfreq = [], [], None
        for number, shard in enumerate(shard_files):
            index = json.loads(shard.read_text())
            if self.sfreq is None:
                self.sfreq = float(index["sfreq"])
            elif not math.isclose(self.sfreq, float(index["sfreq"])):
                raise ValueError(f"EEGCorpus: {shard} is at {index['sfreq']} Hz, other shards at {self.sfreq} Hz")
            self._arrays.append(shard.with_suffix(".npy"))
            for record in index["recordings"]:
                if record["n_times"] >= patch_size and (include is None or include(record)):
                    self.recordings.append({**record, "shard": number})
        if not self.recordings:
            raise ValueError(f"EEGCorpus: no recording of at least one patch in {[str(p) for p in paths]}")
        sizes = np.array([r["n_chans"] * r["n_times"] for r in self.recordings], dtype=np.float64)
        self._cumulative = np.cumsum(sizes) / sizes.sum()
        self._positions = [np.asarray(r["positions"], dtype=np.float32) for r in self.recordings]
        self.padded = any(self._layout(r)[0] * self._layout(r)[1] != self.n_tokens for r in self.recordings)
        self.total_samples = int(sizes.sum())
        self.samples_per_epoch = int(samples_per_epoch or max(1, self.total_samples // (n_tokens * patch_size)))
        self._open: dict = {}

    def _layout(self, record):
        """(channels used, patches per channel) of a window of this recording."""
        n_chans = min(record["n_chans"], self.n_tokens)
        return n_chans, max(1, min(self.n_tokens // n_chans, record["n_times"] // self.patch_size))

    def __len__(self) -> int:
        return self.samples_per_epoch

    def _array(self, shard: int) -> np.ndarray:
        # Opened in the process that reads (each DataLoader worker its own map), never pickled.
        if shard not in self._open:
            self._open[shard] = np.load(self._arrays[shard], mmap_mode="r")
        return self._open[shard]

    def __getstate__(self):
        return {**self.__dict__, "_open": {}}

    def _draw(self, i: int):
        """(record index, channels, start, length) of item i."""
        rng = np.random.default_rng([self.seed, int(i)])
        r = min(int(np.searchsorted(self._cumulative, rng.random(), side="right")), len(self.recordings) - 1)
        record = self.recordings[r]
        n_chans, n_patches = self._layout(record)
        length = n_patches * self.patch_size
        start = int(rng.integers(0, record["n_times"] - length + 1))
        channels = (np.sort(rng.choice(record["n_chans"], n_chans, replace=False)) if n_chans < record["n_chans"]
                    else slice(None))
        return r, channels, start, length

    def _stored(self, r, channels, start, length):
        """The window as stored (float16, in units of its recording's standard deviation), a memory-map view."""
        record = self.recordings[r]
        flat = self._array(record["shard"])
        block = flat[record["offset"]:record["offset"] + record["n_chans"] * record["n_times"]].reshape(
            record["n_chans"], record["n_times"])
        return block[channels, start:start + length]

    def window(self, i: int):
        """(samples (n_channels, n_patches * patch_size) float32, positions (n_channels, 3), record) of item i."""
        r, channels, start, length = self._draw(i)
        record = self.recordings[r]
        data = np.asarray(self._stored(r, channels, start, length), dtype=np.float32) * np.float32(record["scale"])
        return data, self._positions[r][channels], record

    def __getitem__(self, i):
        r, channels, start, length = self._draw(i)
        # Straight from the float16 map into float16 tokens: the recording's scale cancels in the window's
        # normalisation, and float16 halves the bytes across the process boundary and the copy to the GPU.
        tokens = trials_to_tokens(self._stored(r, channels, start, length)[None], self._positions[r][channels],
                                  self.patch_size, self.sfreq, dtype=np.float16)[0]
        if len(tokens) < self.n_tokens:
            tokens = np.concatenate([tokens, np.zeros((self.n_tokens - len(tokens), tokens.shape[1]), np.float16)])
        return torch.from_numpy(tokens), 0


def pretrain(corpus: EEGCorpus, encoder: FoundationEncoder, config: TrainConfig, *, tokenizer=None,
             mask_ratio: float = 0.5, callbacks=()):
    """Masked-modelling pretraining of ``encoder`` on ``corpus`` through the one trainer.

    Parameters
    ----------
    corpus : EEGCorpus
        Its sampling rate and patch size must be the encoder's.
    encoder : FoundationEncoder
        Trained in place.
    config : TrainConfig
        ``batch_size``, ``max_epochs``, ``compile``, ``num_workers`` (DataLoader workers reading the
        shards), ``checkpoint_dir``... Under ``torchrun`` every process reads its share of each batch.
    tokenizer : fitted KMeansTokenizer or VQTokenizer, or None
        Its codes of the masked patches are the targets; None reconstructs the patches instead.
    mask_ratio : float
    callbacks : sequence of callables
        Passed to the trainer (``callback(record, model)`` after each epoch).

    Returns
    -------
    result : TrainResult
        ``result.model`` is the :class:`MaskedPretrainer`; ``result.model.encoder`` the encoder.
    """
    if not math.isclose(corpus.sfreq, encoder.sfreq) or corpus.patch_size != encoder.patch_size:
        raise ValueError(f"pretrain: the corpus is at {corpus.sfreq} Hz with {corpus.patch_size}-sample patches, the "
                         f"encoder at {encoder.sfreq} Hz with {encoder.patch_size}")
    targets = n_codes = None
    if tokenizer is not None:
        if tokenizer.patch_size != encoder.patch_size:
            raise ValueError(f"pretrain: the tokenizer's patches have {tokenizer.patch_size} samples, the encoder's "
                             f"{encoder.patch_size}")
        targets, n_codes = tokenizer.torch_encoder(), tokenizer.n_codes
    module = MaskedPretrainer(encoder, targets, n_codes, mask_ratio=mask_ratio, padded=corpus.padded)
    return Trainer(config, loss_fn=mean_loss, callbacks=callbacks).fit(module, corpus)


# -- fine-tuning and linear probing ------------------------------------------------------------

class _Classifier(torch.nn.Module):
    def __init__(self, encoder: FoundationEncoder, n_outputs: int, dropout: float):
        super().__init__()
        self.encoder = encoder
        self.head = torch.nn.Sequential(torch.nn.LayerNorm(encoder.d_model), torch.nn.Dropout(dropout),
                                        torch.nn.Linear(encoder.d_model, n_outputs))

    def forward(self, tokens):
        return self.head(self.encoder.pooled(tokens, padded=False))


class _Pooled(torch.nn.Module):
    def __init__(self, encoder: FoundationEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, tokens):
        return self.encoder.pooled(tokens, padded=False)


def _positions_array(positions, n_chans, owner):
    array = np.asarray(positions, dtype=np.float64)
    if array.shape != (n_chans, 3) or not np.isfinite(array).all():
        raise ValueError(f"{owner}: positions must be finite, shaped (n_channels, 3) = ({n_chans}, 3) in metres; "
                         f"got shape {array.shape}")
    return array


class FoundationClassifier(ClassifierMixin, BaseEstimator):
    """Fine-tuning or linear probing of a (pretrained) :class:`FoundationEncoder` on labelled trials.

    Trials are resampled to the encoder's rate, cut into patches and placed by their electrodes'
    positions (from a DecodingData's montage, or ``positions``), so one encoder serves any montage.
    ``mode="finetune"`` trains the encoder and a linear head together through
    :class:`~neurodecode.training.Trainer` (early stopping on a stratified validation split);
    ``mode="linear"`` keeps the encoder frozen and fits a logistic regression on the mean of its
    token embeddings.

    Parameters
    ----------
    pretrained : str, path, FoundationEncoder or None
        A file written by :func:`save_encoder`, an encoder (copied, never changed), or None for a
        new randomly initialised encoder built from ``encoder_params`` (training from scratch).
    encoder_params : dict or None
        Arguments of :class:`FoundationEncoder` when ``pretrained`` is None.
    mode : {"finetune", "linear"}
    positions : array-like of shape (n_channels, 3) or None
        Electrode positions in metres, in channel order; None takes them from a DecodingData's
        montage, else looks the channel names up on MNE's standard 10-05 montage.
    ch_names : sequence of str or None
        Channel names of plain arrays (the benchmark binds them); a DecodingData brings its own.
    sfreq : float or None
        Sampling rate of the trials in Hz; None takes a DecodingData's.
    max_epochs : int
    batch_size : int
    lr : float
        Peak AdamW rate of fine-tuning.
    weight_decay : float
    val_fraction : float
    patience : int or None
    dropout : float
        Dropout before the classification head.
    C : float
        Inverse regularisation of the linear probe's logistic regression.
    device : str
    precision : {"auto", "bf16", "fp32"}
    random_state : int
    verbose : bool

    Attributes
    ----------
    classes_ : ndarray, shape (n_classes,)
    module_ : torch.nn.Module
        Fine-tuning: the encoder with its head; linear probing: the frozen encoder (pooled).
    probe_ : sklearn Pipeline or None
        The linear probe (standardisation, logistic regression); None when fine-tuning.
    positions_ : ndarray, shape (n_channels, 3)
    sfreq_ : float
    ch_names_ : tuple of str or None
    n_chans_, n_times_ : int
    history_ : list of dict
        The trainer's records (empty for linear probing).
    """

    _parameter_constraints = {
        "mode": [StrOptions({"finetune", "linear"})],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 2, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "val_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "patience": [Interval(numbers.Integral, 0, None, closed="left"), None],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "C": [Interval(numbers.Real, 0, None, closed="neither")],
        "device": [str],
        "precision": [StrOptions({"auto", "bf16", "fp32"})],
        "random_state": [Interval(numbers.Integral, 0, None, closed="left")],
        "verbose": ["boolean"],
    }

    def __init__(self, pretrained=None, encoder_params=None, *, mode="finetune", positions=None, ch_names=None,
                 sfreq=None,
                 max_epochs=30, batch_size=32, lr=1e-4, weight_decay=0.05, val_fraction=0.2, patience=10, dropout=0.1,
                 C=1.0, device="auto", precision="auto", random_state=0, verbose=False):
        self.pretrained = pretrained
        self.encoder_params = encoder_params
        self.mode = mode
        self.positions = positions
        self.ch_names = ch_names
        self.sfreq = sfreq
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.val_fraction = val_fraction
        self.patience = patience
        self.dropout = dropout
        self.C = C
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        return tags

    def _encoder(self) -> FoundationEncoder:
        if self.pretrained is None:
            params = dict(self.encoder_params or {})
            return FoundationEncoder(**params)
        if self.encoder_params is not None:
            raise ValueError("FoundationClassifier: encoder_params is for a new encoder; a pretrained one brings its "
                             "own (set encoder_params=None)")
        if isinstance(self.pretrained, FoundationEncoder):
            return copy.deepcopy(self.pretrained)
        if isinstance(self.pretrained, (str, Path)):
            return load_encoder(self.pretrained)
        raise ValueError(f"FoundationClassifier: pretrained must be None, a FoundationEncoder or a path to one written "
                         f"by save_encoder; got {type(self.pretrained).__name__}")

    def _tokens(self, X, sfreq, positions, encoder_sfreq, patch_size) -> np.ndarray:
        return trials_to_tokens(resample_trials(X, sfreq, encoder_sfreq), positions, patch_size, encoder_sfreq)

    def fit(self, X, y):
        """Resample and tokenize the trials, then fine-tune or fit the linear probe.

        Parameters
        ----------
        X : DecodingData or array-like, shape (n_trials, n_channels, n_times)
        y : array-like, shape (n_trials,)

        Returns
        -------
        self
        """
        self._validate_params()
        name = type(self).__name__
        given = X
        _, info = unpack_data(given)
        X, sfreq, ch_names = check_signal_info(self, given, reset=True, sfreq=self.sfreq)
        X = check_signals(X, name)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise ValueError(f"{name}: y must be 1-D with one label per trial; got shape {y.shape} for {len(X)} trials")
        check_classification_targets(y)
        classes, encoded = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"{name}: y holds one class ({classes[0]!r}); a classifier needs two or more")
        ch_names = ch_names if ch_names is not None else (None if self.ch_names is None else tuple(self.ch_names))
        positions = self._resolve_positions(info, ch_names, X.shape[1])
        seed = int(self.random_state)
        device = resolve_device(self.device, local_rank())
        numpy_state, python_state = np.random.get_state(), random.getstate()
        try:
            with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
                torch.manual_seed(seed)
                encoder = self._encoder()
                tokens = self._tokens(X, sfreq, positions, encoder.sfreq, encoder.patch_size)
                if self.mode == "linear":
                    self.module_ = _Pooled(encoder.eval())
                    self.probe_ = self._fit_probe(self._embed(tokens, device), encoded)
                    self.history_ = []
                    self.device_ = str(device)
                else:
                    net = _Classifier(encoder, len(classes), self.dropout)
                    config = TrainConfig(max_epochs=self.max_epochs, batch_size=self.batch_size, lr=self.lr,
                                         weight_decay=self.weight_decay, val_fraction=self.val_fraction,
                                         patience=self.patience, device=self.device, precision=self.precision,
                                         compile=False, seed=seed, verbose=bool(self.verbose)).validate()
                    result = Trainer(config).fit(net, tokens, encoded.astype(np.int64))
                    self.module_ = result.model.cpu().eval()
                    self.probe_ = None
                    self.history_ = result.history
                    self.device_ = str(result.device)
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)
        self.classes_ = classes
        self.positions_ = positions
        self.sfreq_, self.ch_names_ = sfreq, ch_names
        self.n_chans_, self.n_times_ = X.shape[1], X.shape[2]
        return self

    def _resolve_positions(self, info, ch_names, n_chans):
        name = type(self).__name__
        positions = self.positions if self.positions is not None else (None if info is None else info.positions)
        if positions is None and ch_names is not None:
            if len(ch_names) != n_chans:
                raise ValueError(f"{name}: {len(ch_names)} channel names for {n_chans} channels")
            positions = standard_positions(ch_names)
            unknown = [c for c, p in zip(ch_names, positions) if not np.isfinite(p).all()]
            if unknown:
                raise ValueError(f"{name}: channels {unknown[:5]} are not on the standard 10-05 montage: pass "
                                 "positions=... (n_channels x 3, metres) or a DecodingData with a montage")
        if positions is None:
            raise ValueError(f"{name}: electrode positions are unknown: pass a DecodingData whose montage has them, "
                             "ch_names=... (10-05 names) or positions=... (n_channels x 3, metres)")
        return _positions_array(positions, n_chans, name)

    def _fit_probe(self, features, encoded):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=1000)).fit(features, encoded)

    def _device(self):
        return resolve_device(self.device_, for_inference=True)

    def _embed(self, tokens, device):
        module = self.module_ if device.type == "cpu" else copy.deepcopy(self.module_).to(device)
        return predict_logits(module, tokens, batch_size=max(2 * int(self.batch_size), 64), device=device,
                              precision=self.precision).double().numpy()

    def _checked_tokens(self, X):
        check_is_fitted(self, "module_")
        name = type(self).__name__
        X, _, _ = check_signal_info(self, X, reset=False)
        X = check_signals(X, name, n_channels=self.n_chans_)
        encoder = self.module_.encoder
        return self._tokens(X, self.sfreq_, self.positions_, encoder.sfreq, encoder.patch_size)

    def embed(self, X) -> np.ndarray:
        """The encoder's pooled embedding of each trial (the linear probe's input).

        Returns
        -------
        features : ndarray, shape (n_trials, d_model)
        """
        tokens = self._checked_tokens(X)
        return self._embed(tokens, self._device()) if self.probe_ is not None else predict_logits(
            _Pooled(self.module_.encoder), tokens, device=self._device(), precision=self.precision).double().numpy()

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        X : DecodingData or array-like, shape (n_trials, n_channels, n_times)

        Returns
        -------
        proba : ndarray, shape (n_trials, n_classes)
        """
        tokens = self._checked_tokens(X)
        if self.probe_ is not None:
            return self.probe_.predict_proba(self._embed(tokens, self._device()))
        device = self._device()
        module = self.module_ if device.type == "cpu" else copy.deepcopy(self.module_).to(device)
        logits = predict_logits(module, tokens, batch_size=max(2 * int(self.batch_size), 64), device=device,
                                precision=self.precision)
        return torch.softmax(logits.double(), dim=1).numpy()

    def predict(self, X) -> np.ndarray:
        """The most probable class of each trial.

        Returns
        -------
        y : ndarray, shape (n_trials,)
        """
        winners = self.predict_proba(X).argmax(1)  # checks first that the classifier is fitted
        return self.classes_[winners]
