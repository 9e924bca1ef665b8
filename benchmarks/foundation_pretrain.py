"""Foundation model: pretraining throughput on the GPU, tokenizers, and eegmmidb left/right downstream.

Two steps, on two machines.

1. Here (data folder, MNE): export the pretraining corpus, every EEG recording the dataset layer
   exposes (eegmmidb left/right and hands/feet runs, Kalunga SSVEP, Muse P300), band-passed
   0.5-45 Hz, resampled to 128 Hz, float16 shards (``neurodecode.models.foundation.write_corpus``)
   within a size budget; the last ``--holdout`` subjects of the downstream dataset are left out of
   it entirely (``holdout.json`` names them). Then the downstream epochs, band-passed and resampled
   the same way, in the trial order of ``benchmarks/export_gpu_data.py``'s file, whose MOABB folds
   they reuse::

       NEURODECODE_DATA=../shared/data python benchmarks/foundation_pretrain.py \
           --export .gpu_data/pretrain --max-mb 20
       NEURODECODE_DATA=../shared/data python benchmarks/foundation_pretrain.py \
           --export-downstream .gpu_data/eegmmidb_fm.npz --like .gpu_data/eegmmidb_lr.npz

   ``--anchor-check`` scores Cov+TS+LR on every subject's folds on both files (MOABB's epochs, and
   the broadband export band-passed 8-32 Hz per epoch, which is what the GPU run feeds it).

2. On the GPU (torch, numpy, scipy, sklearn, pandas only; nothing to install), with the two exports::

       python benchmarks/foundation_pretrain.py --corpus .gpu_data/pretrain \
           --downstream .gpu_data/eegmmidb_fm.npz --out docs/measured/foundation_h200

   * tokenizers: k-means (CPU) and VQ (GPU) codebooks fitted on corpus patches; codebook usage and
     reconstruction error on the held-out subjects' trials;
   * pretraining: a 25 M-parameter encoder (d 512, 8 layers, 512 tokens per sample) trained by
     masked-code prediction (the VQ tokenizer's codes) through the one Trainer, reading the shards
     with DataLoader workers (the real data pipeline); samples/s and MFU (6 x params x tokens +
     attention FLOPs, over the H200's measured dense bf16 peak of 790 TFLOP/s) from the epochs
     after the first (which pays for compilation), data waits included;
   * downstream, ROC-AUC, the model fed both the broadband trials and the anchor's 8-32 Hz input:
     within-session on MOABB's folds (linear probe and bag-of-tokens + LR for both tokenizers on
     every subject, fine-tuning on the held-out subjects, Cov+TS+LR on every subject), and
     cross-subject: trained on the pretraining subjects' labelled trials, tested on each held-out
     subject (fine-tuned, linear probe, the same network from scratch, Cov+TS+LR). The deep
     pipelines' scores on the same folds are read from ``docs/measured/deep_gpu_h200``.

``--smoke`` runs everything tiny on the CPU (a check of the script, never a reported figure).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
#: Dense bfloat16 peak of one H200, as measured there with large matrix products (the issue's figure).
PEAK_FLOPS = 790e12
SFREQ = 128.0
PATCH = 64
N_TOKENS = 512
BIG = {"d_model": 512, "n_layers": 8, "n_heads": 8, "mlp_ratio": 4.0}
SMOKE_ENCODER = {"d_model": 32, "n_layers": 1, "n_heads": 2, "mlp_ratio": 2.0}


# -- step 1: the corpus (CPU, with the data) ---------------------------------------------------

def _recording_positions(raw):
    from neurodecode.data.container import SignalInfo

    return SignalInfo.from_mne(raw.info).positions


def export_corpus(out: Path, specs, downstream: str, holdout: int, max_mb: float, shard_mb: float) -> dict:
    """Write the pretraining corpus: each dataset an equal share of what is left of the budget."""
    from neurodecode.data.registry import get_dataset
    from neurodecode.models.foundation import write_corpus

    downstream_ds = get_dataset(downstream)
    held_out = list(downstream_ds.subjects())[-holdout:] if holdout else []
    plan = []
    for spec in specs:
        ds = get_dataset(spec)
        # A variant (NAME:VARIANT) of the downstream dataset holds the same people: their subjects are held out too.
        same_people = spec.partition(":")[0] == downstream.partition(":")[0]
        subjects = [s for s in ds.subjects() if not (same_people and s in held_out)]
        plan.append((spec, ds, [(s, r) for s in subjects for r in ds.recordings(s)]))
    budget = int(max_mb * 1e6 / 2)  # float16 samples
    used, stats = 0, {}

    def records():
        nonlocal used
        for k, (spec, ds, items) in enumerate(plan):
            share = (budget - used) // (len(plan) - k)
            per_recording = share // max(len(items), 1)
            for subject, rec in items:
                raw = rec.read()
                raw.pick("eeg")
                positions = _recording_positions(raw)
                if positions is None:
                    print(f"skipped {spec} subject {subject} run {rec.run}: no electrode positions", flush=True)
                    continue
                raw.filter(0.5, 45.0, verbose="error")
                raw.resample(SFREQ, verbose="error")
                data = raw.get_data() * 1e6
                n_chans = data.shape[0]
                window = (N_TOKENS // min(n_chans, N_TOKENS)) * PATCH
                keep = max(window, per_recording // n_chans)
                if used + n_chans * keep > budget:
                    break
                data = data[:, :keep]
                used += data.size
                entry = stats.setdefault(ds.name if spec == ds.name else spec, {"recordings": 0, "seconds": 0.0,
                                                                                "channels": set()})
                entry["recordings"] += 1
                entry["seconds"] += data.shape[1] / SFREQ
                entry["channels"].add(n_chans)
                yield {"data": data, "positions": positions, "ch_names": raw.ch_names, "dataset": ds.name,
                       "spec": spec, "subject": int(subject), "session": str(rec.session), "run": str(rec.run)}

    manifest = write_corpus(records(), out, sfreq=SFREQ, shard_mb=shard_mb, max_mb=max_mb * 1.01)
    summary = {k: {**v, "channels": sorted(v["channels"]), "minutes": round(v["seconds"] / 60, 1)}
               for k, v in stats.items()}
    (out / "holdout.json").write_text(json.dumps({"dataset": downstream_ds.name, "spec": downstream,
                                                  "subjects": [int(s) for s in held_out]}))
    (out / "export.json").write_text(json.dumps({"manifest": manifest, "datasets": summary, "max_mb": max_mb,
                                                 "band": [0.5, 45.0]}, indent=1))
    return {"manifest": manifest, "datasets": summary, "held_out": held_out}


def export_downstream(out: Path, spec: str, like: Path) -> dict:
    """The downstream epochs as the foundation model takes them (0.5-45 Hz, 128 Hz, float16), in the trial order
    of ``like`` (``export_gpu_data.py``'s file: MOABB's epochs), whose fold indices are copied."""
    from neurodecode.data.registry import get_dataset

    ref = np.load(like)
    ds = get_dataset(spec)
    data = ds.load(fmin=0.5, fmax=45.0, resample=SFREQ, progress=False)
    classes = [str(c) for c in ref["classes"]]
    labels = np.array([classes.index(c) for c in data.labels])
    subject = data.groups("subject").astype(int)
    if not (np.array_equal(labels, ref["y"]) and np.array_equal(subject, ref["subject"])):
        raise SystemExit(f"{spec}: the trials are not in the order of {like}; its folds cannot be reused")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, X=data.X.astype(np.float16), y=labels.astype(np.int8), classes=ref["classes"],
                        subject=subject.astype(np.int16), folds=ref["folds"], sfreq=data.info.sfreq,
                        ch_names=np.array(data.info.ch_names), positions=data.info.positions,
                        band=np.array([0.5, 45.0]), dataset=ds.name)
    return {"X": data.X.shape, "sfreq": data.info.sfreq, "bytes": out.stat().st_size}


# -- step 2: the GPU run -----------------------------------------------------------------------

def roc_auc(y, score):
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


class Rows(list):
    """Rows kept and written as they come (a run cut short keeps what it finished)."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def append(self, row):
        super().append(row)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")


def load_downstream(path, corpus):
    """The downstream epochs, their positions (looked up by name in the corpus's recordings) and folds."""
    from neurodecode.models.published import normalise_name

    d = np.load(path)
    if "positions" in d:
        return (d["X"].astype(np.float32), d["y"].astype(np.int64), d["subject"].astype(int), d["folds"],
                float(d["sfreq"]), d["positions"].astype(float))
    table = {}
    for record in corpus.recordings:
        for name, pos in zip(record["ch_names"], record["positions"]):
            table.setdefault(normalise_name(name), pos)
    names = [str(n) for n in d["ch_names"]]
    missing = [n for n in names if normalise_name(n) not in table]
    if missing:
        raise SystemExit(f"no position in the corpus for channels {missing[:5]}")
    positions = np.array([table[normalise_name(n)] for n in names])
    return (d["X"].astype(np.float32), d["y"].astype(np.int64), d["subject"].astype(int), d["folds"],
            float(d["sfreq"]), positions)


def corpus_patches(corpus, n_windows):
    """Window-normalised single-channel patches of the first windows, as (n, 1, PATCH) trials."""
    import torch

    tokens = torch.stack([corpus[i][0] for i in range(n_windows)]).float().numpy()
    valid = tokens[..., 0] > 0.5
    return tokens[..., 5:][valid][:, None, :]


def window_normalised(X, sfreq, positions):
    """Trials resampled to the model's rate and scaled as the encoder sees them: (n, n_chans, n_patches * PATCH)."""
    from neurodecode.models.foundation import resample_trials, trials_to_tokens

    Xr = resample_trials(X, sfreq, SFREQ)
    tokens = trials_to_tokens(Xr, positions, PATCH, SFREQ)
    n, n_chans = X.shape[0], X.shape[1]
    n_patches = tokens.shape[1] // n_chans
    return tokens[..., 5:].reshape(n, n_chans, n_patches * PATCH)


def bag_of_tokens(tokenizer, Xn):
    """Per-channel code counts of window-normalised trials: (n_trials, n_chans * n_codes)."""
    n, n_chans, n_times = Xn.shape
    codes = tokenizer.transform(Xn.reshape(n * n_chans, 1, n_times)).reshape(n, n_chans, -1)
    counts = np.zeros((n, n_chans, tokenizer.n_codes), np.float32)
    for c in range(tokenizer.n_codes):
        counts[..., c] = (codes == c).sum(-1)
    return counts.reshape(n, -1)


def within_folds(subject, folds, s):
    idx = np.flatnonzero(subject == s)
    for k in range(folds.shape[0]):
        yield k, idx[folds[k, idx] == 0], idx[folds[k, idx] == 1]


def _lr(C=1.0):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))


def motor_band(X, sfreq, band=(8.0, 32.0)):
    """The classical anchor's input from broadband epochs: MOABB's 8-32 Hz band-pass (4th-order Butterworth,
    zero-phase), applied here to each epoch rather than to the continuous run."""
    from scipy.signal import butter, sosfiltfilt

    sos = butter(4, band, btype="bandpass", fs=sfreq, output="sos")
    return sosfiltfilt(sos, X.astype(np.float64), axis=-1)


def cov_ts_lr():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from neurodecode.transforms.covariance import Covariances, TangentSpace

    return make_pipeline(Covariances(estimator="oas", device="cpu"), TangentSpace(device="cpu"),
                         LogisticRegression(max_iter=1000))


def feature_folds(name, F, y, subject, folds, subjects, rows, C=1.0, jobs=4):
    """A standardised logistic regression on fixed per-trial features, on every subject's folds."""
    from joblib import Parallel, delayed

    def one(s, k, tr, te):
        clf = _lr(C).fit(F[tr], y[tr])
        return {"pipeline": name, "protocol": "within", "subject": int(s), "fold": k,
                "score": roc_auc(y[te], clf.predict_proba(F[te])[:, 1])}

    tasks = [(s, k, tr, te) for s in subjects for k, tr, te in within_folds(subject, folds, s)]
    for row in Parallel(n_jobs=jobs)(delayed(one)(*t) for t in tasks):
        rows.append(row)


def classical_folds(X, y, subject, folds, subjects, rows, jobs=4):
    from joblib import Parallel, delayed

    def one(s, k, tr, te):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            clf = cov_ts_lr().fit(X[tr].astype(np.float64), y[tr])
            return {"pipeline": "Cov+TS+LR", "protocol": "within", "subject": int(s), "fold": k,
                    "score": roc_auc(y[te], clf.decision_function(X[te].astype(np.float64)))}

    tasks = [(s, k, tr, te) for s in subjects for k, tr, te in within_folds(subject, folds, s)]
    for row in Parallel(n_jobs=jobs)(delayed(one)(*t) for t in tasks):
        rows.append(row)


def anchor_check(downstream: Path, like: Path, jobs: int) -> dict:
    """Cov+TS+LR on every subject's MOABB folds, on MOABB's epochs (``like``) and on the broadband export band-passed
    per epoch (what the GPU run feeds it): how far the anchor moves with its input."""
    d, ref = np.load(downstream), np.load(like)
    out = {}
    for name, X, sfreq in (("MOABB epochs (8-32 Hz, 160 Hz)", ref["X"].astype(np.float64), float(ref["sfreq"])),
                           ("broadband export, 8-32 Hz per epoch (128 Hz)", None, float(d["sfreq"]))):
        X = motor_band(d["X"].astype(np.float32), sfreq) if X is None else X
        rows = []
        subject = d["subject"].astype(int)
        classical_folds(X, d["y"].astype(int), subject, d["folds"], np.unique(subject), rows, jobs=jobs)
        per_subject = {}
        for row in rows:
            per_subject.setdefault(row["subject"], []).append(row["score"])
        means = np.array([np.mean(v) for v in per_subject.values()])
        out[name] = {"mean": round(float(means.mean()), 3), "std": round(float(means.std()), 3), "subjects": len(means)}
    return out


def pretrain_encoder(corpus, tokenizer, args, device, rows_out):
    """Masked-code pretraining; returns the encoder and the throughput record."""
    import torch

    from neurodecode.models.foundation import FoundationEncoder, pretrain, train_flops_per_sample
    from neurodecode.training import TrainConfig

    shape = SMOKE_ENCODER if args.smoke else BIG
    torch.manual_seed(args.seed)
    encoder = FoundationEncoder(patch_size=PATCH, sfreq=SFREQ, **shape)
    config = TrainConfig(max_epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=0.05,
                         warmup_fraction=0.05, val_fraction=0.0, patience=None, device=device,
                         compile=not args.smoke and not args.no_compile, num_workers=args.workers, seed=args.seed,
                         verbose=True)
    result = pretrain(corpus, encoder, config, tokenizer=tokenizer, mask_ratio=0.5)
    module = result.model
    n_params = sum(p.numel() for p in module.parameters() if p.requires_grad)
    flops = train_flops_per_sample(module, corpus.n_tokens, shape["d_model"], shape["n_layers"])
    steady = result.history[1:] or result.history
    seconds = sum(h["seconds"] for h in steady)
    samples = len(corpus) * len(steady)
    throughput = samples / seconds
    record = {"params": n_params, "encoder_params": sum(p.numel() for p in encoder.parameters()),
              "batch_size": args.batch_size, "n_tokens": corpus.n_tokens, "patch": PATCH, "sfreq": SFREQ,
              "shape": shape, "epochs": len(result.history), "samples_per_epoch": len(corpus),
              "compiled": result.compiled_at is not None, "workers": args.workers,
              "first_epoch_s": result.history[0]["seconds"], "steady_epochs": len(steady),
              "samples_per_s": throughput, "tokens_per_s": throughput * corpus.n_tokens,
              "flops_per_sample": flops, "achieved_tflops": throughput * flops / 1e12,
              "mfu": throughput * flops / PEAK_FLOPS, "peak_flops": PEAK_FLOPS,
              "loss_first": result.history[0]["train_loss"], "loss_last": result.history[-1]["train_loss"],
              "history": result.history, "padded": corpus.padded}
    rows_out.write_text(json.dumps(record, indent=1))
    return module.encoder.eval(), record


def run(args) -> int:
    import torch

    from neurodecode.models.foundation import EEGCorpus, FoundationClassifier, save_encoder
    from neurodecode.transforms.tokenizers import KMeansTokenizer, VQTokenizer

    device = "cpu" if args.smoke else args.device
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.jsonl"):
        stale.unlink()
    started = time.perf_counter()
    machine = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
               "torch": torch.__version__, "cpus": os.cpu_count(), "smoke": args.smoke,
               "command": " ".join(sys.argv)}
    held = json.loads((args.corpus / "holdout.json").read_text())
    held_out = [int(s) for s in held["subjects"]]
    base = held.get("spec", held["dataset"]).partition(":")[0]
    corpus = EEGCorpus(args.corpus, n_tokens=N_TOKENS if not args.smoke else 64, patch_size=PATCH,
                       samples_per_epoch=args.samples_per_epoch, seed=args.seed)
    leaked = sorted({(r["spec"], r["subject"]) for r in corpus.recordings
                     if r.get("spec", "").partition(":")[0] == base and r["subject"] in held_out})
    if leaked:
        raise SystemExit(f"held-out subjects are in the pretraining corpus: {leaked}")
    export = json.loads((args.corpus / "export.json").read_text()) if (args.corpus / "export.json").is_file() else {}
    X, y, subject, folds, sfreq, positions = load_downstream(args.downstream, corpus)
    subjects = np.unique(subject)
    if args.smoke:
        keep = np.isin(subject, np.concatenate([subjects[:2], held_out[:2]]))
        X, y, subject, folds = X[keep], y[keep], subject[keep], folds[:, keep]
        subjects = np.unique(subject)
        held_out = held_out[:2]
    pretrain_subjects = [int(s) for s in subjects if s not in held_out]
    print(f"corpus: {len(corpus.recordings)} recordings, {corpus.total_samples / SFREQ / 60:.1f} channel-minutes... "
          f"downstream {X.shape}, held out {held_out}", flush=True)
    timings = {}

    # Tokenizers, fitted on corpus patches; reported on the held-out subjects' trials.
    t0 = time.perf_counter()
    patches = corpus_patches(corpus, 64 if args.smoke else 1500)
    n_codes = 16 if args.smoke else args.codes
    kmeans = KMeansTokenizer(n_codes, PATCH, max_patches=100_000, random_state=args.seed).fit(patches)
    timings["kmeans_fit_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    vq = VQTokenizer(n_codes, PATCH, max_epochs=2 if args.smoke else 20, batch_size=1024, lr=2e-3,
                     max_patches=300_000, device=device, random_state=args.seed).fit(patches)
    timings["vq_fit_s"] = time.perf_counter() - t0
    Xn = window_normalised(X, sfreq, positions)
    held_mask = np.isin(subject, held_out)
    flat_held = Xn[held_mask].reshape(-1, 1, Xn.shape[-1])
    tokenizers = {"kmeans": kmeans, "vq": vq}
    token_report = {name: {**tok.codebook_report(flat_held), "fit_patches": int(len(patches))}
                    for name, tok in tokenizers.items()}
    token_report["vq"]["restarts"] = vq.restarts_
    (out / "tokenizers.json").write_text(json.dumps({"report": token_report, "timings": timings}, indent=1))
    print(json.dumps(token_report), flush=True)

    # Pretraining (the throughput figure).
    encoder, throughput = pretrain_encoder(corpus, vq, args, device, out / "pretrain.json")
    save_encoder(encoder, out / "encoder.pt") if args.keep_encoder else None
    print({k: v for k, v in throughput.items() if k != "history"}, flush=True)
    if args.pretrain_only:
        return 0

    rows = Rows(out / "downstream.jsonl")
    jobs = 2 if args.smoke else min(8, os.cpu_count() or 1)
    # The model is fed two inputs, each measured: the broadband trials (as in pretraining, 0.5-45 Hz) and the
    # anchor's own input (MOABB's 8-32 Hz band, where motor imagery lives).
    X_classical = motor_band(X, sfreq)
    inputs = {"broadband": X, "8-32 Hz": X_classical.astype(np.float32)}
    # Within-session, MOABB folds. Fixed features first (linear probe, bag of tokens), then Cov+TS+LR.
    t0 = time.perf_counter()
    probe = FoundationClassifier(encoder, mode="linear", positions=positions, sfreq=sfreq, device=device,
                                 batch_size=64)
    probe.fit(X[:4], np.array([0, 1, 0, 1]))  # only binds the signal contract; the features are what is used
    embeddings = {band: probe.embed(Xb) for band, Xb in inputs.items()}
    for band, Xb in inputs.items():
        feature_folds(f"FM linear probe [{band}]", embeddings[band], y, subject, folds, subjects, rows, jobs=jobs)
        Xbn = Xn if band == "broadband" else window_normalised(Xb, sfreq, positions)
        for name, tok in tokenizers.items():
            feature_folds(f"bag-of-tokens ({name}) + LR [{band}]", bag_of_tokens(tok, Xbn), y, subject, folds,
                          subjects, rows, C=0.01, jobs=jobs)
    classical_folds(X_classical, y, subject, folds, subjects, rows, jobs=jobs)
    timings["within_features_s"] = time.perf_counter() - t0

    finetune = dict(mode="finetune", positions=positions, sfreq=sfreq, device=device, lr=args.finetune_lr,
                    max_epochs=2 if args.smoke else args.finetune_epochs, batch_size=16, val_fraction=0.2,
                    patience=5, weight_decay=0.05)
    t0 = time.perf_counter()
    for seed in args.seeds:
        for band, Xb in inputs.items():
            for s in (held_out if not args.finetune_all else subjects):
                for k, tr, te in within_folds(subject, folds, s):
                    clf = FoundationClassifier(encoder, random_state=seed, **finetune).fit(Xb[tr], y[tr])
                    rows.append({"pipeline": f"FM fine-tuned [{band}]", "protocol": "within", "subject": int(s),
                                 "fold": k, "seed": seed, "score": roc_auc(y[te], clf.predict_proba(Xb[te])[:, 1]),
                                 "epochs": len(clf.history_)})
    timings["within_finetune_s"] = time.perf_counter() - t0

    # Cross-subject: trained on the pretraining subjects' labelled trials, tested on each held-out subject.
    t0 = time.perf_counter()
    train = np.isin(subject, pretrain_subjects)
    xsub = dict(finetune, max_epochs=2 if args.smoke else 20, batch_size=32, patience=6)
    fitted = {"Cov+TS+LR": (cov_ts_lr().fit(X_classical[train], y[train]), X_classical)}
    scratch = {"patch_size": PATCH, "sfreq": SFREQ, **(SMOKE_ENCODER if args.smoke else BIG)}
    for band, Xb in inputs.items():
        fitted[f"FM linear probe [{band}]"] = (_lr().fit(embeddings[band][train], y[train]), embeddings[band])
        for seed in args.seeds:
            fitted[f"FM fine-tuned [{band}]/{seed}"] = (
                FoundationClassifier(encoder, random_state=seed, **xsub).fit(Xb[train], y[train]), Xb)
            fitted[f"FM from scratch [{band}]/{seed}"] = (
                FoundationClassifier(None, scratch, random_state=seed, **{**xsub, "lr": 3e-4}).fit(Xb[train], y[train]),
                Xb)
    for name, (clf, inputs_of) in fitted.items():
        pipeline, _, seed = name.partition("/")
        for s in held_out:
            test = subject == s
            score = (clf.decision_function(inputs_of[test]) if pipeline == "Cov+TS+LR"
                     else clf.predict_proba(inputs_of[test])[:, 1])
            rows.append({"pipeline": pipeline, "protocol": "cross-subject", "subject": int(s),
                         "seed": int(seed) if seed else None, "score": roc_auc(y[test], score)})
    timings["cross_subject_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - started
    report = {"machine": machine, "timings": timings, "held_out": held_out, "pretrain_subjects": pretrain_subjects,
              "corpus": {"recordings": len(corpus.recordings), "channel_minutes": corpus.total_samples / SFREQ / 60,
                         "export": export.get("datasets")},
              "pretrain": {k: v for k, v in throughput.items() if k != "history"},
              "tokenizers": token_report, "summary": summarise(list(rows), held_out)}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report["summary"], indent=1), flush=True)
    print(f"== done in {timings['total_s']:.0f} s", flush=True)
    return 0


def summarise(rows, held_out, deep_dir=REPO / "docs" / "measured" / "deep_gpu_h200"):
    """Mean ± std over subjects (each subject's mean over folds and seeds), overall and on the held-out subjects;
    the deep pipelines' rows on the same folds added from ``deep_dir`` when present."""
    import pandas as pd

    frames = [pd.DataFrame(rows)]
    for path in sorted(Path(deep_dir).glob("within_scratch_*.jsonl")) + sorted(Path(deep_dir).glob("xsub_ea_*.jsonl")):
        deep = pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
        deep["protocol"] = "within" if "within" in path.name else "cross-subject (LOSO, EA, deep_gpu.py)"
        deep["pipeline"] = deep["pipeline"] + (" (scratch)" if "within" in path.name else " (EA)")
        frames.append(deep[["pipeline", "protocol", "subject", "score"]])
    df = pd.concat(frames, ignore_index=True)
    out = []
    for (pipeline, protocol), part in df.groupby(["pipeline", "protocol"]):
        per_subject = part.groupby("subject")["score"].mean()
        for label, subset in (("all", per_subject), ("held-out", per_subject[per_subject.index.isin(held_out)])):
            if len(subset):
                out.append({"pipeline": pipeline, "protocol": protocol, "subjects": label, "n": int(len(subset)),
                            "mean": round(float(subset.mean()), 3), "std": round(float(subset.std(ddof=0)), 3)})
    return out


def markdown(report_path: Path) -> str:
    """The run's figures as Markdown tables (for docs/foundation.md)."""
    report = json.loads(Path(report_path).read_text())
    p = report["pretrain"]
    lines = [f"Pretraining on {report['machine']['device']}: {p['params'] / 1e6:.1f} M trainable parameters, batch "
             f"{p['batch_size']} x {p['n_tokens']} tokens, {p['samples_per_s']:.0f} samples/s "
             f"({p['tokens_per_s'] / 1e6:.2f} M tokens/s), {p['achieved_tflops']:.0f} TFLOP/s, MFU "
             f"{100 * p['mfu']:.1f} % (compiled: {p['compiled']}, {p['workers']} DataLoader workers, first epoch "
             f"{p['first_epoch_s']:.0f} s); masked-code loss {p['loss_first']:.3f} -> {p['loss_last']:.3f}.", "",
             "| tokenizer | perplexity | dead codes | of | reconstruction error |", "|---|---:|---:|---:|---:|"]
    for name, t in report["tokenizers"].items():
        lines.append(f"| {name} | {t['perplexity']:.1f} | {t['dead_codes']} | {t['n_codes']} | "
                     f"{t['reconstruction_error']:.3f} |")
    lines += ["", "| pipeline | protocol | subjects | n | ROC-AUC |", "|---|---|---|---:|---|"]
    for row in sorted(report["summary"], key=lambda r: (r["protocol"], r["subjects"], -r["mean"])):
        lines.append(f"| {row['pipeline']} | {row['protocol']} | {row['subjects']} | {row['n']} | "
                     f"{row['mean']:.3f} ± {row['std']:.3f} |")
    lines.append(f"\nTimings (s): {json.dumps({k: round(v) for k, v in report['timings'].items()})}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, help="write the pretraining corpus here (step 1) and stop")
    parser.add_argument("--export-downstream", type=Path,
                        help="write the downstream epochs (0.5-45 Hz, 128 Hz) here, in the order and with the folds "
                             "of --like (step 1) and stop")
    parser.add_argument("--like", type=Path, default=Path(".gpu_data/eegmmidb_lr.npz"))
    parser.add_argument("--anchor-check", action="store_true",
                        help="Cov+TS+LR on --like's epochs and on --downstream band-passed, then stop")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--table", type=Path, help="print a run's report.json as Markdown tables, then stop")
    parser.add_argument("--datasets", nargs="+", default=["muse_p300", "kalunga2016", "eegmmidb:hands_feet",
                                                           "eegmmidb"])
    parser.add_argument("--downstream-dataset", default="eegmmidb")
    parser.add_argument("--holdout", type=int, default=5, help="last subjects of the downstream dataset left out")
    parser.add_argument("--max-mb", type=float, default=12.0)
    parser.add_argument("--shard-mb", type=float, default=4.0)
    parser.add_argument("--corpus", type=Path, default=Path(".gpu_data/pretrain"))
    parser.add_argument("--downstream", type=Path, default=Path(".gpu_data/eegmmidb_fm.npz"))
    parser.add_argument("--out", type=Path, default=Path("results/foundation"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--samples-per-epoch", type=int, default=40_960)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--workers", type=int, default=min(12, max(1, (os.cpu_count() or 2) - 2)))
    parser.add_argument("--codes", type=int, default=128)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--finetune-lr", type=float, default=1e-4)
    parser.add_argument("--finetune-epochs", type=int, default=15)
    parser.add_argument("--finetune-all", action="store_true", help="fine-tune within-session on every subject")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-encoder", action="store_true", help="write the pretrained encoder to OUT/encoder.pt")
    parser.add_argument("--pretrain-only", action="store_true",
                        help="stop after pretraining (tokenizers.json and pretrain.json only): a throughput run")
    parser.add_argument("--smoke", action="store_true", help="tiny, on the CPU: checks the script, not the model")
    args = parser.parse_args(argv)
    if args.table is not None:
        print(markdown(args.table))
        return 0
    if args.anchor_check:
        print(json.dumps(anchor_check(args.downstream, args.like, args.jobs), indent=1))
        return 0
    if args.export_downstream is not None:
        print(export_downstream(args.export_downstream, args.downstream_dataset, args.like))
        return 0
    if args.export is not None:
        result = export_corpus(args.export, args.datasets, args.downstream_dataset, args.holdout, args.max_mb,
                               args.shard_mb)
        print(json.dumps(result, indent=1, default=str))
        return 0
    for what, path in (("--corpus", args.corpus / "holdout.json"), ("--downstream", args.downstream)):
        if not path.is_file():
            print(f"error: {what}: {path} not found: write it first with --export / --export-downstream",
                  file=sys.stderr)
            return 2
    if args.smoke:
        args.epochs, args.samples_per_epoch, args.batch_size, args.workers = 2, 128, 32, 1
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
