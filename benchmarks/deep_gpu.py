"""Deep decoders trained with the one trainer on a GPU, against Cov+TS+LR and ACM, on MOABB's own folds.

Input: the ``.npz`` written by ``benchmarks/export_gpu_data.py`` (the benchmark's epochs, float16,
and MOABB's within-session fold indices). Protocols:

* ``within``: each subject's MOABB within-session folds (36 training trials, 9 test), ROC-AUC.
  ``scratch``: the network trained on the fold's 36 trials alone (early stopping on a stratified
  20 % validation split, augmentation). ``pretrain``: first trained on the 19 *other* subjects'
  trials, then fine-tuned on the fold's training trials; each subject's trials are whitened by
  their own mean covariance (Euclidean alignment), the test subject's from its fold's training
  trials only, so no test trial is seen before testing.
* ``xsub`` (variants ``ea``, ``ea40``: see ``XSUB_RECIPES``): one network per held-out subject,
  trained on the other 19 (EA), scored both ways: as ``loso`` below, and as ``within:pretrain``
  (fine-tuned on each fold); ``--workers N`` spreads the (job, subject) pairs over N processes
  sharing the GPU.
* ``loso``: leave one subject out of the 20; trained on the others (EA per subject; the held-out
  subject is aligned with the mean covariance of its own trials, unlabelled: transductive, as in
  the EA literature), ROC-AUC on all 45 trials of the held-out subject.

Classical anchors on the same folds: Cov(oas)+TS+LR (neurodecode's transforms) and, within-session,
the ``ACM(selected)+TS+SVM`` pipeline of ``pipelines/ACM_TS_SVM.yml`` (built from the YAML with the
same steps and parameters).

    python benchmarks/deep_gpu.py --data .gpu_data/eegmmidb_lr.npz --jobs within:scratch:EEGNet \
        within:pretrain:EEGNet loso:ea:EEGNet classical --out results/
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
#: ``--smoke``: a CPU check of the script itself (3 subjects, 2 epochs); never a reported figure.
SMOKE = {"on": False}
DEVICE = {"name": "cuda", "sfreq": None}
DEEP = {"EEGNet": dict(lr=1e-3), "ShallowFBCSPNet": dict(lr=6.25e-4), "FBCNet": dict(lr=1e-3)}


def load(path):
    d = np.load(path)
    X, y, subject, folds = d["X"].astype(np.float32), d["y"].astype(np.int64), d["subject"].astype(int), d["folds"]
    if SMOKE["on"]:
        keep = np.isin(subject, np.unique(subject)[:3])
        X, y, subject, folds = X[keep], y[keep], subject[keep], folds[:, keep]
    return X, y, subject, folds, float(d["sfreq"])


def roc_auc(y, score):
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def ea_matrix(X):
    """R^{-1/2} of the mean trial covariance (Euclidean alignment, He & Wu 2019)."""
    C = np.einsum("nct,ndt->cd", X.astype(np.float64), X.astype(np.float64)) / (X.shape[0] * X.shape[2])
    w, v = np.linalg.eigh(C)
    return ((v / np.sqrt(np.maximum(w, w.max() * 1e-10))) @ v.T).astype(np.float32)


def align(X, W):
    return np.einsum("cd,ndt->nct", W, X).astype(np.float32)


def aligned_by_subject(X, subject, subjects):
    out = np.empty_like(X)
    for s in subjects:
        m = subject == s
        out[m] = align(X[m], ea_matrix(X[m]))
    return out


def deep(name, *, seed, max_epochs=200, patience=30, augment=("smooth_time_mask", "channels_dropout", "sign_flip"),
         **over):
    from neurodecode.models.deep import DeepClassifier

    if SMOKE["on"]:
        max_epochs = 2
    # compile=False: torch.compile made every one of these short fits slower on the H200 (docs/deep.md).
    params = dict(model=name, max_epochs=max_epochs, patience=patience, batch_size=32, device=DEVICE["name"],
                  compile=False, sfreq=DEVICE["sfreq"], random_state=seed, augment=list(augment), val_fraction=0.2,
                  **DEEP[name])
    params.update(over)
    return DeepClassifier(**params)


def finetune(pre, X, y, *, epochs, lr, seed):
    """Continue training a fitted DeepClassifier's network on (X, y); returns a predict-proba function."""
    import torch

    from neurodecode.training import TrainConfig, Trainer, predict_logits

    net = copy.deepcopy(pre.module_)
    torch.manual_seed(seed)
    config = TrainConfig(max_epochs=2 if SMOKE["on"] else epochs, batch_size=16, lr=lr, weight_decay=1e-2,
                         val_fraction=0.0, patience=None, device=DEVICE["name"], compile=False, seed=seed).validate()
    Trainer(config).fit(net, (X / pre.scale_).astype(np.float32), np.searchsorted(pre.classes_, y))

    def proba(Xt):
        logits = predict_logits(net, (Xt / pre.scale_).astype(np.float32), device=DEVICE["name"])
        return torch.softmax(logits.double(), 1).numpy()

    return proba


def cov_ts_lr():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from neurodecode.transforms.covariance import Covariances, TangentSpace

    # On the CPU: many small fits in worker processes gain nothing from a shared GPU.
    return make_pipeline(Covariances(estimator="oas", device="cpu"), TangentSpace(device="cpu"),
                         LogisticRegression(max_iter=1000))


def acm_from_yaml():
    """The ACM pipeline file's steps, built as MOABB's parser builds them (import, call with parameters)."""
    import yaml
    from sklearn.pipeline import make_pipeline

    spec = yaml.safe_load((REPO / "pipelines" / "ACM_TS_SVM.yml").read_text())
    steps = [getattr(importlib.import_module(s["from"]), s["name"])(**(s.get("parameters") or {}))
             for s in spec["pipeline"]]
    return make_pipeline(*steps)


def within_folds(subject, folds, s):
    for k in range(folds.shape[0]):
        idx = np.flatnonzero(subject == s)
        yield k, idx[folds[k, idx] == 0], idx[folds[k, idx] == 1]


def run_classical(X, y, subject, folds, which):
    from joblib import Parallel, delayed

    make = {"Cov+TS+LR": cov_ts_lr, "ACM(selected)+TS+SVM": acm_from_yaml}[which]

    def one(s, k, tr, te):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            t0 = time.perf_counter()
            clf = make().fit(X[tr].astype(np.float64), y[tr])
            score = clf.decision_function(X[te].astype(np.float64))
            return {"subject": int(s), "fold": k, "score": roc_auc(y[te], score), "fit_s": time.perf_counter() - t0}

    subjects = np.unique(subject)
    tasks = [(s, k, tr, te) for s in subjects for k, tr, te in within_folds(subject, folds, s)]
    # Other jobs share the machine's cores (DEEP_GPU_CPU_JOBS, default 4).
    n_jobs = min(int(os.environ.get("DEEP_GPU_CPU_JOBS", "4")), os.cpu_count() or 1)
    rows = Parallel(n_jobs=n_jobs)(delayed(one)(*t) for t in tasks)
    out = [{"pipeline": which, "protocol": "within", **r} for r in rows]
    for s in subjects:
        train, test = subject != s, subject == s
        for ea in (False, True) if which == "Cov+TS+LR" else (False,):
            Xa = aligned_by_subject(X, subject, subjects) if ea else X
            clf = make().fit(Xa[train].astype(np.float64), y[train])
            out.append({"pipeline": which + ("+EA" if ea else ""), "protocol": "loso", "subject": int(s),
                        "score": roc_auc(y[test], clf.decision_function(Xa[test].astype(np.float64)))})
    return out


def _reset_memory():
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _peak_memory():
    import torch

    return torch.cuda.max_memory_allocated() / 2 ** 20 if torch.cuda.is_available() else 0.0


class Rows(list):
    """Rows written to a JSON-lines file as they come, so a run cut short keeps what it finished."""

    def __init__(self, path, **fixed):
        super().__init__()
        self.path, self.fixed = path, fixed

    def append(self, row):
        row = {**self.fixed, **row}
        super().append(row)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)


def run_deep(X, y, subject, folds, protocol, variant, name, seed, rows):
    subjects = np.unique(subject)
    if protocol == "loso":
        Xa = aligned_by_subject(X, subject, subjects) if variant == "ea" else X
        for s in subjects:
            train, test = subject != s, subject == s
            _reset_memory()
            t0 = time.perf_counter()
            clf = deep(name, seed=seed, max_epochs=100, patience=20).fit(Xa[train], y[train])
            rows.append({"subject": int(s), "score": roc_auc(y[test], clf.predict_proba(Xa[test])[:, 1]),
                         "fit_s": time.perf_counter() - t0, "epochs": len(clf.history_), "best_epoch": clf.best_epoch_,
                         "gpu_mem_mb": _peak_memory()})
    elif variant == "scratch":
        for s in subjects:
            for k, tr, te in within_folds(subject, folds, s):
                _reset_memory()
                t0 = time.perf_counter()
                clf = deep(name, seed=seed).fit(X[tr], y[tr])
                rows.append({"subject": int(s), "fold": k, "score": roc_auc(y[te], clf.predict_proba(X[te])[:, 1]),
                             "fit_s": time.perf_counter() - t0, "epochs": len(clf.history_),
                             "gpu_mem_mb": _peak_memory()})
    elif protocol == "xsub":
        for s in subjects:
            run_xsub_subject(X, y, subject, folds, name, seed, s, rows, recipe=variant)
    else:  # pretrain on the other subjects (EA), fine-tune on the fold's training trials
        for s in subjects:
            others = subject != s
            Xo = aligned_by_subject(X[others], subject[others], subjects[subjects != s])
            t0 = time.perf_counter()
            pre = deep(name, seed=seed, max_epochs=100, patience=20).fit(Xo, y[others])
            pre_s = time.perf_counter() - t0
            for k, tr, te in within_folds(subject, folds, s):
                W = ea_matrix(X[tr])  # the fold's training trials only
                t1 = time.perf_counter()
                proba = finetune(pre, align(X[tr], W), y[tr], epochs=30, lr=DEEP[name]["lr"] / 5, seed=seed)
                score = roc_auc(y[te], proba(align(X[te], W))[:, 1])
                rows.append({"subject": int(s), "fold": k, "score": score, "pretrain_s": pre_s,
                             "finetune_s": time.perf_counter() - t1})
    return rows


#: How the network of an ``xsub`` job is trained on the other subjects. ``ea``: early stopping on
#: a random 20 % of the pooled trials (val loss, patience 20, at most 100 epochs). ``ea40``: a fixed
#: 40 epochs with no validation split, as in the issue's braindecode anchor recipe.
XSUB_RECIPES = {"ea": dict(max_epochs=100, patience=20, batch_size=64),
                "ea40": dict(max_epochs=40, patience=None, val_fraction=0.0, batch_size=64)}


def run_xsub_subject(X, y, subject, folds, name, seed, s, rows, recipe="ea"):
    """One network trained on the other subjects (EA), used twice for the held-out subject ``s``.

    Leave-one-subject-out: ``s`` aligned with all its own trials (unlabelled, transductive) and
    scored on them. Pretrain + fine-tune: the same network fine-tuned on each within-session fold's
    training trials, ``s`` aligned with those trials only. One pretraining serves both protocols
    because both train on exactly the other subjects' EA-aligned trials.
    """
    subjects = np.unique(subject)
    others, test = subject != s, subject == s
    Xo = aligned_by_subject(X[others], subject[others], subjects[subjects != s])
    _reset_memory()
    t0 = time.perf_counter()
    pre = deep(name, seed=seed, **XSUB_RECIPES[recipe]).fit(Xo, y[others])
    pre_s = time.perf_counter() - t0
    Xs = align(X[test], ea_matrix(X[test]))
    rows.append({"protocol": "loso", "variant": recipe, "subject": int(s),
                 "score": roc_auc(y[test], pre.predict_proba(Xs)[:, 1]), "fit_s": pre_s,
                 "epochs": len(pre.history_), "best_epoch": pre.best_epoch_, "gpu_mem_mb": _peak_memory()})
    for k, tr, te in within_folds(subject, folds, s):
        W = ea_matrix(X[tr])  # the fold's training trials only
        t1 = time.perf_counter()
        proba = finetune(pre, align(X[tr], W), y[tr], epochs=30, lr=DEEP[name]["lr"] / 5, seed=seed)
        rows.append({"protocol": "within", "variant": "pretrain" + recipe[2:], "subject": int(s), "fold": k,
                     "score": roc_auc(y[te], proba(align(X[te], W))[:, 1]), "pretrain_s": pre_s,
                     "finetune_s": time.perf_counter() - t1})


def _done(paths):
    """(pipeline, subject, seed) of every held-out subject whose xsub rows are all written already."""
    done = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            row = json.loads(line)
            if row.get("job", "").startswith("xsub"):
                key = (row["job"], row["subject"], row["seed"])
                done[key] = done.get(key, 0) + 1
    # One loso row and one row per within-session fold (5).
    return {key for key, n in done.items() if n >= 6}


def _xsub_worker(args):
    """A process of the pool: limited threads, its own CUDA context, tasks from the shared queue."""
    data, out, tasks, seed, device, sfreq, threads, smoke = args
    import torch

    torch.set_num_threads(threads)
    DEVICE["name"], DEVICE["sfreq"], SMOKE["on"] = device, sfreq, smoke
    X, y, subject, folds, _ = load(data)
    while True:
        try:
            job, s = tasks.get_nowait()
        except Exception:
            return
        _, recipe, name = job.split(":")
        rows = Rows(out / f"{job.replace(':', '_')}.jsonl", pipeline=name, seed=seed, device=device, job=job)
        run_xsub_subject(X, y, subject, folds, name, seed, s, rows, recipe=recipe)


def run_xsub_pool(data, out, jobs, seed, workers, threads, skip_from):
    """Every (xsub job, held-out subject) pair not already done, over ``workers`` processes sharing the GPU."""
    import multiprocessing as mp

    _, _, subject, _, sfreq = load(data)
    done = _done(skip_from)
    todo = [(j, int(s)) for s in np.unique(subject) for j in jobs if (j, int(s), seed) not in done]
    print(f"xsub: {len(todo)} (job, subject) tasks to run, {len(done)} done already", flush=True)
    ctx = mp.get_context("spawn")
    tasks = ctx.Manager().Queue()
    for t in todo:
        tasks.put(t)
    work = (data, out, tasks, seed, DEVICE["name"], sfreq, threads, SMOKE["on"])
    procs = [ctx.Process(target=_xsub_worker, args=(work,)) for _ in range(min(workers, len(todo)))]
    for p in procs:
        p.start()
    for p in procs:
        p.join()


def summary(rows):
    import pandas as pd

    df = pd.DataFrame(rows)
    key = ["pipeline", "protocol"] + (["variant"] if "variant" in df else [])
    df = df.fillna({"variant": "-"}) if "variant" in df else df
    per_subject = df.groupby(key + ["subject"])["score"].mean().reset_index()
    return per_subject.groupby(key)["score"].agg(["mean", "std", "count"]).round(3)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(".gpu_data/eegmmidb_lr.npz"))
    parser.add_argument("--jobs", nargs="+", required=True,
                        help="classical, acm, or PROTOCOL:VARIANT:MODEL (within:scratch|pretrain, loso:ea|plain)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="3 subjects, 2 epochs: checks the script, not the models")
    parser.add_argument("--workers", type=int, default=0,
                        help="xsub:RECIPE:MODEL jobs only: run the (job, subject) tasks over this many processes")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per worker process")
    parser.add_argument("--skip-done", nargs="*", default=(), type=Path,
                        help="JSON-lines files of earlier runs: held-out subjects finished there are skipped")
    args = parser.parse_args(argv)
    import torch

    DEVICE["name"], SMOKE["on"] = args.device, args.smoke
    X, y, subject, folds, sfreq = load(args.data)
    DEVICE["sfreq"] = sfreq
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    if args.workers:
        if not all(job.startswith("xsub:") and job.split(":")[1] in XSUB_RECIPES for job in args.jobs):
            parser.error(f"--workers runs xsub:RECIPE:MODEL jobs only (RECIPE in {sorted(XSUB_RECIPES)})")
        t0 = time.perf_counter()
        run_xsub_pool(args.data, args.out, args.jobs, args.seed, args.workers, args.threads, args.skip_done)
        print(f"== xsub pool on {device}: {time.perf_counter() - t0:.0f} s", flush=True)
        return 0
    for job in args.jobs:
        t0 = time.perf_counter()
        if job in ("classical", "acm"):
            rows = run_classical(X, y, subject, folds, "Cov+TS+LR" if job == "classical" else "ACM(selected)+TS+SVM")
        else:
            protocol, variant, name = job.split(":")
            rows = Rows(args.out / f"{job.replace(':', '_')}.jsonl", pipeline=name, protocol=protocol,
                        variant=variant, job=job, seed=args.seed, device=DEVICE["name"])
            run_deep(X, y, subject, folds, protocol, variant, name, args.seed, rows)
        wall = time.perf_counter() - t0
        record = {"job": job, "device": device, "torch": torch.__version__, "wall_s": wall, "rows": rows}
        (args.out / f"{job.replace(':', '_')}.json").write_text(json.dumps(record, indent=1))
        print(f"== {job} on {device}: {wall:.0f} s", flush=True)
        print(summary(rows).to_string(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
