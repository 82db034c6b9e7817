"""Writes this folder's fixture with tlx as of commit 93fc327 (run it with that tlx first on the
path; see README.md). Not a test and not imported by one.

    tiny_bert/   a 2-layer, 32-wide random BERT (tests/conftest.py's TINY_BERT, vocab_size 99) with
                 a 99-token WordPiece tokenizer of the most frequent Rotten Tomatoes train words
    run/         the run folder of a run that was stopped at step 5 (checkpoints 2 and 4)
    expected.json, expected_params.npz
                 the same run trained straight to its end (step 10) by the same code: its train
                 and eval metrics of steps 5-10, its results, and its final parameters

Paths in the config are relative (model.checkpoint="tiny_bert", data.data_dir="" ->
$TLX_DATA_DIR), so the run resumes from any copy of this folder.
"""

import collections
import json
import os
import shutil
import sys
from pathlib import Path

TINY_BERT = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
)
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
STOP_AT = 5  # the stopped run raises when step 5's batch is made: its latest checkpoint is 4


def overrides() -> dict:
    """The config of the runs: configs/minilm_rt_progressive.py with these values set."""
    return {
        "model.checkpoint": "tiny_bert",
        "data.train_examples": 96,
        "data.eval_batch_size": 256,
        "data.buckets": (64,),
        "batch_size": 8,
        "total_steps": 10,
        "plan.every": 3,  # stages at 0, 3, 6, 9: checkpoint 4 is inside stage 1 (steps 3-5)
        "eval_every": 4,
        "checkpoint_every": 2,
        "log_every": 1,
        "optim.warmup_steps": 2,
        "optim.learning_rate": 1e-3,
    }


def make_config():
    from configs import minilm_rt_progressive

    config = minilm_rt_progressive.get_config()
    for key, value in overrides().items():
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config


def make_tiny_bert(folder: Path) -> None:
    import tokenizers
    import torch
    import transformers
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

    from tlx.data.rotten_tomatoes import find_csv, read_reviews, split_of

    pre = pre_tokenizers.BertPreTokenizer()
    norm = normalizers.BertNormalizer(lowercase=True)
    counts = collections.Counter()
    for review in read_reviews(find_csv()):
        if split_of(review["text"]) == "train":
            words = pre.pre_tokenize_str(norm.normalize_str(review["text"]))
            counts.update(w for w, _ in words)
    words = sorted(counts, key=lambda w: (-counts[w], w))[: TINY_BERT["vocab_size"] - len(SPECIAL)]
    vocab = {token: i for i, token in enumerate(SPECIAL + words)}
    backend = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = norm
    backend.pre_tokenizer = pre
    backend.decoder = decoders.WordPiece()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer = transformers.BertTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(**TINY_BERT)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    assert len(transformers.AutoTokenizer.from_pretrained(str(folder))) == len(vocab)


def main(out: Path) -> None:
    import numpy as np

    import tlx
    from tlx.checkpoint import Checkpoints
    from tlx.experiment import build_experiment
    from tlx.trainer import train

    assert "old93" in tlx.__file__ or os.environ.get("TLX_FIXTURE_ANY_TLX"), tlx.__file__
    stage = Path.cwd()  # relative paths in the config resolve here
    os.environ["TLX_DATA_DIR"] = str(stage / "tfds")
    make_tiny_bert(stage / "tiny_bert")
    config = make_config()

    # (a) straight through to step 10
    train(build_experiment(config), stage / "straight", log=print, progress=False)

    # (b) the same run, stopped when step 5's batch is made (after checkpoint 4 was written)
    class Stopped(RuntimeError):
        pass

    def stop(step, batch):
        if step == STOP_AT:
            raise Stopped(step)
        return batch

    exp = build_experiment(config)
    exp.train_batches = exp.train_batches.map_with_index(stop)
    try:
        train(exp, stage / "run", log=print, progress=False)
        raise AssertionError("the run was not stopped")
    except Stopped:
        pass
    assert Checkpoints(stage / "run/checkpoints").latest_step() == 4

    records = [json.loads(x) for x in (stage / "straight/metrics.jsonl").read_text().splitlines()]
    summary = json.loads((stage / "straight/summary.json").read_text())
    params = Checkpoints(stage / "straight/checkpoints").restore_params(10)
    flat = {}

    def walk(tree, prefix=""):
        for k, v in tree.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}/")
            else:
                flat[f"{prefix}{k}"] = np.asarray(v)

    walk(params)
    expected = {
        "produced_by": "tlx 93fc327, tests/data/old_run_93fc327/make_fixture.py",
        "resumed_from_step": 4,
        "metrics_after_resume": [r for r in records if r["step"] > 4],
        "results": summary["results"],
        "steps": summary["steps"],
    }
    out.mkdir(parents=True, exist_ok=True)
    for name in ("run", "tiny_bert"):
        if (out / name).exists():
            shutil.rmtree(out / name)
        shutil.copytree(stage / name, out / name)
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    np.savez(out / "expected_params.npz", **flat)


if __name__ == "__main__":
    main(Path(sys.argv[1]).absolute())
