// PII redaction for llm-clean: e-mail addresses, IPv4/IPv6 addresses, phone numbers, Chinese
// resident ID numbers and payment card numbers in English and Chinese web text (UTF-8).
//
// Each detector is an RE2 pattern that finds candidates plus a check in code that RE2 cannot
// express: digit/letter neighbours (no lookbehind in RE2), IPv6 syntax (inet_pton), the ID
// number's date and MOD 11-2 checksum, the card's Luhn digit and issuer prefix. Ordinary numbers
// (years, dates, versions, ISBNs, ports, prices) do not match. See lib/text/pii.cpp for the exact
// rules and the tests in tests/unit/test_pii.cpp for examples of both sides.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace llmkit::text {

struct PiiConfig {
  bool email = true, ip = true, phone = true, cn_id = true, card = true;
  std::string email_placeholder = "<EMAIL>", ip_placeholder = "<IP_ADDRESS>",
              phone_placeholder = "<PHONE>", cn_id_placeholder = "<ID_NUMBER>",
              card_placeholder = "<CARD_NUMBER>";
};

struct PiiCounts {
  int64_t email = 0, ip = 0, phone = 0, cn_id = 0, card = 0;
  void add(const PiiCounts& other);
  int64_t total() const { return email + ip + phone + cn_id + card; }
};

class PiiRedactor {
 public:
  // Compiles the patterns once; throws llmkit::Error if one does not compile (a bug, not input).
  explicit PiiRedactor(const PiiConfig& cfg);
  ~PiiRedactor();
  PiiRedactor(const PiiRedactor&) = delete;
  PiiRedactor& operator=(const PiiRedactor&) = delete;

  // Replaces every detected item in `text` (UTF-8; invalid bytes are tolerated and kept) by its
  // placeholder, adds to `counts` and returns the number replaced. Where two detections overlap,
  // the more specific type wins: email > cn_id > card > ip > phone, then the longer match.
  // Thread-safe: may be called concurrently from many threads on one const instance.
  size_t redact(std::string& text, PiiCounts& counts) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace llmkit::text
