#!/usr/bin/env python3
"""Builds acceptance.jsonl.zst, the labelled set of tests/cli/quality_set.sh and bench/quality.sh:
real clean prose in English and Chinese from Debian's documentation packages, and junk,
collected from the same packages or constructed from real fragments (see README.md).

Needs the Debian packages python3.11-doc, python3.11 (its standard library), debian-reference-en,
debian-reference-zh-cn, maint-guide, maint-guide-zh-cn and fortunes-zh, and zstd.
Deterministic: the same packages give the same file.

    python3 tests/data/quality/make-set.py [OUTPUT]

The prose is chosen by what it looks like, never by what llm-clean does with it: the
paragraphs of running text (a paragraph ends a sentence, is mostly letters, and is not a
heading, list item, table or command) of one chapter or page, in order, the code, tables and
lists between them left out, in passages long enough to be a document
(150 words in English, 250 characters in Chinese), cut after 400 words or 600 characters.
Chinese is modern written Chinese (Mandarin): fortunes-zh's classical texts and poems (Literary
Chinese, which FineWeb-2 treats as another language, lzh_Hani) are not taken.
"""
import glob
import gzip
import html.parser
import json
import os
import re
import subprocess
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                         "acceptance.jsonl.zst")
REF = "/usr/share/debian-reference"
PYDOC = "/usr/share/doc/python3.11/html"
records = []


def add(label, language, kind, source, text, how="verbatim"):
    if kind == "prose" and ("{" in text or "}" in text):
        # Prose that quotes code with curly brackets ("${misc:Depends}", "{}-formatting"): C4
        # drops every document with '{' by design ("the curly bracket appears in many
        # programming languages ... but not in natural text", Raffel et al. 2020), so it is
        # counted apart.
        kind = "prose-braces"
    records.append({"id": "%s-%s-%s-%d" % (label, language, kind, len(records)), "text": text,
                    "label": label, "language": language, "kind": kind, "source": source, "how": how})


def spread(items, n):
    """n items evenly spaced over the list (all of them if there are fewer)."""
    if len(items) <= n:
        return list(items)
    return [items[(i * len(items)) // n] for i in range(n)]


# ---- what prose looks like ----------------------------------------------------------------------

HAN = re.compile(r"[\u4e00-\u9fff]")
LETTER = re.compile(r"[^\W\d_]")
CODE_START = re.compile(r"^\s*([$#%>|+*•]|-{2,}|\d+\.\d+(\.\d+)*\.?\s)")


def is_prose_en(par):
    text = " ".join(par.split())
    if len(text.split()) < 8 or not re.search(r"[.!?:][\"')”’]?$", text):
        return False
    if any(CODE_START.match(line) for line in par.splitlines()):
        return False
    chars = [c for c in text if not c.isspace()]
    return sum(bool(LETTER.match(c)) for c in chars) >= 0.75 * len(chars)


def is_prose_zh(par):
    text = "".join(par.split())
    if len(text) < 20 or not re.search(r"[。！？：][」”’）)]?$", text):
        return False
    if any(CODE_START.match(line) for line in par.splitlines()) or re.search(r"[\u2500-\u257f]", par):
        return False
    return len(HAN.findall(text)) >= 0.5 * len(text)


def passages(paragraph_runs, is_prose, long_enough, too_long, sep="\n\n"):
    """The prose paragraphs of each section in order (the code, tables and lists between them
    left out), cut into passages of a document's length."""
    out = []
    for run in paragraph_runs:
        cur = []
        for par in [p for p in run if is_prose(p)] + [None]:
            if par is not None:
                cur.append(par)
                if not too_long(sep.join(cur)):
                    continue
            if cur and long_enough(sep.join(cur)):
                out.append(sep.join(cur))
            cur = []
    return out


en_long = lambda t: len(t.split()) >= 150
en_cut = lambda t: len(t.split()) >= 400
zh_long = lambda t: len("".join(t.split())) >= 250
zh_cut = lambda t: len("".join(t.split())) >= 600


def text_paragraphs(text):
    """The paragraphs of a w3m-style text dump (blank-line separated), lines as they are wrapped,
    the 4-space indent and the no-break spaces of the dump removed; each chapter is one run."""
    runs, run = [], []
    for block in re.split(r"\n[ \u00a0]*\n", text):
        lines = [l.replace("\u00a0", " ").strip() for l in block.splitlines()]
        lines = [l for l in lines if l]
        if not lines:
            continue
        if re.match(r"^\d+\.\s", lines[0]):  # a chapter heading starts a new run
            runs.append(run)
            run = []
        run.append("\n".join(lines))
    runs.append(run)
    return runs


class Blocks(html.parser.HTMLParser):
    """The text of <p> elements in document order, in runs that headings end (a section's).
    Also the text of elements whose class is one of `grab` (navigation), one string per
    element."""
    BREAK = {"h1", "h2", "h3", "h4", "h5", "h6"}

    def __init__(self, grab=()):
        super().__init__(convert_charrefs=True)
        self.runs, self.run, self.p, self.depth_p, self.in_list = [[]], None, [], 0, False
        self.grab, self.grabbed, self.stack = set(grab), [], []

    def handle_starttag(self, tag, attrs):
        cls = set((dict(attrs).get("class") or "").split())
        if tag in ("script", "style"):
            self.stack.append((tag, None))
            return
        g = None
        if cls & self.grab and not any(s[1] is not None for s in self.stack):
            g = []
        self.stack.append((tag, g))
        if tag == "p":
            self.depth_p += 1
            self.p = []
            # A paragraph inside a list item, a definition (an API entry's description) or a
            # table cell is part of a list or table, not running text.
            self.in_list = any(t in ("li", "dd", "dt", "td", "th") for t, _ in self.stack[:-1])
        elif tag in self.BREAK and self.runs[-1]:
            self.runs.append([])
        if tag in ("br", "li", "tr", "p", "div", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6"):
            self._grab_text("\n")

    def handle_startendtag(self, tag, attrs):
        if tag == "br":
            self._grab_text("\n")

    def handle_endtag(self, tag):
        if tag == "p" and self.depth_p:
            self.depth_p -= 1
            t = " ".join("".join(self.p).split())
            if t and not self.in_list:
                self.runs[-1].append(t)
        while self.stack:
            t, g = self.stack.pop()
            if g is not None:
                s = "\n".join(" ".join(l.split()) for l in "".join(g).splitlines())
                self.grabbed.append(re.sub(r"\n{2,}", "\n", s).strip())
            if t == tag:
                break

    def _grab_text(self, data):
        for _, g in self.stack:
            if g is not None:
                g.append(data)

    def handle_data(self, data):
        if any(t in ("script", "style") for t, _ in self.stack):
            return
        if self.depth_p:
            self.p.append(data)
        self._grab_text(data)


def parse_html(path, grab=()):
    b = Blocks(grab)
    b.feed(open(path, encoding="utf-8", errors="replace").read())
    return b


def rel(path):
    return path.replace("/usr/share/doc/", "").replace("/usr/share/", "").replace("/usr/lib/", "")


# ---- prose ----------------------------------------------------------------------------------------

def prose_from_text_dump(path, language, n, pkg):
    text = gzip.open(path, "rt", encoding="utf-8").read()
    runs = text_paragraphs(text)
    if language == "en":
        found = passages(runs, is_prose_en, en_long, en_cut)
    else:
        found = passages(runs, is_prose_zh, zh_long, zh_cut)
    for p in spread(found, n):
        add("prose", language, "prose", "%s: %s (hard-wrapped at 72 columns as shipped)" % (pkg, rel(path)), p)


def prose_from_html(paths, language, n, pkg, sep="\n\n"):
    found = []
    for path in paths:
        runs = parse_html(path).runs
        if language == "en":
            found += [(path, p) for p in passages(runs, is_prose_en, en_long, en_cut, sep)]
        else:
            found += [(path, p) for p in passages(runs, is_prose_zh, zh_long, zh_cut, sep)]
    for path, p in spread(found, n):
        add("prose", language, "prose", "%s: %s, <p> text" % (pkg, rel(path)), p)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def fortunes():
    return [ANSI.sub("", e) for e in open("/usr/share/games/fortunes/chinese", encoding="utf-8").read().split("\n%\n")]


# fortunes-zh entries in modern Chinese, by their attribution: Debian's foundation documents
# and modern authors. (Those from the Debian reference are taken from its own package.)
MODERN = re.compile(r"--\s*(Debian 《|钱钟书|鲁迅|老舍|尤瓦尔·赫拉利|理查德·马修·斯托曼|Eric S\. Raymond|吴军)")


def prose_from_fortunes(n):
    # The entries of one work (the articles of Debian's Code of Conduct, ...) in file order
    # make one run.
    runs, work = [], None
    for e in fortunes():
        m = MODERN.search(e)
        if not m:
            continue
        name = re.sub(r"第.*", "", e[m.start():].splitlines()[0]).strip()
        if name != work:
            runs.append([])
            work = name
        body = e[:m.start()]
        pars = [p for p in re.split(r"\n\s*\n", body) if p.strip()]
        runs[-1] += ["\n".join(l.strip() for l in p.splitlines() if l.strip()) for p in pars]
    found = passages(runs, is_prose_zh, zh_long, zh_cut)
    for p in spread(found, n):
        add("prose", "zh", "prose", "fortunes-zh: games/fortunes/chinese (colour codes and attributions removed)", p)


prose_from_text_dump(REF + "/debian-reference.en.txt.gz", "en", 60, "debian-reference-en")
prose_from_html(sorted(glob.glob(PYDOC + "/tutorial/*.html") + glob.glob(PYDOC + "/howto/*.html") +
                       glob.glob(PYDOC + "/library/*.html") + glob.glob(PYDOC + "/reference/*.html") +
                       glob.glob(PYDOC + "/faq/*.html")), "en", 60, "python3.11-doc")
prose_from_html(sorted(glob.glob("/usr/share/doc/maint-guide/html/*.en.html")), "en", 30, "maint-guide")
prose_from_fortunes(30)
n_fortunes = sum(r["language"] == "zh" for r in records)
prose_from_html(sorted(glob.glob("/usr/share/doc/maint-guide-zh-cn/html/*.zh-cn.html")), "zh", 40, "maint-guide-zh-cn")
prose_from_text_dump(REF + "/debian-reference.zh-cn.txt.gz", "zh", 150 - 40 - n_fortunes, "debian-reference-zh-cn")

# ---- junk ---------------------------------------------------------------------------------------

# Navigation: the menus, sidebars, tables of contents and footers of real pages, as a page's
# boilerplate reaches a crawler whose extractor keeps it.
pages = sorted(glob.glob(PYDOC + "/library/*.html"))
for path in spread(pages, 25):
    b = parse_html(path, grab=("related", "sphinxsidebar", "footer"))
    add("junk", "en", "navigation", "python3.11-doc: %s, the related/sphinxsidebar/footer elements" % rel(path),
        "\n".join(g for g in b.grabbed if g))
zh_pages = sorted(glob.glob(REF + "/*.zh-cn.html")) + sorted(glob.glob("/usr/share/doc/maint-guide-zh-cn/html/*.zh-cn.html"))
for path in zh_pages:
    b = parse_html(path, grab=("navheader", "toc", "navfooter"))
    for k, g in enumerate(b.grabbed):  # one document per element: a long TOC is one page's menu
        if len(g) > 40:
            add("junk", "zh", "navigation", "%s: %s, a navheader/toc/navfooter element" %
                ("maint-guide-zh-cn" if "maint-guide" in path else "debian-reference-zh-cn", rel(path)), g[:3000])

# Keyword lists: the Python manual's general index, and the Chinese reference's table of contents.
index_pages = sorted(glob.glob(PYDOC + "/genindex-*.html"))
for path in spread(index_pages, 15):
    b = parse_html(path, grab=("indextable",))
    text = "\n".join(g for g in b.grabbed if g)
    add("junk", "en", "keywords", "python3.11-doc: %s, the index table" % rel(path), text[:3000])
zh_dump = gzip.open(REF + "/debian-reference.zh-cn.txt.gz", "rt", encoding="utf-8").read()
toc = [l.strip() for l in zh_dump[:zh_dump.find("\n1. ", 2000)].splitlines() if re.match(r"\s*\d+(\.\d+)+\.? ", l)]
for k in range(0, min(len(toc), 15 * 40), 40):
    add("junk", "zh", "keywords", "debian-reference-zh-cn: debian-reference.zh-cn.txt.gz, table of contents lines %d-%d" %
        (k + 1, k + 40), "\n".join(toc[k:k + 40]))

# Code dumps: windows of the Python standard library's source, and the command and file
# listings of the Chinese reference (its indented blocks of commands and output).
modules = sorted(glob.glob("/usr/lib/python3.11/*.py"))
for path in spread(modules, 25):
    lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    starts = [i for i, l in enumerate(lines) if re.match(r"(def|class) ", l)]
    if not starts:
        continue
    s = starts[len(starts) // 2]
    add("junk", "en", "code", "python3.11: %s, lines %d-%d" % (rel(path), s + 1, s + 60), "\n".join(lines[s:s + 60]))
blocks = [b for b in re.split(r"\n[ \u00a0]*\n", zh_dump)
          if sum(bool(re.match(r"\s*[$#] ", l)) for l in b.splitlines()) >= 4]
for b in spread(blocks, 20):
    lines = [l.replace("\u00a0", " ")[4:] if l.startswith("    ") else l.replace("\u00a0", " ").strip() for l in b.splitlines()]
    add("junk", "zh", "code", "debian-reference-zh-cn: debian-reference.zh-cn.txt.gz, a command listing", "\n".join(lines))

# Mojibake: Chinese text of fortunes-zh (entries not in the prose set) as it looks when its
# UTF-8 is read as Windows-1252, and when GBK-encoded text is read as UTF-8.
spare = [e.strip() for e in fortunes() if not MODERN.search(e) and "Osamu Aoki" not in e and len(e) >= 200]
for k, e in enumerate(spread(spare, 20)):
    if k % 2 == 0:
        add("junk", "zh", "mojibake", "fortunes-zh: games/fortunes/chinese, an entry, UTF-8 decoded as cp1252",
            e.encode("utf-8").decode("cp1252", errors="replace"), how="constructed from real text")
    else:
        add("junk", "zh", "mojibake", "fortunes-zh: games/fortunes/chinese, an entry, GBK decoded as UTF-8",
            e.encode("gbk", errors="replace").decode("utf-8", errors="replace"), how="constructed from real text")

# Keyword spam: search-engine stuffing built from real keywords of the packages' own pages
# (the Python index's entries, the Chinese table of contents' words) with the shop words
# such pages add.
en_terms = []
for path in index_pages[:6]:
    for g in parse_html(path, grab=("indextable",)).grabbed:
        en_terms += [t for t in (re.sub(r"(, \[\d+\])+$", "", t) for t in g.splitlines()) if 3 <= len(t) <= 30 and "(" not in t]
for k in range(10):
    terms = spread(en_terms[k::10], 40)
    words = []
    for i, t in enumerate(terms):
        words.append(t + " " + ["free download", "best", "cheap", "tutorial pdf", "online", "2023"][(i + k) % 6])
    add("junk", "en", "spam", "python3.11-doc: index entries with shop words", " ".join(words),
        how="constructed from real keywords")
zh_terms = [re.sub(r"^\d+(\.\d+)*\.?\s*", "", t) for t in toc]
for k in range(10):
    terms = spread(zh_terms[k::10], 30)
    shop = ["免费下载", "最新版", "破解版", "官方正版", "在线观看", "高清", "百度网盘"]
    add("junk", "zh", "spam", "debian-reference-zh-cn: table of contents entries with shop words",
        " ".join(t + shop[(i + k) % len(shop)] for i, t in enumerate(terms)), how="constructed from real keywords")

# Repeated lines: one real sentence (or a page's 'next/previous' line) repeated down a page,
# as a broken template or a scraper stuck on one element leaves it.
en_sents = [s for r in records if r["language"] == "en" and r["label"] == "prose"
            for s in re.split(r"(?<=[.!?])\s+", r["text"]) if 40 <= len(s) <= 120]
zh_sents = [s for r in records if r["language"] == "zh" and r["label"] == "prose"
            for s in re.split(r"(?<=[。！？])", "".join(r["text"].split())) if 15 <= len(s) <= 60]
en_sents = [" ".join(s.split()) for s in en_sents]
for k, s in enumerate(spread(en_sents, 8)):
    add("junk", "en", "repeated", "a sentence of the English prose above, repeated", "\n".join([s] * (20 + k)),
        how="constructed from real text")
for k, s in enumerate(spread(zh_sents, 8)):
    add("junk", "zh", "repeated", "a sentence of the Chinese prose above, repeated", "\n".join([s] * (20 + k)),
        how="constructed from real text")
# Placeholder text: the usual lorem ipsum, as unfinished templates publish it.
LOREM = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut "
         "labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris "
         "nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit "
         "esse cillum dolore eu fugiat nulla pariatur. Excepteur sint occaecat cupidatat non proident, sunt in "
         "culpa qui officia deserunt mollit anim id est laborum.")
for k in range(4):
    add("junk", "en", "repeated", "lorem ipsum placeholder", "\n\n".join([LOREM] * (k + 2)), how="constructed")

# Each text once (the fortunes and the reference share passages; a sentence may repeat).
seen, unique = set(), []
for r in records:
    key = "".join(r["text"].split())
    if key not in seen:
        seen.add(key)
        unique.append(r)
records = unique

with open(OUT + ".tmp", "wb") as f:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    f.write(subprocess.run(["zstd", "-19", "-q", "-c"], input=data, stdout=subprocess.PIPE, check=True).stdout)
os.replace(OUT + ".tmp", OUT)
counts = {}
for r in records:
    counts[(r["label"], r["language"], r["kind"])] = counts.get((r["label"], r["language"], r["kind"]), 0) + 1
for k in sorted(counts):
    print("%-6s %-3s %-11s %d" % (k + (counts[k],)), file=sys.stderr)
print("%d records, %d bytes uncompressed, %d compressed" % (len(records), len(data), os.path.getsize(OUT)), file=sys.stderr)
