"""Published foundation models behind the channel contract: braindecode's LaBraM and BIOT saved from random
initialisations into local folders (no hub here), loaded strictly, channels matched by name and position,
missing and extra channels reported, every weight key accounted for."""

import json
import warnings

import numpy as np
import pytest
import torch

from neurodecode.models.published import load_published, match_channels, normalise_name


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # braindecode's and MNE's montage notices
        yield


def _montage_chs(names):
    import mne

    info = mne.create_info(list(names), 200.0, "eeg")
    info.set_montage("standard_1005")
    return [dict(ch) for ch in info["chs"]], np.array([ch["loc"][:3] for ch in info["chs"]])


def _save(model, folder):
    """A model folder as braindecode's ``save_pretrained`` writes it (config.json, model.safetensors and
    pytorch_model.bin), without needing huggingface_hub."""
    from safetensors.torch import save_file

    (folder / "config.json").write_text(json.dumps(model.get_config()))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    torch.save(state, folder / "pytorch_model.bin")
    return folder


@pytest.fixture(scope="module")
def labram(tmp_path_factory):
    from braindecode.models import Labram

    torch.manual_seed(0)
    model = Labram(n_times=400, n_outputs=2, n_chans=4, sfreq=200, num_layers=1, embed_dim=40, num_heads=4).eval()
    return model, _save(model, tmp_path_factory.mktemp("labram"))


@pytest.fixture(scope="module")
def biot(tmp_path_factory):
    from braindecode.models import BIOT

    torch.manual_seed(1)
    chs, _ = _montage_chs(["C3", "C4", "Cz", "Pz"])
    model = BIOT(n_chans=4, n_times=400, sfreq=200, n_outputs=2, num_layers=1, embed_dim=32, chs_info=chs).eval()
    return model, _save(model, tmp_path_factory.mktemp("biot"))


def test_names_are_normalised_for_matching():
    assert normalise_name("EEG C3-REF") == normalise_name("c3..") == normalise_name("C3") == "C3"
    assert normalise_name("T3") == "T3" and normalise_name("T3", aliases=True) == "T7"


def test_matching_by_name_then_position_and_reporting_the_rest():
    _, model_pos = _montage_chs(["C3", "C4", "Cz", "T7", "Pz"])
    user = ["c3..", "Cz", "E17", "T3", "Xx"]
    user_pos = np.full((5, 3), np.nan)
    user_pos[2] = model_pos[1] + [0.002, 0.0, 0.0]  # 2 mm from C4, under another name
    user_pos[4] = model_pos[4] + [0.05, 0.0, 0.0]   # 5 cm from Pz: too far to be Pz
    match = match_channels(["C3", "C4", "Cz", "T7", "Pz"], user, model_pos, user_pos, max_distance_mm=10)
    assert match.index == (0, 2, 1, 3, -1)
    assert match.by_name == (("C3", "c3.."), ("Cz", "Cz"), ("T7", "T3"))
    assert [(m, u) for m, u, _ in match.by_position] == [("C4", "E17")]
    assert match.by_position[0][2] == pytest.approx(2.0, abs=1e-6)
    assert match.missing == ("Pz",) and match.extra == ("Xx",)
    assert "missing: ['Pz']" in match.summary() and "C4 <- E17 (2.0 mm)" in match.summary()
    # A model listing both the old and the new name of one electrode gets the user's channel once.
    twice = match_channels(["T3", "T7"], ["T7"])
    assert sorted(twice.index) == [-1, 0]
    with pytest.raises(ValueError, match="same electrode"):
        match_channels(["T7"], ["T3", "t7"])


def test_labram_loads_strictly_and_takes_the_channels_present(labram):
    model, folder = labram
    module, report = load_published(folder, ["C3..", "Cz..", "C4..", "Foo"], model="Labram")
    assert report.keys_loaded == len(model.state_dict()) and not report.keys_dropped
    assert report.channels.extra == ("Foo",) and len(report.channels.missing) == 128 - 3
    for key, value in model.state_dict().items():
        torch.testing.assert_close(module.model.state_dict()[key], value)
    x = torch.randn(2, 4, 400)
    with torch.no_grad():
        torch.testing.assert_close(module(x), model(x[:, [0, 2, 1]], ch_names=["C3", "C4", "CZ"]))
    with pytest.raises(ValueError, match="contract was made for 4"):
        module(x[:, :3])
    with pytest.raises(ValueError, match="none of the channels"):
        load_published(folder, ["Foo", "Bar"], model="Labram")


def test_fixed_montage_models_refuse_missing_channels_unless_zero_filled(biot):
    model, folder = biot
    with pytest.raises(ValueError, match=r"missing from the data: \['Pz'\]; pass on_missing='zero'"):
        load_published(folder, ["C3", "C4", "Cz"], model="BIOT")
    module, report = load_published(folder, ["Oz", "Cz", "C4", "C3"], model="BIOT", on_missing="zero")
    assert report.filled_with_zeros == ("Pz",) and report.channels.extra == ("Oz",)
    x = torch.randn(3, 4, 400)
    expected_input = torch.stack([x[:, 3], x[:, 2], x[:, 1], torch.zeros_like(x[:, 0])], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(module(x), model(expected_input))
    assert "fed zeros (on_missing='zero'): ['Pz']" in report.summary()


def test_pytorch_bin_weights_load_the_same(biot, tmp_path):
    model, folder = biot
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes((folder / "pytorch_model.bin").read_bytes())
    module, report = load_published(tmp_path, ["C3", "C4", "Cz", "Pz"], model="BIOT")
    assert report.weights_file == "pytorch_model.bin" and report.keys_loaded == len(model.state_dict())
    x = torch.randn(2, 4, 400)
    with torch.no_grad():
        torch.testing.assert_close(module(x), model(x))


def test_every_weight_key_is_accounted_for(biot, tmp_path):
    from safetensors.torch import load_file, save_file

    model, folder = biot
    state = load_file(str(folder / "model.safetensors"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((folder / "config.json").read_text())
    head = sorted(k for k in state if k.startswith("final_layer"))
    save_file({k: v for k, v in state.items() if k not in head}, str(broken / "model.safetensors"))
    with pytest.raises(ValueError, match=r"keys of the model not in the file \['final_layer"):
        load_published(broken, ["C3", "C4", "Cz", "Pz"], model="BIOT")
    # Left out on purpose: loaded, and the keys reported as re-initialised.
    _, report = load_published(broken, ["C3", "C4", "Cz", "Pz"], model="BIOT", drop=["final_layer.*"])
    assert list(report.keys_reinitialised) == head
    save_file({**state, "stray.weight": torch.zeros(2)}, str(broken / "model.safetensors"))
    with pytest.raises(ValueError, match=r"keys in the file but not the model \['stray.weight'\]"):
        load_published(broken, ["C3", "C4", "Cz", "Pz"], model="BIOT")
    _, report = load_published(broken, ["C3", "C4", "Cz", "Pz"], model="BIOT", drop=["stray.*"])
    assert report.keys_dropped == ("stray.weight",) and not report.keys_reinitialised
    wrong = dict(state)
    first = next(k for k in state if state[k].ndim == 2)
    wrong[first] = torch.zeros(state[first].shape[0] + 1, state[first].shape[1])
    save_file(wrong, str(broken / "model.safetensors"))
    with pytest.raises(ValueError, match="another shape"):
        load_published(broken, ["C3", "C4", "Cz", "Pz"], model="BIOT")


def test_a_new_head_is_reported_and_other_weights_kept(biot):
    model, folder = biot
    module, report = load_published(folder, ["C3", "C4", "Cz", "Pz"], model="BIOT", n_outputs=5)
    assert report.keys_reinitialised and all(k.startswith("final_layer") for k in report.keys_reinitialised)
    with torch.no_grad():
        assert module(torch.randn(2, 4, 400)).shape == (2, 5)
    for key, value in model.state_dict().items():
        if key not in report.keys_reinitialised:
            torch.testing.assert_close(module.model.state_dict()[key], value)


def test_folders_without_what_is_needed_are_refused(tmp_path, biot):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_published(tmp_path, ["C3"])
    (tmp_path / "config.json").write_text((biot[1] / "config.json").read_text())
    with pytest.raises(ValueError, match="does not name its model class"):
        load_published(tmp_path, ["C3"])
    with pytest.raises(FileNotFoundError, match="neither model.safetensors"):
        load_published(tmp_path, ["C3", "C4", "Cz", "Pz"], model="BIOT")
    config = json.loads((biot[1] / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "chs_info": None}))
    with pytest.raises(ValueError, match="no chs_info"):
        load_published(tmp_path, ["C3"], model="BIOT")


@pytest.mark.parametrize("name, params", [
    ("CBraMod", {"n_layer": 1, "emb_dim": 200, "dim_feedforward": 64, "nhead": 4}),
    ("EEGPT", {"depth": 1, "embed_dim": 64, "num_heads": 4, "patch_size": 50, "patch_stride": 50})])
def test_other_published_models_load_the_same_way(name, params, tmp_path):
    import braindecode.models

    torch.manual_seed(2)
    chs, positions = _montage_chs(["C3", "C4", "Cz", "Pz"])
    model = getattr(braindecode.models, name)(n_chans=4, n_times=400, sfreq=200, n_outputs=2, chs_info=chs,
                                              **params).eval()
    _save(model, tmp_path)
    # The user's channels in another order, one of them known only by its position.
    user = ["Pz", "Cz", "E9", "C3"]
    module, report = load_published(tmp_path, user, positions[[3, 2, 1, 0]], model=name)
    assert report.channels.by_position[0][:2] == ("C4", "E9") and report.keys_loaded == len(model.state_dict())
    x = torch.randn(2, 4, 400)
    with torch.no_grad():
        torch.testing.assert_close(module(x), model(x[:, [3, 2, 1, 0]]))
