"""Where a text adaptation's target error comes from: each finished run of a study scored on the
source's and the target's labelled test sets, with what the study's own table cannot show.

    python -m experiments.adapt_diagnose --workdirs='runs/adapt_rt_airline/*' \\
        --workdirs='runs/adapt_rt_airline_oracle/*' --out=experiments/results/adaptation_rt_airline_diagnosis

Per run (its selected checkpoint: the last step where nothing is selected), on the source test
split ("test") and the target test split ("target_test", relabelled to the source's classes):
- balanced accuracy at the model's own decision (argmax), and each class's recall;
- the share of inputs predicted as class 0 against the true share (a prior shift shows here);
- ROC AUC of class 1's probability: how well the model ranks, whatever its threshold;
- the best balanced accuracy any threshold on class 1's probability reaches. This one reads the
  target's labels, so it is a diagnosis, never a method: what the ranking allows if only the
  threshold were moved;
- how separable the two domains are at the classifier's input (the "pooled" endpoint CORAL and
  DANN align): a logistic regression told source test from target test (equal numbers of each,
  5-fold cross-validated accuracy; 0.5 = the domains look alike, 1.0 = told apart every time);
- the cap that aligning the domains puts on the target: if the target's features were distributed
  as the source's (what DANN drives at, and CORAL in part), the model would predict class 0 on
  the same share of target inputs as of source inputs, whatever the target's true share. With
  the source's predicted share q below the target's true share p, the best balanced accuracy
  such predictions allow is (q / p + 1) / 2 (every class-1 input right, only q of the p class-0
  inputs); above it, (1 + (1 - q) / (1 - p)) / 2.

Binary classifiers with a "pooled" endpoint (BERT-family classifiers). Writes OUT.json and OUT.md;
a run already in OUT.json with the same summary.json is not computed again.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
from pathlib import Path

from absl import app, flags

SPLITS = ("test", "target_test")
DOMAIN_FOLDS = 5
_BATCHES: dict[tuple, dict] = {}  # evaluation_batches' memo


def define_flags() -> None:
    """Defined only when run as a program: importing this module (its tests do, beside other
    experiments' modules in one process) must not claim flag names such as --out."""
    flags.DEFINE_multi_string("workdirs", [], "Run folders (glob patterns).")
    flags.DEFINE_string("out", "runs/adapt_diagnosis", "Writes OUT.json and OUT.md.")
    flags.DEFINE_string("endpoint", "pooled", "The features whose domains are compared.")
    flags.DEFINE_string("source", "rotten_tomatoes", "The source dataset.")
    flags.DEFINE_string(
        "label_map", "negative:rotten,positive:fresh", "Target label:source label pairs."
    )


def finished_runs(patterns: list[str]) -> list[Path]:
    """The run folders the patterns name that have a summary.json (finished), sorted."""
    found = sorted({Path(p) for pattern in patterns for p in glob.glob(pattern)})
    return [p for p in found if (p / "summary.json").is_file()]


def evaluation_batches(workdir: Path, source: str, label_map: str) -> dict:
    """The run's source test split ("test") and target test split ("target_test"), the target's
    labels paired with the source's: every run of a study (its oracle too, trained on the target
    alone) is scored on the same two sets."""
    from tlx.experiment import build_experiment
    from tlx.predict import read_run_spec

    spec = read_run_spec(workdir)
    spec = dataclasses.replace(
        spec,
        init_from="",
        data=dataclasses.replace(spec.data, name=source, eval_splits=("test",), train_examples=0),
        adapt=dataclasses.replace(spec.adapt, method="none", endpoint="", label_map=label_map),
        plan=dataclasses.replace(spec.plan, lr_multipliers=""),  # DANN's names its classifier
    )
    data = spec.data
    key = (spec.model.checkpoint, data.data_dir, data.max_length, tuple(data.buckets),
           spec.eval_batch_size, spec.adapt.target, label_map)  # fmt: skip
    if key not in _BATCHES:  # the runs of a study share them: tokenised once
        batches = build_experiment(spec).eval_batches
        _BATCHES[key] = {split: list(batches[split]) for split in SPLITS}
    return _BATCHES[key]


def scores_and_features(workdir: Path, batches: dict, endpoint: str) -> dict[str, dict]:
    """split -> {probabilities [N, C], features [N, D], labels [N]} from the run's selected
    checkpoint (the model alone: a DANN run's domain classifier is left out)."""
    import jax
    import numpy as np

    from tlx.adaptation.dann import GROUP
    from tlx.adaptation.mixed import pooled
    from tlx.predict import load_run
    from tlx.zoo.registry import build_model

    experiment, params, model_state = load_run(workdir)
    bundle = build_model(experiment.spec.model, num_classes=len(experiment.label_names))
    params = {k: v for k, v in params.items() if k != GROUP}
    forward = bundle.forward_for_stage(bundle.group_names, endpoint)

    @jax.jit
    def outputs(batch):
        (logits, activations), _ = forward(params, model_state, batch, None, False)
        return jax.nn.softmax(logits), pooled(activations)

    found = {}
    for split in SPLITS:
        parts = []
        for batch in batches[split]:
            real = np.asarray(batch["weight"]) > 0
            probabilities, features = outputs(batch)
            parts.append([np.asarray(a)[real] for a in (probabilities, features, batch["label"])])
        found[split] = {
            key: np.concatenate([p[i] for p in parts])
            for i, key in enumerate(("probabilities", "features", "labels"))
        }
    return found


def split_diagnosis(probabilities, labels) -> dict[str, float]:
    """Decision, ranking and threshold figures of a binary classifier on one labelled split."""
    import numpy as np
    from sklearn.metrics import roc_auc_score, roc_curve

    predicted = probabilities.argmax(-1)
    recalls = [float((predicted[labels == c] == c).mean()) for c in (0, 1)]
    false_positive, true_positive, _ = roc_curve(labels, probabilities[:, 1])
    return {
        "balanced_accuracy": float(np.mean(recalls)),
        "recall_0": recalls[0],
        "recall_1": recalls[1],
        "predicted_share_0": float((predicted == 0).mean()),
        "true_share_0": float((labels == 0).mean()),
        "roc_auc": float(roc_auc_score(labels, probabilities[:, 1])),
        # balanced accuracy = (TPR + 1 - FPR) / 2 at each threshold; target labels: diagnosis only
        "best_threshold_balanced_accuracy": float(np.max((true_positive + 1 - false_positive) / 2)),
    }


def domain_separability(source_features, target_features, seed: int = 0) -> float:
    """5-fold accuracy of a logistic regression telling the domains apart, equal numbers each."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    count = min(len(source_features), len(target_features))
    rng = np.random.default_rng(seed)
    pick = [rng.permutation(len(f))[:count] for f in (source_features, target_features)]
    x = np.concatenate([source_features[pick[0]], target_features[pick[1]]])
    y = np.repeat([0, 1], count)
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return float(cross_val_score(classifier, x, y, cv=DOMAIN_FOLDS).mean())


def aligned_cap(source_share_0: float, target_share_0: float) -> float:
    """The best target balanced accuracy of predictions whose class-0 share is the source's
    (features aligned across domains), on a target whose true class-0 share is given."""
    q, p = source_share_0, target_share_0
    return (q / p + 1) / 2 if q <= p else (1 + (1 - q) / (1 - p)) / 2


def diagnose(workdir: Path, endpoint: str, source: str, label_map: str) -> dict:
    batches = evaluation_batches(workdir, source, label_map)
    found = scores_and_features(workdir, batches, endpoint)
    row = {"run": str(workdir)}
    for split in SPLITS:
        figures = split_diagnosis(found[split]["probabilities"], found[split]["labels"])
        row.update({f"{split}/{k}": v for k, v in figures.items()})
    features = [found[split]["features"] for split in SPLITS]
    row["domain_separability"] = domain_separability(*features)
    row["aligned_cap"] = aligned_cap(row["test/predicted_share_0"], row["target_test/true_share_0"])
    return row


COLUMNS = (
    ("run", "run"),
    ("target_test/balanced_accuracy", "target balanced acc."),
    ("target_test/recall_0", "target recall 0"),
    ("target_test/recall_1", "target recall 1"),
    ("target_test/predicted_share_0", "predicted share 0 (true {share})"),
    ("target_test/roc_auc", "target ROC AUC"),
    ("target_test/best_threshold_balanced_accuracy", "best-threshold balanced acc. (diagnosis)"),
    ("test/balanced_accuracy", "source balanced acc."),
    ("test/roc_auc", "source ROC AUC"),
    ("domain_separability", "domain separability"),
    ("aligned_cap", "balanced acc. cap if aligned"),
)


def markdown(rows: list[dict]) -> str:
    share = f"{rows[0]['target_test/true_share_0']:.3f}" if rows else "?"
    heads = [title.format(share=share) for _, title in COLUMNS]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in rows:
        cells = [Path(row["run"]).parent.name + "/" + Path(row["run"]).name]
        cells += [f"{row[key]:.3f}" for key, _ in COLUMNS[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary_digest(workdir: Path) -> str:
    """What a row was computed from: the sha1 of the run's summary.json (a rerun changes it)."""
    return hashlib.sha1((workdir / "summary.json").read_bytes()).hexdigest()


def earlier_rows(out: Path) -> dict[tuple[str, str], dict]:
    """(run, summary digest) -> row, from OUT.json of an earlier invocation, if there is one."""
    try:
        rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    except (OSError, ValueError, KeyError):
        return {}
    return {(r["run"], r.get("summary_sha1", "")): r for r in rows}


def diagnose_study(
    patterns: list[str], out: Path, endpoint: str, source: str, label_map: str
) -> list[dict]:
    """Diagnoses every finished run the patterns name and writes OUT.json and OUT.md."""
    from tlx.machine import git_commit, machine

    runs = finished_runs(patterns)
    if not runs:
        raise app.UsageError(f"no finished run (a folder with summary.json) in {patterns}")
    # A study that grows is diagnosed again: the runs already diagnosed, unchanged, are reused.
    done, rows = earlier_rows(out), []
    for workdir in runs:
        digest = summary_digest(workdir)
        row = done.get((str(workdir), digest))
        if row is None:
            row = diagnose(workdir, endpoint, source, label_map)
            row["summary_sha1"] = digest
        rows.append(row)
        print(json.dumps(row), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"machine": machine(), "commit": git_commit(), "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    command = "python -m experiments.adapt_diagnose " + " ".join(
        [f"--workdirs='{w}'" for w in patterns] + [f"--out={out}"]
    )
    header = (
        "# Where the target error comes from\n\n"
        f"Machine: {record['machine']}; commit {record['commit']}. Command: `{command}`.\n\n"
    )
    out.with_suffix(".md").write_text(header + markdown(rows))
    print(markdown(rows))
    return rows


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    diagnose_study(f.workdirs, Path(f.out), f.endpoint, f.source, f.label_map)


if __name__ == "__main__":
    define_flags()
    app.run(main)
