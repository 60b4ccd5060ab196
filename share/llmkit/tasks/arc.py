#!/usr/bin/env python3
r"""Converts ARC (AI2 Reasoning Challenge) to llm-eval's multiple-choice JSONL.

Usage: arc.py IN.jsonl -o OUT.jsonl [--fewshot-from TRAIN.jsonl [--num-fewshot K]
                                     [--fewshot-seed SEED]] [--id-prefix NAME]

Data (nothing is downloaded here; carry the files to the machine yourself): AI2's public
release, https://allenai.org/data/arc, the archive
    https://ai2-public-datasets.s3.amazonaws.com/arc/ARC-V1-Feb2018.zip
whose ARC-Challenge/ARC-Challenge-Test.jsonl (1,172 questions) and ARC-Easy/ARC-Easy-Test.jsonl
(2,376) are the splits lm-eval's `arc_challenge` and `arc_easy` evaluate (test_split: test);
*-Train.jsonl hold few-shot examples. Each line:
    {"id": "Mercury_SC_415702", "question": {"stem": "...",
     "choices": [{"text": "...", "label": "A"}, ...]}, "answerKey": "A"}
Labels are "A".."E" for most questions and "1".."5" for some; answerKey uses the same scheme
as the question's labels. The Hugging Face dataset allenai/ai2_arc (built from this archive)
exported to JSONL is accepted too: {"question": "...", "choices": {"text": [...],
"label": [...]}, "answerKey": ...}.

How the output reproduces lm-evaluation-harness's `arc_easy` / `arc_challenge` tasks
(lm_eval/tasks/arc/arc_easy.yaml, which arc_challenge.yaml includes; output_type
multiple_choice):
  context = "Question: " + question + "\nAnswer:"  (doc_to_text "Question: {{question}}\nAnswer:",
                                                  question = the stem, verbatim)
  choices = the choice texts in file order        (doc_to_choice "{{choices.text}}")
  gold    = labels.index(answerKey)               (doc_to_target
                                                  "{{choices.label.index(answerKey)}}")
Each choice is scored as the continuation " " + text (target_delimiter " "), as llm-eval mc does.

Few-shot (optional; lm-eval's arc tasks are 0-shot by default, the Open LLM Leaderboard ran
arc_challenge 25-shot): lm-eval takes shots from the train split (training_split: train) with
its default random sampler. --fewshot-from ARC-*-Train.jsonl writes shots into "fewshot": the
first K rows by default, or with --fewshot-seed 1234 what lm-eval's sampler draws
(random.Random(1234).sample(train, K) once per evaluated question, in file order). Assumption:
that draw matches lm-eval's only for a whole-file run in file order in one process.

Output, one object per line in input order:
  {"id": "arc-0", "context": ..., "choices": [...], "gold": 2, "fewshot": [...]}
Use --id-prefix arc_challenge / arc_easy to tell the two sets apart.
Then: llm-eval mc --model RUN arc_challenge.jsonl   (with shots: add --num-fewshot K; llm-eval
uses the first K of each row's "fewshot" and none without --num-fewshot.)
"""

import sys

sys.dont_write_bytecode = True  # keep the share directory clean of __pycache__
from _common import InputError, convert_jsonl, field, jsonl_arguments, main


def as_label(v, loc, what):
    # Labels are strings in both layouts; a bare number is read as its decimal text.
    if isinstance(v, str):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    raise InputError(f"{loc}: {what} must be a string, got {type(v).__name__}")


def convert_doc(obj, loc):
    q = obj.get("question")
    if isinstance(q, dict):  # AI2's layout
        stem = field(q, "stem", str, loc)
        texts, labels = [], []
        for i, c in enumerate(field(q, "choices", list, loc, nonempty=True)):
            if not isinstance(c, dict):
                raise InputError(f"{loc}: question.choices[{i}] must be an object")
            if not isinstance(c.get("text"), str):
                raise InputError(f"{loc}: question.choices[{i}] needs a string \"text\"")
            if "label" not in c:
                raise InputError(f"{loc}: question.choices[{i}] has no \"label\"")
            texts.append(c["text"])
            labels.append(as_label(c["label"], loc, f"question.choices[{i}].label"))
    elif isinstance(q, str):  # Hugging Face's layout
        stem = q
        ch = field(obj, "choices", dict, loc)
        texts = field(ch, "text", list, loc, nonempty=True)
        labels = [as_label(v, loc, "choices.label[]") for v in field(ch, "label", list, loc)]
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InputError(f"{loc}: choices.text[{i}] must be a string")
        if len(texts) != len(labels):
            raise InputError(f"{loc}: {len(texts)} choice texts but {len(labels)} labels")
    elif q is None:
        raise InputError(f"{loc}: missing field \"question\"")
    else:
        raise InputError(f"{loc}: field \"question\" must be an object with \"stem\" and "
                         "\"choices\" (or a string, with \"choices\" beside it)")
    if "answerKey" not in obj:
        raise InputError(f"{loc}: missing field \"answerKey\"")
    key = as_label(obj["answerKey"], loc, "answerKey")
    if key not in labels:
        raise InputError(f"{loc}: answerKey \"{key}\" is not one of the labels "
                         f"{', '.join(labels)}")
    return {"context": "Question: " + stem + "\nAnswer:",
            "choices": list(texts),
            "gold": labels.index(key)}


def parse_args(argv):
    return jsonl_arguments(
        "arc.py",
        "Convert ARC JSONL (ARC-V1-Feb2018: ARC-Challenge-Test.jsonl, "
        "ARC-Easy-Test.jsonl) to llm-eval's multiple-choice JSONL, formatted as "
        "lm-evaluation-harness's arc_easy / arc_challenge tasks.",
        "ARC JSONL (e.g. ARC-Challenge-Test.jsonl)", "ARC JSONL, e.g. ARC-Challenge-Train.jsonl", "arc", argv)


if __name__ == "__main__":
    sys.exit(main("arc.py", convert_jsonl(convert_doc), parse_args(sys.argv[1:])))
