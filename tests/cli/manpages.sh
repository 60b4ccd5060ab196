# Every command has a man page, every long option its --help lists appears in that page, and
# mandoc -Tlint finds nothing to warn about.
. "$(dirname "$0")/lib.sh"

for src in "$SRC"/tools/llm-*.cpp; do
  cmd=$(basename "$src" .cpp)
  page="$SRC/man/man1/$cmd.1"
  if [ ! -f "$page" ]; then
    fail "$cmd has no man page man/man1/$cmd.1"
    continue
  fi
  ok
  run "$BIN/$cmd" --help
  expect_rc 0 "$cmd --help"
  # Compare with the page as a reader sees it (mdoc writes --name as "Fl \-name").
  mandoc -Tascii "$page" | col -b > page.txt
  for opt in $(grep -oE -- '--[a-z0-9][a-z0-9-]*' "$T/out" | sort -u); do
    if grep -qE -- "${opt}([^a-z0-9-]|$)" page.txt; then ok; else fail "$cmd: $opt is in --help but not in man/man1/$cmd.1"; fi
  done
done

if command -v mandoc >/dev/null; then
  lint=$(mandoc -Tlint -W warning "$SRC"/man/man*/*.[157] 2>&1)
  if [ -z "$lint" ]; then ok; else rc=1; fail "mandoc -Tlint: $lint"; fi
fi
finish
