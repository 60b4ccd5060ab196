// PII redaction: RE2 finds candidates, code validates them, overlaps are resolved, then the text
// is rebuilt once with placeholders.
//
// Speed: most documents hold no PII, so one RE2::Set pass over the text first says which
// detectors have a candidate at all; only those then scan the text for positions. A PII-free
// document costs one DFA pass.
//
// Precision: RE2 has no lookbehind, so patterns use \b (ASCII word boundary: digits and letters
// on one side only; CJK bytes count as non-word, which is what unspaced Chinese text needs) and
// the checks below look at the neighbouring characters for the rest (a dotted or hyphenated
// number that goes on, a version word before an IPv4 address).
#include "llmkit/pii.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <map>
#include <string_view>
#include <vector>

#include <re2/re2.h>
#include <re2/set.h>

#include "llmkit/error.hpp"

namespace llmkit::text {

void PiiCounts::add(const PiiCounts& o) {
  email += o.email;
  ip += o.ip;
  phone += o.phone;
  cn_id += o.cn_id;
  card += o.card;
}

namespace {

// Declared in overlap priority order: when two detections overlap, the lower value wins. The
// validated, specific types come first: an e-mail's local part may be a phone number
// ("13800138000@qq.com"), and an ID number or card number is certain after its checksum.
enum class Kind { kEmail, kCnId, kCard, kIp, kPhone };

struct Span {
  size_t begin, end;
  Kind kind;
};

constexpr size_t kReject = std::string_view::npos;

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_alnum(char c) { return is_digit(c) || is_alpha(c); }

// The character at i, or '\0' outside the text: saves bounds checks at both ends.
char at(std::string_view t, size_t i) { return i < t.size() ? t[i] : '\0'; }
char before(std::string_view t, size_t b, size_t back) { return b >= back ? t[b - back] : '\0'; }

// True when [b, e) is one piece of a longer dotted/hyphenated/slashed number such as a version
// "1.2.3.4.5", an ISBN "978-1-234-5678-9" or a date "2024/05/01-...": the neighbour is one of
// - . / and the character beyond it is a digit.
bool continues_number(std::string_view t, size_t b, size_t e) {
  auto joiner = [](char c) { return c == '-' || c == '.' || c == '/'; };
  if (joiner(before(t, b, 1)) && is_digit(before(t, b, 2))) return true;
  return joiner(at(t, e)) && is_digit(at(t, e + 1));
}

std::string digits_of(std::string_view s) {
  std::string d;
  for (char c : s)
    if (is_digit(c)) d += c;
  return d;
}

// ---- e-mail ---------------------------------------------------------------------------------
// A practical subset of RFC 5322 (the one datatrove and most scrapers use, without quoted local
// parts or IP-literal domains). The local part leaves out / = ? etc. so that a URL query such
// as "x.com/p=abc@def.org" yields "abc@def.org" rather than swallowing the path. The top-level
// domain is letters only, which keeps "user@1.2.3.4"-like strings and "a@b.c0" out.
constexpr const char* kEmailPattern =
    R"([A-Za-z0-9_%+\-]+(?:\.[A-Za-z0-9_%+\-]+)*@)"
    R"((?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,24}\b)";

size_t check_email(std::string_view, size_t, size_t e) { return e; }

// ---- IPv4 -----------------------------------------------------------------------------------
// Four decimal octets 0-255 without leading zeros ("01" is not an octet). Not redacted:
// - a piece of a longer dotted number ("1.2.3.4.5");
// - an address right after a version word ("version 1.2.3.4", "v. 1.2.3.4", "版本 1.2.3.4");
//   "v1.2.3.4" never matches because \b needs a non-word character before the first digit;
// - a version-shaped address: first octet 0, or first octet below 10 and the others below 32
//   ("2.0.3.4", "3.7.2.1"). In Debian changelogs and man pages (30 MB) these were >99% of all
//   IPv4 matches; they cover 0.007% of random public addresses, mostly well-known resolvers
//   such as 8.8.8.8 and 1.1.1.1, which identify nobody.
constexpr const char* kIpv4Pattern =
    R"(\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b)";

bool after_version_word(std::string_view t, size_t b) {
  size_t i = b;
  for (int n = 0; n < 3 && i > 0 && (t[i - 1] == ' ' || t[i - 1] == ':' || t[i - 1] == '.'); ++n)
    --i;
  for (std::string_view w : {std::string_view("版本"), std::string_view("版本号")})
    if (i >= w.size() && t.substr(i - w.size(), w.size()) == w) return true;
  size_t j = i;
  while (j > 0 && is_alpha(t[j - 1])) --j;
  std::string word(t.substr(j, i - j));
  for (char& c : word) c = static_cast<char>(c | 0x20);  // ASCII letters only: lower case
  return word == "version" || word == "ver" || word == "v";
}

bool version_shaped(std::string_view addr) {
  int octet[4] = {0, 0, 0, 0}, i = 0;
  for (char c : addr) {
    if (c == '.') ++i;
    else octet[i] = octet[i] * 10 + (c - '0');
  }
  return octet[0] == 0 || (octet[0] < 10 && octet[1] < 32 && octet[2] < 32 && octet[3] < 32);
}

size_t check_ipv4(std::string_view t, size_t b, size_t e) {
  if (before(t, b, 1) == '.' || continues_number(t, b, e)) return kReject;
  if (version_shaped(t.substr(b, e - b))) return kReject;
  return after_version_word(t, b) ? kReject : e;
}

// ---- IPv6 -----------------------------------------------------------------------------------
// The pattern is only a candidate finder (hex groups joined by at least two colons, optionally
// ending in a dotted IPv4 part); inet_pton decides. Times ("12:30:45") and MAC addresses fail
// inet_pton. Also not redacted: "::" and "::1"-style strings with fewer than two non-empty groups
// and strings without any decimal digit, which in prose are C++ scopes ("a::b") or hex words.
constexpr const char* kIpv6Pattern =
    R"([0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.\d{1,3}){0,3})";

bool valid_ipv6(std::string_view s) {
  if (s.size() > 45) return false;
  std::string z(s);
  unsigned char buf[16];
  if (inet_pton(AF_INET6, z.c_str(), buf) != 1) return false;
  int groups = 0;
  bool in_group = false, has_digit = false;
  for (char c : s) {
    has_digit |= is_digit(c);
    bool part = c != ':';
    if (part && !in_group) ++groups;
    in_group = part;
  }
  return groups >= 2 && has_digit;
}

size_t check_ipv6(std::string_view t, size_t b, size_t e) {
  char p = before(t, b, 1);
  if (is_alnum(p) || p == ':' || p == '.' || p == '_') return kReject;
  // The pattern may take a colon that ends a sentence ("at 2001:db8::1: ...").
  if (!valid_ipv6(t.substr(b, e - b))) {
    if (e - b < 2 || t[e - 1] != ':' || t[e - 2] == ':' || !valid_ipv6(t.substr(b, e - 1 - b)))
      return kReject;
    --e;
  }
  char n = at(t, e);
  if (is_alnum(n) || n == '_' || (n == '.' && is_digit(at(t, e + 1)))) return kReject;
  return e;
}

// ---- Chinese resident ID (GB 11643-1999) ----------------------------------------------------
// 6-digit region code, YYYYMMDD birth date (1900-2099), 3-digit sequence, MOD 11-2 check
// character. The region's first two digits must be a province code. 15-digit pre-1999 numbers
// carry no checksum and are not redacted: too many ordinary 15-digit numbers would look the same.
constexpr const char* kCnIdPattern =
    R"(\b\d{6}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]\b)";

bool valid_province(int code) {
  static constexpr std::array<int, 35> kCodes = {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34,
                                                 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
                                                 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83};
  return std::find(kCodes.begin(), kCodes.end(), code) != kCodes.end();
}

bool valid_date(int y, int m, int d) {
  static constexpr int kDays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 1900 || y > 2099 || m < 1 || m > 12 || d < 1 || d > kDays[m - 1]) return false;
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m != 2 || d <= 28 || leap;
}

size_t check_cn_id(std::string_view t, size_t b, size_t e) {
  std::string_view s = t.substr(b, e - b);
  auto num = [&](size_t pos, size_t len) {
    int v = 0;
    for (size_t i = pos; i < pos + len; ++i) v = v * 10 + (s[i] - '0');
    return v;
  };
  if (!valid_province(num(0, 2)) || !valid_date(num(6, 4), num(10, 2), num(12, 2))) return kReject;
  static constexpr int kWeights[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
  int sum = 0;
  for (int i = 0; i < 17; ++i) sum += (s[i] - '0') * kWeights[i];
  char want = "10X98765432"[sum % 11];
  char got = s[17] == 'x' ? 'X' : s[17];
  return got == want ? e : kReject;
}

// ---- payment cards --------------------------------------------------------------------------
// 13-19 digits, either unbroken or in groups joined by one kind of separator (single space or
// hyphen): 4-4-4-4, 4-4-4-4-3, 4-6-5 (Amex), 4-6-4 (Diners), 4-4-4-1/2. The number must pass
// Luhn and carry an issuer prefix with a length that issuer uses. When the grouped pattern ran
// on into a following number ("4111 1111 1111 1111 2024"), trailing groups are dropped until the
// rest is a valid card.
constexpr const char* kCardPattern =
    R"(\b(?:\d{13,19}|\d{4}[ \-]\d{4,6}[ \-]\d{4,6}(?:[ \-]\d{1,4}){0,2})\b)";

bool luhn_ok(std::string_view d) {
  int sum = 0;
  bool twice = false;
  for (size_t i = d.size(); i-- > 0; twice = !twice) {
    int v = d[i] - '0';
    if (twice && (v *= 2) > 9) v -= 9;
    sum += v;
  }
  return sum % 10 == 0;
}

bool issuer_ok(std::string_view d) {
  auto prefix = [&](size_t n) { return std::stoi(std::string(d.substr(0, n))); };
  size_t len = d.size();
  int p2 = prefix(2), p3 = prefix(3), p4 = prefix(4);
  if (d[0] == '4') return len == 13 || len == 16 || len == 19;                  // Visa
  if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) return len == 16;  // Mastercard
  if (p2 == 34 || p2 == 37) return len == 15;                                    // Amex
  if (p4 == 6011 || p2 == 65 || (p3 >= 644 && p3 <= 649)) return len >= 16;      // Discover
  if (p2 == 62) return len >= 16;                                                // UnionPay
  if (p4 >= 3528 && p4 <= 3589) return len >= 16;                                // JCB
  if (p2 == 36 || p2 == 38 || (p3 >= 300 && p3 <= 305)) return len >= 14 && len <= 16;  // Diners
  return false;
}

bool valid_card(std::string_view d) {
  return d.size() >= 13 && d.size() <= 19 && luhn_ok(d) && issuer_ok(d);
}

size_t check_card(std::string_view t, size_t b, size_t e) {
  // A card right after "NNNN-" is one piece of a longer hyphenated code.
  if (before(t, b, 1) == '-' && is_digit(before(t, b, 2))) return kReject;
  if (at(t, e) == '-' && is_digit(at(t, e + 1))) return kReject;
  std::string_view s = t.substr(b, e - b);
  size_t sep_pos = s.find_first_of(" -");
  if (sep_pos == std::string_view::npos) return valid_card(s) ? e : kReject;
  char sep = s[sep_pos];
  std::vector<size_t> group_ends;  // offsets in s where each group ends
  for (size_t i = 0; i < s.size(); ++i) {
    if (is_digit(s[i])) continue;
    if (s[i] != sep) return kReject;  // mixed separators: not a card layout
    group_ends.push_back(i);
  }
  group_ends.push_back(s.size());
  for (size_t k = group_ends.size(); k >= 3; --k) {
    size_t end = group_ends[k - 1];
    if (valid_card(digits_of(s.substr(0, end)))) return b + end;
  }
  return kReject;
}

// ---- phone numbers --------------------------------------------------------------------------
// Four layouts, each specific enough that dates (2024-05-01), versions (3.11.2), ISBNs, ports,
// prices and years do not fit:
//  - international: "+" and country code, then up to six groups of digits or "(area)", joined
//    by an optional space, dot or hyphen; 8-15 digits in all (E.164 allows at most 15);
//  - Chinese mobile: 1[3-9]X XXXX XXXX, unbroken or with spaces/hyphens in the 3-4-4 places,
//    optionally after +86 or 0086;
//  - North American without "+1": (415) 555-2671, 415-555-2671, 415.555.2671, with the area code
//    and exchange starting 2-9 as the numbering plan requires. Bare "415 555 2671" is left
//    alone: three space-separated numbers are too common in tables;
//  - Chinese landline: 0AA-NNNNNNNN / 0AAA-NNNNNNN with the local number starting 2-9.
// Everywhere: no digit or letter directly around the number, and not one piece of a longer
// dotted/hyphenated number. Bare digit runs other than Chinese mobiles (e.g. "4155552671") are
// not phones: without layout they are indistinguishable from counts and IDs.
constexpr const char* kPhoneIntlPattern = R"(\+\d{1,3}(?:[ .\-]?(?:\(\d{1,4}\)|\d{1,5})){1,6}\b)";
constexpr const char* kPhoneCnMobilePattern =
    R"((?:\+86[ \-]?|\b0086[ \-]?|\b)1[3-9]\d(?:[ \-]?\d{4}){2}\b)";
constexpr const char* kPhoneNanpPattern = R"((?:\(\d{3}\)[ .\-]?|\b\d{3}[.\-])\d{3}[.\-]\d{4}\b)";
constexpr const char* kPhoneCnLandlinePattern = R"(\b0\d{2,3}-\d{7,8}\b)";

// Neighbour rules shared by every phone layout.
bool phone_context_ok(std::string_view t, size_t b, size_t e) {
  char p = before(t, b, 1);
  if (is_alnum(p) || p == '_' || continues_number(t, b, e)) return false;
  if (t[b] == '+') {
    // The "+" must open the number: after a space, an opening bracket or quote, a separator or
    // CJK text. Elsewhere "+digits" is arithmetic or a timestamp ("1:14~++20220202101403").
    return p == '\0' || static_cast<unsigned char>(p) >= 0x80 ||
           std::string_view(" \t\n\r([{<\"':;,").find(p) != std::string_view::npos;
  }
  // A layout without "+" found right after a "+" is the tail of a rejected international number.
  return p != '+';
}

size_t check_phone_intl(std::string_view t, size_t b, size_t e) {
  if (!phone_context_ok(t, b, e)) return kReject;
  size_t n = digits_of(t.substr(b, e - b)).size();
  return n >= 8 && n <= 15 ? e : kReject;
}

size_t check_phone_cn_mobile(std::string_view t, size_t b, size_t e) {
  return phone_context_ok(t, b, e) ? e : kReject;
}

size_t check_phone_nanp(std::string_view t, size_t b, size_t e) {
  if (!phone_context_ok(t, b, e)) return kReject;
  std::string d = digits_of(t.substr(b, e - b));  // exactly 10 by the pattern
  return d[0] >= '2' && d[3] >= '2' ? e : kReject;
}

size_t check_phone_cn_landline(std::string_view t, size_t b, size_t e) {
  if (!phone_context_ok(t, b, e)) return kReject;
  return t[t.find('-', b) + 1] >= '2' ? e : kReject;
}

using Check = size_t (*)(std::string_view text, size_t begin, size_t end);

struct DetectorSpec {
  Kind kind;
  const char* pattern;
  Check check;
};

constexpr DetectorSpec kSpecs[] = {
    {Kind::kEmail, kEmailPattern, check_email},
    {Kind::kCnId, kCnIdPattern, check_cn_id},
    {Kind::kCard, kCardPattern, check_card},
    {Kind::kIp, kIpv4Pattern, check_ipv4},
    {Kind::kIp, kIpv6Pattern, check_ipv6},
    {Kind::kPhone, kPhoneIntlPattern, check_phone_intl},
    {Kind::kPhone, kPhoneCnMobilePattern, check_phone_cn_mobile},
    {Kind::kPhone, kPhoneNanpPattern, check_phone_nanp},
    {Kind::kPhone, kPhoneCnLandlinePattern, check_phone_cn_landline},
};

bool enabled(const PiiConfig& cfg, Kind k) {
  switch (k) {
    case Kind::kEmail: return cfg.email;
    case Kind::kCnId: return cfg.cn_id;
    case Kind::kCard: return cfg.card;
    case Kind::kIp: return cfg.ip;
    case Kind::kPhone: return cfg.phone;
  }
  return false;
}

RE2::Options pattern_options() {
  RE2::Options o;
  // Patterns are ASCII; matching bytes keeps invalid UTF-8 harmless and CJK bytes non-word.
  o.set_encoding(RE2::Options::EncodingLatin1);
  o.set_log_errors(false);  // the library never prints
  o.set_max_mem(32 << 20);  // room for the combined DFA so it does not thrash on large texts
  return o;
}

}  // namespace

struct PiiRedactor::Impl {
  struct Detector {
    Kind kind;
    std::unique_ptr<RE2> re;
    Check check;
  };
  std::vector<Detector> detectors;
  std::unique_ptr<RE2::Set> gate;  // all detectors' patterns: one pass says which may match
  std::array<std::string, 5> placeholder;

  void scan(const Detector& d, std::string_view text, std::vector<Span>& out) const;
  std::vector<int> candidates(std::string_view text) const;
};

PiiRedactor::PiiRedactor(const PiiConfig& cfg) : impl_(std::make_unique<Impl>()) {
  impl_->placeholder = {cfg.email_placeholder, cfg.cn_id_placeholder, cfg.card_placeholder,
                        cfg.ip_placeholder, cfg.phone_placeholder};
  RE2::Options opts = pattern_options();
  impl_->gate = std::make_unique<RE2::Set>(opts, RE2::UNANCHORED);
  for (const DetectorSpec& spec : kSpecs) {
    if (!enabled(cfg, spec.kind)) continue;
    auto re = std::make_unique<RE2>(spec.pattern, opts);
    std::string err;
    if (!re->ok() || impl_->gate->Add(spec.pattern, &err) < 0)
      throw Error("pii", std::string("cannot compile PII pattern ") + spec.pattern + ": " +
                             re->error() + err);
    impl_->detectors.push_back({spec.kind, std::move(re), spec.check});
  }
  if (!impl_->detectors.empty() && !impl_->gate->Compile())
    throw Error("pii", "cannot compile the combined PII pattern set: out of memory");
}

PiiRedactor::~PiiRedactor() = default;

// Indices of the detectors that have at least one candidate in `text`.
std::vector<int> PiiRedactor::Impl::candidates(std::string_view text) const {
  std::vector<int> hits;
  if (detectors.empty()) return hits;
  RE2::Set::ErrorInfo info{RE2::Set::kNoError};
  if (gate->Match(re2::StringPiece(text.data(), text.size()), &hits, &info)) return hits;
  hits.clear();
  // The set's DFA gave up (out of memory on a pathological text): scan with every detector
  // rather than let PII through.
  if (info.kind != RE2::Set::kNoError)
    for (size_t i = 0; i < detectors.size(); ++i) hits.push_back(static_cast<int>(i));
  return hits;
}

void PiiRedactor::Impl::scan(const Detector& d, std::string_view text,
                             std::vector<Span>& out) const {
  re2::StringPiece whole(text.data(), text.size()), m;
  size_t pos = 0;
  while (pos < text.size() && d.re->Match(whole, pos, text.size(), RE2::UNANCHORED, &m, 1)) {
    size_t b = static_cast<size_t>(m.data() - text.data()), e = b + m.size();
    size_t end = e > b ? d.check(text, b, e) : kReject;
    if (end != kReject && end > b) {
      out.push_back({b, end, d.kind});
      pos = end;
      continue;
    }
    // Rejected: retry one byte on, but no later start inside the same digit run can match
    // either (the patterns need a non-digit before their first digit), so skip it.
    pos = b + 1;
    while (pos < text.size() && is_digit(text[pos]) && is_digit(text[pos - 1])) ++pos;
  }
}

namespace {

// Keeps a non-overlapping subset: by kind priority, then longer first, then earlier. Returns
// them ordered by position.
std::vector<Span> resolve_overlaps(std::vector<Span> spans) {
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    if (a.kind != b.kind) return a.kind < b.kind;
    if (a.end - a.begin != b.end - b.begin) return a.end - a.begin > b.end - b.begin;
    return a.begin < b.begin;
  });
  std::map<size_t, const Span*> kept;  // by begin
  for (const Span& s : spans) {
    auto next = kept.lower_bound(s.begin);
    if (next != kept.end() && next->second->begin < s.end) continue;
    if (next != kept.begin() && std::prev(next)->second->end > s.begin) continue;
    kept.emplace(s.begin, &s);
  }
  std::vector<Span> out;
  out.reserve(kept.size());
  for (const auto& [begin, s] : kept) out.push_back(*s);
  return out;
}

}  // namespace

size_t PiiRedactor::redact(std::string& text, PiiCounts& counts) const {
  std::vector<int> hits = impl_->candidates(text);
  if (hits.empty()) return 0;
  std::sort(hits.begin(), hits.end());
  std::vector<Span> spans;
  for (int h : hits) impl_->scan(impl_->detectors[static_cast<size_t>(h)], text, spans);
  if (spans.empty()) return 0;
  std::vector<Span> chosen = resolve_overlaps(std::move(spans));

  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  for (const Span& s : chosen) {
    out.append(text, pos, s.begin - pos);
    out += impl_->placeholder[static_cast<size_t>(s.kind)];
    pos = s.end;
    switch (s.kind) {
      case Kind::kEmail: ++counts.email; break;
      case Kind::kCnId: ++counts.cn_id; break;
      case Kind::kCard: ++counts.card; break;
      case Kind::kIp: ++counts.ip; break;
      case Kind::kPhone: ++counts.phone; break;
    }
  }
  out.append(text, pos, std::string::npos);
  text.swap(out);
  return chosen.size();
}

}  // namespace llmkit::text
