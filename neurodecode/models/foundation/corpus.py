"""The pretraining corpus on disk: float16 shards written by :func:`write_corpus`, read lazily by :class:`EEGCorpus`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from .tokens import trials_to_tokens

__all__ = ["CORPUS_FORMAT", "EEGCorpus", "write_corpus"]

#: The corpus format this module writes and reads.
CORPUS_FORMAT = 1


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
