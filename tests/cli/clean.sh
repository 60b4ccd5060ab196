# CLI tests of llm-clean: exit codes, stdout, stderr, files, on fixtures and bad input.
. "$(dirname "$0")/lib.sh"

# --help, --version, usage errors
run llm-clean --help
expect_rc 0; expect_out_contains "Usage: llm-clean"; expect_out_contains "--lang"; expect_err_empty
run llm-clean --version
expect_rc 0; expect_out_contains "llm-clean (llmkit) "
run llm-clean --no-such-option
expect_rc 2; expect_err_contains "llm-clean: unknown option '--no-such-option'"; expect_out_empty
run llm-clean --threads
expect_rc 2; expect_err_contains "needs a value"
run llm-clean --threads x
expect_rc 2; expect_err_contains "not an integer"
run llm-clean -P nosuch.param=1
expect_rc 2; expect_err_contains "unknown parameter 'nosuch.param'"
run llm-clean does-not-exist.jsonl
expect_rc 1; expect_err_contains "llm-clean: does-not-exist.jsonl: cannot open: No such file or directory"

# --list-params shows the published thresholds, -P changes them
run llm-clean --list-params
expect_rc 0; expect_out_contains "gopher_quality.min_doc_words"; expect_out_contains "fineweb.line_punct_thr"
run llm-clean --list-params -P gopher_quality.min_doc_words=77
expect_out_contains "77"
# zh, ja and ko have their own thresholds (FineWeb-2's), set with -P LANG.NAME=VALUE
run llm-clean --list-params
expect_out_contains "zh.fineweb.line_punct_thr                    0.106"
run llm-clean --list-params -P zh.fineweb.line_punct_thr=0.25
expect_out_contains "zh.fineweb.line_punct_thr                    0.25 "
expect_out_contains "ja.fineweb.line_punct_thr                    0.096"

# The sample: good English and Chinese kept, spam and short dropped, PII redacted.
run llm-clean --stats stats.json --rejected rej.jsonl -o out.jsonl "$DATA/jsonl/sample.jsonl"
expect_rc 0 "sample"
expect_out_empty
ids=$(jsonl out.jsonl 'd["id"]' | tr '\n' ' ')
expect_eq "$ids" "en-1 en-2 zh-1 pii-1 en-3 " "kept ids"
expect_eq "$(jsonl rej.jsonl 'd["id"]+"="+d["drop_reason"]' | tr '\n' ' ' | sed 's/=[a-z0-9_]*:[a-z0-9_]*//g')" "spam-1 short-1 " "rejected ids"
expect_eq "$(jsonl out.jsonl 'd["lang"]' | sort -u | tr '\n' ' ')" "en zh " "lang fields"
expect_eq "$(jsonl out.jsonl 'json.dumps(d.get("meta"))' | head -1)" '{"n": 1, "tags": ["a", "b"]}' "unknown field kept"
grep -q '"meta":{"n": 1, "tags": \["a", "b"\]}' out.jsonl && ok || fail "meta not byte-for-byte"
expect_eq "$(jsonl out.jsonl '"<EMAIL>" in d["text"] and "<PHONE>" in d["text"]' | sed -n 4p)" "True" "PII redacted"
grep -q "librarian@example.org" out.jsonl && fail "e-mail leaked" || ok
expect_eq "$(json stats.json 'j["counters"]["docs_in"], j["counters"]["docs_out"], j["dropped_total"]')" "7 5 2" "stats counts"
expect_eq "$(json stats.json 'j["peak_rss_bytes"] > 0 and j["wall_seconds"] >= 0')" "True" "stats rss"

# Same result from stdin to stdout, and with threads.
run_in "$DATA/jsonl/sample.jsonl" llm-clean --threads 2
expect_rc 0; cmp -s "$T/out" out.jsonl && ok || fail "stdin/stdout output differs from -o output"

# --lang keeps only the listed languages.
run llm-clean --lang zh "$DATA/jsonl/sample.jsonl"
expect_rc 0; expect_eq "$(grep -c . "$T/out")" "1" "--lang zh keeps one"; expect_out_contains '"id":"zh-1"'
expect_out_contains '。\n\n图书馆的馆藏' 
# Codes in any case; names and unknown codes are usage errors that say how to spell codes.
run llm-clean --lang ZH,En "$DATA/jsonl/sample.jsonl"
expect_rc 0 "--lang ZH,En"; expect_eq "$(jsonl "$T/out" 'd["lang"]' | sort -u | tr '\n' ' ')" "en zh " "--lang ZH,En keeps en and zh"
run llm-clean --lang english "$DATA/jsonl/sample.jsonl"
expect_rc 2 "--lang english"; expect_out_empty
expect_err_contains "llm-clean: --lang: 'english' is a language name, not a code: give 'en' (codes as CLD2 writes them"
run llm-clean --lang en,klingon "$DATA/jsonl/sample.jsonl"
expect_rc 2 "--lang klingon"
expect_err_contains "llm-clean: --lang: 'klingon' is not a language code CLD2 knows (codes as CLD2 writes them in \"lang\": ISO 639-1 such as en, zh"
run llm-clean --lang , "$DATA/jsonl/sample.jsonl"
expect_rc 2 "--lang with no code"
# A filter that drops every document says so, with the languages it found.
run llm-clean --lang de --stats de.json "$DATA/jsonl/sample.jsonl"
expect_rc 0 "--lang de"; expect_out_empty
expect_err_contains "llm-clean: warning: every document was dropped ("
expect_err_contains "langid:other_language "
expect_err_contains "; the languages found: en "
expect_err_contains "(--lang de)"
run llm-clean --lang zh "$DATA/jsonl/sample.jsonl"
expect_err_lacks "every document was dropped"

# Malformed lines: skipped, reported with file:line, counted; --strict fails and writes nothing.
run llm-clean --stats bad.json -o bad.jsonl "$DATA/jsonl/malformed.jsonl"
expect_rc 0 "malformed"
expect_err_contains "malformed.jsonl:2: skipped: invalid_json"
expect_err_contains "malformed.jsonl:3: skipped: not_object"
expect_err_contains "malformed.jsonl:4: skipped: missing_text"
expect_err_contains "malformed.jsonl:5: skipped: text_not_string"
expect_eq "$(grep -c . bad.jsonl)" "2" "good lines around bad ones survive"
expect_eq "$(json bad.json 'j["drops"]["malformed:invalid_json"], j["drops"]["malformed:not_object"]')" "1 1" "malformed counted"
run llm-clean --strict -o strict.jsonl "$DATA/jsonl/malformed.jsonl"
expect_rc 1 "--strict"; expect_err_contains "malformed.jsonl:2: malformed input: invalid_json"
expect_no_file strict.jsonl
[ -z "$(ls -A | grep '^\.strict')" ] && ok || fail "temporary file left behind"

# Garbage and empty input: no crash. Binary data is named as such, with or without --format.
python3 -c "
import random, sys
r = random.Random(5)
sys.stdout.buffer.write(bytes(b for b in r.randbytes(100000) if b not in b'{<'))" > garbage.jsonl
run llm-clean --format jsonl garbage.jsonl
expect_rc 1 "garbage"; expect_out_empty
expect_err_contains "llm-clean: garbage.jsonl: binary data, not HTML, WARC or JSONL documents"
run llm-clean garbage.jsonl
expect_rc 1 "garbage, format detected"
: > empty.jsonl
run llm-clean empty.jsonl
expect_rc 0 "empty"; expect_out_empty
# NUL bytes inside the lines of a JSONL file: skipped as malformed.
printf '{"text":"a first line that is fine"}\nx\0y\0\0{"text":"\0"}\n' > nul.jsonl
run llm-clean --no-quality nul.jsonl
expect_rc 0 "NULs"; expect_eq "$(grep -c . "$T/out")" "1" "the line with NULs skipped"
# A WARC file read as JSONL (--format jsonl) says what it is.
run llm-clean --format jsonl "$DATA/warc/sample.warc.gz"
expect_rc 1 "WARC as JSONL"
expect_err_contains "sample.warc.gz: a WARC file (gzip-compressed), not JSONL documents: read it with --format auto"

# Outputs are checked before the work.
run llm-clean --rejected nowhere/rej.jsonl -o kept.jsonl "$DATA/jsonl/sample.jsonl"
expect_rc 1 "--rejected into a missing directory"; expect_no_file kept.jsonl
expect_err_contains "llm-clean: nowhere: --rejected: cannot write nowhere/rej.jsonl here"

# Stats count bytes uncompressed on both sides, the compressed figures beside them.
zstd -q -f "$DATA/jsonl/sample.jsonl" -o sample.jsonl.zst
run llm-clean --no-quality --stats plain.json -o plain.jsonl "$DATA/jsonl/sample.jsonl"
run llm-clean --no-quality --stats packed.json -o packed.jsonl.zst sample.jsonl.zst
expect_rc 0 "stats of a compressed input and output"
bytes='j["counters"]["bytes_in"], j["counters"]["bytes_in_compressed"], j["counters"]["bytes_out"], j["counters"]["bytes_out_compressed"]'
in_size=$(wc -c < "$DATA/jsonl/sample.jsonl"); out_size=$(wc -c < plain.jsonl)
expect_eq "$(json plain.json "$bytes")" "$in_size $in_size $out_size $out_size" "plain files: both figures the same"
expect_eq "$(json packed.json "$bytes")" "$in_size $(wc -c < sample.jsonl.zst) $out_size $(wc -c < packed.jsonl.zst)" "zstd: bytes_in and bytes_out uncompressed"
run llm-clean --stats warc.json -o warc.jsonl "$DATA/warc/sample.warc.gz"
expect_eq "$(json warc.json 'j["counters"]["bytes_in"], j["counters"]["bytes_in_compressed"]')" \
          "$(zcat "$DATA/warc/sample.warc.gz" | wc -c) $(wc -c < "$DATA/warc/sample.warc.gz")" "a .warc.gz: its records uncompressed"

# zstd output by name; reading it back gives the same documents.
run llm-clean -o out.jsonl.zst "$DATA/jsonl/sample.jsonl"
expect_rc 0
expect_eq "$(head -c 4 out.jsonl.zst | od -An -tx1 | tr -d ' ')" "28b52ffd" "zstd magic"
run llm-clean --no-quality --no-pii --no-repair --no-langid out.jsonl.zst
cmp -s "$T/out" out.jsonl && ok || fail "zstd round trip"

# Binary (zstd) output is never written to a terminal - checked by name only here; stages off.
run llm-clean --no-langid "$DATA/jsonl/sample.jsonl"
expect_out_lacks '"lang"'

# HTML and WARC inputs: main text, metadata fields, charsets, damaged records.
run llm-clean --no-quality "$DATA/html/article.html" "$DATA/html/gbk.html" "$DATA/html/cp1252.html"
expect_rc 0 "html"
expect_eq "$(jsonl "$T/out" 'd["id"].split("/")[-1]' | tr '\n' ' ')" "article.html gbk.html cp1252.html " "html ids"
expect_eq "$(jsonl "$T/out" '"title" in d and "\ufffd" not in d["text"]' | sort -u)" "True" "titles, clean charsets"
# Code in documentation keeps its whitespace: <pre> exactly through extraction and repair, and
# the indentation of the lines the C4 rules keep.
run llm-clean --no-quality --no-pii "$DATA/html/code.html"
expect_rc 0 "code page"
expect_eq "$(jsonl "$T/out" 'd["text"]' | grep -c '^    x = 0$')" "1" "first line of <pre> indented"
expect_eq "$(jsonl "$T/out" 'repr(d["text"])' | grep -cF "\\n    x = 0\\n    while x < self.size:\\n\\t# a tab, as some editors still write it\\n        x += self.step\\n    return x\\n")" "1" "<pre> exactly"
expect_eq "$(jsonl "$T/out" 'repr(d["text"])' | grep -cF "station     height   time\\nKingsbridge   4.25   06:12")" "1" "aligned columns"
run llm-clean --no-pii "$DATA/html/code.html"
expect_rc 0 "code page, quality rules"
expect_eq "$(jsonl "$T/out" 'repr(d["text"])' | grep -cF "\\n    if reading.height > limit:\\n        count += 1\\n")" "1" "C4 keeps indentation"
# JSONL text keeps the indentation of its lines (spaces and tabs); repair still collapses the
# other blanks, trims line ends and keeps at most one empty line in a row.
printf '%s\n' '{"id":"code","text":"\n\n  def span(self):\n      \"\"\"The   span.\"\"\"   \n\n\n\treturn  self.end\u00a0- self.start\n\u3000 x"}' > code.jsonl
run llm-clean --no-quality --no-pii --no-langid code.jsonl
expect_rc 0 "JSONL code"
expect_eq "$(jsonl "$T/out" 'repr(d["text"])')" "'  def span(self):\\n      \"\"\"The span.\"\"\"\\n\\n\\treturn self.end - self.start\\nx'" "JSONL indentation kept"
run llm-clean --no-quality --no-pii --no-langid --no-repair code.jsonl
expect_eq "$(jsonl "$T/out" 'd["text"]' | grep -c '^      """The   span."""   $')" "1" "--no-repair leaves the text alone"
run llm-clean --no-quality --stats w.json "$DATA/warc/sample.warc.gz"
expect_rc 0 "warc.gz"
expect_eq "$(jsonl "$T/out" 'd["url"]' | head -1)" "http://example.com/tide-mills" "WARC target URI"
expect_out_lacks "Subscribe to our newsletter"
expect_eq "$(json w.json 'j["counters"]["docs_in"] > 0 and j["counters"]["warc_records_ignored"] > 0')" "True" "WARC records read and ignored"
run llm-clean --no-quality "$DATA/warc/damaged.warc"
expect_rc 0 "damaged warc"; expect_err_contains "damaged.warc:431: skipped: warc_record: bad Content-Length"
run llm-clean --strict --no-quality "$DATA/warc/truncated.warc"
expect_rc 1 "truncated warc, --strict"; expect_err_contains "truncated record"
cat "$DATA/warc/sample.warc.gz" | head -c 3000 > cut.warc.gz
run llm-clean cut.warc.gz
expect_rc 1 "cut gzip"; expect_err_contains "cut.warc.gz: truncated gzip stream"

# A stop signal leaves no partial output and exits non-zero.
mkfifo slow.jsonl
( head -3 "$DATA/jsonl/sample.jsonl"; exec sleep 30 ) > slow.jsonl 2>/dev/null &
writer=$!
llm-clean -o killed.jsonl slow.jsonl 2>"$T/err" &
pid=$!
# Once its output is open (a temporary file), it has its signal handlers, however slow the
# machine: a fixed sleep could send the signal before.
for i in $(seq 1 6000); do ls -A | grep -q '^\.killed\.jsonl\.tmp\.' && break; sleep 0.01; done
kill -TERM $pid; wait $pid; rc=$?
kill $writer 2>/dev/null
expect_rc 1 "SIGTERM"; expect_no_file killed.jsonl; expect_err_contains "stopped by signal 15"

finish
