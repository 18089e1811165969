"""PNG charts of StereoSet results (matplotlib with the Agg backend, imported only when drawing)."""

from __future__ import annotations

from pathlib import Path

from vdata_hub.eval.scoring import DOMAINS


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _value(results: dict, task: str, domain: str, key: str = "SS Score") -> float:
    value = results.get(task, {}).get(domain, {}).get(key)
    return float("nan") if value is None else value


def ss_by_domain_chart(results: dict, path: str | Path, title: str = "StereoSet SS per domain") -> Path:
    """Grouped bars: SS per domain (and overall) for each task; the dashed line at 50 is no bias."""
    plt = _pyplot()
    tasks = [t for t in ("intrasentence", "intersentence") if t in results]
    groups = list(DOMAINS) + ["overall"]
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(tasks))
    for n, task in enumerate(tasks):
        xs = [g + n * width for g in range(len(groups))]
        ax.bar(xs, [_value(results, task, d) for d in groups], width, label=task)
    ax.axhline(50, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks([g + width * (len(tasks) - 1) / 2 for g in range(len(groups))], groups)
    ax.set_ylabel("SS (50 = unbiased)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def before_after_chart(before: dict, after: dict, path: str | Path,
                       title: str = "Before and after fine-tuning") -> Path:
    """SS per task and domain, and the global ICAT, before vs after fine-tuning."""
    plt = _pyplot()
    labels, befores, afters = [], [], []
    for task in ("intrasentence", "intersentence"):
        for domain in list(DOMAINS) + ["overall"]:
            if task in before:
                labels.append(f"{task[:5]}\n{domain}")
                befores.append(_value(before, task, domain))
                afters.append(_value(after, task, domain))
    fig, (ax_ss, ax_icat) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [4, 1]})
    xs = range(len(labels))
    ax_ss.bar([x - 0.2 for x in xs], befores, 0.4, label="before")
    ax_ss.bar([x + 0.2 for x in xs], afters, 0.4, label="after")
    ax_ss.axhline(50, color="grey", linestyle="--", linewidth=1)
    ax_ss.set_xticks(list(xs), labels, fontsize=7)
    ax_ss.set_ylim(0, 100)
    ax_ss.set_ylabel("SS (50 = unbiased)")
    ax_ss.legend()
    ax_ss.set_title(title)
    icats = [before.get("overall", {}).get("ICAT Score"), after.get("overall", {}).get("ICAT Score")]
    ax_icat.bar(["before", "after"], [float("nan") if v is None else v for v in icats], color=["C0", "C1"])
    ax_icat.set_ylim(0, 100)
    ax_icat.set_title("overall ICAT")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def crows_pairs_chart(results: dict, path: str | Path, title: str = "CrowS-Pairs") -> Path:
    """CrowS-Pairs metric per bias type and overall, 95% intervals as error bars, the unbiased line at 50."""
    plt = _pyplot()
    intervals = results.get("confidence_intervals") or {}
    labels = list(results["by_bias_type"]) + ["overall"]
    blocks = [results["by_bias_type"][t] for t in labels[:-1]] + [results["overall"]]
    cis = [(intervals.get("by_bias_type", {}).get(t) or {}).get("metric") for t in labels[:-1]]
    cis.append((intervals.get("overall") or {}).get("metric"))
    values = [float("nan") if b["metric"] is None else b["metric"] for b in blocks]
    errors = [[v - ci[0] if ci else 0 for v, ci in zip(values, cis)], [ci[1] - v if ci else 0 for v, ci in zip(values, cis)]]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(range(len(labels)), values, 0.6, yerr=errors, capsize=3,
           color=["C0"] * (len(labels) - 1) + ["C1"])
    ax.axhline(50, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("metric (50 = unbiased)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
