"""Masked-modelling pretraining of the foundation encoder through the one :class:`~neurodecode.training.Trainer`."""

from __future__ import annotations

import math

import torch

from ...training import Trainer, TrainConfig
from ...transforms.tokenizers import PatchCodes, mean_loss
from .corpus import EEGCorpus
from .encoder import FoundationEncoder, _init_weights
from .tokens import TOKEN_META

__all__ = ["MaskedPretrainer", "pretrain"]


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
