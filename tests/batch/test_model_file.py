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

from neurodecode.batch import train_model
from neurodecode.contract import TRUSTED_TYPES, ModelCard, ModelFileError, load_model, read_card, save_model
from neurodecode.contract.model_file import check_storable
from neurodecode.contract.pipeline_files import load_pipelines
from neurodecode.data.registry import get_dataset

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
    assert card.scores["metric"] == "roc_auc" and len(card.scores["per_fold"]) == 3
    assert card.scores["mean"] == pytest.approx(np.mean(card.scores["per_fold"]))
    # Measured: ROC AUC 0.93 with 5 folds on these 90 trials; 3 folds must still be far above chance.
    assert card.scores["mean"] > 0.8
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
    assert len(paths) == 7
    assert paths <= set(TRUSTED_TYPES)
    assert not [t for t in TRUSTED_TYPES if t.split(".")[0] not in ("neurodecode", "pyriemann")]


@pytest.mark.parametrize("name", ["COV+TS+LR", "BandPower+LDA", "ACM(selected)+TS+SVM", "CONN+SVM",
                                  "XDAWNCov+TS+SVM"])
def test_the_package_pipelines_can_be_stored(name):
    # Unfitted, a pipeline already names every class its fitted model holds (the fitted state adds
    # arrays and numbers); the fitted lists were checked by hand when TRUSTED_TYPES was written.
    check_storable(_spec(name).pipeline)


@pytest.mark.parametrize("name", ["EEGNet", "ShallowFBCSPNet"])
def test_deep_pipelines_are_refused_not_pickled(name, tmp_path):
    with pytest.raises(ModelFileError, match="deep torch/skorch pipelines"):
        check_storable(_spec(name).pipeline, path=tmp_path / "deep.ndm")
    assert not list(tmp_path.iterdir())


def test_train_refuses_a_deep_pipeline_before_training(tmp_path, monkeypatch):
    import sklearn.model_selection

    def never(*args, **kwargs):  # cross-validation must not even start
        raise AssertionError("trained")

    monkeypatch.setattr(sklearn.model_selection, "cross_val_score", never)
    with pytest.raises(ModelFileError, match="ShallowFBCSPNet"):
        train_model(_spec("ShallowFBCSPNet"), "eegmmidb", subjects=[1], cv=2, out=tmp_path / "deep.ndm")
    assert not (tmp_path / "deep.ndm").exists()


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
