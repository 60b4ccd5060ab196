#!/usr/bin/env python3
"""Scores llm-clean on the acceptance set: the share of prose kept and of junk dropped, by
language and kind, from llm-clean's output and --rejected file over acceptance.jsonl.zst.

    score.py KEPT.jsonl REJECTED.jsonl [--check]

--check: exit 1 unless at least 95% of the prose (kind "prose") of each language is kept and
at least 90% of the junk is dropped. Prose that quotes code with curly brackets
("prose-braces") is reported but not required: C4 drops every document with '{' by design.
"""
import collections
import json
import sys

kept = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
dropped = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
count = collections.Counter()
for r in kept:
    count[(r["label"], r["kind"], r["language"], "kept")] += 1
for r in dropped:
    count[(r["label"], r["kind"], r["language"], "dropped")] += 1


def share(label, kind=None, language=None, outcome="kept"):
    match = [(k, n) for k, n in count.items()
             if k[0] == label and (kind is None or k[1] == kind) and (language is None or k[2] == language)]
    total = sum(n for _, n in match)
    hit = sum(n for k, n in match if k[3] == outcome)
    return hit, total


failed = False
print("acceptance set: %d documents" % (len(kept) + len(dropped)))
for language in ("en", "zh"):
    hit, total = share("prose", "prose", language)
    ok = total > 0 and hit >= 0.95 * total
    failed |= not ok
    print("prose kept, %s: %d/%d = %.1f%% (required 95%%)%s" %
          (language, hit, total, 100.0 * hit / max(total, 1), "" if ok else "  FAILED"))
for language in ("en", "zh"):
    hit, total = share("prose", "prose-braces", language)
    if total:
        print("prose with curly brackets kept, %s: %d/%d (C4 drops '{' by design; not required)" % (language, hit, total))
hit, total = share("junk", outcome="dropped")
ok = total > 0 and hit >= 0.90 * total
failed |= not ok
print("junk dropped: %d/%d = %.1f%% (required 90%%)%s" % (hit, total, 100.0 * hit / max(total, 1), "" if ok else "  FAILED"))
for language in ("en", "zh"):
    by_kind = sorted({k[1] for k in count if k[0] == "junk" and k[2] == language})
    parts = []
    for kind in by_kind:
        h, t = share("junk", kind, language, "dropped")
        parts.append("%s %d/%d" % (kind, h, t))
    h, t = share("junk", None, language, "dropped")
    print("  %s: %d/%d (%s)" % (language, h, t, ", ".join(parts)))
reasons = collections.Counter(r["drop_reason"] for r in dropped if r["label"] == "prose")
if reasons:
    print("prose dropped for: " + ", ".join("%s %d" % kv for kv in reasons.most_common()))
if "--check" in sys.argv and failed:
    sys.exit(1)
