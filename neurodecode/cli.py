"""The ``neurodecode`` command line: argument parsing, one-line errors, exit codes; the work is in the stages."""

from __future__ import annotations

import argparse
import json
import sys
import time

_DESCRIPTION = """\
Decode brain signals (EEG, MEG, fMRI) with scikit-learn pipelines, and benchmark pipelines on
local datasets with MOABB's evaluations, offline."""

_EPILOG = """\
Each command has its own --help (neurodecode benchmark --help).

data:
  Datasets are read from the folder named by the environment variable NEURODECODE_DATA, one
  sub-folder per dataset card. Nothing is downloaded unless you ask (NEURODECODE_ALLOW_DOWNLOAD=1).

examples:
  export NEURODECODE_DATA=~/data
  neurodecode datasets --no-load
  neurodecode benchmark pipelines --subjects 1-3 --out results/benchmark

exit status: 0 success, 1 something failed (a dataset, a pipeline), 2 a usage mistake."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit status 2), not the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _format_counts(counts: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) if counts else "-"


def _format_shape(shape) -> str:
    return "(" + ", ".join("ragged" if s is None else str(s) for s in shape) + ")"


def datasets_table(load: bool = True, names=None, stream=None, *, verify: bool = False,
                   card_dirs=()) -> list[dict]:
    """Print one row per dataset card: files present and verified, and what its loader reports.

    ``verify`` rehashes every file, ignoring the checksum cache (``--verify``); ``card_dirs``
    adds a user's cards, each a ``.toml`` file or a folder of them (``--cards``).
    Returns the rows as dictionaries (also written with ``--json``).
    """
    from .data.cards import DATA_ENV, list_cards
    from .data.errors import NeurodecodeDataError
    from .data.registry import summarize

    stream = stream or sys.stdout
    rows = []
    try:
        every = list_cards(card_dirs)
    except NeurodecodeDataError as err:
        raise SystemExit(f"neurodecode datasets: {err}") from None
    cards = [c for c in every if names is None or c.name in names]
    unknown = set(names or ()) - {c.name for c in cards}
    if unknown:
        raise SystemExit(f"unknown dataset(s) {sorted(unknown)}; known: {[c.name for c in every]}")
    for card in cards:
        status = card.verify_all() if verify else card.status()
        row = {"dataset": card.name, "modality": card.modality, "licence": card.licence,
               "files": status["total"], "present": status["present"], "verified": status["verified"],
               "unverified": status["unverified"], "listed": status["listed"], "missing": status["missing"],
               "mismatched": status["mismatched"], "loads": [], "error": None}
        if status["error"]:
            row["error"] = status["error"]
        elif load and status["present"] == status["total"]:
            start = time.perf_counter()
            try:
                row["loads"] = [{"what": what, "shape": list(shape), "classes": counts}
                                for what, shape, counts in summarize(card)]
            except NeurodecodeDataError as err:
                row["error"] = f"{type(err).__name__}: {err}"
            row["load_seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        _print_row(row, stream)
    print(f"\n{len(rows)} dataset card(s); data folder from ${DATA_ENV}.", file=stream)
    return rows


def _describe_specs(specs, *, load: bool, stream=None) -> int:
    """One block per dataset spec (card file, BIDS folder, moabb:Name): paradigm, subjects, first subject's epochs."""
    from .data.errors import NeurodecodeDataError
    from .data.registry import get_dataset

    stream = stream or sys.stdout
    status = 0
    for spec in specs:
        try:
            ds = get_dataset(spec)
            subjects = list(ds.subjects())
            p = ds.paradigm
            print(f"\n{ds.name}  [{ds.modality}, {p.kind}]  classes {list(p.classes)}, trials {list(p.interval)} s "
                  f"after each cue, band {list(p.band) if p.band else 'none'}", file=stream)
            print(f"  subjects present: {subjects if len(subjects) <= 12 else f'{subjects[:10]}... ({len(subjects)})'}",
                  file=stream)
            if load and subjects:
                data = ds.load(subjects[:1])
                print(f"  subject {subjects[0]}: epochs {_format_shape(data.shape)} at {data.info.sfreq:g} Hz; "
                      f"classes {_format_counts(data.class_counts())}", file=stream)
        except (NeurodecodeDataError, ValueError, OSError) as err:
            print(f"neurodecode datasets: {spec}: {str(err).splitlines()[0]}", file=sys.stderr)
            status = 1
    return status


def _print_row(row: dict, stream) -> None:
    unverified = row.get("unverified", 0)  # files of a user's card that give no sha256
    ok = row["verified"] + unverified == row["files"]
    state = (("verified" if not unverified else "present, not all verifiable") if ok
             else ("MISSING" if row["present"] < row["files"] else "CHECKSUM MISMATCH"))
    listed = row.get("listed", row["files"])  # a partial card lists more files than are expected here
    print(f"\n{row['dataset']}  [{row['modality']}]  files {row['present']}/{row['files']} present"
          f"{f' (of {listed} the card lists)' if listed != row['files'] else ''}, "
          f"{row['verified']} verified{f', {unverified} unverified (no sha256)' if unverified else ''}: {state}",
          file=stream)
    print(f"  licence: {row['licence']}", file=stream)
    for load in row["loads"]:
        print(f"  {load['what']}: shape {_format_shape(load['shape'])}; classes {_format_counts(load['classes'])}",
              file=stream)
    if row["missing"][:3] and not row["error"]:
        print(f"  missing: {row['missing'][:3]}{' ...' if len(row['missing']) > 3 else ''}", file=stream)
    if row["mismatched"]:
        print(f"  checksum mismatch: {row['mismatched'][:3]}", file=stream)
    if row["error"]:
        print(f"  error: {row['error']}", file=stream)


def _subjects(text: str) -> list:
    """``"1-3,7"`` -> ``[1, 2, 3, 7]``; a reversed range or an empty part is refused, not read as nothing."""
    out = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if dash else int(lo)
        except ValueError:
            raise argparse.ArgumentTypeError(f"subjects must look like 1-3,7; got {text!r}") from None
        if last < first:
            raise argparse.ArgumentTypeError(f"subject range {part.strip()!r} is reversed (write {last}-{first})")
        out += [s for s in range(first, last + 1) if s not in out]
    return out


def _add_benchmark_parser(sub) -> None:
    from .benchmark.planner import CALIBRATION_MODES, DEFAULT_DATASET, DEFAULT_N_SUBJECTS, EVALUATIONS

    bench = sub.add_parser(
        "benchmark", help="run the pipelines of a folder on datasets, fold by fold, and write a report",
        description="Runs each pipeline of PIPELINES_DIR (MOABB YAML, or .py with a PIPELINE dict) with MOABB's "
                    "evaluations, offline. Every finished fold is appended to OUT/results.jsonl, keyed by a hash "
                    "of the pipeline's parameters: a rerun skips stored folds, an edited pipeline is recomputed. "
                    "The report (HTML, PNG, CSV, failures.csv) goes to OUT/report/. "
                    "Pipeline files are code and run when loaded: a .py file is executed, and a YAML file imports "
                    "and calls what its steps name. Only run pipeline folders you trust. With --pipelines, only "
                    "the files declaring those names are loaded (a YAML's name: key, a .py file's stem or a "
                    "literal name = \"...\" or \"name\": \"...\" in it, all read without running anything). "
                    "Exit status: 0 all ran, 1 a pipeline file failed to load or a pipeline failed, 2 a usage "
                    "mistake (one line on stderr).")
    bench.add_argument("pipelines_dir", nargs="?", default="pipelines", help="folder or file (default: pipelines)")
    bench.add_argument("--datasets", nargs="+", default=[DEFAULT_DATASET], metavar="DATASET",
                       help="package datasets by name or alias (`neurodecode datasets` lists them; NAME:VARIANT "
                            "picks a task), a card file (path/to/card.toml), a BIDS folder, or moabb:ClassName; "
                            f"each runs with the paradigm its card declares (default: {DEFAULT_DATASET})")
    bench.add_argument("--subjects", type=_subjects, default=None,
                       help=f"e.g. 1-3,7 (default: the first {DEFAULT_N_SUBJECTS} subjects present; --full: all)")
    bench.add_argument("--pipelines", nargs="+", default=None, metavar="NAME", help="only these pipeline names")
    bench.add_argument("--evaluation", choices=list(EVALUATIONS), default="within-session",
                       help="within-session, cross-session, cross-subject (leave one subject out) and pseudo-online "
                            "as MOABB runs them; transfer: pretrained on the other subjects, calibrated on each of "
                            "the held-out subject's within-session folds; learning-curve: the held-out subject's "
                            "score against 0, 4, 8, 16 and 36 labelled calibration trials per class")
    # Checked by run_benchmark, not by argparse choices, so that a wrong mode is one line (exit 2).
    bench.add_argument("--calibration", default=None, metavar="MODE",
                       help="cross-subject only: MOABB's cs_mode, how much of the held-out subject the pipelines "
                            f"get as calibration: {', '.join(m.upper() for m in CALIBRATION_MODES)} (default "
                            "TRAIN: none). Part of the result key")
    bench.add_argument("--out", default="benchmarks/results/benchmark", help="results folder")
    bench.add_argument("--n-jobs", type=int, default=1, help="folds in parallel (joblib processes)")
    bench.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="Dask scheduler address, or 'local' for a local cluster")
    bench.add_argument("--full", action="store_true", help="the full study: every subject and every pipeline")
    bench.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                       help="run the pipelines' torch parts (deep networks, GPU geometry) there; auto: CUDA when "
                            "present. Part of the result key (default: as each pipeline file says)")
    bench.add_argument("--no-report", action="store_true", help="only run the folds")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")


def _benchmark(args) -> int:
    from .benchmark.runner import BenchmarkConfig, run_benchmark
    from .reports.benchmark_report import write_report

    config = BenchmarkConfig(pipelines_dir=args.pipelines_dir, datasets=args.datasets, subjects=args.subjects,
                             pipelines=args.pipelines, evaluation=args.evaluation, out=args.out,
                             n_jobs=args.n_jobs, scheduler=args.scheduler, full=args.full, device=args.device,
                             calibration=args.calibration)
    from .data.errors import NeurodecodeDataError

    try:
        results = run_benchmark(config, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, NeurodecodeDataError) as err:
        # Operator mistakes and bad data: what is wrong, in one line; rows already written stay.
        print(f"neurodecode benchmark: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"neurodecode benchmark: interrupted; finished folds are kept in {args.out}/results.jsonl and "
              "the same command resumes", file=sys.stderr)
        return 130
    failures = results.attrs.get("failures", [])
    if not args.no_report and (not results.empty or failures):
        index = write_report(results, f"{args.out}/report", failures=failures)
        print(f"report: {index}")
    return 0 if not failures and not results.empty else 1


def _events(text: str) -> dict:
    """``"T1=left_hand,T2=right_hand"`` -> ``{"T1": "left_hand", "T2": "right_hand"}``."""
    out = {}
    for part in text.split(","):
        old, eq, new = part.partition("=")
        if not (eq and old.strip() and new.strip()):
            raise argparse.ArgumentTypeError(f"events must look like T1=left_hand,T2=right_hand; got {text!r}")
        out[old.strip()] = new.strip()
    return out


def _add_batch_parser(sub) -> None:
    batch = sub.add_parser(
        "batch", help="apply a model file to every recording of a folder: QC, predictions, summary, report",
        description="Finds every recording under INPUT_DIR (EDF, BDF, GDF, FIF, BrainVision .vhdr, EEGLAB .set), "
                    "matches it to the model's channels and rate, checks its quality, predicts every window "
                    "unless QC failed, and writes OUT/results/<id>.csv and .json, OUT/summary.csv and "
                    "OUT/report/index.html. Recordings are named by an id (12 hex digits of the sha256 of their "
                    "path below INPUT_DIR); no output holds a file name, a patient's name or a header date "
                    "(--keep-names writes OUT/names.csv, the id -> file mapping). A rerun skips recordings "
                    "finished with the same input bytes, model file, options and neurodecode version "
                    "(OUT/manifest.jsonl) and redoes the rest. Exit status: 0 every recording was processed "
                    "(ok or flagged), 1 at least one failed (unreadable, wrong channels...), 2 a usage mistake.")
    batch.add_argument("input_dir", help="folder of recordings (searched recursively)")
    batch.add_argument("--model", required=True, help="model file (neurodecode train, or save_model)")
    batch.add_argument("--out", required=True, help="output folder")
    batch.add_argument("--n-jobs", type=int, default=1, help="recordings in parallel (joblib processes)")
    batch.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="Dask scheduler address, or 'local' for a local cluster of --n-jobs workers")
    batch.add_argument("--resample", action="store_true",
                       help="resample recordings at another rate to the model's (default: as the model card says)")
    batch.add_argument("--score-flagged", action="store_true", help="predict recordings that failed QC too")
    batch.add_argument("--keep-names", action="store_true", help="also write OUT/names.csv (id -> file)")
    batch.add_argument("--ids", choices=["hash", "name"], default="hash",
                       help="name recordings by a hash of their path (default) or by the path itself")
    batch.add_argument("--events", type=_events, default=None, metavar="OLD=CLASS,...",
                       help="rename annotations to the model's classes, e.g. T1=left_hand,T2=right_hand, so that "
                            "windows get a true class and an accuracy")
    batch.add_argument("--montage", default=None, metavar="NAME",
                       help="standard montage giving positions by channel name to recordings without any "
                            "(e.g. colin27_1005), for the report's scalp maps")
    batch.add_argument("--step", type=float, default=None, metavar="SECONDS",
                       help="seconds between windows (default: a quarter of the model's window)")
    batch.add_argument("--no-report", action="store_true", help="do not write the HTML report")
    batch.add_argument("--no-progress", action="store_true", help="no progress bar")


def _batch(args) -> int:
    from ._utils.files import private_umask
    from ._utils.scaleout import SchedulerUnreachableError
    from .batch.errors import BatchError
    from .batch.report import write_report
    from .batch.runner import run_batch

    where = "neurodecode batch: error:"
    if args.n_jobs == 0 or args.n_jobs < -1:
        print(f"{where} --n-jobs must be a positive number or -1, got {args.n_jobs}", file=sys.stderr)
        return 2
    with private_umask():  # health data: every file the run creates (report included) is the user's alone
        try:
            summary = run_batch(args.input_dir, args.model, args.out, n_jobs=args.n_jobs, scheduler=args.scheduler,
                                resample=True if args.resample else None, score_flagged=args.score_flagged,
                                progress=not args.no_progress, ids=args.ids, keep_names=args.keep_names,
                                step_s=args.step, events=args.events, montage=args.montage)
        except (BatchError, SchedulerUnreachableError) as err:
            print(f"{where} {_one_line(err)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"neurodecode batch: interrupted; finished recordings are kept in {args.out} and the same "
                  "command resumes", file=sys.stderr)
            return 130
        shown = summary.drop(columns=["reason", "model_name", "model_sha256"]).round({"accuracy": 3}).astype(object)
        print(f"model: {summary.attrs['model_name']} (sha256 {summary.attrs['model_sha256']})")
        print(shown.where(shown.notna(), "-").to_string(index=False))
        counts = summary[[c for c in summary.columns if c.startswith("n_") and c not in ("n_windows", "n_annotated")]]
        single = int(((counts > 0).sum(axis=1) == 1).where(summary["status"] != "failed", False).sum())
        if single:
            print(f"note: {single} recording(s) had every window predicted as one class: read their accuracy "
                  "against chance (the report shows balanced accuracy and chance levels)")
        if not args.no_report:
            try:
                print(f"report: {write_report(args.out)}")
            except OSError as err:
                print(f"{where} cannot write the report to {args.out}: {err.strerror or err}; the results are "
                      "kept, and `neurodecode batch` again (or write_report) writes it", file=sys.stderr)
                return 2
    return 1 if (summary["status"] == "failed").any() else 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _add_train_parser(sub) -> None:
    from .benchmark.planner import DEFAULT_DATASET

    train = sub.add_parser(
        "train", help="cross-validate a pipeline on a dataset, fit it on every trial and save it as a model file",
        description="Loads PIPELINE_FILE (MOABB YAML or .py; it is code and runs when loaded), cross-validates the "
                    "pipeline on the dataset's cue-locked trials twice (ROC AUC for two classes, balanced accuracy "
                    "otherwise): leaving subjects out (GroupKFold by subject, min(CV, subjects) folds; the headline, "
                    "the figure for a new person) and pooling every subject's trials (stratified folds, seed 42), "
                    "with chance level and a WARNING when the headline's 95% interval reaches chance; then fits it "
                    "on all trials and writes a model file (a zip of the model in skops' format and its card) plus "
                    "the card as OUT.card.json for reading. Progress goes to stderr. Model files load without "
                    "running code; a pipeline that cannot be stored, or an OUT that cannot be written, is refused "
                    "before training. Exit status: 0 saved, 1 training failed, 2 a usage mistake or an output "
                    "that cannot be written.")
    train.add_argument("pipeline_file", metavar="PIPELINE_FILE", help="a pipeline file (or a folder, with --pipeline)")
    train.add_argument("--dataset", default=DEFAULT_DATASET, metavar="SPEC",
                       help=f"a package dataset, a card file, a BIDS folder or moabb:ClassName (default: "
                            f"{DEFAULT_DATASET})")
    train.add_argument("--subjects", type=_subjects, default=None, help="e.g. 1-3,7 (default: every subject present)")
    train.add_argument("--pipeline", default=None, metavar="NAME", help="the pipeline, when the file defines several")
    train.add_argument("--out", default=None, help="model file to write (default: <pipeline name>.ndm)")
    train.add_argument("--cv", type=int, default=5,
                       help="cross-validation folds (default: 5; leaving subjects out: at most one per subject)")
    train.add_argument("--name", default=None, help="the model's name (default: '<pipeline> on <dataset>')")
    train.add_argument("--allow-resample", action="store_true",
                       help="let `neurodecode predict` resample recordings at another rate without --resample")
    train.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _train(args) -> int:
    import contextlib
    import re
    import warnings
    from pathlib import Path

    from ._utils.files import write_atomically
    from .batch.train import check_writable, score_lines, train_model
    from .contract.model_file import ModelFileError
    from .contract.pipeline_files import PIPELINE_SUFFIXES, declared_names, load_pipelines
    from .data.errors import NeurodecodeDataError

    where = "neurodecode train: error:"
    folder = Path(args.pipeline_file)
    if folder.is_dir() and not args.pipeline:
        # Loading a folder runs every file in it; its names can be listed without running anything.
        names = []
        for file in sorted(folder.iterdir()):
            if file.suffix in PIPELINE_SUFFIXES and not file.name.startswith("_"):
                try:
                    names += declared_names(file)
                except ValueError:
                    continue
        print(f"{where} {folder} is a folder of pipelines {names}; pick one with --pipeline NAME", file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():  # libraries' deprecation notes on import would break the one-line output
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            specs, failures = load_pipelines(args.pipeline_file, names=[args.pipeline] if args.pipeline else None)
    except (ValueError, FileNotFoundError) as err:
        print(f"{where} {_one_line(err)}", file=sys.stderr)
        return 2
    if failures:
        print(f"{where} {failures[0][0]} did not load: {_one_line(failures[0][1])}", file=sys.stderr)
        return 2
    if len(specs) != 1:
        print(f"{where} {args.pipeline_file} defines {len(specs)} pipelines {[s.name for s in specs]}; "
              "pick one with --pipeline NAME", file=sys.stderr)
        return 2
    spec = specs[0]
    out = Path(args.out) if args.out else Path(re.sub(r"[^A-Za-z0-9_.-]+", "_", spec.name).strip("_") + ".ndm")
    card_path = out.with_name(out.name + ".card.json")
    try:
        for path, what in ((out, "model file"), (card_path, "card")):  # before any data are loaded
            check_writable(path, what=what)
        _, card = train_model(spec, args.dataset, subjects=args.subjects, cv=args.cv, out=out, name=args.name,
                              resample=args.allow_resample, progress=not args.quiet)
    except (ValueError, FileNotFoundError, NeurodecodeDataError, ModelFileError) as err:
        print(f"{where} {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - the pipeline itself failed: one line, no traceback
        print(f"neurodecode train: {spec.name} failed: {type(err).__name__}: {_one_line(err)}", file=sys.stderr)
        return 1
    print("\n".join(score_lines(card, _format_subjects(card.subjects))))
    try:
        write_atomically(card_path, (json.dumps(card.to_dict(), indent=2) + "\n").encode())
    except OSError as err:
        with contextlib.suppress(OSError):
            card_path.unlink(missing_ok=True)  # a previous model's card must not sit beside this model
        print(f"{where} the model was saved to {out}, but its card could not be written to {card_path}: "
              f"{err.strerror or err} (the card is inside the model file too)", file=sys.stderr)
        return 2
    print(f"model: {out}  card: {card_path}")
    return 0


def _format_subjects(subjects) -> str:
    if len(subjects) <= 10:
        return ",".join(str(s) for s in subjects)
    return f"{subjects[0]}..{subjects[-1]} ({len(subjects)})"


def _add_predict_parser(sub) -> None:
    pred = sub.add_parser(
        "predict", help="predict every window of recordings with a model file; one CSV per recording",
        description="Loads MODEL (a file from `neurodecode train`; refused if it names any type not trusted, and "
                    "no code from it runs), then for each RECORDING (EDF, BDF, FIF, BrainVision, EEGLAB...) "
                    "picks the model's channels by name, band-passes as in training and predicts sliding "
                    "windows of the trial's length, written to OUT/<file stem>.csv (start_s, end_s, predicted, "
                    "proba_<class>, and true/overlap when the file's annotations name the classes). A recording "
                    "that fails (missing channels, another sampling rate, unreadable) is reported in one line "
                    "and the others go on. Exit status: 0 all predicted, 1 a recording failed, 2 a usage mistake.")
    pred.add_argument("model", metavar="MODEL", help="model file (.ndm)")
    pred.add_argument("recordings", nargs="+", metavar="RECORDING", help="recording files")
    pred.add_argument("--out", default="predictions", metavar="DIR", help="folder for the CSVs (default: predictions)")
    pred.add_argument("--step", type=_positive_float, default=None, metavar="S",
                      help="seconds between window starts (default: a quarter of the trial window)")
    pred.add_argument("--resample", action="store_true",
                      help="resample recordings at another rate to the model's (default: refuse them, unless the "
                           "model was trained with --allow-resample)")


def _predict_summary(table, card) -> str:
    counts = table["predicted"].value_counts()
    step = float(table["start_s"].iloc[1] - table["start_s"].iloc[0]) if len(table) > 1 else 0.0
    parts = [f"{len(table)} windows of {card.window[1] - card.window[0]:g} s every {step:g} s",
             "predicted " + ", ".join(f"{c} {int(counts.get(c, 0))}" for c in card.class_names)]
    if "true" in table:
        cue = table[table["true"].notna()]
        if len(cue):
            parts.append(f"{len(cue)} cue windows, {float((cue['predicted'] == cue['true']).mean()):.2f} agree with "
                         "the annotations")
    if table.attrs.get("recentred"):
        parts.append(f"recentred without labels on {table.attrs['recentred']} windows of this recording")
    match = table.attrs.get("match", {})
    if match.get("resampled_from"):
        parts.append(f"resampled from {match['resampled_from']:g} Hz")
    if match.get("renamed"):
        parts.append(f"{len(match['renamed'])} channel names matched up to case/dots")
    if match.get("extra_channels"):
        parts.append(f"{len(match['extra_channels'])} extra channel(s) ignored")
    if match.get("bads"):
        parts.append(f"channels marked bad but used: {match['bads']}")
    return "; ".join(parts)


def _predict(args) -> int:
    from pathlib import Path

    from ._utils import files
    from .batch.predict import predict_recording
    from .contract.model_file import load_model
    from .data.errors import NeurodecodeDataError

    where = "neurodecode predict: error:"
    stems: dict = {}
    for rec in args.recordings:
        stems.setdefault(Path(rec).stem, []).append(rec)
    clashes = {stem: recs for stem, recs in stems.items() if len(recs) > 1}
    if clashes:
        stem, clashing = next(iter(clashes.items()))
        print(f"{where} recordings {clashing} would all write {stem}.csv; predict them into separate --out folders",
              file=sys.stderr)
        return 2
    try:
        model, card = load_model(args.model)  # the full trust check, before the output folder or any recording
    except NeurodecodeDataError as err:
        print(f"{where} {_one_line(err)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    with files.private_umask():  # health data: the predictions are the user's alone
        try:
            files.writable_folder(out, private=True)  # read-only, a file, full: known before any recording
        except OSError as err:
            print(f"{where} cannot use the output folder {out}: {err.strerror or err}", file=sys.stderr)
            return 2
        from .batch.calibrate import recentres

        failed = 0
        recentre = recentres(model)  # as batch does: a transfer model is recentred on each recording, without labels
        for rec in args.recordings:
            name = Path(rec).name
            try:
                table = predict_recording(model, card, rec, step_s=args.step,
                                          resample=True if args.resample else None, recentre=recentre)
            except Exception as err:  # noqa: BLE001 - one bad recording must not stop the others
                failed += 1
                message = _one_line(err)
                message = message[len(name) + 2:] if message.startswith(f"{name}: ") else message  # named once
                print(f"{name}: failed: {type(err).__name__}: {message}", file=sys.stderr)
                continue
            target = out / f"{Path(rec).stem}.csv"
            try:  # a reader never sees half a CSV, and a full disk leaves no partial file
                files.write_atomically(target, table.to_csv(index=False, float_format="%.6g").encode())
            except OSError as err:
                print(f"{where} cannot write to {out}: {err.strerror or err}; the predictions written so far are "
                      "complete, and the same command writes the rest", file=sys.stderr)
                return 2
            print(f"{name}: {_predict_summary(table, card)} -> {target}")
    if failed:
        print(f"neurodecode predict: {failed} of {len(args.recordings)} recording(s) failed", file=sys.stderr)
    return 1 if failed else 0


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1 (exclusive), got {text!r}")
    return value


def _add_calibrate_parser(sub) -> None:
    from .batch.calibrate import DEFAULT_HOLDOUT

    cal = sub.add_parser(
        "calibrate", help="adapt a transfer model to a new person from a calibration run; before/after on held-out "
                          "trials",
        description="Loads MODEL (the full trust check; refused unless it was trained with a transfer pipeline, "
                    "e.g. pipelines/RCT_TS_LR.py or FBCNet_EA.py), reads each RECORDING through the model's channel "
                    "and rate contract, cuts the cue-locked trials (the card's window and classes, from the "
                    "annotations naming them; map other names with --events), splits them in time order into a "
                    "calibration part and a held-out part (the last --holdout share), calibrates the model on the "
                    "first part (fine-tuning a network with the cues; a classical pipeline is recentred), or with "
                    "--unlabelled recentres it on every trial without labels, and prints balanced accuracy and "
                    "ROC-AUC (two classes) on the held-out part before and after, with chance. Writes OUT (its card "
                    "records the calibration) and OUT.calibration.png (the before/after figure). Exit status: 0 "
                    "written, 1 the calibration itself failed, 2 a usage mistake (a model that is not a transfer "
                    "model, a recording that does not match, an OUT that cannot be written).")
    cal.add_argument("model", metavar="MODEL", help="model file (.ndm) trained with a transfer pipeline")
    cal.add_argument("recordings", nargs="+", metavar="RECORDING", help="the new person's calibration recording(s)")
    cal.add_argument("--out", required=True, metavar="NEW", help="calibrated model file to write (.ndm)")
    cal.add_argument("--unlabelled", action="store_true",
                     help="use no label: recentre on every trial's signal (the held-out part is still the one scored)")
    cal.add_argument("--holdout", type=_fraction, default=DEFAULT_HOLDOUT, metavar="FRACTION",
                     help=f"share of the trials, the last in time, held out for scoring (default: {DEFAULT_HOLDOUT})")
    cal.add_argument("--events", type=_events, default=None, metavar="OLD=CLASS,...",
                     help="rename annotations to the model's classes, e.g. T1=left_hand,T2=right_hand")
    cal.add_argument("--resample", action="store_true",
                     help="resample recordings at another rate to the model's (default: as the model card says)")


def _calibrate(args) -> int:
    from .batch.calibrate import calibrate_model, calibration_lines, figure_path
    from .data.errors import NeurodecodeDataError

    import warnings

    try:
        with warnings.catch_warnings():  # libraries' deprecation notes on import would break the one-line output
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            _, card = calibrate_model(args.model, args.recordings, args.out, unlabelled=args.unlabelled,
                                      holdout=args.holdout, events=args.events,
                                      resample=True if args.resample else None)
    except (ValueError, NeurodecodeDataError) as err:
        print(f"neurodecode calibrate: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - the model itself failed: one line, no traceback
        print(f"neurodecode calibrate: calibration failed: {type(err).__name__}: {_one_line(err)}", file=sys.stderr)
        return 1
    print("\n".join(calibration_lines(card)))
    print(f"model: {args.out}  figure: {figure_path(args.out)}")
    return 0


def _add_online_parser(sub) -> None:
    live = sub.add_parser(
        "online", help="decode a live LSL EEG stream with a model file and publish each decision on LSL",
        description="Connects to the Lab Streaming Layer EEG stream NAME, checks its channels (by name, in any "
                    "order; missing ones refused) and sampling rate against MODEL's card, filters causally, "
                    "decides on the model's window every --step seconds and publishes each decision on the LSL "
                    "outlet '<NAME>-decisions' (class index, one probability per class, lag in ms; stamped with "
                    "the LSL time of the window's last sample). Cues on a --markers stream score the decisions "
                    "(running accuracy, nMCC, ITR). Every decision, marker and dropout is appended to --log (JSON "
                    "lines) as it happens. LSL discovery stays on this machine (neurodecode's loopback "
                    "configuration) unless --lsl-config or LSLAPICFG names another. Ctrl-C ends the session. "
                    "MODEL is loaded and checked (archive, checksums, trusted types) before any stream is looked "
                    "for. Exit status: 0 the session ended, 1 the stream was not found, broke the model's contract "
                    "or was lost, 2 a usage mistake (MODEL missing, damaged or refused among them).")
    live.add_argument("model", metavar="MODEL", help="model file (.ndm) from `neurodecode train`")
    live.add_argument("--stream", required=True, metavar="NAME", help="name of the LSL EEG stream")
    live.add_argument("--source-id", default=None, metavar="ID", help="only the stream with this LSL source id")
    live.add_argument("--step", type=_positive_float, default=None, metavar="S",
                      help="seconds between decisions (default: a quarter of the model's window)")
    live.add_argument("--markers", default=None, metavar="NAME", help="LSL marker stream whose cues score decisions")
    live.add_argument("--events", type=_events, default=None,
                      help="marker names to the model's classes, e.g. T1=left_hand,T2=right_hand")
    live.add_argument("--outlet", default=None, metavar="NAME", help="decision outlet name (default: NAME-decisions)")
    live.add_argument("--no-outlet", action="store_true", help="publish nothing (log only)")
    live.add_argument("--log", default=None, metavar="PATH",
                      help="session log to create, JSON lines (default: online-<UTC time>.jsonl here)")
    live.add_argument("--duration", type=_positive_float, default=None, metavar="S",
                      help="end the session after S seconds (default: run until Ctrl-C)")
    live.add_argument("--timeout", type=_positive_float, default=10.0, metavar="S",
                      help="how long to wait for the streams to appear (default: 10)")
    live.add_argument("--dropout", type=_positive_float, default=0.5, metavar="S",
                      help="silence or a timestamp jump longer than this is a dropout (default: 0.5)")
    live.add_argument("--give-up", type=_positive_float, default=30.0, metavar="S",
                      help="end the session when the stream stays silent this long (default: 30)")
    live.add_argument("--stream-unit", choices=["V", "mV", "uV"], default=None,
                      help="unit of the stream's samples (default: as the stream declares; volts if it does not)")
    live.add_argument("--lsl-config", default=None, metavar="PATH",
                      help="liblsl configuration file (default: $LSLAPICFG, else neurodecode's loopback-only file)")
    live.add_argument("--no-proba", action="store_true",
                      help="publish NaN for the probabilities and let the decoder take its fastest path")
    live.add_argument("--quiet", action="store_true", help="no live status line")


def _online(args) -> int:
    import os

    from .contract.model_file import load_model
    from .data.errors import NeurodecodeDataError
    from .online import LSLDecoder, LSLError, use_loopback_config
    from .online.display import printable

    def fail(err, code: int) -> int:
        # Messages quote the card's and the stream's strings: escaped, they cannot drive the terminal.
        print(f"neurodecode online: error: {printable(_one_line(err))}", file=sys.stderr)
        return code

    try:
        # The model file's full check (archive, sha256s, trusted types) before any stream is looked for.
        model, card = load_model(args.model)
        # Discovery packets go where the configuration says; on a machine without one, only to 127.0.0.1.
        if args.lsl_config or not os.environ.get("LSLAPICFG"):
            use_loopback_config(args.lsl_config)
    except NeurodecodeDataError as err:
        return fail(err, 2)
    log = args.log or time.strftime("online-%Y%m%dT%H%M%SZ.jsonl", time.gmtime())
    decoder = LSLDecoder(model, card, stream=args.stream, source_id=args.source_id,
                         step_s=args.step, markers=args.markers, events=args.events,
                         outlet=False if args.no_outlet else args.outlet, log=log,
                         display=False if args.quiet else None, timeout_s=args.timeout, dropout_s=args.dropout,
                         give_up_s=args.give_up, stream_unit=args.stream_unit, probabilities=not args.no_proba)
    try:
        decoder.connect()
        summary = decoder.run(args.duration)
    except ValueError as err:
        return fail(err, 2)
    except LSLError as err:
        return fail(err, 1)
    except KeyboardInterrupt:
        print("neurodecode online: interrupted before the session started", file=sys.stderr)
        return 130
    finally:
        decoder.close()
    parts = [f"{summary['n_decisions']} decisions", f"latency p50 {summary['latency_p50_ms']:.1f} ms, "
             f"p99 {summary['latency_p99_ms']:.1f} ms", f"{summary['dropouts']} dropout(s)"]
    if args.markers:
        parts.append(f"{summary['n_scored']} scored" + (
            f": accuracy {summary['accuracy']:.2f}, nMCC {summary['nmcc']:.2f}, ITR {summary['itr']:.1f} bits/min"
            if summary["n_scored"] else ""))
    print("; ".join(parts))
    print(f"log: {printable(log)}")
    return 0


def _one_line(err: BaseException) -> str:
    """An exception as one line: its message's lines joined (a multi-file load error lists each file)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines) or type(err).__name__


def main(argv=None) -> int:
    from . import __version__

    parser = _Parser(prog="neurodecode", description=_DESCRIPTION, epilog=_EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"neurodecode {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    ds = sub.add_parser("datasets", help="list dataset cards, verify their files, and load each one")
    ds.add_argument("names", nargs="*", help="only these datasets (default: every card)")
    ds.add_argument("--dataset", action="append", default=[], metavar="SPEC", dest="specs",
                    help="also describe a dataset that is not a package card: a card file, a BIDS folder or "
                         "moabb:ClassName (repeatable): its paradigm, subjects present and first subject's epochs")
    ds.add_argument("--no-load", action="store_true", help="only check files and checksums")
    ds.add_argument("--json", metavar="PATH", help="also write the table as JSON")
    ds.add_argument("--verify", action="store_true",
                    help="rehash every file, ignoring (and refreshing) the checksum cache")
    ds.add_argument("--cards", action="append", default=[], metavar="DIR",
                    help="also list your own cards: a folder of TOML cards or one .toml file (repeatable)")
    _add_benchmark_parser(sub)
    _add_train_parser(sub)
    _add_predict_parser(sub)
    _add_batch_parser(sub)
    _add_calibrate_parser(sub)
    _add_online_parser(sub)
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, a usage error: a status to return, as for any command
        return done.code if isinstance(done.code, int) else 0 if done.code is None else 2

    if args.command == "datasets":
        if args.specs:
            return _describe_specs(args.specs, load=not args.no_load)
        rows = datasets_table(load=not args.no_load, names=args.names or None, verify=args.verify,
                              card_dirs=args.cards)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(rows, fh, indent=2, default=str)
        return 0 if all(r["verified"] + r["unverified"] == r["files"] and not r["error"] for r in rows) else 1
    if args.command == "benchmark":
        return _benchmark(args)
    if args.command == "train":
        return _train(args)
    if args.command == "predict":
        return _predict(args)
    if args.command == "batch":
        return _batch(args)
    if args.command == "calibrate":
        return _calibrate(args)
    if args.command == "online":
        return _online(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
