"""Reading the quickstart's tables (issue #16): does the RLVR model clear the copy-last-frame bar,
does RLVR beat MLE on the reward, and the frontier of the settings tried (minutes against
metrics). Pure functions of the pipeline's ``comparison.json`` rows; ``bench_quickstart.py``
prints them and writes them into docs/benchmarks.md and the README.
"""
from __future__ import annotations

import json
from pathlib import Path

#: metric -> True when higher is better; the four the issue names, in its order
BAR_METRICS = {"mae": False, "psnr": True, "ssim": True, "stlpips": False}
COPY, FLOOR, MLE, RLVR = "copy last frame", "true tokens (tokenizer floor)", "MLE", "RLVR (GRPO)"


def better(a: float, b: float, higher: bool) -> bool:
    """a strictly better than b."""
    return a > b if higher else a < b


def verdict(rows: dict[str, dict[str, float]]) -> list[str]:
    """One line per claim, "yes"/"no" with both numbers, for the single-step table's rows."""
    lines = []
    for m, higher in BAR_METRICS.items():
        if m in rows.get(RLVR, {}) and m in rows.get(COPY, {}):
            a, b = rows[RLVR][m], rows[COPY][m]
            lines.append(f"RLVR beats copy-last-frame on {m}: "
                         f"{'yes' if better(a, b, higher) else 'no'} ({a:.4g} vs {b:.4g})")
    if "mae" in rows.get(FLOOR, {}) and "mae" in rows.get(COPY, {}):
        a, b = rows[FLOOR]["mae"], rows[COPY]["mae"]
        lines.append(f"tokenizer floor (true tokens) below copy-last-frame on mae: "
                     f"{'yes' if a < b else 'no'} ({a:.4g} vs {b:.4g})")
    if "reward" in rows.get(RLVR, {}) and "reward" in rows.get(MLE, {}):
        a, b = rows[RLVR]["reward"], rows[MLE]["reward"]
        lines.append(f"RLVR beats MLE on the reward: {'yes' if a > b else 'no'} "
                     f"({a:.4g} vs {b:.4g})")
    return lines


def clears_bar(rows: dict[str, dict[str, float]]) -> bool:
    """RLVR better than copy on all four metrics and better than MLE on the reward."""
    lines = verdict(rows)
    wanted = [ln for ln in lines if ln.startswith(("RLVR beats copy", "RLVR beats MLE"))]
    return len(wanted) == len(BAR_METRICS) + 1 and all(": yes" in ln for ln in wanted)


def frontier_point(label: str, minutes: float, overrides: list[str],
                   rows: dict[str, dict[str, float]]) -> dict:
    keep = ("mae", "psnr", "ssim", "stlpips", "reward")
    return {"label": label, "minutes": round(minutes, 2), "overrides": overrides,
            "rows": {name: {k: r[k] for k in keep if k in r} for name, r in rows.items()},
            "clears_bar": clears_bar(rows)}


def update_frontier(path: Path, point: dict) -> list[dict]:
    """Add ``point`` to the JSON list at ``path`` (replacing the one with its label)."""
    points = json.loads(path.read_text()) if path.exists() else []
    points = [p for p in points if p["label"] != point["label"]] + [point]
    path.write_text(json.dumps(points, indent=2) + "\n")
    return points


def frontier_table(points: list[dict]) -> str:
    """Markdown: one row per setting tried, minutes and the single-step metrics of RLVR and of
    the copy-last-frame row, the tokenizer floor's MAE (true tokens, the run's decoding) and
    the share of tokens that flip far from any change (``token_stability``)."""
    head = ("| setting | minutes | RLVR mae | copy mae | RLVR psnr | copy psnr | RLVR ssim | "
            "copy ssim | RLVR stlpips | copy stlpips | MLE reward | RLVR reward | clears the bar "
            "| floor mae | far-token flips |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for p in points:
        r, c, m = p["rows"].get(RLVR, {}), p["rows"].get(COPY, {}), p["rows"].get(MLE, {})
        f, t = p["rows"].get(FLOOR, {}), p.get("tokenizer", {})
        cell = lambda d, k: f"{d[k]:.4g}" if k in d else "—"  # noqa: E731
        lines.append(f"| {p['label']} | {p['minutes']:.1f} | {cell(r, 'mae')} | {cell(c, 'mae')} | "
                     f"{cell(r, 'psnr')} | {cell(c, 'psnr')} | {cell(r, 'ssim')} | "
                     f"{cell(c, 'ssim')} | {cell(r, 'stlpips')} | {cell(c, 'stlpips')} | "
                     f"{cell(m, 'reward')} | {cell(r, 'reward')} | "
                     f"{'yes' if p['clears_bar'] else 'no'} | {cell(f, 'mae')} | "
                     + (f"{100 * t['far_flip']:.2f} % |" if "far_flip" in t else "— |"))
    return "\n".join(lines)


def best_under(points: list[dict], minutes: float = 30.0) -> dict | None:
    """The best point within ``minutes``: the most bar metrics on which RLVR beats copying,
    then the lowest RLVR MAE + ST-LPIPS (the quickstart's reward, recomputed from the frames'
    metrics so that points with other rewards or decodings compare); None when none fits."""
    def key(p):
        r, c = p["rows"].get(RLVR, {}), p["rows"].get(COPY, {})
        ahead = sum(better(r[m], c[m], hi) for m, hi in BAR_METRICS.items() if m in r and m in c)
        return ahead, -(r.get("mae", float("inf")) + r.get("stlpips", float("inf")))
    fits = [p for p in points if p["minutes"] <= minutes]
    return max(fits, key=key) if fits else None
