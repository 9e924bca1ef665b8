"""Export a compact copy of a dataset's epochs and MOABB's folds, for runs on a machine without the data.

The GPU machine has neither the data folder nor MNE/MOABB. This writes one ``.npz`` holding the
paradigm's epochs exactly as the benchmark feeds them to pipelines (float16, one sampling rate),
the labels, subjects, and MOABB's own within-session fold indices (from its evaluation's task list,
so deep and classical pipelines on the GPU are scored on the very folds ``neurodecode benchmark``
uses).

    NEURODECODE_DATA=../shared/data python benchmarks/export_gpu_data.py --dataset eegmmidb \
        --out .gpu_data/eegmmidb_lr.npz
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sklearn.dummy import DummyClassifier  # noqa: E402

from neurodecode.benchmark import moabb_glue  # noqa: E402
from neurodecode.benchmark.planner import RANDOM_STATE, offline_moabb  # noqa: E402
from neurodecode.data.registry import get_dataset  # noqa: E402


def export(spec: str, out: Path, subjects=None) -> dict:
    ds = get_dataset(spec)
    subjects = ds.select_subjects(subjects)
    with tempfile.TemporaryDirectory() as scratch, offline_moabb(scratch, ds), moabb_glue.quiet():
        dataset = moabb_glue.to_moabb_dataset(ds, subjects)
        paradigm = moabb_glue.make_paradigm(ds.paradigm)
        X, y, meta, tasks = moabb_glue.fold_tasks("within-session", dataset, paradigm, subjects,
                                                  {"dummy": DummyClassifier()}, None, Path(scratch), RANDOM_STATE)
        info = moabb_glue.signal_info(dataset)
    classes = sorted(set(y))
    folds = np.full((len(tasks) // len(subjects), len(y)), -1, dtype=np.int8)
    fold_of_subject: dict = {}
    for task in tasks:
        k = fold_of_subject.setdefault(task["subject"], 0)
        fold_of_subject[task["subject"]] = k + 1
        # folds[k, i] = 1 for test trials of fold k of the task's subject, 0 for its training trials.
        folds[k, np.asarray(task["test_idx"])] = 1
        folds[k, np.asarray(task["train_idx"])] = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, X=X.astype(np.float16), y=np.array([classes.index(c) for c in y], dtype=np.int8),
                        classes=np.array(classes), subject=meta["subject"].to_numpy(np.int16),
                        session=meta["session"].astype(str).to_numpy().astype("U16"), folds=folds, sfreq=info.sfreq,
                        ch_names=np.array(info.ch_names), dataset=ds.name, metric=str(paradigm.scoring))
    return {"X": X.shape, "subjects": len(subjects), "folds": folds.shape[0], "bytes": out.stat().st_size}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="eegmmidb")
    parser.add_argument("--out", type=Path, default=Path(".gpu_data/eegmmidb_lr.npz"))
    args = parser.parse_args(argv)
    print(export(args.dataset, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
