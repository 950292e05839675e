"""Counts of clips per class and per subject: what a dataset holds before training."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from mer.datasets.records import ClipRecord, natural_key


def class_counts(records: Sequence[ClipRecord], classes: Sequence[str]) -> dict[str, int]:
    counts = Counter(r.label for r in records)
    return {c: counts.get(c, 0) for c in classes}


def summary_markdown(records: Sequence[ClipRecord], classes: Sequence[str], skipped: Sequence[tuple[str, str]] = (),
                     title: str = "") -> str:
    subjects = sorted({r.subject for r in records}, key=natural_key)
    per_subject = Counter((r.subject, r.label) for r in records)
    lines = [f"### {title}" if title else "", f"{len(records)} clips, {len(subjects)} subjects, {len(classes)} classes.", "",
             "| subject | " + " | ".join(classes) + " | total |", "|---|" + "---|" * (len(classes) + 1)]
    for subject in subjects:
        row = [per_subject[subject, c] for c in classes]
        lines.append(f"| {subject} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    totals = class_counts(records, classes)
    lines.append("| **all** | " + " | ".join(str(totals[c]) for c in classes) + f" | {len(records)} |")
    if skipped:
        lines += ["", f"{len(skipped)} folders or annotation rows skipped or kept with a note:"]
        lines += [f"- {where}: {why}" for where, why in skipped]
    return "\n".join(line for line in lines if line is not None) + "\n"
