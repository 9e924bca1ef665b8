"""Model files: the round trip on real data, the card, and refusal of every file that could run code."""

import hashlib
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio

import torch
from sklearn.pipeline import make_pipeline

from neurodecode.batch import train_model
from neurodecode.contract import TRUSTED_TYPES, ModelCard, ModelFileError, load_model, read_card, save_model
from neurodecode.contract.model_file import check_storable
from neurodecode.contract.pipeline_files import load_pipelines
from neurodecode.data.registry import get_dataset
from neurodecode.models import DeepClassifier

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"


def _spec(name):
    specs, failures = load_pipelines(PIPELINES, names=[name])
    assert not failures
    return specs[0]


@pytest.fixture(scope="module")
def subject3():
    return get_dataset("eegmmidb").load([3])


@pytest.fixture(scope="module")
def cov_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "cov.ndm"
    estimator, card = train_model(_spec("COV+TS+LR"), "eegmmidb", subjects=[1, 2], cv=3, out=path)
    return estimator, card, path


def _write_model_file(path, card_bytes, model_bytes, extra=()):
    """A model file as an attacker would write it: members of their choosing, sha256s made to match."""
    manifest = {"format": "neurodecode-model", "format_version": 1,
                "sha256": {"card.json": hashlib.sha256(card_bytes).hexdigest(),
                           "model.skops": hashlib.sha256(model_bytes).hexdigest()}}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("neurodecode-model.json", json.dumps(manifest))
        archive.writestr("card.json", card_bytes)
        archive.writestr("model.skops", model_bytes)
        for name, data in extra:
            archive.writestr(name, data)
    return path


def _members(path):
    with zipfile.ZipFile(path) as archive:
        return {n: archive.read(n) for n in archive.namelist()}


# -- the round trip ----------------------------------------------------------------------------

def test_saved_cov_ts_lr_predicts_as_the_model_in_memory(cov_model, subject3):
    estimator, card, path = cov_model
    loaded, loaded_card = load_model(path)
    assert loaded is not estimator
    np.testing.assert_array_equal(loaded.predict_proba(subject3.X), estimator.predict_proba(subject3.X))
    np.testing.assert_array_equal(loaded.predict(subject3.X), estimator.predict(subject3.X))
    assert loaded_card.to_dict() == card.to_dict()
    assert read_card(path).to_dict() == card.to_dict()


def test_the_card_says_what_the_model_expects(cov_model):
    _, card, path = cov_model
    assert (card.dataset, card.subjects, card.sfreq, len(card.ch_names)) == ("eegmmidb", [1, 2], 160.0, 64)
    assert card.ch_names[:3] == ["FC5", "FC3", "FC1"]
    assert card.window == [0.0, 3.0] and card.n_times == 481  # MOABB's 0-3 s epochs, both ends included
    assert card.class_names == ["left_hand", "right_hand"]
    assert card.paradigm == {"kind": "imagery", "classes": ["left_hand", "right_hand"], "interval": [0.0, 3.0],
                             "band": [8.0, 32.0]}
    pooled = card.scores["pooled"]
    assert card.scores["metric"] == "roc_auc" and len(pooled["per_fold"]) == 3
    assert pooled["mean"] == pytest.approx(np.mean(pooled["per_fold"]))
    # Measured: ROC AUC 0.93 with 5 pooled folds on these 90 trials; 3 folds must still be far above chance.
    assert pooled["mean"] > 0.8
    assert card.pipeline_name == "COV+TS+LR" and card.pipeline_hash == _spec("COV+TS+LR").hash
    assert {"neurodecode", "numpy", "scikit-learn", "mne", "pyriemann", "skops", "torch"} <= set(card.versions)
    assert card.unit == "uV" and card.resample is False
    # The card inside the file is plain JSON, readable without neurodecode.
    assert json.loads(_members(path)["card.json"]) == card.to_dict()


@pytest.mark.slow
def test_bandpower_lda_round_trip_carries_the_fitted_rate(tmp_path, subject3):
    spec = _spec("BandPower+LDA")
    assert spec.pipeline[0].sfreq is None  # the pipeline file leaves the rate to the data
    estimator, card = train_model(spec, "eegmmidb", subjects=[1, 2], cv=3, out=tmp_path / "bp.ndm")
    loaded, _ = load_model(tmp_path / "bp.ndm")
    assert loaded[0].sfreq_ == 160.0 and loaded[0].sfreq == 160.0
    np.testing.assert_array_equal(loaded.predict(subject3.X), estimator.predict(subject3.X))
    np.testing.assert_allclose(loaded.decision_function(subject3.X), estimator.decision_function(subject3.X),
                               rtol=0, atol=0)


def test_a_card_survives_json_and_refuses_a_missing_field(cov_model):
    card = cov_model[1]
    data = json.loads(json.dumps(card.to_dict()))
    assert ModelCard.from_dict(data) == card
    data.pop("sfreq")
    with pytest.raises(ModelFileError, match=r"card lacks field\(s\) \['sfreq'\]"):
        ModelCard.from_dict(data, where="x.ndm")
    # A field a newer version adds is kept, not lost or refused.
    newer = {**card.to_dict(), "montage": "10-05"}
    assert ModelCard.from_dict(newer).to_dict()["montage"] == "10-05"


# -- what may be stored and trusted ------------------------------------------------------------

def test_every_neurodecode_transformer_is_trusted():
    import neurodecode.transforms as transforms
    from sklearn.base import BaseEstimator

    classes = [getattr(transforms, n) for n in transforms.__all__]
    paths = {f"{c.__module__}.{c.__qualname__}" for c in classes
             if isinstance(c, type) and issubclass(c, BaseEstimator)}
    assert len(paths) == 12
    assert paths <= set(TRUSTED_TYPES)
    assert not [t for t in TRUSTED_TYPES if t.split(".")[0] not in ("neurodecode", "pyriemann")]


@pytest.mark.parametrize("name", ["COV+TS+LR", "BandPower+LDA", "ACM(selected)+TS+SVM", "ACM(selected)+FgMDM",
                                  "CONN+SVM", "XDAWNCov+TS+SVM", "EEGNet", "ShallowFBCSPNet", "FBCNet", "FOUNDATION"])
def test_the_package_pipelines_can_be_stored(name):
    # Unfitted, a pipeline already names every class its fitted model holds (the fitted state adds
    # arrays and numbers); every pipeline is also trained, saved and loaded in
    # tests/contract/test_every_pipeline_model_file.py. FgMDM (ACM_FGMDM.yml) was refused before its review.
    check_storable(_spec(name).pipeline)


def _user_network(n_chans, n_outputs, n_times):
    _user_network.calls += 1
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(n_chans * n_times, n_outputs))


_user_network.calls = 0


def test_a_network_of_the_users_own_is_refused_before_training_in_one_line(tmp_path):
    pipeline = make_pipeline(DeepClassifier(_user_network, max_epochs=1, device="cpu"))
    with pytest.raises(ModelFileError) as err:
        check_storable(pipeline, what="mine", path=tmp_path / "mine.ndm")
    message = str(err.value)
    assert "\n" not in message and f"{__name__}._user_network" in message and "user's own" in message
    # train refuses it before loading data or training (the network was never built).
    with pytest.raises(ModelFileError, match="_user_network"):
        train_model(pipeline, "eegmmidb", subjects=[1], cv=2, out=tmp_path / "mine.ndm")
    assert _user_network.calls == 0 and not list(tmp_path.iterdir())
    # Fitted, the same: save_model refuses it, and nothing is written.
    X, y = _trials()
    pipeline.fit(X, y)
    with pytest.raises(ModelFileError, match="_user_network"):
        save_model(pipeline, _card(), tmp_path / "mine.ndm")
    assert not list(tmp_path.iterdir())


def test_refusal_of_an_untrusted_type_no_longer_blames_deep_pipelines(tmp_path):
    from sklearn.preprocessing import FunctionTransformer

    with pytest.raises(ModelFileError) as err:
        check_storable(make_pipeline(FunctionTransformer(_user_network)), what="p", path=tmp_path / "p.ndm")
    message = str(err.value)
    assert f"{__name__}._user_network" in message and "user's own" in message
    assert "deep" not in message and "skorch" not in message


def test_a_failed_save_leaves_the_previous_file_and_no_temporary(cov_model, tmp_path):
    estimator, card, path = cov_model
    target = tmp_path / "m.ndm"
    save_model(estimator, card, target)
    before = target.read_bytes()
    with pytest.raises(ModelFileError, match="may not hold"):
        save_model({"f": os.system}, card, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ndm"]


# -- files that would run code -----------------------------------------------------------------

class _Boom:
    """Building this object writes a file: the stand-in for any code a hostile model file would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __setstate__(self, state):
        Path(state["marker"]).write_text("code from a model file ran")


def test_a_payload_whose_loading_runs_code_is_refused(cov_model, tmp_path):
    marker = tmp_path / "marker"
    payload = sio.dumps(_Boom(marker))
    untrusted = f"{_Boom.__module__}._Boom"
    # The payload is live: loaded with its type trusted, it runs.
    sio.loads(payload, trusted=[untrusted])
    assert marker.exists()
    marker.unlink()
    card = json.dumps(cov_model[1].to_dict()).encode()
    path = _write_model_file(tmp_path / "boom.ndm", card, payload)
    with pytest.raises(ModelFileError) as err:
        load_model(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and untrusted in message and "refused" in message
    assert not marker.exists()


@pytest.mark.parametrize("module, name", [("os", "system"), ("builtins", "eval")])
def test_an_edited_payload_naming_a_dangerous_callable_is_refused(cov_model, tmp_path, module, name):
    # The attacker edits the real model's schema so that the classifier becomes os.system or eval,
    # and rewrites the manifest's sha256 to match: only the type audit stands in the way.
    members = _members(cov_model[2])
    inner = zipfile.ZipFile(io.BytesIO(members["model.skops"]))
    schema = inner.read("schema.json").decode()
    assert '"__class__": "LogisticRegression"' in schema
    schema = schema.replace('"__class__": "LogisticRegression"', f'"__class__": "{name}"').replace(
        '"__module__": "sklearn.linear_model._logistic"', f'"__module__": "{module}"')
    edited = io.BytesIO()
    with zipfile.ZipFile(edited, "w") as out:
        for item in inner.namelist():
            out.writestr(item, schema if item == "schema.json" else inner.read(item))
    path = _write_model_file(tmp_path / "edited.ndm", members["card.json"], edited.getvalue())
    with pytest.raises(ModelFileError, match=rf"refused: .*{module}\.{name}"):
        load_model(path)
    # The same file with its payload named as a function: refused too.
    function = sio.dumps({"f": getattr(__import__(module), name)})
    path = _write_model_file(tmp_path / "function.ndm", members["card.json"], function)
    with pytest.raises(ModelFileError, match=rf"refused: .*\.{name}"):
        load_model(path)


class _PickleBoom:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "code from a pickle ran"))


def test_a_smuggled_pickle_is_refused_and_never_unpickled(cov_model, tmp_path):
    marker = tmp_path / "marker"
    evil = pickle.dumps(_PickleBoom(marker))
    pickle.loads(evil)  # the pickle is live
    assert marker.exists()
    marker.unlink()
    members = _members(cov_model[2])
    # Next to a valid model...
    path = _write_model_file(tmp_path / "extra.ndm", members["card.json"], members["model.skops"],
                             extra=[("model.pkl", evil)])
    with pytest.raises(ModelFileError, match=r"refused: the archive holds member\(s\) .*\['model.pkl'\]"):
        load_model(path)
    # ... or in place of it, sha256 matching.
    path = _write_model_file(tmp_path / "swapped.ndm", members["card.json"], evil)
    with pytest.raises(ModelFileError, match="the model cannot be read"):
        load_model(path)
    assert not marker.exists()


def test_missing_damaged_and_foreign_files_are_one_line_errors(cov_model, tmp_path):
    path = cov_model[2]
    with pytest.raises(ModelFileError, match=r"model file .*nope\.ndm does not exist"):
        load_model(tmp_path / "nope.ndm")
    text = tmp_path / "notes.ndm"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="not a zip archive"):
        load_model(text)
    cut = tmp_path / "cut.ndm"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="cut.ndm"):
        load_model(cut)
    # A payload altered without updating the manifest: corruption, caught by the sha256.
    members = _members(path)
    flipped = tmp_path / "flipped.ndm"
    with zipfile.ZipFile(flipped, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data[:-1] + bytes([data[-1] ^ 1]) if name == "model.skops" else data)
    with pytest.raises(ModelFileError, match="model.skops does not match the sha256"):
        load_model(flipped)
    for bad in (tmp_path / "nope.ndm", text, cut, flipped):
        with pytest.raises(ModelFileError) as err:
            load_model(bad)
        assert "\n" not in str(err.value) and bad.name in str(err.value)


# -- damaged archives --------------------------------------------------------------------------

def _local_members(path):
    """(name, data offset, compressed size) of each member, read from the archive's own headers."""
    with zipfile.ZipFile(path) as archive:
        out = []
        for info in archive.infolist():
            raw = path.read_bytes()[info.header_offset:info.header_offset + 30]
            name_len, extra_len = int.from_bytes(raw[26:28], "little"), int.from_bytes(raw[28:30], "little")
            out.append((info.filename, info.header_offset + 30 + name_len + extra_len, info.compress_size))
        return out


def _flipped(path, out, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    out.write_bytes(bytes(data))
    return out


def test_a_flipped_byte_inside_a_deflate_stream_is_one_line_not_a_zlib_traceback(cov_model, tmp_path):
    path = cov_model[2]
    members = {name: (start, size) for name, start, size in _local_members(path)}
    start, size = members["model.skops"]
    for fraction in (0.0, 0.1, 0.5, 0.9):  # the first byte of the deflate stream gave zlib.error before the fix
        bad = _flipped(path, tmp_path / f"flip{fraction}.ndm", start + int(fraction * (size - 1)))
        with pytest.raises(ModelFileError) as err:
            load_model(bad)
        message = str(err.value)
        assert "\n" not in message and bad.name in message and "corrupt" in message


def test_every_damage_is_a_one_line_model_file_error(cov_model, tmp_path):
    path = cov_model[2]
    original = path.read_bytes()
    expected = cov_model[0].predict_proba(np.zeros((2, 64, 481)) + np.eye(64, 481))

    def outcome(bad):
        try:
            loaded, _ = load_model(bad)
        except ModelFileError as err:
            message = str(err)
            assert "\n" not in message and bad.name in message, message
            return "refused"
        # Some bytes (a timestamp, say) carry nothing: then the model is the original one.
        np.testing.assert_array_equal(loaded.predict_proba(np.zeros((2, 64, 481)) + np.eye(64, 481)), expected)
        return "loaded"

    # Flipped bytes at offsets spread over the whole file (headers, streams, central directory).
    offsets = np.unique(np.linspace(0, len(original) - 1, 60).astype(int))
    results = [outcome(_flipped(path, tmp_path / f"f{o}.ndm", int(o))) for o in offsets]
    assert results.count("refused") >= 40
    # Truncated at several lengths.
    for keep in (10, 100, len(original) // 3, len(original) - 30, len(original) - 1):
        cut = tmp_path / f"cut{keep}.ndm"
        cut.write_bytes(original[:keep])
        assert outcome(cut) == "refused"
    # A member's recorded sizes changed in its local header.
    for name, _, _ in _local_members(path):
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(name)
        for field in (18, 22):  # compressed size, uncompressed size
            data = bytearray(original)
            header = info.header_offset
            value = int.from_bytes(data[header + field:header + field + 4], "little")
            data[header + field:header + field + 4] = (value + 7).to_bytes(4, "little")
            bad = tmp_path / f"size-{name.replace('/', '_')}-{field}.ndm"
            bad.write_bytes(bytes(data))
            outcome(bad)  # refused, or (a size zipfile does not read) the same model
    # ... and in the central directory, where zipfile reads them first.
    index = original.find(b"PK\x01\x02")
    while index != -1:
        for field in (20, 24):
            data = bytearray(original)
            value = int.from_bytes(data[index + field:index + field + 4], "little")
            data[index + field:index + field + 4] = (value // 2).to_bytes(4, "little")
            bad = tmp_path / f"central-{index}-{field}.ndm"
            bad.write_bytes(bytes(data))
            assert outcome(bad) == "refused"
        index = original.find(b"PK\x01\x02", index + 4)


# -- torch networks ----------------------------------------------------------------------------

NAMES = ["C3", "C4", "Cz", "FC3"]


def _trials(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4, 160)), np.arange(n) % 2


def _card(**fields):
    base = dict(name="t", created="2026-01-01T00:00:00+00:00", neurodecode_version="0", versions={}, dataset="d",
                subjects=[1], paradigm={}, sfreq=160.0, ch_names=NAMES, window=[0.0, 159 / 160],
                class_names=["a", "b"], scores={}, pipeline_name="p", pipeline_hash="h")
    return ModelCard(**{**base, **fields})


@pytest.fixture(scope="module")
def fbcnet_file(tmp_path_factory):
    """FBCNet (parametrized max-norm layers) behind a scaler-free pipeline, saved once."""
    X, y = _trials()
    model = make_pipeline(DeepClassifier("FBCNet", sfreq=160.0, max_epochs=1, device="cpu")).fit(X, y)
    path = save_model(model, _card(), tmp_path_factory.mktemp("deep") / "fbcnet.ndm")
    return model, path


def _rewrite(path, out, change):
    """The file with ``change(members)`` applied and every sha256 made to match (as an attacker would)."""
    members = _members(path)
    change(members)
    manifest = {**json.loads(members.pop("neurodecode-model.json")), **members.pop("_manifest", {})}
    manifest["sha256"] = {n: hashlib.sha256(d).hexdigest() for n, d in members.items()}
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("neurodecode-model.json", json.dumps(manifest))
        for name, data in members.items():
            archive.writestr(name, data)
    return out


def test_deep_models_round_trip_as_config_and_safetensors(fbcnet_file, tmp_path):
    from neurodecode.models.foundation import FoundationClassifier

    model, path = fbcnet_file
    X, _ = _trials(10, seed=1)
    members = _members(path)
    assert sorted(members) == ["card.json", "model.skops", "network-0/config.json", "network-0/model.safetensors",
                               "neurodecode-model.json"]
    manifest = json.loads(members["neurodecode-model.json"])
    assert manifest["format_version"] == 2 and manifest["networks"] == ["network-0"]
    assert sorted(manifest["sha256"]) == sorted(set(members) - {"neurodecode-model.json"})
    config = json.loads(members["network-0/config.json"])
    assert (config["library"], config["class"], config["n_chans"], config["n_times"], config["n_outputs"],
            config["sfreq"]) == ("braindecode", "FBCNet", 4, 160, 2, 160.0)
    assert config["init"] == {"n_chans": 4, "n_times": 160, "n_outputs": 2, "sfreq": 160.0}
    # The skops payload holds no torch type: the network is the members', named by the step.
    assert not [t for t in sio.get_untrusted_types(data=members["model.skops"]) if "torch" in t or "braindecode" in t]
    loaded, _ = load_model(path)
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), rtol=1e-6, atol=1e-7)
    assert loaded[-1].module_ is not model[-1].module_ and not loaded[-1].module_.training
    # The foundation classifier, fine-tuned and as a linear probe, with its channels' positions.
    for mode in ("finetune", "linear"):
        params = {"patch_size": 32, "d_model": 16, "n_layers": 1, "n_heads": 2}
        clf = FoundationClassifier(encoder_params=params, mode=mode, ch_names=NAMES, sfreq=160.0, max_epochs=1,
                                   device="cpu").fit(*_trials())
        saved = save_model(clf, _card(), tmp_path / f"{mode}.ndm")
        config = json.loads(_members(saved)["network-0/config.json"])
        assert config["library"] == "neurodecode" and config["chs_info"][0]["ch_name"] == "C3"
        assert len(config["chs_info"][0]["loc"]) == 3
        again, _ = load_model(saved)
        np.testing.assert_allclose(again.predict_proba(X), clf.predict_proba(X), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("change, match", [
    (lambda c: {**c, "class": "os.system"}, "not one a model file may hold"),
    (lambda c: {**c, "library": "torch", "class": "nn.Module"}, "not one a model file may hold"),
    (lambda c: {**c, "class": "../../evil.py"}, "not one a model file may hold"),
    (lambda c: {**c, "class": "EEGModuleMixin"}, "not one a model file may hold"),
    (lambda c: {**c, "library": "user"}, "not one a model file may hold"),
    (lambda c: {**c, "init": {**c["init"], "exec_hook": "builtins.eval"}}, "declares no argument"),
    # An argument FBCNet declares, given a dotted path: passed as the string it is (never imported), it fails.
    (lambda c: {**c, "init": {**c["init"], "activation": "builtins.eval"}}, "cannot be built"),
    (lambda c: {**c, "init": {**c["init"], "n_outputs": 3}, "n_outputs": 3}, "differs from the card"),
    (lambda c: {k: v for k, v in c.items() if k != "chs_info"}, "lacks the signal field"),
])
def test_crafted_network_configs_are_refused(fbcnet_file, tmp_path, change, match):
    def edit(members):
        config = json.loads(members["network-0/config.json"])
        members["network-0/config.json"] = json.dumps(change(config)).encode()

    bad = _rewrite(fbcnet_file[1], tmp_path / "crafted.ndm", edit)
    with pytest.raises(ModelFileError, match=match) as err:
        load_model(bad)
    assert "\n" not in str(err.value) and "crafted.ndm" in str(err.value)


def test_a_pickle_in_place_of_the_weights_is_refused_and_never_unpickled(fbcnet_file, tmp_path):
    marker = tmp_path / "marker"
    evil = pickle.dumps(_PickleBoom(marker))
    weights = {"pickle": evil,
               # torch.save's own format (a zip holding a pickle), as a torch.load-based reader would accept
               "torch.save": _torch_saved(fbcnet_file[0][-1].module_.state_dict())}
    for kind, data in weights.items():
        bad = _rewrite(fbcnet_file[1], tmp_path / f"{kind}.ndm",
                       lambda m, data=data: m.update({"network-0/model.safetensors": data}))
        with pytest.raises(ModelFileError, match="is not a safetensors file") as err:
            load_model(bad)
        assert "\n" not in str(err.value)
    assert not marker.exists()


def _torch_saved(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def test_weights_of_the_wrong_shape_or_names_are_refused(fbcnet_file, tmp_path):
    from safetensors.torch import load as load_safetensors
    from safetensors.torch import save as save_safetensors

    original = load_safetensors(_members(fbcnet_file[1])["network-0/model.safetensors"])
    name = next(k for k, v in original.items() if v.ndim >= 2)
    variants = {"shape": {**original, name: torch.zeros(original[name].shape[0] + 1, *original[name].shape[1:])},
                "dtype": {**original, name: original[name].double()},
                "missing": {k: v for k, v in original.items() if k != name},
                "extra": {**original, "smuggled": torch.zeros(3)}}
    for kind, tensors in variants.items():
        bad = _rewrite(fbcnet_file[1], tmp_path / f"{kind}.ndm",
                       lambda m, t=tensors: m.update({"network-0/model.safetensors": save_safetensors(t)}))
        with pytest.raises(ModelFileError, match="do not fit the network") as err:
            load_model(bad)
        assert "\n" not in str(err.value)


def test_members_outside_the_manifest_and_mismatched_networks_are_refused(fbcnet_file, tmp_path):
    path = fbcnet_file[1]
    # A member the manifest does not list, even with its sha256 recorded.
    bad = _rewrite(path, tmp_path / "extra.ndm", lambda m: m.update({"network-0/pytorch_model.bin": b"x"}))
    with pytest.raises(ModelFileError, match=r"refused: the archive holds member\(s\)"):
        load_model(bad)
    # A second network listed that no step uses.
    def second(members):
        members["network-1/config.json"] = members["network-0/config.json"]
        members["network-1/model.safetensors"] = members["network-0/model.safetensors"]
        members["_manifest"] = {"networks": ["network-0", "network-1"]}
    with pytest.raises(ModelFileError, match="manifest lists"):
        load_model(_rewrite(path, tmp_path / "second.ndm", second))
    # A network name that is not network-N (a path, say).
    with pytest.raises(ModelFileError, match="network-N"):
        load_model(_rewrite(path, tmp_path / "path.ndm", lambda m: m.update({"_manifest": {"networks": ["../x"]}})))
    # Weights altered without their sha256: corrupt.
    members = _members(path)
    flipped = tmp_path / "flipped.ndm"
    with zipfile.ZipFile(flipped, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data[:-1] + bytes([data[-1] ^ 1]) if name.endswith(".safetensors") else data)
    with pytest.raises(ModelFileError, match="model.safetensors does not match the sha256"):
        load_model(flipped)


def test_version_1_files_still_load(cov_model, tmp_path, subject3):
    estimator, card, path = cov_model
    members = _members(path)
    old = _write_model_file(tmp_path / "v1.ndm", members["card.json"], members["model.skops"])
    assert json.loads(_members(old)["neurodecode-model.json"])["format_version"] == 1
    loaded, _ = load_model(old)
    np.testing.assert_array_equal(loaded.predict_proba(subject3.X), estimator.predict_proba(subject3.X))
    # A version 1 file has no networks: a network member in one is refused.
    with zipfile.ZipFile(old, "a") as archive:
        archive.writestr("network-0/config.json", b"{}")
    with pytest.raises(ModelFileError, match="refused"):
        load_model(old)
