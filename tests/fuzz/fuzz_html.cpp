// libFuzzer target: charset conversion and main-text extraction must accept any bytes and
// always return valid UTF-8. The first byte picks a charset hint so that ICU's converters for
// legacy multi-byte charsets are exercised too.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "llmkit/html.hpp"

namespace {

bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : 9;
    if (n == 9 || i + n >= s.size()) return false;
    uint32_t cp = n == 0 ? c : c & (0x3Fu >> n);
    for (size_t k = 1; k <= n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const char* const kHints[] = {"", "", "", "", "utf-8", "windows-1252", "gbk",
                                       "shift_jis", "euc-kr", "big5", "utf-16le", "koi8-r"};
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const char* hint = size > 0 ? kHints[data[0] % (sizeof kHints / sizeof *kHints)] : "";
  std::string utf8 = llmkit::text::to_utf8(bytes, hint);
  if (!valid_utf8(utf8)) __builtin_trap();
  llmkit::text::ExtractConfig cfg;
  cfg.keep_tables = size % 2 == 0;
  llmkit::text::Extracted r = llmkit::text::extract_main_text(utf8, cfg);
  if (!valid_utf8(r.text) || !valid_utf8(r.title)) __builtin_trap();
  // Raw bytes straight into the parser (callers that skip to_utf8) must be safe as well.
  r = llmkit::text::extract_main_text(bytes, cfg);
  if (!valid_utf8(r.text)) __builtin_trap();
  return 0;
}
