r"""tlx's Faster R-CNN against torchvision's on FashionDet, seed by seed: issue 23's two accuracy
goals, judged on paired seeds from the published records.

    python -m experiments.frcnn_versus_torchvision \
        --records=experiments/results/frcnn_fashiondet_records.jsonl.gz \
        --reference=experiments/results/frcnn_reference.json \
        --reference_scratch=experiments/results/frcnn_reference_scratch.json \
        --out=experiments/results/frcnn_versus_torchvision

The tlx side is the study configs/faster_rcnn_fashiondet_study.py (each cell at its checkpoint
chosen on validation mAP); the torchvision side is experiments.frcnn_reference with the same
recipe, scenes and seeds (its last step: it has no validation pass, which can only favour it
when training still improves). The study's fine-tune arms differ from torchvision's recipe in
steps: `pretrained` trains BatchNorm's scale and bias in the groups that train, and runs SGD with
a constant momentum and weight decay on matrices only; `pretrained_fixed_bn` keeps BatchNorm fixed
(FrozenBatchNorm2d); `pretrained_torch_recipe` also cycles momentum as OneCycleLR does and decays
biases as torch's SGD does: torchvision's recipe in full. Goals:
- the fine-tune with torchvision's recipe within 2 mAP points of torchvision's: the mean paired
  difference (tlx minus torchvision, same seed) at least -0.02; being above counts. Judged on
  `pretrained_torch_recipe`; the other arms' differences are shown beside it;
- the fine-tune at least 30 AP50 points above the same detector from random init (tlx's own
  scratch arm, paired by seed).
A goal is judged once 3 seeds are paired; before that the table says how many are.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from absl import app, flags

from tlx import cli

METRICS = ("mAP", "AP50", "AP75")
SEEDS_NEEDED = 3
WITHIN_MAP = 0.02  # "within 2 mAP points of torchvision's"
AP50_GAIN = 0.30  # "at least 30 AP50 points above ... random init"


def define_flags() -> None:
    flags.DEFINE_string("records", None, "The tlx study's PREFIX_records.jsonl.gz.")
    flags.DEFINE_string("reference", None, "experiments.frcnn_reference's JSON (ImageNet init).")
    flags.DEFINE_string("reference_scratch", None, "Its JSON with --random_init (optional).")
    flags.DEFINE_string("out", None, "Output prefix: PREFIX.md and PREFIX.json.")
    flags.mark_flags_as_required(["records", "reference", "out"])


def tlx_runs(records_path: str | Path) -> dict[str, dict[int, dict]]:
    """{strategy: {seed: {mAP, AP50, AP75, machine, train_seconds, selected_step}}} from the
    study's finished cells (test split, at the selected checkpoint)."""
    from experiments.aggregate.records import read_records

    runs: dict[str, dict[int, dict]] = {}
    for name, record in read_records(records_path)[1].items():
        overrides, summary = record.get("overrides") or {}, record["summary"]
        test = summary.get("results", {}).get("test")
        if not test or "seed" not in overrides or "strategy" not in overrides:
            raise ValueError(
                f"{records_path}: cell {name!r} has no test results or no seed/strategy override; "
                "expected the records of configs/faster_rcnn_fashiondet_study.py's sweep"
            )
        runs.setdefault(overrides["strategy"], {})[int(overrides["seed"])] = {
            **{m: float(test[m]) for m in METRICS},
            "machine": summary.get("machine", ""),
            "train_seconds": summary.get("train_seconds_this_run"),
            "selected_step": summary.get("selected_step"),
        }
    return runs


def reference_runs(path: str | Path | None, random_init: bool) -> dict[int, dict]:
    """{seed: run} from experiments.frcnn_reference's record; {} where none was given or made."""
    if path is None or not Path(path).exists():
        return {}
    record = json.loads(Path(path).read_text())
    if record.get("random_init") != random_init:
        raise ValueError(
            f"{path} was made with random_init={record.get('random_init')}, expected "
            f"{random_init}: pass the ImageNet run as --reference and the --random_init run as "
            "--reference_scratch"
        )
    return {int(r["seed"]): r for r in record["runs"]}


def paired(ours: dict[int, dict], theirs: dict[int, dict], metric: str) -> dict:
    """ours[seed][metric] - theirs[seed][metric] over the seeds both have."""
    from experiments.aggregate.significance import paired_stats

    seeds = sorted(set(ours) & set(theirs))
    stats = paired_stats([ours[s][metric] for s in seeds], [theirs[s][metric] for s in seeds])
    differences = [ours[s][metric] - theirs[s][metric] for s in seeds]
    return {**stats, "seeds": seeds, "differences": differences}


def goal(difference: dict, threshold: float, text: str) -> dict:
    n = difference["n"]
    if n < SEEDS_NEEDED:
        verdict = f"pending: {n} of {SEEDS_NEEDED} seeds paired"
    else:
        verdict = "met" if difference["mean"] >= threshold else "not met"
    return {"goal": text, "threshold": threshold, "verdict": verdict, **difference}


def compare(tlx: dict, reference: dict, reference_scratch: dict) -> dict:
    fine_tune, scratch = tlx.get("pretrained", {}), tlx.get("scratch", {})
    fixed_bn = tlx.get("pretrained_fixed_bn", {})  # torchvision's FrozenBatchNorm2d
    recipe = tlx.get("pretrained_torch_recipe", {})  # and torch's momentum cycling, bias decay
    return {
        "arms": {
            "tlx fine-tune": fine_tune,
            "tlx fine-tune, BatchNorm fixed": fixed_bn,
            "tlx fine-tune, torchvision's recipe": recipe,
            "torchvision fine-tune": reference,
            "tlx random init": scratch,
            "torchvision random init": reference_scratch,
        },
        "goals": [
            goal(
                paired(recipe, reference, "mAP"),
                -WITHIN_MAP,
                "tlx fine-tune with torchvision's recipe mAP minus torchvision's, same seed: "
                "at least -0.02",
            ),
            goal(
                paired(fine_tune, scratch, "AP50"),
                AP50_GAIN,
                "tlx fine-tune AP50 minus tlx random init's, same seed: at least +0.30",
            ),
        ],  # fmt: skip
        "context": {  # torchvision's own transfer gain, and the two scratch arms
            "tlx fine-tune (BatchNorm scale and bias train) minus torchvision's, mAP": paired(
                fine_tune, reference, "mAP"
            ),
            "tlx fine-tune, BatchNorm fixed, minus torchvision's, mAP": paired(
                fixed_bn, reference, "mAP"
            ),
            "BatchNorm scale and bias trained minus fixed (tlx), mAP": paired(
                fine_tune, fixed_bn, "mAP"
            ),
            "torch's momentum cycling and bias decay minus tlx's SGD (BatchNorm fixed), mAP": (
                paired(recipe, fixed_bn, "mAP")
            ),
            "torchvision fine-tune minus random init, AP50": paired(
                reference, reference_scratch, "AP50"
            ),
            "tlx random init minus torchvision's, mAP": paired(scratch, reference_scratch, "mAP"),
        },
    }


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def _signed(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:+.3f}"


def markdown(result: dict, command: str) -> str:
    arms = result["arms"]
    seeds = sorted({s for runs in arms.values() for s in runs})
    lines = [
        "# Faster R-CNN on FashionDet: tlx against torchvision",
        "",
        f"Made by `{command}`.",
        "",
        "Test split (200 scenes). tlx cells at the checkpoint chosen on validation mAP; "
        "torchvision at its last step (same recipe, scenes and seeds). Times compare only "
        "within one machine, which each row names.",
        "",
        "| arm | seed | mAP | AP50 | AP75 | train s | machine |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, runs in arms.items():
        for seed in seeds:
            if seed in runs:
                r = runs[seed]
                seconds = r.get("train_seconds")
                lines.append(
                    f"| {arm} | {seed} | "
                    + " | ".join(f"{r[m]:.3f}" for m in METRICS)
                    + f" | {'-' if seconds is None else f'{seconds:,.0f}'} | {r.get('machine', '')} |"
                )
    lines += ["", "Mean ± sample std over seeds:", "", "| arm | n | mAP | AP50 | AP75 |"]
    lines.append("|---|---|---|---|---|")
    for arm, runs in arms.items():
        cells = [_mean_std([r[m] for r in runs.values()]) for m in METRICS]
        lines.append(f"| {arm} | {len(runs)} | " + " | ".join(cells) + " |")
    lines += ["", "| goal | seeds | per seed | mean | 95% interval | verdict |"]
    lines.append("|---|---|---|---|---|---|")
    for g in result["goals"]:
        per_seed = ", ".join(_signed(d) for d in g["differences"]) or "-"
        interval = f"[{_signed(g['ci_low'])}, {_signed(g['ci_high'])}]"
        lines.append(
            f"| {g['goal']} | {g['n']} | {per_seed} | {_signed(g['mean'])} | {interval} | "
            f"**{g['verdict']}** |"
        )
    lines += ["", "Context (paired by seed):", ""]
    for label, d in result["context"].items():
        per_seed = ", ".join(_signed(x) for x in d["differences"])
        interval = f", 95% interval [{_signed(d['ci_low'])}, {_signed(d['ci_high'])}]"
        lines.append(
            f"- {label}: {_signed(d['mean'])} over {d['n']} seeds {d['seeds']}"
            + (f" ({per_seed}{interval if d['n'] > 1 else ''})" if d["n"] else "")
        )
    return "\n".join(lines) + "\n"


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from experiments.jsonio import write_atomic

    f = flags.FLAGS
    result = compare(
        tlx_runs(f.records),
        reference_runs(f.reference, random_init=False),
        reference_runs(f.reference_scratch, random_init=True),
    )
    command = "python -m experiments.frcnn_versus_torchvision " + " ".join(
        f"--{k}={v}"
        for k, v in (
            ("records", f.records),
            ("reference", f.reference),
            ("reference_scratch", f.reference_scratch),
            ("out", f.out),
        )  # fmt: skip
        if v is not None
    )
    out = Path(f.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out.with_suffix(".md"), markdown(result, command))
    write_atomic(out.with_suffix(".json"), json.dumps(result, indent=1, default=float))
    print(markdown(result, command))


if __name__ == "__main__":
    define_flags()
    cli.run(main, program="experiments.frcnn_versus_torchvision")
