"""Every pipeline of pipelines/ trains through train_model, saves as a model file, and loads back predicting as
the model in memory did (classical: exactly; torch networks: within float tolerance), on real eegmmidb trials."""

from pathlib import Path

import numpy as np
import pytest

from neurodecode.contract import load_model
from neurodecode.contract.pipeline_files import load_pipelines

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
DEEP = {"EEGNet", "FBCNet", "ShallowFBCSPNet", "FOUNDATION", "EEGNet_EA", "FBCNet_EA"}
FILES = {p.stem: p.name for p in PIPELINES.iterdir() if p.suffix in (".yml", ".py")}
NAMES = sorted(FILES)


def test_the_list_is_every_pipeline_file():
    # A pipeline file added later is trained and saved here too (the parametrisation reads the folder).
    assert len(NAMES) == 14 and DEEP <= set(NAMES) and {"RCT_TS_LR", "RCT_FGMDM"} <= set(NAMES)


@pytest.fixture(scope="module")
def test_trials(dataset_dir):
    from neurodecode.data.registry import get_dataset

    dataset_dir("eegmmidb")
    return get_dataset("eegmmidb").load([3])


@pytest.mark.slow
@pytest.mark.parametrize("stem", NAMES)
def test_pipeline_trains_saves_and_loads_predicting_the_same(stem, tmp_path, monkeypatch, test_trials):
    from neurodecode.batch import train_model

    monkeypatch.setenv("NEURODECODE_DEEP_EPOCHS", "1")  # read when the .py pipeline files are loaded
    specs, failures = load_pipelines(PIPELINES / FILES[stem])
    assert not failures and len(specs) == 1
    path = tmp_path / f"{stem}.ndm"
    fitted, card = train_model(specs[0], "eegmmidb", subjects=[1, 2], cv=2, out=path)
    loaded, loaded_card = load_model(path)
    assert loaded_card.to_dict() == card.to_dict()
    X = test_trials.X[:20]
    if stem in DEEP:
        np.testing.assert_allclose(loaded.predict_proba(X), fitted.predict_proba(X), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
    else:
        np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
        scores = getattr(fitted, "predict_proba" if hasattr(fitted, "predict_proba") else "decision_function")
        np.testing.assert_array_equal(getattr(loaded, scores.__name__)(X), scores(X))
