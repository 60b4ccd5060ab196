#!/bin/sh
# Regenerates the WARC fixtures of tests/unit/test_warc.cpp from the HTML fixtures in ../html.
# The output is deterministic (fixed record ids and dates, gzip -n), so a rerun changes nothing.
#   sample.warc      warcinfo, request, responses (HTML, 404, PNG, chunked windows-1252,
#                    gzip-encoded, Common Crawl style without Content-Type), metadata,
#                    a WARC/1.1 resource, a revisit
#   sample.warc.gz   the same records, one gzip member per record (as Common Crawl writes them)
#   wet.warc         a WET file: warcinfo and conversion records
#   truncated.warc   the first three records of sample.warc, the third cut in the middle
#   damaged.warc     good records around garbage, a record without Content-Length, one with a
#                    bad Content-Length, and one over the reader's size limit in the test
set -eu
cd "$(dirname "$0")"
html=../html
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0

size() { wc -c < "$1" | tr -d ' '; }

# record VERSION TYPE URI CONTENT-TYPE BLOCK-FILE [HEADER...]: one record on stdout.
record() {
  v=$1 type=$2 uri=$3 ct=$4 block=$5
  shift 5
  n=$((n + 1))
  printf 'WARC/%s\r\nWARC-Type: %s\r\n' "$v" "$type"
  printf 'WARC-Record-ID: <urn:uuid:6f1c5e2a-0000-4000-8000-%012d>\r\n' "$n"
  printf 'WARC-Date: 2024-03-01T12:00:%02dZ\r\n' "$n"
  if [ -n "$uri" ]; then printf 'WARC-Target-URI: %s\r\n' "$uri"; fi
  for h in "$@"; do printf '%s\r\n' "$h"; done
  if [ -n "$ct" ]; then printf 'Content-Type: %s\r\n' "$ct"; fi
  printf 'Content-Length: %s\r\n\r\n' "$(size "$block")"
  cat "$block"
  printf '\r\n\r\n'
}

# http STATUS CONTENT-TYPE BODY-FILE [HEADER...]: an HTTP response on stdout.
http() {
  status=$1 ct=$2 body=$3
  shift 3
  printf 'HTTP/1.1 %s\r\nServer: fixture\r\n' "$status"
  if [ -n "$ct" ]; then printf 'Content-Type: %s\r\n' "$ct"; fi
  for h in "$@"; do printf '%s\r\n' "$h"; done
  printf '\r\n'
  cat "$body"
}

# --- record blocks ---------------------------------------------------------------
printf 'software: llmkit make-fixtures.sh\r\nformat: WARC File Format 1.0\r\n' > "$tmp/info"
printf 'GET /tide-mills HTTP/1.1\r\nHost: example.com\r\nUser-Agent: fixture\r\n\r\n' > "$tmp/req"
http "200 OK" "text/html; charset=utf-8" "$html/article.html" \
  "Content-Length: $(size "$html/article.html")" > "$tmp/article"
printf '<html><body><h1>Not Found</h1><p>The page you asked for does not exist on this server.</p></body></html>' > "$tmp/404.html"
http "404 Not Found" "text/html" "$tmp/404.html" > "$tmp/404"
printf '\211PNG\r\n\032\n\000\000\000\rIHDR fake image bytes' > "$tmp/png.bin"
http "200 OK" "image/png" "$tmp/png.bin" > "$tmp/png"
# Chunked: the windows-1252 page in two chunks, with a chunk extension and a trailer.
head -c 300 "$html/cp1252.html" > "$tmp/c1"
tail -c +301 "$html/cp1252.html" > "$tmp/c2"
{
  printf '%x\r\n' "$(size "$tmp/c1")"; cat "$tmp/c1"; printf '\r\n'
  printf '%x;ext=1\r\n' "$(size "$tmp/c2")"; cat "$tmp/c2"; printf '\r\n'
  printf '0\r\nX-Trailer: done\r\n\r\n'
} > "$tmp/chunks"
http "200 OK" "text/html; charset=windows-1252" "$tmp/chunks" "Transfer-Encoding: chunked" > "$tmp/chunked"
gzip -9 -n -c "$html/zh.html" > "$tmp/zh.gz"
http "200 OK" "text/html" "$tmp/zh.gz" "Content-Encoding: gzip" > "$tmp/gzipped"
http "200 OK" "" "$html/no-main.html" > "$tmp/noct"
printf 'via: http://example.com/\r\nfetchTimeMs: 42\r\n' > "$tmp/meta"
printf '<!doctype html><title>Resource</title><p>A page stored as a resource record, not as an HTTP response, in WARC version 1.1.</p>' > "$tmp/resource"
: > "$tmp/empty"

# --- sample.warc and sample.warc.gz ---------------------------------------------------
rm -f sample.warc sample.warc.gz
i=0
emit() {  # emit RECORD-ARGS...: appends one record to both files
  i=$((i + 1))
  record "$@" > "$tmp/rec$i"
  cat "$tmp/rec$i" >> sample.warc
  gzip -9 -n -c "$tmp/rec$i" >> sample.warc.gz
}
emit 1.0 warcinfo "" application/warc-fields "$tmp/info" "WARC-Filename: sample.warc"
emit 1.0 request http://example.com/tide-mills "application/http; msgtype=request" "$tmp/req"
emit 1.0 response http://example.com/tide-mills "application/http; msgtype=response" "$tmp/article" \
  "WARC-Payload-Digest: sha1:UNCHECKEDFIXTUREDIGEST00000000"
emit 1.0 metadata http://example.com/tide-mills application/warc-fields "$tmp/meta"
emit 1.0 response http://example.com/missing "application/http; msgtype=response" "$tmp/404"
emit 1.0 response http://example.com/logo.png "application/http; msgtype=response" "$tmp/png"
emit 1.0 response http://example.fr/creme "application/http;msgtype=response" "$tmp/chunked"
emit 1.0 response http://example.cn/changcheng "application/http; msgtype=response" "$tmp/gzipped"
emit 1.0 response http://example.org/bees "application/http; msgtype=response" "$tmp/noct" \
  "WARC-Identified-Payload-Type: text/html"
emit 1.1 resource "<http://example.net/resource>" text/html "$tmp/resource"
emit 1.1 revisit http://example.com/tide-mills "application/http; msgtype=response" "$tmp/empty" \
  "WARC-Profile: http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"

# --- wet.warc --------------------------------------------------------------------
printf 'Long before steam engines, millers on the Atlantic coast learned to harness the tides.\nA tide mill traps sea water behind a dam.\n' > "$tmp/wet1"
printf '长城是中国古代的军事防御工程。\n' > "$tmp/wet2"
{
  record 1.0 warcinfo "" application/warc-fields "$tmp/info"
  record 1.0 conversion http://example.com/tide-mills text/plain "$tmp/wet1" \
    "WARC-Refers-To: <urn:uuid:6f1c5e2a-0000-4000-8000-000000000003>"
  record 1.0 conversion http://example.cn/changcheng text/plain "$tmp/wet2"
} > wet.warc

# --- truncated.warc: records 1-2 whole, record 3 cut in its HTTP body ---------------
{ cat "$tmp/rec1" "$tmp/rec2"; head -c 2000 "$tmp/rec3"; } > truncated.warc

# --- damaged.warc ----------------------------------------------------------------
printf 'HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<p>big</p>%02000d' 0 > "$tmp/big"
{
  cat "$tmp/rec1"
  printf 'this line is garbage between records\r\nand so is this one\r\n\r\n'
  printf 'WARC/1.0\r\nWARC-Type: response\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n'
  printf 'WARC/1.0\r\nWARC-Type: response\r\nContent-Length: 12x\r\n\r\nbody\r\n\r\n'
  record 1.0 response http://example.com/big "application/http; msgtype=response" "$tmp/big"
  cat "$tmp/rec5"
} > damaged.warc
