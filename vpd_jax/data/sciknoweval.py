"""TFDS builder for SciKnowEval multiple choice, from a local copy.

Users bring SciKnowEval's `raw_data` folder (JSONL or JSON files, any
nesting) and point TFDS's `manual_dir` at it. Rows are filtered by level,
domain and question type; only verifiable multiple choice is kept by default
(SDPO trained on level-3 multiple choice). There is no official train/test
cut, so the builder makes a 90/10 one from a hash of each question: stable
across machines and builds, with no dependence on file order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from typing import Any, Iterator

import tensorflow_datasets as tfds

from vpd_jax.data.builder_base import LocalBuilder
from vpd_jax.data.example import DataFormatError, Example, where

DOMAINS = ("biology", "chemistry", "material", "physics")
CHOICE_TYPES = ("mcq-4-choices", "mcq-2-choices", "true_or_false")


def normalize_domain(name: str) -> str:
    """Lower case, and "Materials" and "Material" as one domain name."""
    name = name.strip().lower()
    return "material" if name == "materials" else name


@dataclasses.dataclass(eq=False)
class SciKnowEvalConfig(tfds.core.BuilderConfig):
    levels: tuple[str, ...] = ("L3",)  # details.level values kept
    domains: tuple[str, ...] = DOMAINS  # lower-cased domain names kept
    types: tuple[str, ...] = ("mcq-4-choices", "mcq-2-choices")  # row types kept
    test_percent: int = 10  # share of questions in "test", by hash


def _configs() -> list[SciKnowEvalConfig]:
    configs = [SciKnowEvalConfig(name="l3_mcq", description="L3 multiple choice, all domains")]
    configs += [SciKnowEvalConfig(name=f"l3_mcq_{d}", domains=(d,),
                                  description=f"L3 multiple choice, {d}")
                for d in DOMAINS]
    return configs


class Sciknoweval(LocalBuilder):
    """SciKnowEval multiple-choice questions (answer key kept for grading)."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = _configs()
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Copy SciKnowEval's raw_data folder (JSONL/JSON files) into a folder "
        "and pass it as download_config=tfds.download.DownloadConfig(manual_dir=FOLDER).")

    def _info(self) -> tfds.core.DatasetInfo:
        text = tfds.features.Text
        return tfds.core.DatasetInfo(
            builder=self, description=self.__doc__,
            homepage="https://github.com/HICAI-ZJU/SciKnowEval",
            features=tfds.features.FeaturesDict({
                "id": text(), "question": text(),
                "choice_labels": tfds.features.Sequence(text()),
                "choice_texts": tfds.features.Sequence(text()),
                "answer_key": text(), "domain": text(), "level": text(),
                "task": text(), "subtask": text(), "type": text(),
            }))

    def _split_generators(self, dl_manager):
        config = self.builder_config
        # A local folder: pathlib's recursive glob (epath refuses "**").
        root = pathlib.Path(str(dl_manager.manual_dir))
        paths = sorted(p for p in root.rglob("*") if p.suffix in (".jsonl", ".json"))
        if not paths:
            raise FileNotFoundError(
                f"sciknoweval: no .jsonl/.json files under {root}. "
                + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        splits = {"train": [], "test": []}
        for path in paths:
            for index, row in _read_rows(path):
                record = parse_row(row, str(path), index, config)
                if record is None:
                    continue
                bucket = int(hashlib.sha1(record["id"].encode()).hexdigest(), 16) % 100
                split = "test" if bucket < config.test_percent else "train"
                splits[split].append((f"{path.name}:{index}", record))
        return {name: self._generate_examples(items) for name, items in splits.items()}

    def _generate_examples(self, items):
        yield from items


def _read_rows(path) -> Iterator[tuple[int, Any]]:
    """Rows of a JSONL file, or of a JSON file holding a list of rows."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{path}: invalid JSON: {e}") from None
        if not isinstance(rows, list):
            raise DataFormatError(f"{path}: expected a JSON list of rows")
        yield from enumerate(rows)
        return
    for index, line in enumerate(text.splitlines()):
        if line.strip():
            try:
                yield index, json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(f"{where(str(path), index)}: invalid JSON: {e}") from None


def _field(row: dict, name: str, source: str, index: int, kind=str) -> Any:
    if name not in row:
        raise DataFormatError(f"{where(source, index, name)}: missing")
    value = row[name]
    if not isinstance(value, kind):
        raise DataFormatError(
            f"{where(source, index, name)}: expected {kind.__name__}, got "
            f"{type(value).__name__}")
    return value


def parse_row(row: Any, source: str, index: int,
              config: SciKnowEvalConfig) -> dict[str, Any] | None:
    """A TFDS record for a kept row, None for a row the filters drop."""
    if not isinstance(row, dict):
        raise DataFormatError(f"{where(source, index)}: expected an object")
    details = row.get("details") or {}
    if not isinstance(details, dict):
        raise DataFormatError(f"{where(source, index, 'details')}: expected an object")
    level = str(details.get("level", ""))
    domain = normalize_domain(str(row.get("domain", "")))
    qtype = str(row.get("type", ""))
    if (level not in config.levels
            or domain not in {normalize_domain(d) for d in config.domains}
            or qtype not in config.types):
        return None
    question = _field(row, "question", source, index)
    choices = _field(row, "choices", source, index, dict)
    labels, texts = choices.get("label"), choices.get("text")
    if (not isinstance(labels, list) or not isinstance(texts, list)
            or len(labels) != len(texts) or len(labels) < 2
            or not all(isinstance(x, str) for x in labels + texts)):
        raise DataFormatError(
            f"{where(source, index, 'choices')}: expected {{label: [...], text: "
            f"[...]}} with equally many (>= 2) strings")
    key = _field(row, "answerKey", source, index).strip()
    if key not in labels:
        raise DataFormatError(
            f"{where(source, index, 'answerKey')}: {key!r} is not one of the "
            f"choice labels {labels}")
    task, subtask = str(details.get("task", "")), str(details.get("subtask", ""))
    digest = hashlib.sha1(json.dumps([question, texts]).encode()).hexdigest()[:12]
    return {"id": f"{domain}/{task or 'task'}/{digest}", "question": question,
            "choice_labels": labels, "choice_texts": texts, "answer_key": key,
            "domain": domain, "level": level, "task": task, "subtask": subtask,
            "type": qtype}


def record_to_example(record: dict[str, Any]) -> Example:
    """TFDS record (bytes without TensorFlow) -> a choice Example."""
    def text(v):
        return v.decode("utf-8") if isinstance(v, bytes) else str(v)
    labels = [text(x) for x in record["choice_labels"]]
    texts = [text(x) for x in record["choice_texts"]]
    return Example(
        id=text(record["id"]), question=text(record["question"]), kind="choice",
        choices=tuple(zip(labels, texts)), answer=text(record["answer_key"]),
        metadata={k: text(record[k]) for k in ("domain", "level", "task", "subtask", "type")})
