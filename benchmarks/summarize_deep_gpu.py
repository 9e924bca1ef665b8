"""Summarise the rows of ``benchmarks/deep_gpu.py`` (GPU jobs and the CPU classical anchors) on common subjects.

    python benchmarks/summarize_deep_gpu.py docs/measured/deep_gpu_h200/*.jsonl \
        docs/measured/deep_gpu_h200/classical_cpu.json
"""

from __future__ import annotations

import json
import sys

import pandas as pd


def read(paths) -> pd.DataFrame:
    rows = []
    for path in paths:
        if path.endswith(".jsonl"):
            rows += [json.loads(line) for line in open(path)]
        else:
            rows += json.load(open(path))["rows"]
    df = pd.DataFrame(rows)
    df["variant"] = df.get("variant", pd.Series(index=df.index, dtype=object)).fillna("-")
    return df


ANCHORS = ("Cov+TS+LR", "Cov+TS+LR+EA", "ACM(selected)+TS+SVM")


def main(paths) -> int:
    df = read(paths)
    key = ["pipeline", "protocol", "variant"]
    # A subject counts for a within-session job once all five of its folds are done.
    done = df.groupby(key + ["subject"])["score"].agg(["mean", "count"]).reset_index()
    full = done[(done["protocol"] != "within") | (done["count"] == 5)]
    anchors = full[full["pipeline"].isin(ANCHORS)]
    lines = []
    for (pipe, proto, variant), part in full.groupby(key):
        subjects = set(part["subject"])
        line = {"pipeline": pipe, "protocol": proto, "variant": variant, "subjects": len(subjects),
                "roc_auc": f"{part['mean'].mean():.3f} ± {part['mean'].std():.3f}"}
        # Each anchor on exactly the subjects this row covers, so a partial run is compared fairly.
        for name in ANCHORS:
            same = anchors[(anchors["pipeline"] == name) & (anchors["protocol"] == proto)
                           & anchors["subject"].isin(subjects)]
            covered = same["subject"].nunique() == len(subjects)
            line[f"{name} same subjects"] = f"{same['mean'].mean():.3f}" if covered and pipe != name else "-"
        fit = df[(df["pipeline"] == pipe) & (df["protocol"] == proto) & (df["variant"] == variant)]
        seconds = fit["fit_s"].mean() if "fit_s" in fit and fit["fit_s"].notna().any() else float("nan")
        line["fit_s_mean"] = round(seconds, 2)
        line["gpu_mem_mb"] = round(fit["gpu_mem_mb"].max(), 0) if "gpu_mem_mb" in fit else float("nan")
        lines.append(line)
    print(pd.DataFrame(lines).to_markdown(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
