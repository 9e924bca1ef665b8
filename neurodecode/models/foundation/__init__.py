"""A channel-agnostic EEG foundation model: tokens are single-channel patches placed in (x, y, z, t).

Every channel of a window is cut into patches of ``patch_size`` samples at one sampling rate
(``sfreq``, 128 Hz by default); each patch is a token, embedded linearly and given a position
from its electrode's 3-D coordinates and its time in the window (Fourier features of the four
numbers through an MLP). Any montage and any length give a set of tokens the same transformer
(pre-norm blocks on :func:`torch.nn.functional.scaled_dot_product_attention`) reads. See
``docs/foundation.md``.

The token layout is :mod:`.tokens`'s.

Files of one idea each: :mod:`.tokens` (the layout and resampling), :mod:`.encoder` (the network and
its files), :mod:`.corpus` (the sharded pretraining data), :mod:`.pretraining` (masked modelling) and
:mod:`.classifier` (the scikit-learn estimator). Every public name is importable from here.

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

from .classifier import FoundationClassifier
from .corpus import CORPUS_FORMAT, EEGCorpus, write_corpus
from .encoder import FoundationEncoder, load_encoder, save_encoder, train_flops_per_sample
from .pretraining import MaskedPretrainer, pretrain
from .tokens import POSITION_SCALE, TOKEN_META, resample_trials, trials_to_tokens

__all__ = ["CORPUS_FORMAT", "EEGCorpus", "FoundationClassifier", "FoundationEncoder", "MaskedPretrainer",
           "POSITION_SCALE", "TOKEN_META", "load_encoder", "pretrain", "resample_trials", "save_encoder",
           "train_flops_per_sample", "trials_to_tokens", "write_corpus"]
