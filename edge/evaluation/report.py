"""Write an evaluation as files a quality engineer can read and a script can diff.

``metrics.json`` (machine-readable, input of ``--compare``), ``scores.csv``
(one row per test image), ``report.md`` (tables, definitions, plots) and PNG
plots drawn with matplotlib's Agg canvas (no display needed). Everything is
written into a staging folder beside the destination and moved into place at
the end, so a failed run never leaves a half report.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.evaluation.metrics import PRO_FPR_LIMIT
from edge.evaluation.operating_point import merge, operating_point, pct
from edge.evaluation.runner import METRICS, EvalResult
from edge.evaluation.staging import check_output_dir, staged_dir
from edge.evaluation.understanding import understanding_markdown
from edge.words import count

__all__ = ["check_output_dir", "write_report", "metrics_document"]

METRICS_FORMAT = "iad-eval/1"
MARKER = "metrics.json"  # a folder holding it is an earlier eval report: replaced without --overwrite

LABELS = {
    "image_auroc": "Image AUROC",
    "image_f1_max": "Image F1-max",
    "pixel_auroc": "Pixel AUROC",
    "aupro": "AUPRO (FPR ≤ 0.3)",
    "pixel_f1_max": "Pixel F1-max",
    "location_accuracy": "Location accuracy",
}


def _num(value: float, digits: int = 6) -> float | None:
    """JSON has no NaN: an undefined metric is null."""
    return None if value is None or math.isnan(value) else round(float(value), digits)


def _pct(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def metrics_document(result: EvalResult) -> dict[str, Any]:
    """The content of metrics.json."""
    categories: dict[str, Any] = {}
    for cat, data in zip(result.categories, result.dataset.categories):
        entry: dict[str, Any] = {m: _num(v) for m, v in cat.metrics.items()}
        if len(cat.runs) > 1:
            entry["std"] = {m: _num(v) for m, v in cat.std.items()}
            entry["runs"] = [{"seed": r.seed, **{m: _num(r.metrics[m]) for m in METRICS}} for r in cat.runs]
        first = cat.runs[0]
        entry.update(
            n_train=len(first.train_images),
            n_train_available=len(data.train),
            n_test=len(first.records),
            n_anomalous=sum(r.sample.label for r in first.records),
            bank_patches=first.bank_patches,
            location_images=first.location_images,
            location_fallbacks=first.location_fallbacks,
            ms_per_image=round(float(np.mean([r.ms_per_image for r in cat.runs])), 3),
            operating_point=_rounded(operating_point(first.records)),
        )
        categories[cat.name] = entry
    opts = result.options
    return {
        "format": METRICS_FORMAT,
        "created_at": result.started_at,
        "dataset": str(result.dataset.root),
        "dataset_format": result.dataset.format,
        "recipe": str(result.recipe_path) if result.recipe_path else None,
        "expert": result.expert_info,
        "shots": opts.shots,
        "seeds": [opts.seed + k for k in range(opts.seeds)],
        "pixel_threshold": result.pixel_threshold,
        "pro_fpr_limit": PRO_FPR_LIMIT,
        "pixel_metric_bins": opts.bins,
        "metrics": list(METRICS),
        "categories": categories,
        "mean": {m: _num(v) for m, v in result.mean.items()},
        "thresholds": {"image_score": result.image_threshold, "pixel": result.pixel_threshold},
        "operating_point": _rounded(merge(c["operating_point"] for c in categories.values())),
    }


def _rounded(point: dict[str, Any]) -> dict[str, Any]:
    """Rates rounded for JSON (None stays null: no good or no defective images)."""
    out: dict[str, Any] = {}
    for key, value in point.items():
        if isinstance(value, dict):
            out[key] = _rounded(value)
        elif isinstance(value, float):
            out[key] = round(value, 6)
        else:
            out[key] = value
    return out


def write_scores(result: EvalResult, path: Path, all_seeds: bool) -> None:
    """scores.csv: category,path,label,score,verdict (first seed); with all_seeds a trailing seed column.

    ``verdict`` is the recipe's own OK/NG (its thresholds and rules), so a spreadsheet filter shows every
    false reject (label 0, NG) and every escape (label 1, OK).
    """
    root = result.dataset.root
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["category", "path", "label", "score", "verdict"] + (["seed"] if all_seeds else []))
        for cat in result.categories:
            for run in cat.runs if all_seeds else cat.runs[:1]:
                for r in run.records:
                    writer.writerow([cat.name, _rel(r.sample.path, root), r.sample.label, f"{r.score:.6f}", r.verdict]
                                    + ([run.seed] if all_seeds else []))


# --------------------------------------------------------------------------- plots
def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def plot_roc(result: EvalResult, path: Path) -> None:
    fig = _figure(6, 5)
    ax = fig.add_subplot()
    for cat in result.categories:
        fpr, tpr = cat.runs[0].image_roc
        ax.plot(fpr, tpr, label=f"{cat.name} (AUROC {_pct(cat.runs[0].metrics['image_auroc'])})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate (good parts rejected)", ylabel="true positive rate (defective parts caught)",
           title="Image-level ROC", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path)


def plot_pro(result: EvalResult, path: Path) -> None:
    fig = _figure(6, 5)
    ax = fig.add_subplot()
    for cat in result.categories:
        fpr, pro = cat.runs[0].pro_curve
        keep = fpr <= PRO_FPR_LIMIT
        ax.plot(np.r_[fpr[keep], PRO_FPR_LIMIT], np.r_[pro[keep], np.interp(PRO_FPR_LIMIT, fpr, pro)],
                label=f"{cat.name} (AUPRO {_pct(cat.runs[0].metrics['aupro'])})")
    ax.set(xlabel="false positive rate on normal pixels", ylabel="per-region overlap (PRO)",
           title=f"PRO curve up to FPR {PRO_FPR_LIMIT}", xlim=(0, PRO_FPR_LIMIT), ylim=(0, 1.02))
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path)


def plot_categories(result: EvalResult, path: Path) -> None:
    names = [c.name for c in result.categories] + ["mean"]
    values = [c.metrics for c in result.categories] + [result.mean]
    fig = _figure(max(6, 1.4 * len(names) + 2), 5)
    ax = fig.add_subplot()
    width = 0.8 / len(METRICS)
    x = np.arange(len(names))
    for k, metric in enumerate(METRICS):
        heights = [0 if math.isnan(v[metric]) else 100 * v[metric] for v in values]
        ax.bar(x + (k - (len(METRICS) - 1) / 2) * width, heights, width, label=LABELS[metric])
    ax.set_xticks(x, names, rotation=20 if len(names) > 6 else 0)
    ax.set(ylabel="%", ylim=(0, 105), title="Metrics per category")
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, ncols=3, loc="outside lower center")
    fig.savefig(path)


def plot_worst(result: EvalResult, path: Path, category_index: int) -> bool:
    """Grid: worst false positives (top row) and false negatives (bottom row) of one category."""
    run = result.categories[category_index].runs[0]
    if not run.worst:
        return False
    rows = [[c for c in run.worst if c.kind == "false positive"], [c for c in run.worst if c.kind == "false negative"]]
    cols = max(len(r) for r in rows)
    # cells follow the pictures' shape: a tall 500x1250 part gets a tall cell, not a 90x230 px stamp
    height, width = rows[0][0].overlay.shape[:2] if rows[0] else rows[1][0].overlay.shape[:2]
    aspect = min(3.0, max(1 / 3, height / width))
    cell_w = 3.2 if aspect >= 1 else 3.2 / aspect
    cell_h = cell_w * aspect
    fig = _figure(cell_w * cols, 2 * cell_h + 1.0)
    fig.suptitle(f"{run.category}: highest-scoring good parts (top), lowest-scoring defective parts (bottom)\n"
                 "heat = anomaly map (scale at the right of each picture), red boxes = rejecting regions, "
                 "orange = other regions, green outline = ground truth", fontsize=9)
    for r, cases in enumerate(rows):
        for c in range(cols):
            ax = fig.add_subplot(2, cols, r * cols + c + 1)
            ax.axis("off")
            if c < len(cases):
                case = cases[c]
                ax.imshow(cv2.cvtColor(case.overlay, cv2.COLOR_BGR2RGB))
                role = "good, high score" if case.kind == "false positive" else "defective, low score"
                ax.set_title(f"{role}: {case.record.sample.defect_type}/{case.record.sample.path.name}", fontsize=8)
    fig.savefig(path)
    return True


# --------------------------------------------------------------------------- markdown
def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def report_markdown(result: EvalResult, doc: dict[str, Any], worst_files: dict[str, str]) -> str:
    opts = result.options
    shots = "all good training images" if opts.shots is None else f"{opts.shots}-shot, seeds {doc['seeds']}"
    header = ["category"] + [LABELS[m] for m in METRICS]
    rows = []
    for cat in result.categories:
        cells = []
        for m in METRICS:
            cell = _pct(cat.metrics[m])
            if len(cat.runs) > 1 and not math.isnan(cat.std[m]):
                cell += f" ± {100 * cat.std[m]:.1f}"
            cells.append(cell)
        rows.append([cat.name] + cells)
    rows.append(["**mean**"] + [f"**{_pct(result.mean[m])}**" for m in METRICS])
    counts = _table(
        ["category", "train used / available", "test good", "test defective", "bank patches", "ms / image",
         "location: images (fallbacks)"],
        [[name, f"{e['n_train']} / {e['n_train_available']}", str(e["n_test"] - e["n_anomalous"]), str(e["n_anomalous"]),
          str(e["bank_patches"]), f"{e['ms_per_image']:.1f}", f"{e['location_images']} ({e['location_fallbacks']})"]
         for name, e in doc["categories"].items()],
    )
    parts = [
        "# Evaluation report",
        "",
        f"- dataset: `{doc['dataset']}` ({doc['dataset_format']} layout, {count(len(result.categories), 'category')})",
        f"- recipe: `{doc['recipe']}`",
        f"- expert: {doc['expert'].get('architecture') or 'unknown'} at {doc['expert']['resolution']} px "
        f"({doc['expert']['tiling']}), providers {', '.join(doc['expert']['providers']) or 'n/a'}",
        f"- training images for the bank: {shots}",
        f"- pixel threshold of the recipe (regions): {result.pixel_threshold}",
        f"- run started {doc['created_at']}",
        "",
        "## Results (%)",
        "",
        _table(header, rows),
        "",
        "![metrics per category](categories.png)",
        "",
        "## Operating point at the recipe's thresholds",
        "",
        f"What the line would do with the recipe as it is (image_score {result.image_threshold}, pixel "
        f"{result.pixel_threshold}, its rules and zones): **false-reject rate** = good parts rejected, "
        "**escape rate** = defective parts passed. The verdict of every image is the `verdict` column of "
        "`scores.csv`.",
        "",
        _operating_table(doc),
        "",
        _defect_type_table(doc),
        "",
        "## Data",
        "",
        counts,
        "",
        "## Curves",
        "",
        "![image ROC](roc.png) ![PRO curve](pro.png)",
        "",
        "## Worst cases",
        "",
        "Good parts with the highest scores (would be rejected first) and defective parts with the lowest scores "
        "(would be passed first). Full per-image scores are in `scores.csv`.",
        "",
    ]
    for name, file in worst_files.items():
        parts += [f"### {name}", "", f"![worst cases of {name}]({file})", ""]
    parts += [
        "## What the numbers mean",
        "",
        "- **Image AUROC**: probability that a random defective part scores higher than a random good part "
        "(1.0 = a threshold separates them perfectly, 0.5 = chance). Independent of any threshold.",
        "- **Image F1-max**: the best F1 (harmonic mean of precision and recall on defective parts) over all "
        "image-score thresholds.",
        "- **Pixel AUROC**: the same as image AUROC over all pixels of all test images (defect pixels vs normal pixels).",
        f"- **AUPRO**: area under the per-region-overlap curve up to a false-positive rate of {PRO_FPR_LIMIT} on "
        f"normal pixels, divided by {PRO_FPR_LIMIT} (MVTec AD definition). Every ground-truth defect region counts "
        "equally, so small defects matter as much as large ones.",
        "- **Pixel F1-max**: best pixel-level F1 over all map thresholds.",
        "- **Location accuracy**: share of defective test images where the 3×3 location (top-left … bottom-right) of the "
        "predicted region with the highest peak equals that of the largest ground-truth region. When no region passes "
        "the recipe's pixel threshold, the location of the map's maximum is used (counted as *fallbacks* above).",
        "",
        f"Pixel metrics are computed from histograms with {opts.bins} bins between the lowest and highest map value "
        "(memory does not grow with the dataset); this stays within 1e-3 of the exact values.",
        "",
    ]
    return "\n".join(parts)


def _operating_table(doc: dict[str, Any]) -> str:
    rows = []
    entries = [(name, e["operating_point"]) for name, e in doc["categories"].items()] + [("**all**", doc["operating_point"])]
    for name, op in entries:
        good = op["rejected_good"] + op["passed_good"]
        bad = op["rejected_defective"] + op["escaped_defective"]
        rows.append([name, str(op["passed_good"]), str(op["rejected_good"]), str(op["rejected_defective"]),
                     str(op["escaped_defective"]), f"{pct(op['false_reject_rate'])} ({op['rejected_good']}/{good})",
                     f"{pct(op['escape_rate'])} ({op['escaped_defective']}/{bad})"])
    return _table(["category", "good passed (TN)", "good rejected (FP)", "defective rejected (TP)",
                   "defective passed (FN)", "false-reject rate", "escape rate"], rows)


def _defect_type_table(doc: dict[str, Any]) -> str:
    rows = []
    for name, e in doc["categories"].items():
        for kind, counts in e["operating_point"]["per_defect_type"].items():
            rows.append([name, kind, str(counts["images"]), str(counts["escapes"]), pct(counts["escape_rate"])])
    return _table(["category", "defect type", "images", "escaped (passed as OK)", "escape rate"], rows)


# --------------------------------------------------------------------------- writing
def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def write_report(result: EvalResult, out: str | Path, overwrite: bool = False) -> list[Path]:
    """Write every report file into ``out`` (atomically: staged beside it, then moved into place)."""
    out = Path(out)
    with staged_dir(out, overwrite, marker=MARKER) as staging:
        doc = metrics_document(result)
        understanding = getattr(result, "understanding", None)  # set by `iad-edge eval --understanding`
        if understanding is not None:
            doc["understanding"] = {k: v for k, v in understanding.items() if k != "answers"}
            (staging / "understanding_answers.json").write_text(json.dumps(understanding.get("answers", []), indent=1) + "\n",
                                                                 encoding="utf-8")
        (staging / "metrics.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        write_scores(result, staging / "scores.csv", all_seeds=False)
        if result.options.seeds > 1:
            write_scores(result, staging / "scores_all_seeds.csv", all_seeds=True)
        plot_roc(result, staging / "roc.png")
        plot_pro(result, staging / "pro.png")
        plot_categories(result, staging / "categories.png")
        worst_files = {}
        for i, cat in enumerate(result.categories):
            file = f"worst_{_safe_name(cat.name)}.png"
            if plot_worst(result, staging / file, i):
                worst_files[cat.name] = file
        markdown = report_markdown(result, doc, worst_files)
        if understanding is not None:

            markdown += understanding_markdown(doc["understanding"])
        (staging / "report.md").write_text(markdown, encoding="utf-8")
    return sorted(out.iterdir())
