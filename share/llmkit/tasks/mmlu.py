#!/usr/bin/env python3
r"""Converts MMLU (Hendrycks et al.'s test) to llm-eval's multiple-choice JSONL.

Usage: mmlu.py DIR_OR_CSV... -o OUT.jsonl [--fewshot-dir DEV_DIR] [--num-fewshot K]
                                         [--id-prefix NAME]

Data (nothing is downloaded here; carry the files to the machine yourself): the public archive
named by https://github.com/hendrycks/test,
    https://people.eecs.berkeley.edu/~hendrycks/data.tar
which unpacks to data/test/SUBJECT_test.csv (57 subjects, 14,042 questions: the split lm-eval's
`mmlu` evaluates), data/dev/SUBJECT_dev.csv (5 questions per subject: lm-eval's few-shot split)
and data/val/. The CSVs have no header; each row is question, A, B, C, D, answer letter (fields
quoted as CSV needs, with newlines inside some questions). The Hugging Face dataset cais/mmlu
lm-eval loads is built from these files (choices = [A, B, C, D], answer = index of the letter).
Give test CSVs or directories holding them (data/test, or data, whose test/ is then used); the
subject is the file name without _test.csv (or _dev.csv / _val.csv). Directories are read in
file-name order, subjects in the order given.
  mmlu.py data/test -o mmlu.jsonl --fewshot-dir data/dev      (the usual 5-shot MMLU)

How the output reproduces lm-evaluation-harness's `mmlu` (the default variant:
lm_eval/tasks/mmlu/default/_default_template_yaml and the per-subject mmlu_SUBJECT.yaml written by
lm_eval/tasks/mmlu/_generate_configs.py; output_type multiple_choice):
  description = "The following are multiple choice questions (with answers) about "
                + " ".join(subject.split("_")) + ".\n\n"      (the subject yaml's description;
                set on every example; the model sees it first, then the shots, then the question)
  context = question.strip() + "\nA. " + A + "\nB. " + B + "\nC. " + C + "\nD. " + D + "\nAnswer:"
            (doc_to_text "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC.
            {{choices[2]}}\nD. {{choices[3]}}\nAnswer:"; the choices are not stripped)
  choices = ["A", "B", "C", "D"]   (doc_to_choice ["A", "B", "C", "D"]; lm-eval scores " A" ...
            " D" because its target_delimiter " " is put before each choice, and llm-eval mc
            scores " " + choice, so the choices are the bare letters)
  gold    = "ABCD".index(answer letter)   (doc_to_target: answer, cais/mmlu's letter index)
  fewshot = the first K rows of SUBJECT_dev.csv, in file order, formatted the same way
            (fewshot_split: dev, fewshot_config sampler: first_n); lm-eval renders each shot as
            context + " " + letter, shots joined by "\n\n" (fewshot_delimiter), as llm-eval does.
            lm-eval's first_n refuses K above the dev split's size (5); so does this script.
lm-eval's `mmlu` group (default/_mmlu.yaml, weight_by_size: True) reports accuracy weighted by
subject size, i.e. the mean over all questions: llm-eval's accuracy over the whole converted file.

Output, one object per line:
  {"id": "mmlu-anatomy-0", "context": ..., "choices": ["A", "B", "C", "D"], "gold": 1,
   "description": "The following are ...", "fewshot": [{"context", "choices", "gold"}, ...]}
Then: llm-eval mc --model RUN --num-fewshot 5 mmlu.jsonl   (llm-eval uses the first
--num-fewshot of each row's "fewshot", and none without that option; the description is always
used, as lm-eval's 0-shot mmlu does.)
"""

import argparse
import csv
import io
import re
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # keep the share directory clean of __pycache__
from _common import InputError, ShotPicker, main

LETTERS = "ABCD"
NAME = re.compile(r"^(.+)_(test|dev|val)\.csv$")


def description(subject):
    return ("The following are multiple choice questions (with answers) about "
            + " ".join(subject.split("_")) + ".\n\n")


def read_csv(path):
    """Rows of an MMLU CSV as {"context", "choices", "gold"}."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(f"{path}:{line}: not UTF-8") from None
    docs = []
    reader = csv.reader(io.StringIO(text, newline=""))
    line = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise InputError(f"{path}:{reader.line_num}: bad CSV: {e}") from None
        loc, line = f"{path}:{line}", reader.line_num + 1
        if not row:
            continue
        if len(row) != 6:
            raise InputError(f"{loc}: expected 6 columns (question, A, B, C, D, answer), "
                             f"got {len(row)}")
        question, a, b, c, d, answer = row
        if answer.strip() not in ("A", "B", "C", "D"):
            raise InputError(f"{loc}: answer \"{answer}\" is not A, B, C or D")
        docs.append({
            "context": f"{question.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:",
            "choices": list(LETTERS),
            "gold": LETTERS.index(answer.strip()),
        })
    return docs


def csv_files(arg, split):
    """The SUBJECT_{split}.csv files named by arg (a file, or a directory), in name order."""
    p = Path(arg)
    if not p.is_dir():
        return [p]
    found = sorted(p.glob(f"*_{split}.csv"))
    if not found and (p / split).is_dir():
        found = sorted((p / split).glob(f"*_{split}.csv"))
    if not found:
        raise InputError(f"{arg}: no *_{split}.csv files (nor in {arg}/{split}/)")
    return found


def dev_dir(arg):
    p = Path(arg)
    if not p.is_dir():
        raise InputError(f"{arg}: not a directory")
    if not any(p.glob("*_dev.csv")) and (p / "dev").is_dir():
        return p / "dev"
    return p


def subject_of(path):
    m = NAME.match(path.name)
    if not m:
        raise InputError(f"{path}: cannot tell the subject; MMLU files are named "
                         "SUBJECT_test.csv (or _dev.csv, _val.csv)")
    return m.group(1)


def convert(args, out):
    files = [f for arg in args.inputs for f in csv_files(arg, "test")]
    subjects = {}
    for f in files:
        s = subject_of(f)
        if s in subjects:
            raise InputError(f"{f}: subject {s} is already given by {subjects[s]}")
        subjects[s] = f
    dev = dev_dir(args.fewshot_dir) if args.num_fewshot else None
    for f in files:
        subject = subject_of(f)
        docs = read_csv(f)
        shots = []
        if dev is not None:
            dev_file = dev / f"{subject}_dev.csv"
            pool = read_csv(dev_file)
            # lm-eval's first_n sampler: dev[:K], the same for every question.
            shots = [pool[j] for j in ShotPicker(pool, args.num_fewshot,
                                                 pool_name=str(dev_file)).shots(None)]
        for i, doc in enumerate(docs):
            ex = {"id": f"{args.id_prefix}-{subject}-{i}"}
            ex.update(doc)
            ex["description"] = description(subject)
            if shots:
                ex["fewshot"] = shots
            out.write(ex)
    shot = f", {args.num_fewshot}-shot" if args.num_fewshot else ""
    return f" ({len(files)} subject{'s' if len(files) != 1 else ''}{shot})"


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="mmlu.py",
        description="Convert MMLU CSVs (hendrycks data.tar: data/test/SUBJECT_test.csv) to "
                    "llm-eval's multiple-choice JSONL, formatted as lm-evaluation-harness's "
                    "mmlu (default) task.")
    p.add_argument("inputs", nargs="+", metavar="DIR_OR_CSV",
                   help="SUBJECT_test.csv files, or directories holding them")
    p.add_argument("-o", "--output", required=True, metavar="OUT.jsonl",
                   help="output JSONL (\"-\": standard output)")
    p.add_argument("--fewshot-dir", metavar="DEV_DIR",
                   help="directory of SUBJECT_dev.csv (data/dev): few-shot examples")
    p.add_argument("--num-fewshot", type=int, default=None, metavar="K",
                   help="few-shot examples per question, the first K dev rows "
                        "(default 5 with --fewshot-dir, else 0)")
    p.add_argument("--id-prefix", default="mmlu", metavar="NAME",
                   help="ids are NAME-SUBJECT-0, NAME-SUBJECT-1, ... (default mmlu)")
    args = p.parse_args(argv)
    if args.num_fewshot is not None and args.num_fewshot < 0:
        p.error("--num-fewshot must be >= 0")
    if args.fewshot_dir is None:
        if args.num_fewshot:
            p.error("--num-fewshot needs --fewshot-dir")
        args.num_fewshot = 0
    elif args.num_fewshot is None:
        args.num_fewshot = 5
    return args


if __name__ == "__main__":
    sys.exit(main("mmlu.py", convert, parse_args(sys.argv[1:])))
