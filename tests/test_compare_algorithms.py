"""benchmarks/compare_algorithms.py's summary and table, from run files
written here (no training): gains, the shared base eval and the per-kind
pass@1 table."""

import argparse
import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("compare_algorithms",
                                                  os.path.join(ROOT, "benchmarks", "compare_algorithms.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(out, name, evals, rewards):
    d = os.path.join(out, name)
    os.makedirs(d)
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        for step, r in enumerate(rewards, start=1):
            f.write(json.dumps({"step": step, "reward_mean": r, "m/entropy": 0.1, "time/iteration": 60.0}) + "\n")
    for step, e in evals.items():
        with open(os.path.join(d, f"eval_step_{step}.json"), "w") as f:
            json.dump({"verdicts": {"accepted": 1, "no_code": 1}, **e}, f)


def test_summary_shares_the_base_eval_and_splits_pass_at_1_by_kind(compare, tmp_path):
    out = str(tmp_path)
    base = {"pass@1": 0.3, "pass@1/combination": 0.4, "pass@1/template": 0.1, "teacher_pass@1": 0.35}
    _run(out, "vpd_s0", {0: base, 4: {"pass@1": 0.5, "pass@1/combination": 0.7, "pass@1/template": 0.1,
                                      "teacher_pass@1": 0.6}}, [0.5, 0.7])
    _run(out, "grpo_s0", {4: {"pass@1": 0.2, "pass@1/combination": 0.25, "pass@1/template": 0.1}}, [0.1, 0.3])
    args = argparse.Namespace(algorithms="vpd,grpo", seeds="0", config="configs/demo.py", steps=2, set=[], out=out)
    summary = compare.summarize(args)
    vpd, grpo = summary["runs"]["vpd_s0"], summary["runs"]["grpo_s0"]
    assert (vpd["base_pass@1"], vpd["final_pass@1"]) == (0.3, 0.5)
    assert (grpo["base_pass@1"], grpo["final_pass@1"]) == (0.3, 0.2)  # VPD's step-0 eval is GRPO's too
    assert grpo["eval_teacher_pass@1"] == {}  # but not VPD's teacher
    assert vpd["eval_pass@1_by_group"] == {"combination": {0: 0.4, 4: 0.7}, "template": {0: 0.1, 4: 0.1}}
    md = compare.table(summary)
    assert "| VPD | 1 | 0.300 | 0.500 | +0.200 (+0.200..+0.200) | 0.600 | 0.500 -> 0.500 |" in md
    assert "| GRPO | 1 | 0.300 | 0.200 | -0.100" in md
    assert "| VPD | 0.400 -> 0.700 | 0.100 -> 0.100 |" in md
    assert "| GRPO | 0.400 -> 0.250 | 0.100 -> 0.100 |" in md


def test_with_groups_splits_old_eval_files_from_per_problem_correct(compare):
    old = {"pass@1": 0.5, "num_samples": 2, "per_problem_correct": {"a": 2, "b": 1, "c": 0, "d": 1}}
    class Ex:
        def __init__(self, kind):
            self.metadata = {"held_out": kind}

    # d is not in the config's eval split: left out
    examples = {"a": Ex("combination"), "b": Ex("combination"), "c": Ex("template")}
    curve = compare.with_groups({0: old, 4: {"pass@1": 0.1, "pass@1/template": 0.1}}, lambda: ("held_out", examples))
    assert curve[0]["pass@1/combination"] == 0.75 and curve[0]["pass@1/template"] == 0.0
    assert curve[4] == {"pass@1": 0.1, "pass@1/template": 0.1}  # a file that has them is left alone
    assert "pass@1/combination" not in old  # the loaded file's dict is not changed in place


def test_eval_examples_reads_the_demo_eval_split(compare):
    args = argparse.Namespace(config="configs/demo.py", set=[])
    key, examples = compare.eval_examples(args)
    groups = [ex.metadata[key] for ex in examples.values()]
    assert key == "held_out" and len(groups) == 48 and sorted(set(groups)) == ["combination", "template"]
    assert groups.count("template") == 16
    assert compare.eval_examples(argparse.Namespace(config="configs/demo.py", set=["task.options.seed=1"])) == ("", {})


def test_paired_difference_pools_seeds_and_problems(compare):
    a = {0: {"p": 1.0, "q": 0.5, "r": 0.0}, 1: {"p": 0.5, "q": 0.5}, 2: {"p": 1.0}}
    b = {0: {"p": 0.5, "q": 0.5, "r": 0.5}, 1: {"p": 0.0, "q": 1.0, "extra": 1.0}}
    res = compare.paired_difference(a, b)
    d = [0.5, 0.0, -0.5, 0.5, -0.5]  # seed 2 and problem "extra" are in one side only
    mean = sum(d) / 5
    se = (sum((x - mean) ** 2 for x in d) / 4) ** 0.5 / 5 ** 0.5
    assert res["cells"] == 5
    assert res["mean"] == pytest.approx(mean)
    assert res["se"] == pytest.approx(se)
    assert res["per_seed"] == pytest.approx({0: 0.0, 1: 0.0})
    assert compare.paired_difference({0: {"p": 1.0}}, {1: {"p": 1.0}}) is None


def test_table_reports_paired_gain_and_algorithm_gap(compare, tmp_path):
    out = str(tmp_path)
    base = {"pass@1": 0.25, "num_samples": 2, "per_problem_correct": {"p": 0, "q": 1}}
    _run(out, "vpd_s0", {0: base, 4: {"pass@1": 0.75, "num_samples": 2, "per_problem_correct": {"p": 2, "q": 1}}},
         [0.5])
    _run(out, "grpo_s0", {4: {"pass@1": 0.5, "num_samples": 2, "per_problem_correct": {"p": 1, "q": 1}}}, [0.5])
    args = argparse.Namespace(algorithms="vpd,grpo", seeds="0", out=out, config="configs/demo.py", steps=4,
                              set=["task.x=1"])
    summary = compare.summarize(args)
    rows = dict(compare.paired_rows(summary))
    assert rows["VPD: last eval - RL start"]["mean"] == pytest.approx(0.5)  # (1 - 0 + 0.5 - 0.5) / 2
    assert rows["GRPO: last eval - RL start"]["mean"] == pytest.approx(0.25)  # the shared base eval
    assert rows["VPD - GRPO, last eval"]["mean"] == pytest.approx(0.25)
    assert "| VPD - GRPO, last eval | +0.250 |" in compare.table(summary)


def test_baselines_added_later_reuse_the_seeds_warm_start_and_base_eval(compare, tmp_path):
    runs, out = str(tmp_path / "runs"), str(tmp_path / "out")
    os.makedirs(os.path.join(runs, "vpd_s0", "warm_start", "checkpoints"))
    os.makedirs(os.path.join(runs, "vpd_s1", "warm_start"))  # no checkpoints: not finished
    os.makedirs(os.path.join(runs, "vpd_s10", "warm_start", "checkpoints"))
    # an earlier VPD-only invocation made seed 0's warm start: SDPO and GRPO reuse it
    assert compare.shared_warm_start(runs, "sdpo", 0, ["sdpo", "grpo"]) == os.path.join(runs, "vpd_s0", "warm_start")
    assert compare.shared_warm_start(runs, "sdpo", 1, ["sdpo", "grpo"]) == ""  # s10 is not seed 1
    assert compare.shared_warm_start(runs, "vpd", 0, ["vpd"]) == ""  # never its own
    os.makedirs(os.path.join(runs, "sdpo_s0", "warm_start", "checkpoints"))
    # a listed algorithm's warm start comes first
    assert compare.shared_warm_start(runs, "grpo", 0, ["sdpo", "grpo"]) == os.path.join(runs, "sdpo_s0", "warm_start")
    _run(out, "vpd_s0", {0: {"pass@1": 0.3, "teacher_pass@1": 0.35}, 4: {"pass@1": 0.5}}, [0.5])
    _run(out, "sdpo_s0", {4: {"pass@1": 0.4}}, [0.2])
    assert compare.base_eval(out, 0, ["sdpo"])["pass@1"] == 0.3 and compare.base_eval(out, 1, ["sdpo"]) is None
    summary = compare.summarize(argparse.Namespace(algorithms="sdpo", seeds="0", config="configs/demo.py",
                                                   steps=1, set=[], out=out))
    sdpo = summary["runs"]["sdpo_s0"]
    assert (sdpo["base_pass@1"], sdpo["final_pass@1"], sdpo["eval_teacher_pass@1"]) == (0.3, 0.4, {})
