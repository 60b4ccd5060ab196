"""Shared helpers of llmkit's task converters (hellaswag.py, mmlu.py, arc.py, gsm8k.py).

Not a command. Input errors are raised as InputError("FILE:LINE: what is wrong"); `main()`
prints them and exits 1. Usage errors go through argparse (exit 2). Output is written to a
temporary file next to the destination and renamed at the end, so a failed conversion leaves no
partial output.
"""

import json
import os
import random
import sys
from pathlib import Path


class InputError(Exception):
    """Malformed input: the message is "FILE:LINE: what is wrong" (or "FILE: ...")."""


def where(path, line=None):
    return f"{path}:{line}" if line is not None else str(path)


def read_jsonl(path):
    """Yields (line number, object) for each non-blank line of a JSONL file."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}") from None
    with f:
        for n, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError:
                raise InputError(f"{where(path, n)}: not UTF-8") from None
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise InputError(f"{where(path, n)}: invalid JSON: {e.msg} "
                                 f"(column {e.colno})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{where(path, n)}: expected a JSON object, "
                                 f"got {type(obj).__name__}")
            yield n, obj


def field(obj, key, kind, loc, nonempty=False):
    """obj[key], which must exist and be of type `kind` (str, list or dict)."""
    if key not in obj:
        raise InputError(f"{loc}: missing field \"{key}\"")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InputError(f"{loc}: field \"{key}\" must be a {kind.__name__}, "
                         f"got {type(value).__name__}")
    if nonempty and not value:
        raise InputError(f"{loc}: field \"{key}\" is empty")
    return value


def string_list(obj, key, loc):
    """obj[key] as a non-empty list of strings."""
    values = field(obj, key, list, loc, nonempty=True)
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise InputError(f"{loc}: {key}[{i}] must be a string, got {type(v).__name__}")
    return values


def add_fewshot_options(parser, what):
    parser.add_argument("--fewshot-from", metavar="FILE",
                        help=f"take few-shot examples from FILE ({what})")
    parser.add_argument("--num-fewshot", type=int, default=None, metavar="K",
                        help="few-shot examples per example (default 5 with --fewshot-from)")
    parser.add_argument("--fewshot-seed", type=int, default=None, metavar="SEED",
                        help="draw each example's shots as lm-evaluation-harness's default "
                             "sampler does, random.Random(SEED).sample once per example in "
                             "order (lm-eval's seed is 1234); default: the first K of FILE")


def check_fewshot_options(parser, args):
    """Validates --fewshot-from/--num-fewshot/--fewshot-seed (usage errors exit 2)."""
    if args.num_fewshot is not None and args.num_fewshot < 0:
        parser.error("--num-fewshot must be >= 0")
    if args.fewshot_from is None:
        if args.num_fewshot:
            parser.error("--num-fewshot needs --fewshot-from")
        if args.fewshot_seed is not None:
            parser.error("--fewshot-seed needs --fewshot-from")
        args.num_fewshot = 0
    elif args.num_fewshot is None:
        args.num_fewshot = 5


class ShotPicker:
    """Chooses the few-shot examples of each example from a pool, as lm-evaluation-harness does.

    lm-eval (lm_eval/api/samplers.py) draws n = K examples, or K + 1 when the few-shot split is
    the evaluated split, drops the evaluated document itself, and keeps the first K. Its
    "first_n" sampler draws pool[:n]; its default sampler draws rnd.sample(pool, n) with one
    random.Random(seed) advanced once per evaluated document.
    """

    def __init__(self, pool, k, seed=None, same_split=False, pool_name="few-shot file"):
        self.pool, self.k, self.same_split = pool, k, same_split
        self.rnd = random.Random(seed) if seed is not None else None
        n = k + 1 if same_split else k
        if k and n > len(pool):
            raise InputError(f"{pool_name}: has {len(pool)} examples, {n} needed for "
                             f"--num-fewshot {k}")

    def shots(self, doc):
        """Indices into the pool of the shots for `doc` (the raw source object)."""
        if not self.k:
            return []
        n = self.k + 1 if self.same_split else self.k
        idx = (self.rnd.sample(range(len(self.pool)), n) if self.rnd is not None
               else list(range(n)))
        return [i for i in idx if self.pool[i] != doc][:self.k]


def same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


class Output:
    """Writes UTF-8 JSONL (ensure_ascii=False), atomically; "-" is standard output."""

    def __init__(self, path):
        self.path, self.count = path, 0
        if path == "-":
            self.tmp = None
            self.f = sys.stdout
        else:
            p = Path(path)
            self.tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
            try:
                self.f = open(self.tmp, "w", encoding="utf-8", newline="\n")
            except OSError as e:
                raise InputError(f"{path}: {e.strerror}") from None

    def write(self, obj):
        self.f.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.count += 1

    def commit(self):
        if self.tmp is None:
            self.f.flush()
            return
        try:
            self.f.close()
            os.replace(self.tmp, self.path)
        except OSError as e:
            raise InputError(f"{self.path}: {e.strerror}") from None
        self.tmp = None

    def abandon(self):
        if self.tmp is not None:
            self.f.close()
            try:
                os.unlink(self.tmp)
            except OSError:
                pass


def convert_jsonl(convert_doc):
    """The convert(args, out) of a converter whose input and few-shot source are JSONL files of
    documents that convert_doc(obj, "FILE:LINE") turns into llm-eval rows."""
    def convert(args, out):
        docs = list(read_jsonl(args.input))
        picker, pool = None, []
        if args.num_fewshot:
            raw = list(read_jsonl(args.fewshot_from))
            pool = [convert_doc(o, f"{args.fewshot_from}:{n}") for n, o in raw]
            picker = ShotPicker([o for _, o in raw], args.num_fewshot, args.fewshot_seed,
                                same_file(args.input, args.fewshot_from), args.fewshot_from)
        for i, (n, obj) in enumerate(docs):
            ex = {"id": f"{args.id_prefix}-{i}"}
            ex.update(convert_doc(obj, f"{args.input}:{n}"))
            if picker:
                ex["fewshot"] = [pool[j] for j in picker.shots(obj)]
            out.write(ex)
        return f" ({args.num_fewshot}-shot)" if args.num_fewshot else ""
    return convert


def jsonl_arguments(prog, description, input_help, fewshot_what, id_prefix, argv):
    """The command line of a JSONL converter: IN.jsonl, -o, the few-shot options, --id-prefix."""
    import argparse
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("input", metavar="IN.jsonl", help=input_help)
    p.add_argument("-o", "--output", required=True, metavar="OUT.jsonl",
                   help="output JSONL (\"-\": standard output)")
    add_fewshot_options(p, fewshot_what)
    p.add_argument("--id-prefix", default=id_prefix, metavar="NAME",
                   help=f"ids are NAME-0, NAME-1, ... (default {id_prefix})")
    args = p.parse_args(argv)
    check_fewshot_options(p, args)
    return args


def main(prog, convert, args):
    """Runs convert(args, output) -> summary suffix; prints errors (exit 1) and the summary."""
    out = None
    try:
        out = Output(args.output)
        extra = convert(args, out)
        out.commit()
    except InputError as e:
        if out is not None:
            out.abandon()
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    except BaseException:
        if out is not None:
            out.abandon()
        raise
    dest = "standard output" if args.output == "-" else args.output
    noun = "example" if out.count == 1 else "examples"
    print(f"{prog}: {out.count} {noun} written to {dest}{extra or ''}", file=sys.stderr)
    return 0
