#!/usr/bin/env python3
r"""Converts GSM8K to llm-eval's generative JSONL (`llm-eval gen OUT.jsonl`).

Usage: gsm8k.py IN.jsonl -o OUT.jsonl [--fewshot-from TRAIN.jsonl [--num-fewshot K]
                                       [--fewshot-seed SEED]] [--id-prefix NAME]

Data (nothing is downloaded here; carry the files to the machine yourself): OpenAI's public
release, https://github.com/openai/grade-school-math, grade_school_math/data/test.jsonl (1,319
problems; the split lm-eval's `gsm8k` task evaluates) and grade_school_math/data/train.jsonl
(7,473; its few-shot split):
    https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/test.jsonl
The Hugging Face dataset openai/gsm8k, config "main", holds the same rows in the same order.
Each line: {"question": "...", "answer": "...reasoning with <<calculator>> notes...\n#### 72"}.

How the output reproduces lm-evaluation-harness's `gsm8k` task (lm_eval/tasks/gsm8k/gsm8k.yaml,
output_type generate_until, num_fewshot 5, fewshot_split train):
  prompt = "Question: " + question + "\nAnswer:"   (doc_to_text "Question: {{question}}\nAnswer:",
                                                  question verbatim)
  answer = the whole answer string, "#### N" line included   (doc_to_target "{{answer}}"; lm-eval's
           "strict-match" filter takes "#### (\-?[0-9\.\,]+)", "flexible-extract" the last number,
           and exact_match ignores case, ",", "$", everything up to "#### " and a final ".",
           which llm-eval gen does with "answer")
  fewshot = [{"prompt": "Question: <q>\nAnswer:", "answer": <full answer>}, ...], which llm-eval
           renders as lm-eval does: "Question: <q>\nAnswer: <answer>" (target_delimiter " "),
           shots joined and followed by "\n\n" (fewshot_delimiter), then the prompt.
  No description (gsm8k.yaml has none).
lm-eval generates until "Question:", "</s>" or "<|im_end|>" (version 3; version 1 also stopped at
"\n\n"); pass those to llm-eval gen with its stop options.

Which shots: --fewshot-from train.jsonl --num-fewshot 5 gives every problem the first 5 rows of
train.jsonl, in order (deterministic, and the same prompt prefix for all problems). lm-eval's
gsm8k has no fewshot_config, so it uses its default sampler: random.Random(1234).sample(train, 5),
one draw per evaluated problem in order; --fewshot-seed 1234 writes those draws instead.
Assumption: they equal lm-eval's only for a whole-file run of the test file in order in one
process, with train.jsonl in the order of Hugging Face's train split (it is built from this file).

Output, one object per line in input order:
  {"id": "gsm8k-0", "prompt": ..., "answer": ..., "fewshot": [...]}
Then: llm-eval gen --model RUN --num-fewshot 5 --until Question: --until '</s>' \
          --until '<|im_end|>' gsm8k.jsonl
(llm-eval uses the first --num-fewshot of each row's "fewshot", and none without that option.)
"""

import sys

sys.dont_write_bytecode = True  # keep the share directory clean of __pycache__
from _common import InputError, convert_jsonl, field, jsonl_arguments, main


def convert_doc(obj, loc):
    question = field(obj, "question", str, loc)
    answer = field(obj, "answer", str, loc)
    if "#### " not in answer:
        raise InputError(f"{loc}: answer has no \"#### \" final answer (is this GSM8K?)")
    return {"prompt": "Question: " + question + "\nAnswer:", "answer": answer}


def parse_args(argv):
    return jsonl_arguments(
        "gsm8k.py",
        "Convert GSM8K JSONL (openai/grade-school-math test.jsonl) to llm-eval's "
        "generative JSONL, formatted as lm-evaluation-harness's gsm8k task.",
        "GSM8K JSONL (e.g. test.jsonl)", "GSM8K JSONL, normally train.jsonl", "gsm8k", argv)


if __name__ == "__main__":
    sys.exit(main("gsm8k.py", convert_jsonl(convert_doc), parse_args(sys.argv[1:])))
