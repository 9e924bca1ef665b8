"""fMRI and image loaders on the real data: Haxby, ABIDE, digit69, MNIST, and the space guard."""

import gzip
import shutil

import nibabel as nib
import numpy as np
import pytest
import scipy.io

from neurodecode.data.datasets.abide import load_abide, read_roi_signals
from neurodecode.data.datasets.digit69 import load_digit69, load_digit69_images, load_mnist, read_digit69_mat, read_idx
from neurodecode.data.errors import (ChecksumMismatchError, CorruptFileError, DataNotFoundError,
                                     EmptySelectionError, InvalidDataError, SpaceMismatchError)
from neurodecode.data.io.fmri import (check_same_space, describe_space, extract_atlas_signals, mask_runs,
                                   read_nifti)
from neurodecode.data.datasets.haxby import CATEGORIES, load_haxby, read_attributes

HAXBY, ATLASES, ABIDE = "haxby2001_subj1_pymvpa", "abide_pcp_atlases", "abide_pcp_aal116_100subj"
CEREBELLAR_COLUMNS = set(range(100, 108)) | {113, 114, 115}


@pytest.fixture
def real_data(data_root, isolated_cache, monkeypatch):
    monkeypatch.setenv("NEURODECODE_DATA", str(data_root))
    return data_root


# -- Haxby -------------------------------------------------------------------------------------

def test_haxby_shapes_runs_and_classes(real_data):
    data = load_haxby()
    assert data.X.shape == (1452, 530)
    assert data.info.class_names == CATEGORIES + ("rest",)
    assert data.class_counts() == {**{c: 108 for c in CATEGORIES}, "rest": 588}
    meta = data.metadata
    assert sorted(meta["run"].unique(), key=int) == [str(r) for r in range(1, 13)]
    assert (meta.groupby("run").size() == 121).all()
    assert (meta["session"] == meta["run"]).all() and (meta["subject"] == 1).all()
    assert (meta["dataset"] == "haxby2001").all()
    assert meta["onset"].iloc[:3].tolist() == [0.0, 2.5, 5.0] and meta["onset"].max() == 120 * 2.5
    assert data.info.sfreq == pytest.approx(1 / 2.5) and data.info.modality == "fmri"
    assert len(data.info.ch_names) == 530 and set(data.info.ch_types) == {"misc"}
    # Same numbers as masking the volumes by hand.
    bold = nib.load(real_data / HAXBY / "bold.nii.gz")
    mask = np.asanyarray(nib.load(real_data / HAXBY / "mask.nii.gz").dataobj) != 0
    np.testing.assert_allclose(data.X[:5], bold.get_fdata()[mask][:, :5].T)


def test_haxby_hrf_shift_moves_labels_within_runs(real_data):
    plain = load_haxby()
    shifted = load_haxby(hrf_shift=2)
    assert shifted.X.shape == (1452 - 12 * 2, 530)
    assert (shifted.metadata.groupby("run")["volume"].min() == 2).all()
    original = read_attributes(real_data / HAXBY / "attributes_literal.txt")["label"].to_numpy()
    rows = np.nonzero(plain.metadata["volume"].to_numpy() >= 2)[0]
    np.testing.assert_array_equal(shifted.labels, original[rows - 2])
    np.testing.assert_array_equal(shifted.X, plain.X[rows])  # the volumes stay; only labels move
    assert shifted.class_counts() == {**{c: 108 for c in CATEGORIES}, "rest": 588 - 24}

    no_rest = load_haxby(hrf_shift=2, drop_rest=True)
    assert no_rest.X.shape == (864, 530) and no_rest.info.class_names == CATEGORIES
    assert no_rest.class_counts() == {c: 108 for c in CATEGORIES}
    # A category keeps its label index whether rest is dropped or not.
    assert no_rest.y[0] == CATEGORIES.index(no_rest.labels[0])
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="hrf_shift"):
            load_haxby(hrf_shift=bad)


def test_haxby_standardize_per_run(real_data):
    data = load_haxby(standardize=True)
    for _, rows in data.metadata.groupby("run").groups.items():
        block = data.X[np.asarray(rows)]
        np.testing.assert_allclose(block.mean(axis=0), 0, atol=1e-4)
        np.testing.assert_allclose(block.std(axis=0, ddof=1), 1, atol=1e-3)


def test_haxby_refuses_an_mni_mask(real_data):
    with pytest.raises(SpaceMismatchError, match="Mask_ABIDE_85Percent_GM"):
        load_haxby(mask=real_data / ATLASES / "abide_masks" / "Mask_ABIDE_85Percent_GM.nii.gz")


# -- space guard -------------------------------------------------------------------------------

def test_headers_and_space_decisions(real_data):
    bold = describe_space(real_data / HAXBY / "bold.nii.gz")
    aal = describe_space(real_data / ATLASES / "abide_rois" / "aal_mask_pad.nii.gz")
    smith = describe_space(real_data / ATLASES / "abide_spatial_maps" / "PNAS_Smith09_rsn10.nii.gz")
    gm = describe_space(real_data / ATLASES / "abide_masks" / "Mask_ABIDE_85Percent_GM.nii.gz")
    coarse = describe_space(real_data / HAXBY / "haxby2001/sub001/BOLD/task001_run001/bold_25mm.nii.gz")
    # Codes as the files carry them: scanner (1) for both Haxby and the MNI AAL atlas.
    assert (bold.sform_code, aal.sform_code, smith.sform_code, gm.sform_code) == (1, 1, 4, 3)
    assert not bold.template and not coarse.template
    assert aal.template and smith.template and gm.template
    np.testing.assert_allclose(bold.voxel_mm, [3.1, 3.75, 3.75], rtol=1e-5)
    np.testing.assert_allclose(aal.content_box, [[-72, 72], [-108, 72], [-62, 88]])


def test_real_haxby_and_aal_pair_is_refused(real_data):
    bold = real_data / HAXBY / "bold.nii.gz"
    aal = real_data / ATLASES / "abide_rois" / "aal_mask_pad.nii.gz"
    with pytest.raises(SpaceMismatchError) as err:
        extract_atlas_signals(bold, aal)
    message = str(err.value)
    for expected in ("bold.nii.gz", "aal_mask_pad.nii.gz", "(40, 20, 1, 1452)", "(65, 77, 63)", "3.1x3.75x3.75",
                     "native (subject scanner)", "template (MNI-like)", "anisotropic", "sform_code 1"):
        assert expected in message
    with pytest.raises(SpaceMismatchError):
        extract_atlas_signals(bold, real_data / ATLASES / "abide_spatial_maps" / "PNAS_Smith09_rsn10.nii.gz",
                              kind="maps")
    # The escape hatch reproduces nilearn's silent answer: a few dozen meaningless "AAL" signals.
    with pytest.warns(UserWarning):
        assert extract_atlas_signals(bold, aal, assume_same_space=True).shape[1] < 116


def test_same_space_atlases_are_resampled(real_data):
    smith = real_data / ATLASES / "abide_spatial_maps" / "PNAS_Smith09_rsn10.nii.gz"
    aal = extract_atlas_signals(smith, real_data / ATLASES / "abide_rois" / "aal_mask_pad.nii.gz")
    cc200 = extract_atlas_signals(smith, real_data / ATLASES / "abide_rois" / "CC200.nii.gz")
    maps = extract_atlas_signals(smith, smith, kind="maps")
    assert aal.shape == (10, 116) and cc200.shape == (10, 200) and maps.shape == (10, 10)
    assert np.isfinite(aal).all() and np.abs(aal).sum() > 0
    # Map k correlates best with its own network.
    assert (np.argmax(maps, axis=1) == np.arange(10)).all()
    with pytest.raises(ValueError, match="kind"):
        extract_atlas_signals(smith, smith, kind="spheres")


def test_native_images_must_overlap(real_data, tmp_path):
    run = real_data / HAXBY / "haxby2001/sub001/BOLD/task001_run001/bold_1slice.nii.gz"
    brain = nib.load(real_data / HAXBY / "haxby2001/sub001/masks/25mm/brain.nii.gz")
    check_same_space(run, brain, what="mask")  # one subject's space, two grids: accepted
    far = nib.Nifti1Image(np.asanyarray(brain.dataobj), nib.affines.from_matvec(np.eye(3) * 25, [500, 500, 500]),
                          brain.header)
    far.to_filename(tmp_path / "far.nii.gz")
    with pytest.raises(SpaceMismatchError, match="do not overlap"):
        check_same_space(run, tmp_path / "far.nii.gz", what="mask")


def test_mask_runs_concatenates_runs(real_data):
    runs = [real_data / HAXBY / f"haxby2001/sub001/BOLD/task001_run00{r}/bold_1slice.nii.gz" for r in (1, 2)]
    X = mask_runs(runs, real_data / HAXBY / "mask.nii.gz")
    whole = mask_runs(real_data / HAXBY / "bold.nii.gz", real_data / HAXBY / "mask.nii.gz")
    assert X.shape == (242, 530) and whole.shape == (1452, 530)
    np.testing.assert_array_equal(X, whole[:242])


# -- ABIDE -------------------------------------------------------------------------------------

def test_abide_shapes_labels_sites(real_data):
    data = load_abide()
    assert data.X.dtype == object and data.X.shape == (100,)
    assert data.shape == (100, 116, None)
    assert data.info.class_names == ("control", "autism")
    assert data.class_counts() == {"control": 42, "autism": 58}
    meta = data.metadata
    assert meta.groupby("site").size().to_dict() == {"OHSU": 10, "OLIN": 34, "PITT": 56}
    lengths = {site: sorted({t.shape[1] for t in data.X[np.asarray(rows)]})
               for site, rows in meta.groupby("site").groups.items()}
    assert lengths == {"PITT": [195], "OLIN": [205], "OHSU": [77]}
    assert (meta["n_volumes"] == [t.shape[1] for t in data.X]).all()
    assert all(t.shape[0] == 116 for t in data.X)
    assert data.info.ch_names[0] == "AAL_1" and data.info.ch_names[-1] == "AAL_116"
    first = meta.iloc[0]
    assert (first["subject"], first["site"], first["sex"], first["age"]) == (50003, "PITT", "M", 24.45)
    assert data.labels[0] == "autism"  # DX_GROUP 1
    ohsu = load_abide(sites="ohsu")
    assert len(ohsu) == 10 and ohsu.class_counts() == {"control": 0, "autism": 10}
    # The file stores time x ROI; the loader gives ROI x time.
    raw = scipy.io.loadmat(real_data / ABIDE / "Functional" / "50003.mat")["ROISignals"]
    np.testing.assert_array_equal(data.X[0], raw.T)


def test_abide_constant_rois_are_reported(real_data):
    data = load_abide()
    meta = data.metadata
    flagged = meta[meta["n_constant_rois"] > 0]
    assert len(flagged) == 13
    assert set().union(*flagged["constant_rois"]) == CEREBELLAR_COLUMNS
    for trial, rois in zip(data.X, meta["constant_rois"]):
        spread = np.ptp(trial, axis=1)
        assert set(np.nonzero(spread == 0)[0]) == set(rois)
    # Kept, not dropped: every subject still has all 116 ROIs.
    assert all(t.shape[0] == 116 for t in data.X[flagged.index])


def test_abide_selection_errors(real_data):
    picked = load_abide(subjects=[50142, 50003], sites=["PITT", "OHSU"])
    assert picked.metadata["subject"].tolist() == [50003, 50142]
    assert picked.X.dtype == object  # ragged type even when lengths could stack
    same_length = load_abide(subjects=[50003, 50004])
    assert same_length.X.dtype == object and same_length.X.shape == (2,)
    with pytest.raises(EmptySelectionError, match=r"unknown ABIDE subject\(s\) \[12\]; valid SUB_IDs: \[50003"):
        load_abide(subjects=[12])
    with pytest.raises(EmptySelectionError, match=r"valid sites: \['OHSU', 'OLIN', 'PITT'\]"):
        load_abide(sites=["NYU"])
    with pytest.raises(EmptySelectionError, match="no subject matches"):
        load_abide(subjects=[50003], sites="OLIN")


# -- digit69 and MNIST -------------------------------------------------------------------------

def test_digit69_shapes_and_labels(real_data):
    train, test, both = (load_digit69(s) for s in ("train", "test", "all"))
    assert train.X.shape == (90, 3092) and test.X.shape == (10, 3092) and both.X.shape == (100, 3092)
    assert train.class_counts() == {"6": 45, "9": 45} and test.class_counts() == {"6": 5, "9": 5}
    assert both.metadata["split"].value_counts().to_dict() == {"train": 90, "test": 10}
    np.testing.assert_array_equal(both.X[90:], test.X)
    assert both.info.sfreq is None and both.info.class_names == ("6", "9")
    with pytest.raises(ValueError, match="split"):
        load_digit69("validation")


def test_digit69_images_are_upright(real_data):
    images = load_digit69_images("all")
    labels = load_digit69("all").labels
    assert images.shape == (100, 28, 28) and images.dtype == np.uint8
    mnist, mnist_labels = load_mnist()

    def corr(a, b):
        return np.corrcoef(a.ravel(), b.ravel())[0, 1]

    six, nine = images[labels == "6"].mean(0), images[labels == "9"].mean(0)
    mnist_six, mnist_nine = mnist[mnist_labels == 6].mean(0), mnist[mnist_labels == 9].mean(0)
    assert corr(six, mnist_six) > 0.95 and corr(nine, mnist_nine) > 0.95
    assert corr(six.T, mnist_six) < 0.8  # the C-order (transposed) reading would not match
    assert corr(six, mnist_six) > corr(six, mnist_nine)
    assert corr(np.rot90(six, 2), nine) > 0.8  # a 6 turned half-way round looks like a 9
    np.testing.assert_array_equal(load_digit69_images("test"), images[90:])


def test_mnist_counts(real_data):
    images, labels = load_mnist()
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert labels[0] == 7 and images.max() == 255


# -- damaged files -----------------------------------------------------------------------------

def _truncated_copy(src, dst, fraction=0.5):
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def test_truncated_nifti_is_corrupt(dataset_dir, tmp_path):
    bad = _truncated_copy(dataset_dir(HAXBY) / "bold.nii.gz", tmp_path / "bold.nii.gz")
    with pytest.raises(CorruptFileError, match="bold.nii.gz"):
        read_nifti(bad)
    with pytest.raises(DataNotFoundError):
        read_nifti(tmp_path / "absent.nii.gz")


def test_nan_nifti_is_invalid(tmp_path):
    data = np.ones((4, 4, 4, 3), dtype=np.float32)
    data[1, 1, 1, 0] = np.nan
    nib.Nifti1Image(data, np.eye(4)).to_filename(tmp_path / "nan.nii.gz")
    with pytest.raises(InvalidDataError, match=r"nan.nii.gz holds 1 NaN"):
        read_nifti(tmp_path / "nan.nii.gz")


def test_damaged_mat_files(dataset_dir, tmp_path):
    bad = _truncated_copy(dataset_dir(ABIDE) / "Functional" / "50003.mat", tmp_path / "50003.mat")
    with pytest.raises(CorruptFileError, match="50003.mat"):
        read_roi_signals(bad)
    signals = np.zeros((10, 116))
    signals[3, 5] = np.nan
    scipy.io.savemat(tmp_path / "nan.mat", {"ROISignals": signals})
    with pytest.raises(InvalidDataError, match="nan.mat"):
        read_roi_signals(tmp_path / "nan.mat")
    scipy.io.savemat(tmp_path / "other.mat", {"ROISignals": np.zeros((10, 90))})
    with pytest.raises(CorruptFileError, match=r"\(10, 90\)"):
        read_roi_signals(tmp_path / "other.mat")
    digits = _truncated_copy(dataset_dir("fmri_digit69_vangerven") / "digit69_28x28.mat", tmp_path / "d.mat", 0.3)
    with pytest.raises(CorruptFileError, match="d.mat"):
        read_digit69_mat(digits)


def test_damaged_idx_files(dataset_dir, tmp_path):
    src = dataset_dir("mnist_t10k") / "t10k-images-idx3-ubyte.gz"
    with pytest.raises(CorruptFileError, match="cannot decompress"):
        read_idx(_truncated_copy(src, tmp_path / "cut.gz"))
    raw = gzip.decompress(src.read_bytes())
    (tmp_path / "short.gz").write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(CorruptFileError, match=r"shape \(10000, 28, 28\) = 7840000 bytes.*7839900 follow"):
        read_idx(tmp_path / "short.gz")
    (tmp_path / "magic.gz").write_bytes(gzip.compress(b"\x00\x00\x0d\x03" + raw[4:]))
    with pytest.raises(CorruptFileError, match="magic number"):
        read_idx(tmp_path / "magic.gz")


def test_loaders_read_through_the_cards(dataset_dir, tmp_path, isolated_cache, monkeypatch):
    """A damaged copy is caught by its checksum before any parser sees it."""
    monkeypatch.delenv("NEURODECODE_ALLOW_DOWNLOAD", raising=False)
    root = tmp_path / "data"
    copy = root / HAXBY
    copy.mkdir(parents=True)
    for name in ("attributes_literal.txt", "mask.nii.gz"):
        shutil.copy(dataset_dir(HAXBY) / name, copy / name)
    (copy / "haxby2001").mkdir()
    shutil.copy(dataset_dir(HAXBY) / "haxby2001" / "scan_key.txt", copy / "haxby2001" / "scan_key.txt")
    monkeypatch.setenv("NEURODECODE_DATA", str(root))
    with pytest.raises(DataNotFoundError, match="bold.nii.gz"):
        load_haxby()
    _truncated_copy(dataset_dir(HAXBY) / "bold.nii.gz", copy / "bold.nii.gz")
    with pytest.raises(ChecksumMismatchError, match="bold.nii.gz"):
        load_haxby()
    with pytest.raises(DataNotFoundError, match="mnist_t10k"):
        load_mnist()
