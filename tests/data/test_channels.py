"""The one channel-naming rule (data.channels), as the signal contract applies it to real eegmmidb EDF runs
whose labels are respelled the ways EDF writers spell them."""

import mne
import numpy as np
import pytest

from neurodecode.contract import ContractError, match_recording
from neurodecode.contract.model_file import ModelCard
from neurodecode.data.channels import describe_unmatched, match_names, normalise_name
from neurodecode.data.datasets.eegmmidb import read_eegmmidb_run

EDF = "eegmmidb/MNE-eegbci-data/files/eegmmidb/1.0.0/S003/S003R04.edf"


def _card(ch_names) -> ModelCard:
    return ModelCard(name="test model", created="2026-01-01T00:00:00+00:00", neurodecode_version="0", versions={},
                     dataset="eegmmidb", subjects=[3], paradigm={}, sfreq=160.0, ch_names=list(ch_names),
                     window=[0.0, 3.0], class_names=["left_hand", "right_hand"], scores={}, pipeline_name="p",
                     pipeline_hash="0")


@pytest.fixture(scope="module")
def standard(dataset_dir):
    """S003R04 with its 10-05 names (FC5, Cz...): the names a model trained on eegmmidb has."""
    dataset_dir("eegmmidb")
    return read_eegmmidb_run(3, 4)


@pytest.fixture(scope="module")
def edf(data_root):
    """The same run as PhysioNet's EDF labels it ("Fc5.", "Cz.."), unrenamed."""
    return mne.io.read_raw_edf(data_root / EDF, preload=True, verbose="error")


def _respelled(edf, standard):
    """The EDF's labels in the five usual spellings in turn: EEG Fc5, Fc5-REF, EEG FC5-Ref, Fc5., FC5 ."""
    spell = [lambda e, s: f"EEG {e.strip('.')}", lambda e, s: f"{e.strip('.')}-REF",
             lambda e, s: f"EEG {s.upper()}-Ref", lambda e, s: e, lambda e, s: f"{s.upper()} "]
    mapping = {e: spell[i % 5](e, s) for i, (e, s) in enumerate(zip(edf.ch_names, standard.ch_names))}
    return edf.copy().rename_channels(mapping), mapping


def test_the_rule_reduces_every_usual_spelling_to_one_name():
    for spelling in ("EEG Fc5", "Fc5-REF", "EEG FC5-Ref", "Fc5.", "FC5 ", "fc5..", "EEG_FC5", "FC5-LE"):
        assert normalise_name(spelling) == "FC5", spelling
    assert normalise_name("T3") == "T3" and normalise_name("EEG T3-REF", aliases=True) == "T7"
    match = match_names(["FC5", "Cz", "T7", "C3"], ["Cz", "EEG Fc5", "T3", "Pz"])
    assert match.index == (1, 0, 2, -1) and match.missing == ("C3",)
    assert match.renamed == {"EEG Fc5": "FC5", "T3": "T7"}
    # An exact name wins; a model listing both T3 and T7 gets the one channel once.
    assert match_names(["T3", "T7"], ["T7"]).index == (-1, 0)
    # Two spellings of one electrode: neither is taken, and the line says so.
    ambiguous = match_names(["Cz", "C3"], ["EEG Cz", "Cz-REF", "C3"])
    assert ambiguous.index == (-1, 2) and ambiguous.ambiguous == {"Cz": ("EEG Cz", "Cz-REF")}
    assert describe_unmatched(ambiguous) == ("1 of 2 model channels not found: Cz "
                                             "(Cz is ambiguous: 'EEG Cz' or 'Cz-REF')")


def test_the_usual_edf_spellings_of_a_real_run_are_matched(edf, standard):
    respelled, mapping = _respelled(edf, standard)
    assert respelled.ch_names[:5] == ["EEG Fc5", "Fc3-REF", "EEG FC1-Ref", "Fcz.", "FC2 "]
    matched, report = match_recording(respelled, _card(standard.ch_names))
    assert matched.ch_names == standard.ch_names
    assert report["renamed"] == {mapping[e]: s for e, s in zip(edf.ch_names, standard.ch_names)}
    assert len(report["renamed"]) == 64 and report["renamed"]["EEG Fc5"] == "FC5"
    # Same samples as the loader's own renaming (by montage lookup) of the same file.
    np.testing.assert_array_equal(matched.get_data(), standard.get_data())


def test_respelled_labels_survive_an_edf_file_and_are_matched(edf, standard, tmp_path):
    pytest.importorskip("edfio")
    respelled, _ = _respelled(edf, standard)
    # Old 10-20 names too, as older montages label the temporal electrodes.
    respelled.rename_channels({respelled.ch_names[standard.ch_names.index("T7")]: "EEG T3-REF",
                               respelled.ch_names[standard.ch_names.index("T8")]: "T4"})
    path = tmp_path / "respelled.edf"
    mne.export.export_raw(path, respelled, fmt="edf", verbose="error")
    written = mne.io.read_raw_edf(path, preload=True, verbose="error")
    assert "EEG T3-REF" in written.ch_names and "EEG Fc5" in written.ch_names
    matched, report = match_recording(written, _card(standard.ch_names))
    assert matched.ch_names == standard.ch_names
    assert report["renamed"]["EEG T3-REF"] == "T7" and report["renamed"]["T4"] == "T8"
    # EDF keeps 16-bit samples of the data's range: equal up to one quantisation step.
    step = np.ptp(standard.get_data()) / 65535
    np.testing.assert_allclose(matched.get_data(), standard.get_data(), rtol=0, atol=step)


def test_missing_channels_are_one_short_line_that_says_why(edf, standard):
    respelled, mapping = _respelled(edf, standard)
    dropped = [mapping[edf.ch_names[standard.ch_names.index(name)]] for name in ("C3", "Cz", "C4")]
    partial = respelled.copy().drop_channels(dropped)
    with pytest.raises(ContractError) as err:
        match_recording(partial, _card(standard.ch_names))
    message = str(err.value)
    assert message == ("S003R04.edf: 3 of 64 model channels not found: C3, Cz, C4 (no recording channel matches, "
                       "even ignoring case, 'EEG ' prefixes, '-REF' suffixes, dots, T3=T7 names)")
    assert len(message) < 170 and "\n" not in message
    # Many missing: counted, the first five named.
    few = respelled.copy().pick(respelled.ch_names[:4])
    with pytest.raises(ContractError) as err:
        match_recording(few, _card(standard.ch_names))
    assert "60 of 64 model channels not found: " in str(err.value) and " and 55 more (" in str(err.value)
    assert len(str(err.value)) < 200


def test_two_spellings_of_one_electrode_are_refused_not_guessed(edf, standard):
    cz = edf.copy().pick(["Cz.."]).rename_channels({"Cz..": "Cz-REF"})
    doubled = edf.copy().rename_channels({"Cz..": "EEG Cz"}).add_channels([cz], force_update_info=True)
    with pytest.raises(ContractError, match=r"1 of 64 model channels not found: Cz \(Cz is ambiguous: "
                                            r"'EEG Cz' or 'Cz-REF'\)$"):
        match_recording(doubled, _card(standard.ch_names))
