"""`calibration_report.md` with PNG plots: why the thresholds are where they are.

Plots (matplotlib, Agg backend, imported only here): held-out good vs defect
image scores with the image threshold; per-image map maxima with the pixel
threshold; the highest-scoring good parts as overlays (what the line would
reject first if the threshold were lower). Without matplotlib the report is
written without the histograms and says so.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from edge.calibration.kfold import Scored
from edge.calibration.thresholds import Proposal
from edge.overlay import render_overlay

log = logging.getLogger(__name__)


def _histogram(path: Path, good: list[float], bad: list[float], threshold: float, title: str, xlabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    values = good + bad
    bins = np.linspace(min(values + [threshold]), max(values + [threshold]), 31)
    ax.hist(good, bins=bins, alpha=0.65, label=f"good, held-out (n={len(good)})", color="tab:green")
    if bad:
        ax.hist(bad, bins=bins, alpha=0.65, label=f"defect (n={len(bad)})", color="tab:red")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4f}")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("images")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(folder: Path, recipe_path: Path, proposal: Proposal, good: list[Scored], defects: list[Scored],
                 bank_path: Path, generated: Path | None, notes: list[str], top_good: int = 4) -> Path:
    """Write the report and its PNGs into ``folder``; return the report path."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Calibration report: {recipe_path.name}",
        "",
        f"- good images: {proposal.good_count}, scored held-out (k-fold: each against a bank without it)",
        f"- defect images: {proposal.defect_count}" + (
            " (" + ", ".join(f"{t}: {n}" for t, (_, n) in sorted(proposal.per_type.items())) + ")" if proposal.per_type else ""),
        f"- bank: `{bank_path}`",
        f"- generated thresholds: `{generated}`" if generated else "- generated thresholds: not written",
        "",
        "## Proposed thresholds",
        "",
        "| threshold | value | why |",
        "| --- | --- | --- |",
        f"| `thresholds.image_score` | {proposal.image_score:.6f} | target false-reject rate {proposal.target_frr:.2%} of "
        f"{proposal.good_count} held-out good parts allows {proposal.allowed_false_rejects}; just above the "
        f"{_ordinal(proposal.allowed_false_rejects + 1)} highest good score |",
        f"| `thresholds.pixel` | {proposal.pixel:.6f} | lowest value at which no held-out good part has a rejecting region"
        + (f" (capped by zone {proposal.pixel_capped_by})" if proposal.pixel_capped_by else "") + " |",
        "",
        "## What they do on the calibration images",
        "",
        f"- held-out good parts rejected: **{proposal.frr:.1%}** ({len(proposal.false_rejects)}/{proposal.good_count})"
        + (": " + ", ".join(f"`{n}`" for n in proposal.false_rejects[:10]) if proposal.false_rejects else ""),
    ]
    if proposal.miss_rate is not None:
        lines.append(f"- defects accepted (miss rate): **{proposal.miss_rate:.1%}** ({len(proposal.misses)}/{proposal.defect_count})")
        for kind, (missed, total) in sorted(proposal.per_type.items()):
            lines.append(f"  - {kind}: {missed}/{total} missed")
        if proposal.auroc is not None:
            lines.append(f"- image-score AUROC good vs defect: {proposal.auroc:.3f}")
    else:
        lines.append("- no defect images (`--defects DIR` or `--synthetic N`): the miss rate is unknown")
    lines += ["", "## Plots", ""]

    good_scores = [g.score for g in good]
    bad_scores = [d.score for d in defects]
    try:
        _histogram(folder / "image_scores.png", good_scores, bad_scores, proposal.image_score,
                   "Image score: held-out good vs defect", "image score (mean of top 1 % patch distances)")
        _histogram(folder / "map_maxima.png", [float(g.anomaly_map.max()) for g in good],
                   [float(d.anomaly_map.max()) for d in defects], proposal.pixel,
                   "Anomaly-map maximum per image", "highest map value")
        lines += ["![image scores](image_scores.png)", "", "![map maxima](map_maxima.png)", ""]
    except ImportError:
        lines += ["(matplotlib is not installed: `pip install iad-edge[eval]` for the histograms)", ""]
        log.warning("matplotlib not installed: calibration report without histograms")

    lines += ["## Highest-scoring good parts", "",
              "What the line would reject first if the image threshold were lower. Each picture: verdict under the "
              "proposed thresholds, held-out score against the image threshold, the anomaly map as a heat map "
              "(scale on the right: 0 to twice the pixel threshold).", ""]
    for rank, item in enumerate(sorted(good, key=lambda g: g.score, reverse=True)[:top_good], start=1):
        name = f"top_good_{rank}.png"
        verdict = "NG" if item.sample.name in proposal.false_rejects else "OK"
        overlay = render_overlay(item.sample.image, item.anomaly_map, [], proposal.pixel, verdict=verdict,
                                 score=item.score, image_threshold=proposal.image_score,
                                 title=f"#{rank} {item.sample.name}", max_side=900)
        if not cv2.imwrite(str(folder / name), overlay):
            raise OSError(f"could not write {folder / name}")
        lines.append(f"{rank}. `{item.sample.name}`: score {item.score:.4f}, map max {float(item.anomaly_map.max()):.4f}  ")
        lines.append(f"   ![{item.sample.name}]({name})")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    _write_scores(folder / "scores.json", proposal, good, defects)
    lines.append("")
    lines.append("Per-image scores and verdicts: [scores.json](scores.json).")
    report = folder / "calibration_report.md"
    tmp = report.with_name(".calibration_report.md.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(report)
    return report


def _write_scores(path: Path, proposal: Proposal, good: list[Scored], defects: list[Scored]) -> None:
    """Per-image held-out scores, map maxima and verdicts under the proposed thresholds (for tools and audits)."""
    rejected = set(proposal.false_rejects)
    missed = set(proposal.misses)
    rows = []
    for item in good + defects:
        name = item.sample.name
        verdict = ("NG" if name in rejected else "OK") if item.is_good else ("OK" if name in missed else "NG")
        rows.append({"name": name, "good": item.is_good, "defect_type": item.sample.defect_type, "fold": item.fold,
                     "score": round(item.score, 6), "map_max": round(float(item.anomaly_map.max()), 6), "verdict": verdict})
    body = {"image_score": proposal.image_score, "pixel": proposal.pixel, "target_frr": proposal.target_frr,
            "held_out_frr": proposal.frr, "miss_rate": proposal.miss_rate, "auroc": proposal.auroc, "images": rows}
    path.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
