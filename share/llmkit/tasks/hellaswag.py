#!/usr/bin/env python3
r"""Converts HellaSwag to llm-eval's multiple-choice JSONL (`llm-eval mc OUT.jsonl`).

Usage: hellaswag.py IN.jsonl -o OUT.jsonl [--fewshot-from TRAIN.jsonl [--num-fewshot K]
                                           [--fewshot-seed SEED]] [--id-prefix NAME]

Data (nothing is downloaded here; carry the file to the machine yourself): the public JSONL of
https://github.com/rowanz/hellaswag, data/hellaswag_val.jsonl (10,042 examples; the split
lm-eval's `hellaswag` task evaluates) and data/hellaswag_train.jsonl (for few-shot examples):
    https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl
The Hugging Face dataset Rowan/hellaswag holds the same rows (its "label" is a string; that is
accepted too). data/hellaswag_test.jsonl has no labels and cannot be converted.
Each input line: {"ind", "activity_label", "ctx_a", "ctx_b", "ctx", "endings": [4 strings],
"label": int, "split", "split_type", "source_id"}; only activity_label, ctx_a, ctx_b, endings and
label are read.

How the output reproduces lm-evaluation-harness's `hellaswag` task
(lm_eval/tasks/hellaswag/hellaswag.yaml and utils.py, output_type multiple_choice):
  preprocess(text): text.strip(); text.replace(" [title]", ". ");
                    re.sub("\\[.*?\\]", "", text); text.replace("  ", " ")   (one pass, as there)
  ctx     = ctx_a + " " + ctx_b.capitalize()          (Python's capitalize: the rest lower-cased)
  context = preprocess(activity_label + ": " + ctx)    (lm-eval's "query", doc_to_text "{{query}}")
  choices = [preprocess(ending) for ending in endings] (doc_to_choice "choices")
  gold    = int(label)                                 (doc_to_target "{{label}}")
lm-eval scores each choice as the continuation " " + choice (target_delimiter " "), which is what
llm-eval mc does with "choices"; acc and acc_norm are both reported by llm-eval.

Few-shot (optional; lm-eval's hellaswag is usually run 0-shot, the Open LLM Leaderboard used 10):
lm-eval takes shots from the train split (training_split: train) with its default random
sampler. --fewshot-from hellaswag_train.jsonl writes each example's shots into "fewshot": by
default the first K training rows for every example; with --fewshot-seed 1234 the rows that
lm-eval's sampler draws (random.Random(1234).sample(train, K) once per evaluated example, in file
order). Assumption: the draw matches lm-eval's only for a run over the whole file in this order in
one process, with the train file in the order of Hugging Face's train split (it is built from the
same file).

Output, one object per line in input order:
  {"id": "hellaswag-0", "context": ..., "choices": [...], "gold": 3, "fewshot": [...]}
Then: llm-eval mc --model RUN hellaswag.jsonl   (with shots: add --num-fewshot K; llm-eval uses
the first K of each row's "fewshot" and none without --num-fewshot.)
"""

import json
import re
import sys

sys.dont_write_bytecode = True  # keep the share directory clean of __pycache__
from _common import InputError, convert_jsonl, field, jsonl_arguments, main, string_list


def preprocess(text):
    """lm-eval's hellaswag utils.preprocess, verbatim."""
    text = text.strip()
    # Brackets are artifacts of the WikiHow part of HellaSwag.
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def convert_doc(obj, loc):
    label_text = field(obj, "activity_label", str, loc)
    ctx_a = field(obj, "ctx_a", str, loc)
    ctx_b = field(obj, "ctx_b", str, loc)
    endings = string_list(obj, "endings", loc)
    if "label" not in obj or obj["label"] in ("", None):
        raise InputError(f"{loc}: no label (hellaswag_test.jsonl is unlabelled: "
                         "convert hellaswag_val.jsonl)")
    label = obj["label"]
    if isinstance(label, bool) or not (
            isinstance(label, int) or (isinstance(label, str) and label.strip().isdigit())):
        raise InputError(f"{loc}: label must be an integer, "
                         f"got {json.dumps(label, ensure_ascii=False)}")
    gold = int(label)
    if not 0 <= gold < len(endings):
        raise InputError(f"{loc}: label {gold} is not an index of the {len(endings)} endings")
    ctx = ctx_a + " " + ctx_b.capitalize()
    return {"context": preprocess(label_text + ": " + ctx),
            "choices": [preprocess(e) for e in endings],
            "gold": gold}


def parse_args(argv):
    return jsonl_arguments(
        "hellaswag.py",
        "Convert HellaSwag JSONL (rowanz/hellaswag data/hellaswag_val.jsonl) to "
        "llm-eval's multiple-choice JSONL, formatted as lm-evaluation-harness's "
        "hellaswag task.",
        "HellaSwag JSONL (e.g. hellaswag_val.jsonl)", "HellaSwag JSONL, e.g. hellaswag_train.jsonl", "hellaswag", argv)


if __name__ == "__main__":
    sys.exit(main("hellaswag.py", convert_jsonl(convert_doc), parse_args(sys.argv[1:])))
