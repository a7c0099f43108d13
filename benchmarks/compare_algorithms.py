"""VPD vs SDPO vs GRPO on the CPU default, on the same budget of rollouts.

    python benchmarks/compare_algorithms.py [--algorithms vpd,sdpo,grpo] [--seeds 0]
        [--steps 10] [--eval-every 5] [--minutes 40] [--runs runs/compare] [--out docs/results]
        [--set key=value ...] [--plot-only]

Each (algorithm, seed) trains `configs/demo.py` through the public entry point
(`launch/tpu_run.py`) for --steps iterations, i.e. the same number of
prompts x samples for every algorithm, with evals at step 0, every
--eval-every steps and at the end. VPD runs also sample the teacher on the
eval split (`eval.teacher`), which gives the teacher-vs-student diagnostic.
The eval key depends on (seed, step) only, so the step-0 eval of the base
model is the same for every algorithm of a seed: it runs once (in the first
algorithm's run) and the others reuse it. Likewise one warm start per seed:
a run reuses any finished `<runs>/<alg>_s<seed>/warm_start`, so baselines
added later to a VPD-only --runs/--out pair (`--algorithms sdpo,grpo`) train
from the VPD runs' warm starts and share their base evals, with no copying.

A run that passes --minutes is stopped with SIGTERM, which saves a
checkpoint at the next step boundary; rerunning the script resumes it.
The raw metrics.jsonl and eval files of each run are copied to --out, the
figures (vpd_jax.plots, as `vpd-plot` draws them, into <figures>/compare/)
are drawn from those copies (so --plot-only redraws them from a
clean checkout), and a summary table (base and final pass@1, mean and
spread over seeds) is printed and written as summary.json / summary.md.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

LABELS = {"vpd": "VPD", "sdpo": "SDPO", "grpo": "GRPO"}


def run_one(alg: str, seed: int, args, at_start: bool, init_from: str = "") -> int:
    """Trains one (algorithm, seed) in a subprocess; returns its exit code.
    init_from: a warm start another run of this seed made (the same SFT
    steps on the same seed), reused instead of trained again."""
    workdir = os.path.join(args.runs, f"{alg}_s{seed}")
    cmd = [sys.executable, os.path.join(ROOT, "launch", "tpu_run.py"), "--config", os.path.join(ROOT, args.config),
           f"--config.algorithm={alg}", f"--config.seed={seed}", f"--config.workdir={workdir}",
           f"--config.total_steps={args.steps}", f"--config.eval.every={args.eval_every}",
           f"--config.eval.at_start={at_start}", f"--config.eval.teacher={alg == 'vpd'}",
           "--config.log.progress=False"] + [f"--config.{kv}" for kv in args.set]
    if init_from:
        cmd.append(f"--config.model.init_from={init_from}")
    os.makedirs(workdir, exist_ok=True)
    log_path = os.path.join(workdir, "compare.log")
    print(f"[{time.strftime('%H:%M:%S')}] {alg} seed {seed}: {' '.join(cmd[1:])}\n    log: {log_path}", flush=True)
    t0 = time.perf_counter()
    with open(log_path, "a") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(timeout=args.minutes * 60)
        except subprocess.TimeoutExpired:
            print(f"    over {args.minutes} min: SIGTERM (a checkpoint is saved at the next step boundary)", flush=True)
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait()
    print(f"    exit {rc} after {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    return rc


def shared_warm_start(runs: str, alg: str, seed: int, algs: list[str]) -> str:
    """A finished warm start of this seed that another run in --runs made
    (the listed algorithms first, then any other, e.g. an earlier VPD-only
    invocation), or "" when there is none and this run trains its own.
    Every run of a seed trains the same SFT steps from the same seed, so
    the copy is the warm start this run would make."""
    order = [a for a in algs if a != alg] + sorted(
        os.path.basename(d).rsplit("_s", 1)[0] for d in glob.glob(os.path.join(runs, f"*_s{seed}")))
    for other in dict.fromkeys(order):
        warm = os.path.join(runs, f"{other}_s{seed}", "warm_start")
        if other != alg and os.path.isdir(os.path.join(warm, "checkpoints")):
            return warm
    return ""


def base_eval(out: str, seed: int, algs: list[str]) -> dict | None:
    """The step-0 eval of this seed's base model: a listed algorithm's
    copy first, else any run's of the seed in --out (all are the same eval)."""
    paths = [os.path.join(out, f"{a}_s{seed}", "eval_step_0.json") for a in algs]
    paths += sorted(glob.glob(os.path.join(out, f"*_s{seed}", "eval_step_0.json")))
    for p in paths:
        if os.path.exists(p):
            return json.load(open(p))
    return None


def collect(alg: str, seed: int, args) -> None:
    """Copies a run's metrics and eval results into --out."""
    workdir = os.path.join(args.runs, f"{alg}_s{seed}")
    dest = os.path.join(args.out, f"{alg}_s{seed}")
    os.makedirs(dest, exist_ok=True)
    shutil.copy(os.path.join(workdir, "metrics.jsonl"), os.path.join(dest, "metrics.jsonl"))
    for path in glob.glob(os.path.join(workdir, "eval", "step_*.json")):
        shutil.copy(path, os.path.join(dest, "eval_" + os.path.basename(path)))


def eval_curve(dest: str, base: dict | None) -> dict[int, dict]:
    """{step: eval result} of one run, with the shared base eval at step 0."""
    out = {0: base} if base else {}
    for path in glob.glob(os.path.join(dest, "eval_step_*.json")):
        out[int(path.rsplit("_", 1)[1].split(".")[0])] = json.load(open(path))
    return dict(sorted(out.items()))


def eval_examples(args) -> tuple[str, dict[str, object]]:
    """(eval.group_by, {problem id: Example} of the config's eval split), to
    split pass@1 by kind in eval files written before group_by existed, from
    their per_problem_correct; ("", {}) when --set touches the task."""
    import importlib.util

    from vpd_jax.components import build_task

    if any(kv.startswith(("task.", "eval.group_by")) for kv in args.set):
        return "", {}
    spec = importlib.util.spec_from_file_location("compare_config", os.path.join(ROOT, args.config))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg = mod.get_config()
    key = cfg.eval.get("group_by", "")
    return (key, {ex.id: ex for ex in build_task(cfg).eval}) if key else ("", {})


def with_groups(curve: dict[int, dict], examples_fn) -> dict[int, dict]:
    """The curve with pass@1/<kind> filled in where an eval file lacks it,
    by evaluate.grouped_pass_at_1 over the per-problem correct counts."""
    import numpy as np

    from vpd_jax.evaluate import grouped_pass_at_1

    out = {}
    for step, e in curve.items():
        if e and not any(k.startswith("pass@1/") for k in e) and "per_problem_correct" in e:
            key, examples = examples_fn()
            n = e.get("num_samples", 1)
            known = [(examples[pid], c) for pid, c in e["per_problem_correct"].items() if pid in examples]
            correct = np.array([[j < c for j in range(n)] for _, c in known], bool).reshape(len(known), n)  # [P, n]
            e = {**e, **grouped_pass_at_1(correct, [ex for ex, _ in known], key)}
        out[step] = e
    return out


def summarize(args) -> dict:
    from vpd_jax.metrics import read_metrics

    algs, seeds = args.algorithms.split(","), [int(s) for s in args.seeds.split(",")]
    summary: dict = {"config": args.config, "steps": args.steps, "overrides": args.set, "runs": {}}
    cache: dict = {}
    examples_fn = lambda: cache.setdefault("examples", eval_examples(args))  # loads the task once, only if needed
    for seed in seeds:
        base = base_eval(args.out, seed, algs)  # the run that made it holds the step-0 eval
        for alg in algs:
            dest = os.path.join(args.out, f"{alg}_s{seed}")
            if not os.path.exists(os.path.join(dest, "metrics.jsonl")):
                continue
            curve = with_groups(eval_curve(dest, base), examples_fn)
            rows = read_metrics(os.path.join(dest, "metrics.jsonl"))
            last = max(curve) if curve else None
            summary["runs"][f"{alg}_s{seed}"] = {
                "algorithm": alg, "seed": seed, "steps_done": max((r["step"] for r in rows), default=0),
                "eval_pass@1": {s: e["pass@1"] for s, e in curve.items()},
                # the run's own evals only: the shared base eval carries the teacher of the run that made it
                "eval_teacher_pass@1": {s: e["teacher_pass@1"] for s, e in eval_curve(dest, None).items()
                                        if "teacher_pass@1" in e},
                "eval_tests_passed_frac": {s: e["tests_passed_frac"] for s, e in curve.items()
                                           if "tests_passed_frac" in e},
                # pass@1 per kind of eval problem (eval.group_by), e.g. unseen combinations vs templates
                "eval_pass@1_by_group": {g[len("pass@1/"):]: {s: e[g] for s, e in curve.items() if g in e}
                                         for g in sorted({k for e in curve.values() for k in e
                                                          if k.startswith("pass@1/")})},
                "base_pass@1": curve[0]["pass@1"] if 0 in curve else None,
                "final_pass@1": curve[last]["pass@1"] if last else None,
                "eval_no_code": {s: e.get("verdicts", {}).get("no_code", 0) / max(1, sum(e.get("verdicts", {}).values()))
                                 for s, e in curve.items()},
                "entropy": [r[k] for r in rows for k in ("m/entropy", "g/entropy") if k in r],
                "teacher_entropy": [r["m/teacher_entropy"] for r in rows if "m/teacher_entropy" in r],
                "train_reward_mean": sum(r.get("reward_mean", 0.0) for r in rows if "reward_mean" in r)
                / max(1, sum("reward_mean" in r for r in rows)),
                "minutes": sum(r.get("time/iteration", 0.0) for r in rows) / 60,
                # {step: {problem id: fraction of its samples correct}}, for paired_difference
                "eval_per_problem": {s: {pid: c / max(1, e.get("num_samples", 1))
                                         for pid, c in e["per_problem_correct"].items()}
                                     for s, e in curve.items() if "per_problem_correct" in e},
            }
    return summary


def paired_difference(a: dict, b: dict) -> dict | None:
    """Mean difference (a - b) of per-problem pass fractions, pooled over the
    seeds both have, with its standard error over the (seed, problem) cells.

    Why paired: within a seed two runs share the warm start and the eval
    problems, and problem difficulty is most of one eval's variance; it
    cancels in the per-problem difference, so a gap too small for two
    independent standard errors (~0.05 each at 96 samples) can still show.
    The SE covers eval sampling and problems, not which seeds trained
    well: the per-seed means show that spread, and with 3 seeds it is the
    honest caveat. a, b: {seed: {problem id: fraction correct}}.
    """
    import numpy as np

    diffs, per_seed = [], {}
    for seed in sorted(set(a) & set(b)):
        common = sorted(set(a[seed]) & set(b[seed]))
        if common:
            d = np.array([a[seed][p] - b[seed][p] for p in common], float)  # [P]
            diffs.append(d)
            per_seed[seed] = float(d.mean())
    if not diffs:
        return None
    d = np.concatenate(diffs)  # [seeds x P]
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return {"mean": float(d.mean()), "se": se, "cells": int(len(d)), "per_seed": per_seed}


def paired_rows(summary: dict) -> list[tuple[str, dict]]:
    """(label, paired_difference) for each algorithm's gain (last eval - RL
    start) and each pair of algorithms at the last eval step both reached."""
    by_alg: dict = {}
    for r in summary["runs"].values():
        by_alg.setdefault(r["algorithm"], {})[r["seed"]] = {int(s): v for s, v in r.get("eval_per_problem", {}).items()}
    out = []
    for alg, seeds in by_alg.items():
        last = {seed: c[max(c)] for seed, c in seeds.items() if c and 0 in c and max(c) > 0}
        first = {seed: seeds[seed][0] for seed in last}
        res = paired_difference(last, first)
        if res:
            out.append((f"{LABELS.get(alg, alg)}: last eval - RL start", res))
    algs = list(by_alg)
    for i, x in enumerate(algs):
        for y in algs[i + 1:]:
            a, b = {}, {}
            for seed in set(by_alg[x]) & set(by_alg[y]):
                steps = set(by_alg[x][seed]) & set(by_alg[y][seed]) - {0}
                if steps:
                    a[seed], b[seed] = by_alg[x][seed][max(steps)], by_alg[y][seed][max(steps)]
            res = paired_difference(a, b)
            if res:
                out.append((f"{LABELS.get(x, x)} - {LABELS.get(y, y)}, last eval", res))
    return out


def table(summary: dict) -> str:
    import numpy as np

    lines = ["| algorithm | seeds | RL-start pass@1 | final pass@1 (mean ± spread) | gain (mean, min..max) "
             "| final teacher pass@1 | no_code share, start -> end | student entropy, first -> last iteration "
             "| mean train reward | minutes/run |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    by_alg: dict = {}
    for r in summary["runs"].values():
        by_alg.setdefault(r["algorithm"], []).append(r)
    for alg, runs in by_alg.items():
        finals = np.array([r["final_pass@1"] for r in runs if r["final_pass@1"] is not None], float)
        bases = np.array([r["base_pass@1"] for r in runs if r["base_pass@1"] is not None], float)
        spread = f" ± {finals.std():.3f}" if len(finals) > 1 else ""
        gains = np.array([r["final_pass@1"] - r["base_pass@1"] for r in runs
                          if r["final_pass@1"] is not None and r["base_pass@1"] is not None], float)
        gain = f"{gains.mean():+.3f} ({gains.min():+.3f}..{gains.max():+.3f})" if len(gains) else "-"
        teach = [r["eval_teacher_pass@1"][max(r["eval_teacher_pass@1"])] for r in runs if r["eval_teacher_pass@1"]]
        last = lambda d: d[max(d)] if d else float("nan")
        no_code = (f"{np.mean([r['eval_no_code'].get(0, float('nan')) for r in runs]):.3f} -> "
                   f"{np.mean([last(r['eval_no_code']) for r in runs]):.3f}")
        ent = [(r["entropy"][0], r["entropy"][-1]) for r in runs if r["entropy"]]
        ent_s = f"{np.mean([e[0] for e in ent]):.2f} -> {np.mean([e[1] for e in ent]):.2f}" if ent else "-"
        teach_s = f"{np.mean(teach):.3f}" if teach else "-"
        lines.append(f"| {LABELS.get(alg, alg)} | {len(runs)} | {bases.mean():.3f} | {finals.mean():.3f}{spread} | "
                     f"{gain} | {teach_s} | {no_code} | {ent_s} | "
                     f"{np.mean([r['train_reward_mean'] for r in runs]):.3f} | {np.mean([r['minutes'] for r in runs]):.1f} |")
    groups = sorted({g for r in summary["runs"].values() for g in r.get("eval_pass@1_by_group", {})})
    if groups:  # the mean over a mixed eval split can hide one kind falling while another rises
        lines += ["", "| algorithm | " + " | ".join(f"{g}: pass@1, RL start -> final" for g in groups) + " |",
                  "|---|" + "---|" * len(groups)]
        for alg, runs in by_alg.items():
            cells = []
            for g in groups:
                curves = [r["eval_pass@1_by_group"][g] for r in runs
                          if 0 in r.get("eval_pass@1_by_group", {}).get(g, {})]
                part = f" ({len(curves)} of {len(runs)} seeds)" if len(curves) < len(runs) else ""
                cells.append(f"{np.mean([c[0] for c in curves]):.3f} -> {np.mean([c[max(c)] for c in curves]):.3f}{part}"
                             if curves else "-")
            lines.append(f"| {LABELS.get(alg, alg)} | " + " | ".join(cells) + " |")
    paired = paired_rows(summary)
    if paired:  # same seeds, same problems: the differences the table above cannot resolve
        lines += ["", "| paired comparison of pass@1 | mean difference | standard error (seeds x problems) "
                  "| per seed |", "|---|---|---|---|"]
        for label, res in paired:
            seeds = ", ".join(f"{v:+.3f}" for _, v in sorted(res["per_seed"].items()))
            lines.append(f"| {label} | {res['mean']:+.3f} | {res['se']:.3f} ({res['cells']} cells) | {seeds} |")
    return "\n".join(lines)


def plot(summary: dict, args) -> list[str]:
    """The figures `vpd-plot` draws (vpd_jax.plots), every run overlaid, from
    the copies in --out; the shared base eval is each run's step 0."""
    from vpd_jax import plots
    from vpd_jax.metrics import read_metrics

    runs = {}
    for name, r in summary["runs"].items():
        rows = read_metrics(os.path.join(args.out, name, "metrics.jsonl"))
        base = {f"eval/{k}": r[f"eval_{k}"][0] for k in ("pass@1", "teacher_pass@1", "tests_passed_frac")
                if 0 in r[f"eval_{k}"]}
        if base and not any(row["step"] == 0 for row in rows):
            rows = [{"step": 0, **base}] + rows
        # pass@1 by kind, from the eval files (older metrics.jsonl files lack it)
        by_step: dict[int, dict] = {}
        for g, curve in r.get("eval_pass@1_by_group", {}).items():
            for step, v in curve.items():
                by_step.setdefault(int(step), {})[f"eval/pass@1/{g}"] = v
        rows = [{**row, **by_step.pop(row["step"], {})} for row in rows]
        rows += [{"step": step, **extra} for step, extra in sorted(by_step.items())]
        rows.sort(key=lambda row: row["step"])
        runs[f"{LABELS.get(r['algorithm'], r['algorithm'])} (seed {r['seed']})"] = rows
    return plots.save_figures(runs, os.path.join(args.figures, "compare"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/demo.py")
    ap.add_argument("--algorithms", default="vpd,sdpo,grpo", help="comma-separated; the first runs the base eval")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--steps", type=int, default=10, help="iterations per run (same rollouts for every algorithm)")
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--minutes", type=float, default=40.0, help="wall-time limit per run")
    ap.add_argument("--runs", default="runs/compare", help="workdirs of the runs")
    ap.add_argument("--out", default="docs/results", help="where the raw metrics and summary are copied")
    ap.add_argument("--figures", default="docs", help="the PNGs go to <figures>/compare/")
    ap.add_argument("--set", action="append", default=[], help="extra config override key=value (repeatable)")
    ap.add_argument("--plot-only", action="store_true", help="redraw figures and summary from --out")
    args = ap.parse_args()
    for kv in args.set:
        if "=" not in kv:
            ap.error(f"--set {kv!r}: expected key=value")
    algs = args.algorithms.split(",")
    bad = [a for a in algs if a not in LABELS]
    if bad:
        ap.error(f"unknown algorithms {bad}; choose from {list(LABELS)}")
    if not args.plot_only:
        for seed in (int(s) for s in args.seeds.split(",")):
            for i, alg in enumerate(algs):
                # the base eval runs once per seed: in the first run, unless a
                # run of this seed (e.g. an earlier invocation) already has it
                have_base = glob.glob(os.path.join(args.out, f"*_s{seed}", "eval_step_0.json"))
                # one warm start per seed: the first run of the seed trains it
                shared = shared_warm_start(args.runs, alg, seed, algs)
                rc = run_one(alg, seed, args, at_start=(i == 0 and not have_base), init_from=shared)
                if os.path.exists(os.path.join(args.runs, f"{alg}_s{seed}", "metrics.jsonl")):
                    collect(alg, seed, args)
                if rc not in (0, -signal.SIGTERM):
                    print(f"    {alg} seed {seed} failed; see its compare.log", flush=True)
    summary = summarize(args)
    if not summary["runs"]:
        sys.exit(f"no runs in {args.out}")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    md = table(summary)
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(md + "\n")
    print(md)
    for path in plot(summary, args):
        print("wrote", path)


if __name__ == "__main__":
    main()
