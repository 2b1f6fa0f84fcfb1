"""`logsense bench`: every detector on one labeled data set, side by side, under a stated protocol.

Writes DIR/results.json, DIR/results.md and DIR/pr.png and prints the table with the protocol
above it. The default protocol is chronological with thresholds from validation normals; the
`paper` protocol (random split, best-F1 threshold on test) is labeled "oracle" everywhere.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from logsense.models.bench.datasets import DATASETS, DatasetMissing, load_dataset, load_loghub
from logsense.models.bench.experiments import RunConfig, run_lines, run_sessions

ORDER = [
    "ensemble", "ensemble_or", "rapid", "rapid_session", "loggpt", "deeplog", "iforest",
    "unseen_template", "unseen_session", "severity_rule",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="hdfs-2pct", help=f"one of {', '.join(DATASETS)}, or 'custom' with --log")
    parser.add_argument("--data-dir", default=None, help="folder with the labeled data (default: ../shared/datasets or $LOGSENSE_DATASETS)")
    parser.add_argument("--out", default="bench-out", help="folder for results.json, results.md, pr.png")
    parser.add_argument("--parsing", action="store_true",
                        help="the parsing benchmark instead: header parse rate, masked lines and grouping accuracy "
                             "on the loghub-2k samples (format auto, default masks) against bare Drain3")
    parser.add_argument("--capacity", action="store_true",
                        help="the capacity benchmark instead: a real server over loopback HTTP fed new lines "
                             "(new-line rate against bare SentenceTransformer.encode, all-new batch latency, LogGPT "
                             "drain time, peak memory); --capacity-lines, --capacity-rate and --capacity-clients size it")
    parser.add_argument("--search", action="store_true",
                        help="the search benchmark instead: search latency over --search-lines stored lines and a "
                             "1,000-member group action, through a real server over loopback HTTP")
    parser.add_argument("--search-lines", type=int, default=1_000_000, help="search: lines stored before the queries")
    parser.add_argument("--cluster", action="store_true",
                        help="the cluster benchmark instead: lines/s and CPU per process of `serve --role all` against "
                             "2 API replicas + N processors + 1 worker, on the same PostgreSQL and data (loghub-2k)")
    parser.add_argument("--cluster-rounds", type=int, default=4, help="cluster: timed rounds over the data")
    parser.add_argument("--cluster-clients", type=int, default=8, help="cluster: concurrent client threads")
    parser.add_argument("--cluster-processors", type=int, nargs="+", default=[1, 2, 4],
                        help="cluster: processors per cluster setup")
    parser.add_argument("--database-url", default=None,
                        help="cluster: a PostgreSQL server URL whose user may create databases (default: start one)")
    parser.add_argument("--broker-url", default=None, help="cluster: a Redis URL to use and flush (default: start one)")
    parser.add_argument("--capacity-lines", type=int, default=400_000, help="capacity: lines posted in all")
    parser.add_argument("--capacity-rate", type=float, default=8000.0, help="capacity: load phase lines/s over all clients")
    parser.add_argument("--capacity-clients", type=int, default=4, help="capacity: load phase concurrent clients")
    parser.add_argument("--protocol", choices=["live", "chrono", "paper"], default="live",
                        help="live (default): the product replayed as a stream; chrono: items split by time, offline; "
                             "paper: random split, oracle thresholds")
    parser.add_argument("--train", choices=["dirty", "clean"], default="dirty",
                        help="live: post every train-part line in train mode (dirty, default) or withhold anomalies (clean)")
    parser.add_argument("--idle-timeout", type=float, default=None,
                        help="live: seconds of log time without a line that close a session (default: the stream default, 300)")
    parser.add_argument("--train-fraction", type=float, default=0.6, help="live: share of the lines posted in train mode")
    parser.add_argument("--target-fpr", type=float, default=0.01, help="false-positive budget on validation normals")
    parser.add_argument("--feedback", action="store_true", help="also run the simulated operator on the test part")
    parser.add_argument("--extra-normal", action="store_true", help="bgl-2k: add BGL_5000 (all normal) to the training data")
    parser.add_argument("--rl-steps", type=int, default=0, help="LogGPT reinforcement steps after LM training (0 = off)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small models, few epochs: a smoke run, not a result")
    parser.add_argument("--log", help="custom: a loghub-format log file (.gz ok)")
    parser.add_argument("--labels", help="custom: labels csv (session,label) when the log has sessions")
    parser.add_argument("--preset", default="generic", help="custom: header preset (hdfs, bgl, syslog, iso8601, json, generic)")
    parser.add_argument("--session-regex", default=None, help="custom: session key regex (e.g. 'blk_-?\\d+')")
    parser.add_argument("--label-field", action="store_true", help="custom: the first field of each line is the label ('-' = normal)")


def protocol_line(cfg: RunConfig) -> str:
    tr, va, te = (round(f * 100) for f in cfg.fractions)
    if cfg.protocol == "paper":
        return (f"protocol: paper: random split {tr}/{va}/{te} (seed {cfg.seed}), thresholds and K = best F1 on TEST labels "
                f"(oracle, for comparison with papers only); the floors are fixed rules")
    return (
        f"protocol: chrono: split by time {tr}/{va}/{te}, train on normal items of the first part only, "
        f"every threshold, K and g at <= {cfg.target_fpr:.0%} false positives on validation normals (no test labels); "
        f"the floors (unseen_template, unseen_session, severity_rule) are fixed rules, never calibrated"
    )


def load(args) -> object:
    if args.dataset == "custom" or args.log:
        return load_loghub(args.log, args.labels, preset=args.preset, session_regex=args.session_regex, label_field=args.label_field, name="custom")
    return load_dataset(args.dataset, args.data_dir, extra_normal=args.extra_normal)


def run(args: argparse.Namespace) -> int:
    """The `logsense bench` command."""
    if getattr(args, "parsing", False):
        from logsense.models.bench.parsing import run_parsing

        return run_parsing(args.out, args.data_dir)
    missing = [name for name in ("sklearn", "matplotlib") if importlib.util.find_spec(name) is None]
    if missing:  # the baselines and the figures need them; a server install leaves them out
        print(f"logsense bench: {', '.join(missing)} missing: install the bench extra (pip install -e '.[bench]')",
              file=sys.stderr)
        return 2
    try:
        dataset = load(args)
    except DatasetMissing as exc:
        print(f"logsense bench: {exc}", file=sys.stderr)
        return 2
    if args.protocol == "live":
        return run_live_command(args, dataset)
    cfg = RunConfig(protocol=args.protocol, target_fpr=args.target_fpr, seed=args.seed, feedback=args.feedback, quick=args.quick, rl_steps=args.rl_steps)
    from logsense.models.embedding import load_embedder

    started = time.perf_counter()
    embedder = load_embedder()
    runner = run_sessions if dataset.session_labels is not None else run_lines
    out = runner(dataset, cfg, embedder)
    report = {
        "dataset": dataset.name,
        "protocol": cfg.protocol,
        "protocol_text": protocol_line(cfg),
        "oracle": cfg.protocol == "paper",
        "target_fpr": cfg.target_fpr,
        "fractions": list(cfg.fractions),
        "quick": cfg.quick,
        "seed": cfg.seed,
        **run_facts(started),
        **out["meta"],
        "detectors": out["detectors"],
    }
    write_report(args.out, report, render_markdown, lambda path: plot_pr(out["curves"], path, report))
    return 0


def run_facts(started: float) -> dict:
    """What every report says of its run: cores, machine, and the seconds since `started`."""
    return {
        "cores": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.system()} python {platform.python_version()}",
        "seconds": round(time.perf_counter() - started, 1),
    }


def write_report(out: str | os.PathLike, report: dict, render: Callable[[dict], str],
                 plot: Callable[[Path], None] | None = None) -> None:
    """OUT/results.json, OUT/results.md (`render(report)`) and, with `plot`, OUT/pr.png; the
    markdown printed, then what was written."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "results.json", out_dir / "results.md"]
    write_json(written[0], report)
    markdown = render(report)
    written[1].write_text(markdown)
    if plot is not None:
        written.append(out_dir / "pr.png")
        plot(written[2])
    print(markdown)
    print(f"wrote {', '.join(str(p) for p in written)}")


def write_json(path: Path, report: dict) -> None:
    def clean(x):
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if isinstance(x, (np.floating, float)):
            return None if math.isnan(float(x)) else float(x)
        if isinstance(x, np.integer):
            return int(x)
        return x

    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(clean(report), indent=2))
    os.replace(tmp, path)


def fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def detector_rows(dets: dict, order: list[str]) -> list[tuple[str, dict, list[str]]]:
    """(name, results, notes) of each detector, those in `order` first; the notes start with K
    where the detector has one, and a table adds its own."""
    names = [n for n in order if n in dets] + [n for n in dets if n not in order]
    return [(n, dets[n], [f"K={dets[n]['top_k']}"] if "top_k" in dets[n] else []) for n in names]


def render_markdown(report: dict) -> str:
    oracle = " (ORACLE thresholds)" if report["oracle"] else ""
    sizes = report["split_sizes"]
    lines = [
        f"# LogSense benchmark: {report['dataset']}{oracle}",
        "",
        report["protocol_text"],
        f"items: {report['items']}; split (items / anomalous): "
        + ", ".join(f"{k} {v['items']}/{v['anomalous']}" for k, v in sizes.items())
        + f"; templates: {report['templates']}; cores: {report['cores']}; run: {report['seconds']} s"
        + ("; QUICK smoke run, not a result" if report["quick"] else ""),
        f"ensemble policy: {report['ensemble_policy']} (part thresholds: "
        + ", ".join(f"{k} {fmt(v)}" for k, v in report["ensemble_thresholds"].items()) + ")",
        "",
        "| detector | level | P | R | F1 | AUPRC | threshold | val FP | fit s | score lines/s | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    dets = report["detectors"]
    for name, d, notes in detector_rows(dets, ORDER):
        if name in ("ensemble", "ensemble_or"):
            notes.append(f"danger-only P {fmt(d['danger_precision'])} R {fmt(d['danger_recall'])}; danger {d['danger']}, watch {d['watch']}")
        if d.get("known_normal_rule"):
            notes.append(f"LogGPT does not flag known-normal content ({d.get('known_test_items', 0)} test items)")
        if name == "ensemble_or":
            notes.append("strict OR: without the known-normal rule")
        lines.append(
            f"| {name} | {d['level']} | {fmt(d['precision'])} | {fmt(d['recall'])} | {fmt(d['f1'])} | {fmt(d['auprc'])} "
            f"| {fmt(d['threshold'])} | {fmt(d.get('val_fpr'))} | {fmt(d['fit_seconds'], 1)} | {fmt(d['score_lines_per_second'], 0)} | {'; '.join(notes)} |"
        )
    fb = {n: d for n, d in dets.items() if any(k.startswith("feedback") for k in d)}
    if fb:
        lines += [
            "",
            "## With the simulated operator (--feedback)",
            "",
            "Test items in time order; each flagged item is reviewed once with its true label (a click); a refuted "
            "normal is learned at once, before the next item. P/R/F1 over the flags raised.",
            "",
            "| detector | variant | P | R | F1 | clicks | F1 without feedback |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, d in fb.items():
            for key in [k for k in d if k.startswith("feedback")]:
                f = d[key]
                variant = key.replace("feedback", "").strip("_") or "exact"
                lines.append(f"| {name} | {variant} | {fmt(f['precision'])} | {fmt(f['recall'])} | {fmt(f['f1'])} | {f['clicks']} | {fmt(d['f1'])} |")
    seen = report.get("seen_lines_per_second")
    if seen:
        lines += ["", f"RAPID on lines whose masked text it has seen (parsing included): {fmt(seen['lines_per_second'], 0)} lines/s over {seen['lines']} test lines, {seen['cores']} cores."]
    windows = report.get("windows")
    if windows:
        lines += ["", "## Window level (a window is anomalous when any of its lines is flagged)", ""]
        for wname, w in windows.items():
            lines.append(f"- {wname}: {w['windows']} test windows, {w['anomalous']} anomalous: " + "; ".join(f"{n} F1 {fmt(v['f1'])}" for n, v in w["detectors"].items()))
    lines.append("")
    return "\n".join(lines)


def plot_pr(curves: dict, path: Path, report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5.5))
    for name, curve in curves.items():
        precision, recall = curve[0], curve[1]
        ax.plot(recall, precision, label=f"{name} (AUPRC {fmt(report['detectors'][name]['auprc'], 2)})", lw=1.6 if name == "ensemble" else 1.0)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.set_title(f"{report['dataset']}: precision-recall, test part", fontsize=11)
    fig.text(0.01, 0.01, report["protocol_text"], fontsize=6, wrap=True)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- live


LIVE_ORDER = ["rapid", "loggpt", "deeplog", "logbert", "lstm_ae", "iforest", "unseen_template", "unseen_session",
              "severity_rule"]


def run_live_command(args: argparse.Namespace, dataset) -> int:
    from logsense.models.bench.live import DEFAULT_IDLE_TIMEOUT, LiveConfig, run_live
    from logsense.models.embedding import load_embedder

    cfg = LiveConfig(train=args.train, train_fraction=args.train_fraction, feedback=args.feedback, quick=args.quick,
                     seed=args.seed, idle_timeout=args.idle_timeout if args.idle_timeout is not None else DEFAULT_IDLE_TIMEOUT)
    started = time.perf_counter()
    out = run_live(dataset, cfg, load_embedder())
    report = {
        "dataset": dataset.name,
        "protocol": "live",
        "oracle": False,
        "quick": cfg.quick,
        "seed": cfg.seed,
        **run_facts(started),
        **out,
    }
    write_report(args.out, report, render_live)
    return 0


def render_live(report: dict) -> str:
    p = report["product"]
    level = "sessions" if "session" in p else "lines"
    lines = [
        f"# LogSense benchmark: {report['dataset']}, live, train {report['train']}",
        "",
        report["protocol_text"],
        f"lines: {report['lines']:,} ({report['lines_posted_in_train_mode']:,} in train mode); windows: {report['windows']:,} "
        f"(training: {report['training_windows']['train']:,}, held back: {report['training_windows']['held_back']:,}); "
        f"templates: {report['templates']}; cores: {report['cores']}; run: {report['seconds']} s"
        + ("; QUICK smoke run, not a result" if report["quick"] else ""),
        "",
        f"**Product** ({level}): P {fmt(p['precision'])} R {fmt(p['recall'])} F1 {fmt(p['f1'])}; "
        f"normal {level} flagged {fmt(p['normal_flagged_rate'])}; queue: {p['queue_groups']:,} rows to read "
        f"({fmt(p['queue_groups_per_1k_lines'], 2)} per 1,000 lines; a row: one template in one incident) holding "
        f"{p['queue_items']:,} anomalies ({fmt(p['queue_items_per_1k_lines'], 1)} per 1,000 lines); lines: F1 {fmt(p['line']['f1'])}, "
        f"windows: F1 {fmt(p['window']['f1'])}",
    ]
    tm = p.get("train_metrics") or {}
    lines.append(f"training: K {tm.get('k')}, LogGPT validation FPR {fmt(tm.get('val_fpr'))} on {tm.get('n_val')} held-back "
                 f"sessions or windows; RAPID threshold {fmt(tm.get('rapid_threshold'))}, validation FPR "
                 f"{fmt(tm.get('rapid_val_fpr'))}; {'promoted' if tm.get('promoted') else 'KEPT BACK'}: {tm.get('reason')}")
    if p.get("state"):
        lines.append(f"stream state after training: {p['state']['state']} ({p['state']['reason']})")
    review = p.get("training_review") or []
    shapes = [r for r in review if r.get("shape")]
    lines.append(f"training review: {len(review) - len(shapes)} suspicious templates and {len(shapes)} rare session shapes "
                 "held back until an operator answers"
                 + (f" (templates {', '.join(str(r['template_id']) for r in review if not r.get('shape'))[:200]}"
                    + "".join(f"; shape {r['shape']}" for r in shapes[:6]) + ")" if review else ""))
    fb = p.get("feedback")
    if fb:
        lines.append(f"with the simulated operator ({fb['scope']} scope): P {fmt(fb['precision'])} R {fmt(fb['recall'])} "
                     f"F1 {fmt(fb['f1'])} in {fb['clicks']} clicks ({fb['training_review_clicks']} on the training review); "
                     f"queue rows {fb['queue_groups']:,}")
    lines += ["", "| detector | P | R | F1 | normal flagged | line F1 | window F1 | notes |", "|---|---|---|---|---|---|---|---|"]
    lines.append(f"| **product** | {fmt(p['precision'])} | {fmt(p['recall'])} | {fmt(p['f1'])} | {fmt(p['normal_flagged_rate'])} "
                 f"| {fmt(p['line']['f1'])} | {fmt(p['window']['f1'])} | what the server does |")
    for name, d, notes in detector_rows(report["detectors"], LIVE_ORDER):
        if d.get("note"):
            notes.append(d["note"])
        lines.append(f"| {name} | {fmt(d['precision'])} | {fmt(d['recall'])} | {fmt(d['f1'])} | {fmt(d['normal_flagged_rate'])} "
                     f"| {fmt(d['line']['f1'])} | {fmt(d['window']['f1'])} | {'; '.join(notes)} |")
    lines.append("")
    return "\n".join(lines)
