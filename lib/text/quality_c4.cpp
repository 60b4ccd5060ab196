// datatrove's C4QualityFilter (src/datatrove/pipeline/filters/c4_filters.py) with
// split_paragraph=True: lines are judged one by one, bad lines are removed, and a few findings
// drop the whole document.
#include <unicode/brkiter.h>
#include <unicode/locid.h>
#include <unicode/uchar.h>
#include <unicode/utext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <memory>

#include "quality_rules.hpp"

namespace llmkit::text {
namespace {

struct LineWords {
  size_t count = 0;
  size_t longest = 0;  // code points
};

// C4 (Raffel et al. 2020) and datatrove count words with line.split(): whitespace-delimited.
// llmkit: for zh/ja/ko that would make a whole sentence one "word" (no spaces), so every line
// would fall under min_words_per_line and a long paragraph over max_word_length; those
// languages count ICU's words instead (split_gopher_words: punctuation is not a word).
LineWords count_line_words(std::string_view line, bool cjk) {
  LineWords lw;
  if (cjk) {
    thread_local std::vector<std::string_view> words;
    split_gopher_words_into(line, true, words, nullptr);
    for (std::string_view w : words) {
      ++lw.count;
      lw.longest = std::max(lw.longest, count_code_points(w));
    }
    return lw;
  }
  size_t run = 0;
  for (size_t i = 0; i < line.size();) {
    unsigned char b = static_cast<unsigned char>(line[i]);
    bool space;
    if (b < 0x80) {
      space = ascii::kClass[b] & ascii::kSpace;
      ++i;
    } else {
      space = py_isspace(next_code_point_multibyte(line, i));
    }
    if (space) {
      run = 0;
      continue;
    }
    if (run++ == 0) ++lw.count;
    lw.longest = std::max(lw.longest, run);
  }
  return lw;
}

// Length of a citation at `at` (which holds '['), 0 if none: CITATION_REGEX =
// r"\[\d*]|\[edit]|\[citation needed]" (\d: any Unicode decimal digit, as in Python 3).
size_t citation_length(std::string_view s, size_t at) {
  for (std::string_view literal : {std::string_view("[edit]"), std::string_view("[citation needed]")})
    if (s.substr(at, literal.size()) == literal) return literal.size();
  size_t i = at + 1;
  while (i < s.size()) {
    size_t j = i;
    char32_t c = next_code_point(s, j);
    if (c == ']') return j - at;
    if (u_charType(static_cast<UChar32>(c)) != U_DECIMAL_DIGIT_NUMBER) return 0;
    i = j;
  }
  return 0;
}

// `line` without its citations: `line` itself when it has none, else a view of `buffer`.
std::string_view remove_citations(std::string_view line, std::string& buffer) {
  size_t at = line.find('[');
  if (at == std::string_view::npos) return line;
  buffer.assign(line.substr(0, at));
  for (size_t i = at; i < line.size();) {
    size_t len = line[i] == '[' ? citation_length(line, i) : 0;
    if (len) {
      i += len;
    } else {
      buffer += line[i++];
    }
  }
  return buffer;
}

// datatrove: line.endswith(END_PUNCTUATION) and not line.endswith("..."),
// END_PUNCTUATION = (".", "?", "!", '"', "'"); plus CJK sentence ends for zh/ja/ko.
bool has_terminal_punct(std::string_view line, bool cjk) {
  if (line.size() >= 3 && line.substr(line.size() - 3) == "...") return false;
  char32_t last = last_code_point(line);
  if (last == '.' || last == '?' || last == '!' || last == '"' || last == '\'') return true;
  return cjk && ends_sentence(last, true);
}

void ascii_lower(std::string_view s, std::string& out) {
  // Python's str.lower() would also fold non-ASCII letters; the phrases searched for are
  // ASCII, and only U+212A KELVIN SIGN lowers to one of their letters, so ASCII folding suffices.
  out.assign(s);
  char* p = out.data();
  size_t i = 0;
  for (; i + 8 <= out.size(); i += 8) {  // eight bytes at a time: set 0x20 in each of A-Z
    uint64_t v;
    std::memcpy(&v, p + i, 8);
    const uint64_t low7 = v & 0x7F7F7F7F7F7F7F7Full;
    const uint64_t above_z = low7 + 0x2525252525252525ull;    // high bit set where > 'Z'
    const uint64_t from_a = low7 + 0x3F3F3F3F3F3F3F3Full;     // high bit set where >= 'A'
    const uint64_t upper = (from_a ^ above_z) & ~v & 0x8080808080808080ull;  // ASCII A-Z
    v |= upper >> 2;
    std::memcpy(p + i, &v, 8);
  }
  for (; i < out.size(); ++i)
    if (p[i] >= 'A' && p[i] <= 'Z') p[i] = static_cast<char>(p[i] - 'A' + 'a');
}

bool contains(std::string_view s, std::string_view needle) {
  return memmem(s.data(), s.size(), needle.data(), needle.size()) != nullptr;
}

// Which of the C4 phrases the lowercased text holds, in one pass: each phrase is looked for
// where an uncommon pair of its letters occurs ("ja" of "javascript", "ok" of "cookie", ...),
// the pairs found 16 bytes at a time.
struct Phrases {
  bool lorem = false, javascript = false, policy = false;
};
Phrases find_phrases(std::string_view low) {
  struct Needle {
    std::string_view text;
    size_t at;  // of the pair
    bool Phrases::*found;
  };
  // Every policy phrase holds "cookie", "terms of use" or "privacy policy".
  static const Needle kNeedles[] = {{"lorem ipsum", 7, &Phrases::lorem},  {"javascript", 0, &Phrases::javascript},
                                    {"cookie", 2, &Phrases::policy},      {"terms of use", 3, &Phrases::policy},
                                    {"privacy policy", 3, &Phrases::policy}};
  Phrases found;
  auto check = [&](size_t pos) {  // a pair starts at pos
    for (const Needle& n : kNeedles) {
      if (found.*n.found || low[pos] != n.text[n.at] || low[pos + 1] != n.text[n.at + 1] || pos < n.at) continue;
      if (low.substr(pos - n.at, n.text.size()) == n.text) found.*n.found = true;
    }
  };
  const size_t size = low.size();
  size_t i = 0;
#ifdef __SSE2__
  __m128i first[5], second[5];
  for (int k = 0; k < 5; ++k) {
    first[k] = _mm_set1_epi8(kNeedles[k].text[kNeedles[k].at]);
    second[k] = _mm_set1_epi8(kNeedles[k].text[kNeedles[k].at + 1]);
  }
  for (; i + 17 <= size; i += 16) {
    __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(low.data() + i));
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(low.data() + i + 1));
    __m128i hit = _mm_setzero_si128();
    for (int k = 0; k < 5; ++k) hit = _mm_or_si128(hit, _mm_and_si128(_mm_cmpeq_epi8(a, first[k]), _mm_cmpeq_epi8(b, second[k])));
    for (unsigned m = static_cast<unsigned>(_mm_movemask_epi8(hit)); m; m &= m - 1) check(i + static_cast<size_t>(__builtin_ctz(m)));
  }
#endif
  for (; i + 1 < size; ++i) check(i);
  return found;
}

bool mentions_policy(std::string_view lower) {
  static const std::string_view kPolicy[] = {"terms of use", "privacy policy", "cookie policy",
                                              "uses cookies", "use of cookies", "use cookies"};
  for (std::string_view p : kPolicy)
    if (contains(lower, p)) return true;
  return false;
}

// Sentences in a kept line. datatrove uses its language's sent_tokenize (NLTK punkt in the
// FineWeb release, spaCy's sentencizer now). llmkit: ICU sentence segmentation with the CLDR
// abbreviation list ("en@ss=standard"), so "Mr. Smith" does not end a sentence (CLDR's list
// is short: it has "Mr." but not "Dr."); CJK 。！？
// are sentence ends in ICU's rules for every locale. A line that is a wrapped paragraph is
// read with its line breaks as spaces: ICU ends a sentence at every line break.
// Stops at `limit`: only "enough or not" matters to the rule.
size_t count_sentences(std::string_view line, size_t limit) {
  thread_local std::string unwrapped;
  if (line.find('\n') != std::string_view::npos) {
    unwrapped.assign(line);
    std::replace(unwrapped.begin(), unwrapped.end(), '\n', ' ');
    line = unwrapped;
  }
  thread_local std::unique_ptr<icu::BreakIterator> it;
  if (!it) {
    UErrorCode status = U_ZERO_ERROR;
    it.reset(icu::BreakIterator::createSentenceInstance(icu::Locale("en@ss=standard"), status));
    if (U_FAILURE(status)) it.reset();
  }
  if (!it) return line.empty() ? 0 : 1;
  UErrorCode status = U_ZERO_ERROR;
  UText* ut = utext_openUTF8(nullptr, line.data(), static_cast<int64_t>(line.size()), &status);
  if (U_FAILURE(status)) return 1;
  it->setText(ut, status);
  size_t n = 0;
  if (U_SUCCESS(status)) {
    int32_t start = it->first();
    for (int32_t end = it->next(); end != icu::BreakIterator::DONE && n < limit; start = end, end = it->next())
      n += !py_strip(line.substr(size_t(start), size_t(end - start))).empty();
  }
  it->setText(icu::UnicodeString());
  utext_close(ut);
  return n;
}

}  // namespace

std::string c4_quality(std::string& text, const TextLines& text_lines, const std::vector<const char*>& soft,
                       const GopherWords* gw, std::string_view lang, const QualityThresholds& cfg, bool& changed) {
  size_t next_word = 0;  // in gw
  const bool cjk = is_cjk_language(lang);
  // Buffers reused from document to document.
  thread_local std::string kept, cited, lower;
  thread_local std::vector<std::string_view> lines;
  kept.clear();
  bool any_kept = false, blank_before = false;
  double num_sentences = 0;
  splitlines_from(text, text_lines, lines);
  merge_soft_breaks(lines, soft);  // a wrapped paragraph is one line, kept or removed whole
  thread_local std::string lower_text;
  ascii_lower(text, lower_text);  // same byte offsets as text
  struct {
    bool lorem, javascript, brace, policy;
  } has;
  const Phrases phrases = find_phrases(lower_text);
  has.lorem = phrases.lorem;
  has.javascript = phrases.javascript;
  has.policy = phrases.policy;
  has.brace = std::memchr(text.data(), '{', text.size()) != nullptr;
  for (std::string_view raw : lines) {
    std::string_view stripped = py_strip(raw);
    // llmkit: a kept line keeps its indentation (datatrove keeps line.strip()): the rules
    // judge the stripped line, but code's indentation is part of the code.
    std::string_view indent = raw.substr(0, static_cast<size_t>(stripped.data() - raw.data()));
    // llmkit: a blank line is a paragraph break and stays one (datatrove drops it with the
    // lines under min_words_per_line, merging every paragraph of the document).
    if (stripped.empty()) {
      blank_before = any_kept;
      continue;
    }
    // Counted before citations go; the document's whitespace words are known when `words` is
    // given: those of this line are the next ones.
    LineWords words;
    if (gw) {
      const char* end = raw.data() + raw.size();
      while (next_word < gw->words.size() && gw->words[next_word].data() < raw.data()) ++next_word;
      for (; next_word < gw->words.size() && gw->words[next_word].data() < end; ++next_word) {
        ++words.count;
        words.longest = std::max<size_t>(words.longest, gw->chars[next_word]);
      }
    } else {
      words = count_line_words(stripped, cjk);
    }
    if (cfg.max_word_length != -1 && double(words.longest) > cfg.max_word_length) continue;
    std::string_view line = cfg.remove_citations ? remove_citations(stripped, cited) : stripped;
    if (cfg.filter_no_terminal_punct && !has_terminal_punct(line, cjk)) continue;
    if (double(words.count) < cfg.min_words_per_line) continue;
    // The line lowercased: a view of the lowercased text, unless removing citations changed
    // it; the phrase searches are skipped for phrases the whole text does not hold.
    const bool cited_line = line.data() != stripped.data();
    std::string_view low;
    if (cited_line) {
      ascii_lower(line, lower);
      low = lower;
    } else {
      low = std::string_view(lower_text).substr(static_cast<size_t>(line.data() - text.data()), line.size());
    }
    if (cfg.filter_lorem_ipsum && (cited_line || has.lorem) && contains(low, "lorem ipsum"))
      return "lorem_ipsum";
    if (cfg.filter_javascript && (cited_line || has.javascript) && contains(low, "javascript"))
      continue;
    if (cfg.filter_curly_bracket && (cited_line || has.brace) && line.find('{') != std::string_view::npos)
      return "curly_bracket";
    if (cfg.filter_policy && (cited_line || has.policy) && mentions_policy(low)) continue;
    // Only "enough or not" matters, so stop segmenting once there are enough.
    if (num_sentences < cfg.min_num_sentences)
      num_sentences += double(count_sentences(line, static_cast<size_t>(std::ceil(cfg.min_num_sentences - num_sentences))));
    if (any_kept) kept += blank_before ? "\n\n" : "\n";
    blank_before = false;
    kept += indent;
    kept += line;
    any_kept = true;
  }
  if (num_sentences < cfg.min_num_sentences) return "too_few_sentences";
  // "\n".join(kept_lines).strip(), but for the first line's indentation (no kept line is blank)
  std::string_view result = py_rstrip(kept);
  changed = result != text;
  if (changed) text.assign(result);
  return "";
}

}  // namespace llmkit::text
