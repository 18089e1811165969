"""PNG charts of the evaluation results (matplotlib with the Agg backend, imported only when drawing)."""

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


def _errors(values: list[float], cis: list) -> list[list[float]]:
    """matplotlib's yerr from intervals (0 where there is none; never negative)."""
    return [[max(0.0, v - ci[0]) if ci else 0.0 for v, ci in zip(values, cis)],
            [max(0.0, ci[1] - v) if ci else 0.0 for v, ci in zip(values, cis)]]


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def report_chart(measures: list[dict], path: str | Path, title: str = "Before and after fine-tuning") -> Path:
    """SS per task and domain and the CrowS-Pairs metric per bias type: before, after (mean over
    seeds) and, with a control arm, the control after; 95% intervals as error bars."""
    plt = _pyplot()
    shown = [m for m in measures if m["score"] in ("SS Score", "metric")]
    arms = [("before", "before"), ("after", "after (data)")]
    if any(m.get("control_after") is not None for m in shown):
        arms.append(("control_after", "after (control)"))
    fig, ax = plt.subplots(figsize=(max(8, 0.55 * len(shown) + 2), 4.5))
    width = 0.8 / len(arms)
    for n, (key, label) in enumerate(arms):
        values = [_number(m.get(key)) for m in shown]
        xs = [x + (n - (len(arms) - 1) / 2) * width for x in range(len(shown))]
        ax.bar(xs, values, width, yerr=_errors(values, [m.get(key + "_ci") for m in shown]), capsize=2, label=label)
    ax.axhline(50, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(list(range(len(shown))), [m["label"].replace("StereoSet ", "SS ").replace("CrowS-Pairs ", "CP ")
                                            for m in shown], rotation=60, ha="right", fontsize=7)
    ax.set_ylim(0, 100)
    ax.set_ylabel("SS / CrowS-Pairs metric (50 = unbiased)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def history_chart(rows: list[dict], path, title: str = "Bias over dataset revisions") -> None:
    """StereoSet SS and the CrowS-Pairs metric of every history row (oldest first): after
    fine-tuning with its 95% interval, and the model before as hollow markers."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows) + 3), 4))
    xs = list(range(len(rows)))
    for n, (key, label) in enumerate((("stereoset_ss", "StereoSet SS"), ("crows_pairs", "CrowS-Pairs metric"))):
        found = [row["scores"].get(key) or {} for row in rows]
        after = [_number(f.get("after")) for f in found]
        ax.errorbar(xs, after, yerr=_errors(after, [f.get("after_ci") for f in found]), marker="o", capsize=3,
                    color=f"C{n}", label=f"{label}, after fine-tuning")
        ax.plot(xs, [_number(f.get("before")) for f in found], linestyle=":", marker="o", markerfacecolor="none",
                color=f"C{n}", label=f"{label}, model before")
    ax.axhline(50, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(xs, [f"{str(row['data_revision'])[:7]}\n{row['date']}" for row in rows], fontsize=7)
    ax.set_xlabel("dataset revision")
    ax.set_ylabel("score (50 = unbiased)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def crows_pairs_chart(results: dict, path: str | Path, title: str = "CrowS-Pairs") -> Path:
    """CrowS-Pairs metric per bias type and overall, 95% intervals as error bars, the unbiased line at 50."""
    plt = _pyplot()
    intervals = results.get("confidence_intervals") or {}
    labels = list(results["by_bias_type"]) + ["overall"]
    blocks = [results["by_bias_type"][t] for t in labels[:-1]] + [results["overall"]]
    cis = [(intervals.get("by_bias_type", {}).get(t) or {}).get("metric") for t in labels[:-1]]
    cis.append((intervals.get("overall") or {}).get("metric"))
    values = [_number(b["metric"]) for b in blocks]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(range(len(labels)), values, 0.6, yerr=_errors(values, cis), capsize=3,
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
