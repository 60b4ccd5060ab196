// Text repair: invalid UTF-8, terminal escape codes, control characters, Unicode normalisation
// and whitespace. Every change that loses information is counted, never silent.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace llmkit::text {

enum class Normalization { none, nfc, nfkc };

struct RepairConfig {
  bool strip_ansi = true;      // ESC [ ... m colour codes, OSC titles, other escape sequences
  bool strip_control = true;   // C0 (but \t \n), DEL, C1, stray BOMs; \r\n and lone \r become \n
  Normalization normalization = Normalization::nfc;
  // Collapse blanks to one space (a line's leading spaces and tabs are kept), trim line ends,
  // at most one empty line in a row.
  bool normalize_whitespace = true;
};

struct RepairCounts {
  int64_t invalid_utf8 = 0;   // bytes replaced by U+FFFD
  int64_t ansi_escapes = 0;   // escape sequences removed
  int64_t control_chars = 0;  // control characters removed
  int64_t normalized = 0;     // documents changed by normalisation
  void add(const RepairCounts& o) {
    invalid_utf8 += o.invalid_utf8;
    ansi_escapes += o.ansi_escapes;
    control_chars += o.control_chars;
    normalized += o.normalized;
  }
};

// Repairs `text` in place. Thread-safe.
void repair_text(std::string& text, const RepairConfig& cfg, RepairCounts& counts);

// Steps, exposed for tests and for other commands.
size_t strip_ansi_escapes(std::string& text);
size_t strip_control_chars(std::string& text);  // expects valid UTF-8
bool normalize_unicode(std::string& text, Normalization form);  // true if changed
void normalize_whitespace(std::string& text);

// Number of code points in valid UTF-8.
size_t utf8_length(std::string_view s);

}  // namespace llmkit::text
