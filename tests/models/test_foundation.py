"""The foundation model: token layout, a montage-free encoder (no channel index anywhere: permuting tokens
permutes outputs), padding, masked pretraining that learns, the sharded corpus read lazily, encoder files,
and FoundationClassifier (fine-tuning and linear probing) on synthetic and real trials."""

import json
import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch

from neurodecode.models.foundation import (EEGCorpus, FoundationClassifier, FoundationEncoder, MaskedPretrainer,
                                           load_encoder, pretrain, resample_trials, save_encoder,
                                           train_flops_per_sample, trials_to_tokens, write_corpus)
from neurodecode.training import TrainConfig
from neurodecode.transforms.tokenizers import KMeansTokenizer

SMALL = {"patch_size": 32, "sfreq": 128.0, "d_model": 32, "n_layers": 2, "n_heads": 2}


def _positions(n, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, 3))
    return 0.09 * v / np.linalg.norm(v, axis=1, keepdims=True)


def test_tokens_hold_flag_position_time_and_window_normalised_patches():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2, 3, 100)) * 7.0
    pos = _positions(3)
    tokens = trials_to_tokens(X, pos, 32, 128.0)
    assert tokens.shape == (2, 9, 5 + 32)
    scale = X[0, :, :96].std()
    # Token c * n_patches + p is patch p of channel c.
    np.testing.assert_allclose(tokens[0, 1 * 3 + 2, 5:], X[0, 1, 64:96] / scale, rtol=1e-5)
    np.testing.assert_allclose(tokens[0, 4, 1:4], pos[1] * 10, rtol=1e-6)
    np.testing.assert_allclose(tokens[1, [0, 1, 2], 4], (np.arange(3) + 0.5) * 32 / 128.0)
    assert (tokens[..., 0] == 1).all()
    with pytest.raises(ValueError, match="shorter than one patch"):
        trials_to_tokens(X[..., :10], pos, 32, 128.0)


def test_resampling_keeps_a_rhythm_and_is_identity_at_the_same_rate():
    t = np.arange(480) / 160.0
    x = np.sin(2 * np.pi * 10 * t)[None, None]
    y = resample_trials(x, 160.0, 128.0)
    assert y.shape == (1, 1, 384)
    spectrum = np.abs(np.fft.rfft(y[0, 0]))
    assert np.fft.rfftfreq(384, 1 / 128.0)[spectrum.argmax()] == pytest.approx(10.0, abs=0.4)
    np.testing.assert_array_equal(resample_trials(x, 128.0, 128.0), x.astype(np.float32))


def test_encoder_knows_no_channel_order_and_takes_any_montage():
    torch.manual_seed(0)
    encoder = FoundationEncoder(**SMALL).eval()
    rng = np.random.default_rng(1)
    tokens = torch.from_numpy(trials_to_tokens(rng.standard_normal((2, 5, 96)), _positions(5), 32, 128.0))
    order = torch.randperm(tokens.shape[1])
    with torch.no_grad():
        out = encoder(tokens)
        torch.testing.assert_close(encoder(tokens[:, order]), out[:, order], rtol=1e-4, atol=1e-5)
        # Another montage (12 channels) and length (5 patches) through the same weights.
        other = torch.from_numpy(trials_to_tokens(rng.standard_normal((2, 12, 160)), _positions(12, 2), 32, 128.0))
        assert encoder(other).shape == (2, 60, 32)
        # Positions matter: the same samples at other electrodes give other embeddings.
        moved = tokens.clone()
        moved[..., 1:4] = moved[..., 1:4].flip(-1)
        assert not torch.allclose(encoder(moved), out, atol=1e-3)


def test_padding_tokens_are_ignored():
    torch.manual_seed(0)
    encoder = FoundationEncoder(**SMALL).eval()
    tokens = torch.from_numpy(trials_to_tokens(np.random.default_rng(2).standard_normal((2, 4, 64)), _positions(4),
                                               32, 128.0))
    padded = torch.cat([tokens, torch.randn(2, 3, tokens.shape[2]) * torch.tensor([0.0] + [1.0] * 36)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(encoder.pooled(padded), encoder.pooled(tokens, padded=False), rtol=1e-4,
                                   atol=1e-5)
        torch.testing.assert_close(encoder(padded)[:, :8], encoder(tokens, padded=False), rtol=1e-4, atol=1e-5)


def test_flops_count_parameters_and_attention():
    encoder = FoundationEncoder(**SMALL)
    params = sum(p.numel() for p in encoder.parameters())
    assert train_flops_per_sample(encoder, 100, 32, 2) == 6 * params * 100 + 12 * 2 * 100 ** 2 * 32


def _corpus(tmp_path, n_recordings=6, seed=0):
    """Recordings of 8 or 4 channels at 128 Hz: each channel a rhythm whose frequency follows the electrode's
    height (so masked patches are predictable from their neighbours' positions and content)."""
    rng = np.random.default_rng(seed)
    records = []
    for r in range(n_recordings):
        n_chans = 8 if r % 2 == 0 else 4
        pos = _positions(n_chans, r)
        t = np.arange(128 * 20) / 128.0
        freq = 8 + 20 * (pos[:, 2:3] / 0.09 + 1) / 2
        data = 20 * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6, (n_chans, 1))) + rng.standard_normal(
            (n_chans, len(t)))
        records.append({"data": data, "positions": pos, "ch_names": [f"E{i}" for i in range(n_chans)],
                        "dataset": "synthetic", "subject": r})
    manifest = write_corpus(records, tmp_path / "corpus", sfreq=128.0, shard_mb=0.05)
    return manifest, records


def test_corpus_shards_are_read_lazily_and_windows_are_the_recordings(tmp_path):
    manifest, records = _corpus(tmp_path)
    assert len(manifest["shards"]) > 1 and manifest["n_recordings"] == 6
    corpus = EEGCorpus(tmp_path / "corpus", n_tokens=32, patch_size=32, samples_per_epoch=50)
    assert len(corpus) == 50 and not corpus.padded and corpus._open == {}
    for i in range(10):
        data, pos, record = corpus.window(i)
        source = records[record["subject"]]
        n_patches = 32 // source["data"].shape[0]
        assert data.shape == (source["data"].shape[0], n_patches * 32)
        # The window is a stretch of its recording (float16 on disk).
        starts = [s for s in range(source["data"].shape[1] - data.shape[1] + 1)
                  if np.allclose(source["data"][0, s:s + 8], data[0, :8], atol=0.02)]
        assert starts and np.allclose(source["data"][:, starts[0]:starts[0] + data.shape[1]], data, atol=0.02)
        np.testing.assert_allclose(pos, source["positions"], atol=1e-6)
    x, y = corpus[3]
    assert x.shape == (32, 5 + 32) and x.dtype == torch.float16 and y == 0
    torch.testing.assert_close(corpus[3][0], x)  # item i is always the same window
    # Shards listed one by one, and recordings filtered by their metadata.
    shards = sorted((tmp_path / "corpus").glob("shard-*.json"))
    kept = EEGCorpus(shards, n_tokens=32, patch_size=32, include=lambda r: r["subject"] != 0)
    assert {r["subject"] for r in kept.recordings} == {1, 2, 3, 4, 5}
    # Pickled into DataLoader workers without its open memory maps.
    corpus[0]
    assert corpus._open and pickle.loads(pickle.dumps(corpus))._open == {}
    loader = torch.utils.data.DataLoader(corpus, batch_size=10, num_workers=1)
    torch.testing.assert_close(next(iter(loader))[0], torch.stack([corpus[i][0] for i in range(10)]))
    with pytest.raises(FileNotFoundError, match="corpus folder"):
        EEGCorpus(tmp_path / "nothing")
    assert json.loads((tmp_path / "corpus" / "corpus.json").read_text())["sfreq"] == 128.0


def test_corpus_pads_windows_of_channel_counts_that_do_not_divide_the_sequence(tmp_path):
    write_corpus([{"data": np.ones((3, 400)), "positions": _positions(3), "ch_names": list("abc")}], tmp_path,
                 sfreq=128.0)
    corpus = EEGCorpus(tmp_path, n_tokens=32, patch_size=32)
    x, _ = corpus[0]
    assert corpus.padded and x.shape == (32, 37)
    assert x[:, 0].sum() == 3 * 10 and (x[30:, 0] == 0).all()  # 3 channels x 10 patches, then padding


def test_corpus_keeps_amplitudes_beyond_float16_range(tmp_path):
    # A file in the wrong unit (volts read as microvolts) must not overflow float16 on disk.
    data = 1e6 * np.random.default_rng(0).standard_normal((2, 256))
    write_corpus([{"data": data, "positions": _positions(2), "ch_names": ["a", "b"]}], tmp_path, sfreq=128.0)
    corpus = EEGCorpus(tmp_path, n_tokens=8, patch_size=64)
    window, _, record = corpus.window(0)
    assert np.isfinite(window).all() and record["scale"] == pytest.approx(data.std())
    start = int(np.argmin(np.abs(data[0] - window[0, 0])))
    np.testing.assert_allclose(window, data[:, start:start + 256], rtol=2e-3, atol=2e-3 * data.std())


def test_masked_code_pretraining_learns(tmp_path):
    _corpus(tmp_path)
    corpus = EEGCorpus(tmp_path / "corpus", n_tokens=32, patch_size=32, samples_per_epoch=256)
    tokenizer = KMeansTokenizer(16, 32).fit(np.stack([corpus.window(i)[0][:4, :64] for i in range(64)]))
    torch.manual_seed(0)
    encoder = FoundationEncoder(**SMALL)
    config = TrainConfig(max_epochs=8, batch_size=32, lr=3e-3, device="cpu", val_fraction=0.25, patience=None,
                         restore_best=False, compile=False)
    result = pretrain(corpus, encoder, config, tokenizer=tokenizer)
    assert result.model.encoder is encoder
    first, last = result.history[0]["val_loss"], result.history[-1]["val_loss"]
    assert last < 0.8 * first and last < np.log(16)  # better than a uniform guess over the 16 codes
    # The reconstruction objective runs through the same path.
    again = pretrain(corpus, FoundationEncoder(**SMALL), TrainConfig(max_epochs=2, batch_size=32, device="cpu",
                                                                     val_fraction=0.25, compile=False))
    assert isinstance(again.model, MaskedPretrainer) and again.model.targets is None
    with pytest.raises(ValueError, match="Hz"):
        pretrain(corpus, FoundationEncoder(**{**SMALL, "sfreq": 100.0}), config)


def test_encoder_files_round_trip_strictly(tmp_path):
    torch.manual_seed(0)
    encoder = FoundationEncoder(**SMALL).eval()
    path = save_encoder(encoder, tmp_path / "enc.pt")
    again = load_encoder(path)
    tokens = torch.from_numpy(trials_to_tokens(np.random.default_rng(0).standard_normal((1, 2, 64)), _positions(2),
                                               32, 128.0))
    with torch.no_grad():
        torch.testing.assert_close(again(tokens), encoder(tokens))
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an encoder"):
        load_encoder(tmp_path / "other.pt")


def _lateralised(n, seed, n_chans=8, n_times=320, sfreq=160.0):
    """Class 0: a 12 Hz rhythm on channels 0-1; class 1: on channels 2-3; in noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.standard_normal((n, n_chans, n_times))
    t = np.arange(n_times) / sfreq
    wave = 3 * np.sin(2 * np.pi * 12 * t[None] + rng.uniform(0, 6, (n, 1)))
    X[y == 0, 0:2] += wave[y == 0, None]
    X[y == 1, 2:4] += wave[y == 1, None]
    return X, np.where(y == 0, "a", "b")


@pytest.mark.parametrize("mode", ["linear", "finetune"])
def test_classifier_learns_from_a_saved_encoder_and_keeps_its_contract(tmp_path, mode):
    torch.manual_seed(0)
    path = save_encoder(FoundationEncoder(**SMALL), tmp_path / "enc.pt")
    X, y = _lateralised(80, 0)
    Xt, yt = _lateralised(40, 1)
    params = dict(mode=mode, positions=_positions(8), sfreq=160.0, device="cpu", lr=1e-3, max_epochs=25,
                  val_fraction=0.0, patience=None)
    clf = FoundationClassifier(str(path), **params).fit(X, y)
    assert clf.embed(Xt).shape == (40, 32) and clf.predict_proba(Xt).shape == (40, 2)
    assert (clf.probe_ is None) == (mode == "finetune")
    if mode == "finetune":
        assert (clf.predict(Xt) == yt).mean() > 0.85
        assert clf.history_ and clf.module_.training is False
    else:
        # The probe is a logistic regression on the frozen encoder's pooled embeddings, nothing more.
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(clf.embed(X))
        by_hand = LogisticRegression(max_iter=1000).fit(scaler.transform(clf.embed(X)),
                                                        np.searchsorted(clf.classes_, y))
        np.testing.assert_allclose(clf.predict_proba(Xt), by_hand.predict_proba(scaler.transform(clf.embed(Xt))),
                                   rtol=1e-6, atol=1e-8)
        torch.testing.assert_close(clf.module_.encoder.state_dict(), load_encoder(path).state_dict())
    # A pretrained encoder passed as an object is copied, never trained in place.
    encoder = load_encoder(path)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    FoundationClassifier(encoder, **{**params, "max_epochs": 2}).fit(X, y)
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    with pytest.raises(ValueError, match="electrode positions are unknown"):
        FoundationClassifier(**{**params, "positions": None}).fit(X, y)
    with pytest.raises(ValueError, match=r"positions must be .*\(8, 3\)"):
        FoundationClassifier(**{**params, "positions": _positions(7)}).fit(X, y)
    with pytest.raises(ValueError, match="encoder_params is for a new encoder"):
        FoundationClassifier(str(path), encoder_params=SMALL, **params).fit(X, y)


@pytest.mark.slow
def test_real_eegmmidb_positions_come_from_the_montage(eegmmidb_two_subjects):
    data = eegmmidb_two_subjects.select(subject=[1])
    assert data.info.positions is not None and data.info.positions.shape == (64, 3)
    clf = FoundationClassifier(encoder_params=SMALL, mode="linear", device="cpu").fit(data, data.y)
    np.testing.assert_allclose(clf.positions_, data.info.positions)
    assert clf.sfreq_ == 160.0 and clf.predict_proba(data).shape == (45, 2)
    from neurodecode.data import DecodingData

    other = eegmmidb_two_subjects.select(subject=[2])
    order = np.arange(64)[::-1]
    info = replace(other.info, ch_names=tuple(np.array(other.info.ch_names)[order]),
                   ch_types=tuple(np.array(other.info.ch_types)[order]), positions=other.info.positions[order])
    with pytest.raises(ValueError, match="channels differ from those fitted"):
        clf.predict(DecodingData(other.X[:, order], other.y, other.metadata, info))


def test_positions_from_channel_names_on_the_standard_montage():
    from neurodecode.models.published import standard_positions

    names = ["C3", "C4", "Cz", "FC3", "FC4", "CP3", "CP4", "C1"]
    X, y = _lateralised(20, 0)
    clf = FoundationClassifier(encoder_params=SMALL, ch_names=names, sfreq=160.0, mode="linear", device="cpu")
    clf.fit(X, y)
    np.testing.assert_allclose(clf.positions_, standard_positions(names))
    assert clf.ch_names_ == tuple(names) and np.isfinite(clf.positions_).all()
    with pytest.raises(ValueError, match=r"channels \['Foo'\] are not on the standard 10-05 montage"):
        FoundationClassifier(encoder_params=SMALL, ch_names=names[:-1] + ["Foo"], sfreq=160.0).fit(X, y)


def test_pseudo_online_evaluation_takes_the_classifier():
    from neurodecode.evaluation.pseudo_online import evaluate_fold

    X, y = _lateralised(60, 3, n_times=160)
    labels = (y == "b").astype(int)
    clf = FoundationClassifier(encoder_params=SMALL, positions=_positions(8), sfreq=160.0, max_epochs=20, lr=1e-3,
                               val_fraction=0.0, patience=None, device="cpu")
    result = evaluate_fold(clf, X[:40], labels[:40], X[40:], labels[40:], n_classes=2, decision_interval_s=0.5)
    assert result["n_test"] == 20 and len(result["y_pred"]) == 20 and np.isfinite(result["nmcc"])
    assert result["balanced_accuracy"] >= 0.75


@pytest.mark.slow
def test_pipeline_file_runs_on_plain_arrays_once_the_benchmark_binds_the_signal(eegmmidb_two_subjects, monkeypatch):
    """As the benchmark hands MOABB's arrays to pipelines: rate and channel names bound, positions looked up."""
    from pathlib import Path

    from neurodecode.contract.pipeline_files import load_pipelines
    from neurodecode.transforms.signal import bind_signal_info

    monkeypatch.setenv("NEURODECODE_DEEP_EPOCHS", "1")
    monkeypatch.delenv("NEURODECODE_FOUNDATION_ENCODER", raising=False)
    (spec,), failures = load_pipelines(Path(__file__).resolve().parents[2] / "pipelines" / "FOUNDATION.py")
    assert failures == [] and spec.name == "FOUNDATION" and "LeftRightImagery" in spec.paradigms
    data = eegmmidb_two_subjects.select(subject=[1])
    pipe = bind_signal_info(spec.pipeline, data).set_params(foundationclassifier__device="cpu")
    pipe.fit(data.X[:30], data.y[:30])
    clf = pipe[-1]
    assert clf.sfreq_ == 160.0 and clf.ch_names_ == data.info.ch_names and len(clf.history_) == 1
    assert pipe.predict_proba(data.X[30:]).shape == (15, 2)
