"""No batch output holds a patient's name, birth date or recording date, nor an identifying file name.

Real eegmmidb recordings are given a made-up identity in their headers (EDF/BDF patient field, FIF
``subject_info`` and ``meas_date``) and in their file and folder names; the batch runs through the
command line (report included), and every byte it writes or prints is searched, with gzip and zip
members unpacked and PNG text chunks decompressed.
"""

import datetime
import gzip
import io
import os
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import mne
import pandas as pd
import pytest

from conftest import trained_model

REPO = Path(__file__).resolve().parents[2]
EDF = "MNE-eegbci-data/files/eegmmidb/1.0.0/S{s:03d}/S{s:03d}R{r:02d}.edf"
BIRTHDAY = datetime.date(1961, 2, 3)
RECORDED = datetime.datetime(2019, 7, 23, 14, 5, 9, tzinfo=datetime.timezone.utc)
IDENTITY = {"first_name": "Jane", "middle_name": "Q.", "last_name": "Patientname", "birthday": BIRTHDAY,
            "his_id": "JQP-0042", "sex": 2}
#: What must appear nowhere: the name, its parts, the hospital id, and both dates as people and formats write them.
NEEDLES = [
    "Jane Q. Patientname", "Jane_Q._Patientname", "Jane", "Patientname", "JQP-0042",
    "1961-02-03", "1961/02/03", "03.02.1961", "03.02.61", "03-FEB-1961", "3 February 1961", "February 3, 1961",
    "02/03/1961", "03/02/1961", "19610203",
    "2019-07-23", "2019/07/23", "23.07.2019", "23.07.19", "23-JUL-2019", "07/23/2019", "23/07/2019", "20190723",
    "14:05:09", "14.05.09", str(int(RECORDED.timestamp())),
]


def _identified(raw):
    raw.info["subject_info"] = dict(IDENTITY)
    raw.set_meas_date(RECORDED)
    return raw


def _texts(name: str, data: bytes):
    """The bytes of a file and of everything packed inside it."""
    yield name, data
    if data[:2] == b"\x1f\x8b":
        yield from _texts(f"{name}!gunzip", gzip.decompress(data))
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                yield from _texts(f"{name}!{member}", archive.read(member))
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        position = 8
        while position + 8 <= len(data):
            length = int.from_bytes(data[position:position + 4], "big")
            kind, body = data[position + 4:position + 8], data[position + 8:position + 8 + length]
            if kind == b"zTXt":
                yield f"{name}!zTXt", zlib.decompress(body[body.index(b"\0") + 2:])
            elif kind == b"iTXt" and b"\0\x01" in body:
                yield f"{name}!iTXt", zlib.decompress(body.split(b"\0", 5)[-1])
            position += 12 + length


def _leaks(name: str, data: bytes) -> list:
    found = []
    for where, blob in _texts(name, data):
        text = blob.decode("latin-1").lower()
        found += [f"{where}: {needle!r}" for needle in NEEDLES if needle.lower() in text]
    return found


@pytest.fixture(scope="module")
def identified_inputs(tmp_path_factory, dataset_dir):
    eeg = dataset_dir("eegmmidb")
    root = tmp_path_factory.mktemp("identified")
    folder = root / "Patientname_Jane_1961-02-03"
    folder.mkdir()
    source = eeg / EDF.format(s=3, r=4)
    raw = _identified(mne.io.read_raw_edf(source, preload=True, verbose="error"))
    raw.export(folder / "Jane Q. Patientname 2019-07-23.edf", fmt="edf", verbose="error")
    raw.export(folder / "Patientname_bdf_23.07.19.bdf", fmt="bdf", verbose="error")
    montage = mne.channels.make_standard_montage("colin27_1005")  # MNE 1.13's name for standard_1005
    by_upper = {n.upper(): n for n in montage.ch_names}
    fif = raw.copy().rename_channels({c: by_upper[c.strip(".").upper()] for c in raw.ch_names})
    fif.set_montage(montage)
    fif.save(folder / "Jane_Q_Patientname_raw.fif", verbose="error")
    fif.copy().drop_channels(["Cz"]).save(folder / "Patientname_missing_raw.fif", verbose="error")
    data = (folder / "Jane Q. Patientname 2019-07-23.edf").read_bytes()
    (folder / "Patientname_truncated.edf").write_bytes(data[: len(data) // 2])
    # Unreadable headers whose fields hold the name and the dates: the messages about them must not.
    (folder / "Patientname_header.edf").write_bytes(data[:236] + b"JanePatie" + data[245:])
    # The first channel's physical minimum (after 65 labels, transducers and units) holding the name: MNE's
    # reader quotes a field it cannot convert ("could not convert string to float: 'Jane_Q._'").
    at = 256 + 65 * (16 + 80 + 8)
    (folder / "Patientname_fields.edf").write_bytes(data[:at] + b"Jane_Q._" + data[at + 8:])
    return root


@pytest.fixture(scope="module")
def batch_output(identified_inputs, tmp_path_factory, dataset_dir):
    model = trained_model(tmp_path_factory, dataset_dir)
    out = tmp_path_factory.mktemp("private-out")
    command = [sys.executable, "-m", "neurodecode.cli", "batch", str(identified_inputs), "--model", str(model),
               "--out", str(out), "--events", "T1=left_hand,T2=right_hand", "--step", "1.5"]
    done = subprocess.run(command, capture_output=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}, cwd=REPO,
                          timeout=600)
    return out, done


def test_the_inputs_do_carry_the_identity(identified_inputs):
    # The search can fail: each kind of input holds the name and the dates that the outputs must not.
    for name in ("Jane Q. Patientname 2019-07-23.edf", "Patientname_bdf_23.07.19.bdf", "Jane_Q_Patientname_raw.fif"):
        data = (identified_inputs / "Patientname_Jane_1961-02-03" / name).read_bytes()
        assert _leaks(name, data)
    header = (identified_inputs / "Patientname_Jane_1961-02-03" / "Jane Q. Patientname 2019-07-23.edf").read_bytes()
    assert b"Jane_Q._Patientname" in header[:256] and b"03-FEB-1961" in header[:256] and b"23.07.19" in header[:256]
    info = mne.io.read_info(identified_inputs / "Patientname_Jane_1961-02-03" / "Jane_Q_Patientname_raw.fif",
                            verbose="error")
    assert info["subject_info"]["last_name"] == "Patientname" and info["meas_date"] == RECORDED


def test_the_batch_ran_on_them(batch_output):
    out, done = batch_output
    assert done.returncode == 1, done.stderr.decode()  # the damaged copies failed
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["status"]) == ["failed"] * 4 + ["ok"] * 3
    assert summary["reason"].str.contains("could not convert string to float: '<redacted>_<redacted>_'").any()
    assert (out / "report" / "index.html").is_file() and len(list((out / "report" / "figures").glob("*.png"))) >= 7
    reasons = " ".join(summary["reason"].dropna())
    assert "is truncated" in reasons and "header is unreadable" in reasons and "channels not found: Cz (" in reasons


def test_no_output_byte_holds_the_identity(batch_output):
    out, done = batch_output
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 20
    leaks = [leak for p in files for leak in _leaks(str(p.relative_to(out)), p.read_bytes())]
    leaks += _leaks("stdout", done.stdout) + _leaks("stderr", done.stderr)
    assert leaks == []
    assert not (out / "names.csv").exists()


def test_keep_names_writes_the_mapping_and_only_there(identified_inputs, tmp_path_factory, dataset_dir, tmp_path):
    from neurodecode.batch.runner import run_batch

    model = trained_model(tmp_path_factory, dataset_dir)
    out = tmp_path / "named"
    log = io.StringIO()
    run_batch(identified_inputs, model, out, keep_names=True, step_s=1.5, progress=False, stream=log)
    names = pd.read_csv(out / "names.csv")
    assert "Patientname_Jane_1961-02-03/Jane Q. Patientname 2019-07-23.edf" in set(names["file"])
    assert _leaks("names.csv", (out / "names.csv").read_bytes())  # the one file that names them, as asked
    others = [leak for p in out.rglob("*") if p.is_file() and p.name != "names.csv"
              for leak in _leaks(p.name, p.read_bytes())]
    assert others == [] and _leaks("log", log.getvalue().encode()) == []
