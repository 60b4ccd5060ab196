// Generates a JSONL test corpus for near-duplicate detection (llm-dedup): original documents
// plus exact copies, copies that differ only in case, whitespace or NFKC-equivalent
// punctuation, and word-level (character-level for Chinese) edited copies at known edit rates,
// some of them edits of edits. Every line records where the document came from, so that
// dedup_eval can score a clustering against the truth:
//   {"id":"d12","text":"...","family":3,"kind":"near","edit_rate":0.02,"parent":"d3",
//    "depth":1,"lang":"en"}
// family is the document number (0-based line) of the original the document descends from;
// kind is "original", "exact" (a byte-identical copy of an original), "exact_normalized" (the
// same text after NFKC, case folding and collapsing whitespace runs) or "near" (edited at
// edit_rate per word or character; parent is the document edited, depth the number of copy
// steps from the original). Copies come at random later positions, never right after their
// parent. The output is deterministic for a given seed: only the raw std::mt19937_64 output is
// used, the distributions are our own.
//
// Originals are 50 to 3000 words long (log-normal, median 400; Chinese: 1.5 Han characters a
// word). A near copy's edit rate is one of 0.005 0.01 0.02 0.03 0.05 0.08 0.12 0.2 0.3: each
// word (Han character) is, with that probability, substituted, deleted, followed by an inserted
// one or swapped with the next; about 30% of the near copies edit an earlier near copy (chains).
// exact_normalized copies change letter case, whitespace runs inside the text (spaces, tabs,
// no-break spaces, newlines; never at either end) and , ? ! : <-> their fullwidth forms: their
// shingles equal the original's.
//
//   dedup_corpus [--docs N] [--mb MB] [--seed S] [--exact-fraction F] [--near-fraction F]
//                [--cjk-fraction F] [--source FILE] -o CORPUS.jsonl
//
// --docs N: stop after N documents; --mb MB: stop once the output holds MB * 10^6 bytes; with
// both, whichever comes first; with neither, --docs 1000. --exact-fraction (default 0.1) and
// --near-fraction (default 0.2) are the shares of exact and near copies (exact_normalized
// copies are 15% of the near share). --cjk-fraction (default 0.05): share of Chinese originals.
// --source FILE: JSONL with a "text" field (the first 64 MB of text are read); English
// originals are then recombined from its sentences (30% spliced from two, 5% of the words
// replaced, so that originals stay distinct even with a small source) instead of drawn from the
// built-in vocabulary (Zipf over 8000 words: ~500 common English words, then pseudo-words).
// -o - writes to stdout.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace {

// ---- Random numbers ---------------------------------------------------------------------------

// std::mt19937_64's output is fixed by the standard; std:: distributions are not, so every
// distribution is computed here from the raw 64-bit draws.
class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}

  uint64_t next() { return engine_(); }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  bool chance(double p) { return uniform() < p; }

  uint64_t below(uint64_t n) {  // uniform in [0, n), n > 0, without modulo bias
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    for (;;)
      if (uint64_t x = next(); x < limit) return x % n;
  }
  size_t between(size_t lo, size_t hi) { return lo + below(hi - lo + 1); }  // [lo, hi]

  double normal() {  // Box-Muller, one value per call
    double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  double lognormal(double median, double sigma) { return median * std::exp(sigma * normal()); }

 private:
  std::mt19937_64 engine_;
};

// Walker/Vose alias table: O(1) sampling from a fixed discrete distribution.
class Discrete {
 public:
  explicit Discrete(const std::vector<double>& weights)
      : prob_(weights.size()), alias_(weights.size()) {
    const size_t n = weights.size();
    double total = 0;
    for (double w : weights) total += w;
    std::vector<double> scaled(n);
    std::vector<size_t> small, large;
    for (size_t i = 0; i < n; ++i) {
      scaled[i] = weights[i] * static_cast<double>(n) / total;
      (scaled[i] < 1.0 ? small : large).push_back(i);
    }
    while (!small.empty() && !large.empty()) {
      size_t s = small.back(), l = large.back();
      small.pop_back();
      prob_[s] = scaled[s];
      alias_[s] = l;
      scaled[l] -= 1.0 - scaled[s];
      if (scaled[l] < 1.0) {
        large.pop_back();
        small.push_back(l);
      }
    }
    for (size_t i : large) prob_[i] = 1.0, alias_[i] = i;
    for (size_t i : small) prob_[i] = 1.0, alias_[i] = i;
  }

  size_t operator()(Rng& rng) const {
    size_t i = rng.below(prob_.size());
    return rng.uniform() < prob_[i] ? i : alias_[i];
  }

 private:
  std::vector<double> prob_;
  std::vector<size_t> alias_;
};

std::vector<double> zipf_weights(size_t n, double exponent) {
  std::vector<double> w(n);
  for (size_t r = 0; r < n; ++r) w[r] = 1.0 / std::pow(static_cast<double>(r + 1), exponent);
  return w;
}

// ---- Vocabularies -----------------------------------------------------------------------------

// Common English words, roughly by frequency: they take the top Zipf ranks.
constexpr std::string_view kEnglishWords =
    "the of and to a in is it you that he was for on are with as his they be at one have this "
    "from or had by not word but what some we can out other were all there when up use your how "
    "said an each she which do their time if will way about many then them write would like so "
    "these her long make thing see him two has look more day could go come did number sound no "
    "most people my over know water than call first who may down side been now find any new work "
    "part take get place made live where after back little only round man year came show every "
    "good me give our under name very through just form sentence great think say help low line "
    "differ turn cause much mean before move right boy old too same tell does set three want air "
    "well also play small end put home read hand port large spell add even land here must big "
    "high such follow act why ask men change went light kind off need house picture try us again "
    "animal point mother world near build self earth father head stand own page should country "
    "found answer school grow study still learn plant cover food sun four between state keep eye "
    "never last let thought city tree cross farm hard start might story saw far sea draw left "
    "late run while press close night real life few north open seem together next white children "
    "begin got walk example ease paper group always music those both mark often letter until "
    "mile river car feet care second book carry took science eat room friend began idea fish "
    "mountain stop once base hear horse cut sure watch color face wood main enough plain girl "
    "usual young ready above ever red list though feel talk bird soon body dog family direct "
    "pose leave song measure door product black short numeral class wind question happen "
    "complete ship area half rock order fire south problem piece told knew pass since top whole "
    "king space heard best hour better true during hundred five remember step early hold west "
    "ground interest reach fast verb sing listen six table travel less morning ten simple "
    "several vowel toward war lay against pattern slow center love person money serve appear "
    "road map rain rule govern pull cold notice voice unit power town fine certain fly fall lead "
    "cry dark machine note wait plan figure star box noun field rest correct able pound done "
    "beauty drive stood contain front teach week final gave green quick develop ocean warm free "
    "minute strong special mind behind clear tail produce fact street inch multiply nothing "
    "course stay wheel full force blue object decide surface deep moon island foot system busy "
    "test record boat common gold possible plane dry wonder laugh thousand ago ran check game "
    "shape equate hot miss brought heat snow tire bring yes distant fill east paint language "
    "among";

// Common Han characters, roughly by frequency (duplicates are dropped when the table is built).
constexpr std::string_view kHanCharacters =
    "的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生自会那后能对"
    "着事其里所去行过家十用发天如然作方成者多日都三小军二无同么经法当起与好看学进种将还分此心前面"
    "又定见只主没公从知己现些她很意把比样老本情给外回头想高长最全被入开问明力理点实正门相内并文它"
    "两工物间已何身水动走部加五话表民使立体先四条让特机重感位原向做因西东北南安活政路题反任代产关"
    "报通利信解系师美果变结口认品次员月等白真度手放少书王打别区每世但总直带六命受常新象该花空格非"
    "保往场听达取百近青太思色队万论运性接研合调山基社几光线完千金求济强观城神领式流至边广眼音争持"
    "许且集改清历提管张装即程满传九风单呢战司术般马支快应死今务科类设市谁制联复处须义备石土落记林"
    "院收治车件造养深根指转告需切华八共越斯建交海议决步导七母气片办统史影米易称远素红示列级京选准"
    "低失识究极按断算确怎参仅况尔引尽阶证技油号声容团李值热组府精构护响推较亲兵状写望约破资布群离"
    "黑房服验层酸夜请早香病江志觉举连采续罗农医态专读句士照孩依爱击刻角存纪微紧注型演冷例";

// Splits a UTF-8 string into its code points (as UTF-8 strings), dropping repeats.
std::vector<std::string> unique_code_points(std::string_view s) {
  std::vector<std::string> out;
  std::unordered_set<std::string> seen;
  for (size_t i = 0; i < s.size();) {
    size_t len = 1;
    unsigned char b = static_cast<unsigned char>(s[i]);
    if (b >= 0xF0) len = 4;
    else if (b >= 0xE0) len = 3;
    else if (b >= 0xC0) len = 2;
    std::string cp(s.substr(i, len));
    i += len;
    if (seen.insert(cp).second) out.push_back(cp);
  }
  return out;
}

// A pseudo-word of 1 to 4 syllables.
std::string pseudo_word(Rng& rng) {
  static constexpr std::string_view kOnsets[] = {"b",  "c",  "d",  "f",  "g",  "h",  "j",  "k",
                                                 "l",  "m",  "n",  "p",  "r",  "s",  "t",  "v",
                                                 "w",  "z",  "br", "cr", "dr", "fl", "gr", "pl",
                                                 "st", "tr", "ch", "sh", "th", ""};
  static constexpr std::string_view kVowels[] = {"a", "e", "i", "o", "u", "ai", "ea", "ou", "io"};
  static constexpr std::string_view kCodas[] = {"", "", "", "n", "r", "s", "l", "m", "t", "nd",
                                                "st", "ck"};
  double u = rng.uniform();
  int syllables = u < 0.3 ? 1 : u < 0.7 ? 2 : u < 0.95 ? 3 : 4;
  std::string w;
  for (int s = 0; s < syllables; ++s) {
    w += kOnsets[rng.below(std::size(kOnsets))];
    w += kVowels[rng.below(std::size(kVowels))];
    if (s + 1 == syllables || rng.chance(0.3)) w += kCodas[rng.below(std::size(kCodas))];
  }
  return w;
}

// Words drawn with a Zipf distribution: real English words first, then pseudo-words (every
// 13th capitalised, as a proper noun). Built from a fixed seed: the same for every corpus.
class Vocabulary {
 public:
  static constexpr size_t kSize = 8000;

  Vocabulary() {
    std::unordered_set<std::string> seen;
    for (size_t i = 0; i < kEnglishWords.size();) {
      size_t end = kEnglishWords.find(' ', i);
      if (end == std::string_view::npos) end = kEnglishWords.size();
      std::string w(kEnglishWords.substr(i, end - i));
      if (seen.insert(w).second) words_.push_back(w);
      i = end + 1;
    }
    Rng rng(0x7a1f5eed);
    while (words_.size() < kSize) {
      std::string w = pseudo_word(rng);
      if (w.size() < 2 || !seen.insert(w).second) continue;
      if (words_.size() % 13 == 0) w[0] = static_cast<char>(std::toupper(w[0]));
      words_.push_back(w);
    }
    zipf_.emplace(zipf_weights(words_.size(), 1.0));
  }

  const std::string& draw(Rng& rng) const { return words_[(*zipf_)(rng)]; }

 private:
  std::vector<std::string> words_;
  std::optional<Discrete> zipf_;
};

class HanTable {
 public:
  HanTable()
      : chars_(unique_code_points(kHanCharacters)), zipf_(zipf_weights(chars_.size(), 0.9)) {}
  const std::string& draw(Rng& rng) const { return chars_[zipf_(rng)]; }
  size_t size() const { return chars_.size(); }

 private:
  std::vector<std::string> chars_;
  Discrete zipf_;
};

// ---- Source sentences (--source) -------------------------------------------------------------

std::vector<std::string_view> split_words(std::string_view s) {
  std::vector<std::string_view> words;
  for (size_t i = 0; i < s.size();) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    size_t start = i;
    while (i < s.size() && !std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    if (i > start) words.push_back(s.substr(start, i - start));
  }
  return words;
}

// Sentences of a real corpus: lines cut after ". ", "? ", "! ", long ones in 40-word pieces.
class SourceText {
 public:
  static constexpr size_t kMaxBytes = size_t{64} << 20;  // text read at most

  bool load(const std::string& path) {
    std::ifstream in(path);
    if (!in) return false;
    size_t bytes = 0;
    for (std::string line; bytes < kMaxBytes && std::getline(in, line);) {
      if (line.empty()) continue;
      auto doc = nlohmann::json::parse(line, nullptr, false);
      if (doc.is_discarded() || !doc.is_object() || !doc.contains("text")) continue;
      if (!doc["text"].is_string()) continue;
      const std::string& text = doc["text"].get_ref<const std::string&>();
      bytes += text.size();
      add_text(text);
    }
    for (const std::string& s : sentences_)
      for (std::string_view w : split_words(s)) words_.push_back(w);
    return !sentences_.empty();
  }

  size_t sentence_count() const { return sentences_.size(); }
  const std::string& sentence(Rng& rng) const { return sentences_[rng.below(sentences_.size())]; }
  // A word of the text, by frequency.
  std::string_view word(Rng& rng) const { return words_[rng.below(words_.size())]; }

 private:
  void add_text(std::string_view text) {
    for (size_t i = 0; i < text.size();) {
      size_t end = text.find('\n', i);
      if (end == std::string_view::npos) end = text.size();
      add_line(text.substr(i, end - i));
      i = end + 1;
    }
  }

  void add_line(std::string_view line) {
    std::vector<std::string_view> words = split_words(line);
    std::string sentence;
    size_t count = 0;
    for (std::string_view w : words) {
      if (!sentence.empty()) sentence += ' ';
      sentence += w;
      char last = w.back();
      if (++count >= 40 || last == '.' || last == '?' || last == '!') {
        keep(sentence, count);
        sentence.clear();
        count = 0;
      }
    }
    keep(sentence, count);
  }

  void keep(const std::string& sentence, size_t words) {
    if (words >= 3) sentences_.push_back(sentence);
  }

  std::vector<std::string> sentences_;
  std::vector<std::string_view> words_;  // into sentences_, built once it is complete
};

// ---- Original documents -----------------------------------------------------------------------

// Draws replacement words for edits: from the source text when there is one.
struct WordSource {
  const Vocabulary& vocabulary;
  const SourceText* source;  // may be null
  std::string_view draw(Rng& rng) const {
    return source ? source->word(rng) : std::string_view(vocabulary.draw(rng));
  }
};

void append_number(std::string& out, Rng& rng) {
  switch (rng.below(4)) {
    case 0: out += std::to_string(rng.between(1, 99)); break;
    case 1: out += std::to_string(rng.between(1900, 2030)); break;
    case 2:
      out += std::to_string(rng.between(0, 999)) + "." + std::to_string(rng.between(0, 99));
      break;
    default: out += std::to_string(rng.between(1, 100)) + "%"; break;
  }
}

void append_capitalised(std::string& out, std::string_view word) {
  size_t at = out.size();
  out += word;
  if (!word.empty()) out[at] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[at])));
}

// One synthetic English sentence of about `words` words; returns the words written.
size_t synthetic_sentence(std::string& out, const Vocabulary& v, Rng& rng, size_t words) {
  for (size_t i = 0; i < words; ++i) {
    if (i > 0) out += ' ';
    if (i > 0 && rng.chance(0.025)) append_number(out, rng);
    else if (i == 0) append_capitalised(out, v.draw(rng));
    else out += v.draw(rng);
    if (i + 1 < words && rng.chance(0.07)) out += rng.chance(0.85) ? "," : ";";
  }
  double u = rng.uniform();
  out += u < 0.9 ? "." : u < 0.96 ? "?" : "!";
  return words;
}

std::string synthetic_english(const Vocabulary& v, Rng& rng, size_t target_words) {
  std::string out;
  size_t written = 0;
  while (written < target_words) {
    if (!out.empty()) out += "\n\n";
    size_t sentences = rng.between(2, 7);
    for (size_t s = 0; s < sentences && written < target_words; ++s) {
      if (s > 0) out += ' ';
      size_t len = std::min(rng.between(4, 28), std::max<size_t>(target_words - written, 3));
      written += synthetic_sentence(out, v, rng, len);
    }
  }
  return out;
}

// A source sentence, sometimes spliced with another (prefix of one, suffix of the other), with
// 5% of the words replaced so that originals built from a small source stay distinct.
size_t sampled_sentence(std::string& out, const SourceText& src, Rng& rng) {
  std::vector<std::string_view> words = split_words(src.sentence(rng));
  if (rng.chance(0.3)) {
    std::vector<std::string_view> other = split_words(src.sentence(rng));
    words.resize(rng.between(1, words.size() - 1));
    words.insert(words.end(), other.begin() + rng.below(other.size() - 1), other.end());
  }
  for (size_t i = 0; i < words.size(); ++i) {
    if (i > 0) out += ' ';
    out += rng.chance(0.05) ? src.word(rng) : words[i];
  }
  return words.size();
}

std::string sampled_english(const SourceText& src, Rng& rng, size_t target_words) {
  std::string out;
  size_t written = 0;
  while (written < target_words) {
    if (!out.empty()) out += "\n\n";
    size_t sentences = rng.between(1, 6);
    for (size_t s = 0; s < sentences && written < target_words; ++s) {
      if (s > 0) out += ' ';
      written += sampled_sentence(out, src, rng);
    }
  }
  return out;
}

std::string synthetic_chinese(const HanTable& han, Rng& rng, size_t target_chars) {
  std::string out;
  size_t written = 0;
  while (written < target_chars) {
    if (!out.empty()) out += "\n";
    size_t sentences = rng.between(2, 6);
    for (size_t s = 0; s < sentences && written < target_chars; ++s) {
      size_t len = rng.between(6, 36), clause = rng.between(4, 12);
      if (rng.chance(0.05)) out += std::to_string(rng.between(1950, 2030)) + "年";
      for (size_t i = 0; i < len; ++i, ++written) {
        out += han.draw(rng);
        if (i + 1 < len && --clause == 0) out += "，", clause = rng.between(4, 12);
      }
      double u = rng.uniform();
      out += u < 0.85 ? "。" : u < 0.93 ? "？" : "！";
    }
  }
  return out;
}

// ---- Edits ------------------------------------------------------------------------------------

constexpr double kEditRates[] = {0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 0.3};

// A whitespace-separated word: its core, then trailing punctuation and whitespace (`tail`).
struct Token {
  std::string_view core, tail;
};

std::vector<Token> tokenize(std::string_view text, std::string_view& lead) {
  std::vector<Token> tokens;
  size_t i = 0;
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  lead = text.substr(0, i);
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    size_t core_end = i;
    while (core_end > start + 1 && std::strchr(".,;:?!", text[core_end - 1])) --core_end;
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    tokens.push_back({text.substr(start, core_end - start), text.substr(core_end, i - core_end)});
  }
  return tokens;
}

void append_like(std::string& out, std::string_view word, std::string_view model) {
  if (!model.empty() && std::isupper(static_cast<unsigned char>(model[0])))
    append_capitalised(out, word);
  else
    out += word;
}

// Each word, with probability `rate`: substituted, deleted, followed by an inserted word, or
// swapped with the next word (punctuation stays in place).
std::string edit_words(std::string_view text, double rate, const WordSource& words, Rng& rng) {
  std::string_view lead;
  std::vector<Token> tokens = tokenize(text, lead);
  std::string out(lead);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const Token& t = tokens[i];
    if (!rng.chance(rate)) {
      out += t.core, out += t.tail;
      continue;
    }
    switch (rng.below(4)) {
      case 0: append_like(out, words.draw(rng), t.core), out += t.tail; break;
      case 1:  // deleted; a paragraph break survives
        if (t.tail.find('\n') != std::string_view::npos) out += t.tail.substr(t.tail.find('\n'));
        break;
      case 2: out += t.core, out += ' ', out += words.draw(rng), out += t.tail; break;
      default:
        if (i + 1 < tokens.size()) {
          out += tokens[i + 1].core, out += t.tail, out += t.core, out += tokens[i + 1].tail;
          ++i;
        } else {
          out += t.core, out += t.tail;
        }
    }
  }
  return out;
}

size_t utf8_length(unsigned char b) { return b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1; }

bool is_han_char(std::string_view cp) {  // CJK Unified Ideographs U+4E00..U+9FFF
  if (cp.size() != 3) return false;
  unsigned char b0 = static_cast<unsigned char>(cp[0]);
  return b0 >= 0xE4 && b0 <= 0xE9;
}

// Character-level edits of Chinese text: each Han character, with probability `rate`,
// substituted, deleted, followed by an inserted character, or swapped with a following Han one.
std::string edit_chars(std::string_view text, double rate, const HanTable& han, Rng& rng) {
  std::vector<std::string_view> cps;
  for (size_t i = 0; i < text.size();) {
    size_t len = std::min(utf8_length(static_cast<unsigned char>(text[i])), text.size() - i);
    cps.push_back(text.substr(i, len));
    i += len;
  }
  std::string out;
  for (size_t i = 0; i < cps.size(); ++i) {
    if (!is_han_char(cps[i]) || !rng.chance(rate)) {
      out += cps[i];
      continue;
    }
    switch (rng.below(4)) {
      case 0: out += han.draw(rng); break;
      case 1: break;
      case 2: out += cps[i], out += han.draw(rng); break;
      default:
        if (i + 1 < cps.size() && is_han_char(cps[i + 1])) out += cps[i + 1], out += cps[i], ++i;
        else out += cps[i];
    }
  }
  return out;
}

// Changes that NFKC, case folding and collapsing whitespace runs undo, and that the shingles
// ignore too: letter case, whitespace inside the text (never added at either end), and
// ASCII punctuation <-> its fullwidth form. `what` picks the kinds of change: bit 0 case, bit
// 1 whitespace, bit 2 punctuation.
std::string normalized_variant(std::string_view text, bool cjk, int what, Rng& rng) {
  const uint64_t case_mode = rng.below(3);  // all lower, all upper, 10% of words upper
  bool upper_word = false;
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  for (size_t i = 0; i < text.size();) {
    const bool word_start = i == 0 || !std::isalpha(static_cast<unsigned char>(text[i - 1]));
    size_t len = std::min(utf8_length(static_cast<unsigned char>(text[i])), text.size() - i);
    std::string_view cp = text.substr(i, len);
    i += len;
    unsigned char c = static_cast<unsigned char>(cp[0]);
    if ((what & 1) && len == 1 && std::isalpha(c)) {
      if (word_start) upper_word = case_mode == 1 || (case_mode == 2 && rng.chance(0.1));
      out += static_cast<char>(upper_word ? std::toupper(c) : case_mode == 0 ? std::tolower(c) : c);
    } else if ((what & 2) && cp == " " && rng.chance(0.1)) {
      static constexpr std::string_view kSpaces[] = {"  ", "\t", " \t ", "\xC2\xA0", "   "};
      out += kSpaces[rng.below(std::size(kSpaces))];
    } else if ((what & 2) && cp == "\n" && rng.chance(0.5)) {
      out += rng.chance(0.5) ? "\n\n" : " \n";
    } else if (size_t k = std::string_view(",?!:").find(cp);
               (what & 4) && k != std::string_view::npos && rng.chance(0.5)) {
      static constexpr std::string_view kFull[] = {"\uFF0C", "\uFF1F", "\uFF01", "\uFF1A"};
      out += kFull[k];
    } else if ((what & 4) && cjk && rng.chance(0.5) && (cp == "\uFF0C" || cp == "\uFF1F")) {
      out += cp == "\uFF0C" ? "," : "?";
    } else {
      out += cp;
    }
  }
  return out;
}

// ---- Corpus -----------------------------------------------------------------------------------

struct Options {
  std::optional<uint64_t> docs;
  std::optional<double> mb;
  uint64_t seed = 1;
  double exact_fraction = 0.1, near_fraction = 0.2, cjk_fraction = 0.05;
  std::string source, output;
};

struct Doc {
  uint64_t number = 0;
  std::string text;
  uint64_t family = 0;
  std::string kind;
  double edit_rate = 0;
  std::optional<uint64_t> parent;
  int depth = 0;
  bool cjk = false;
};

// A uniform sample of at most `capacity` of the documents offered so far (reservoir sampling).
class Reservoir {
 public:
  explicit Reservoir(size_t capacity) : capacity_(capacity) {}

  void offer(const Doc& doc, Rng& rng) {
    ++seen_;
    if (items_.size() < capacity_) items_.push_back(doc);
    else if (uint64_t j = rng.below(seen_); j < capacity_) items_[j] = doc;
  }
  bool empty() const { return items_.empty(); }
  const Doc& pick(Rng& rng) const { return items_[rng.below(items_.size())]; }

 private:
  size_t capacity_;
  uint64_t seen_ = 0;
  std::vector<Doc> items_;
};

class Generator {
 public:
  Generator(const Options& opt, const SourceText* source)
      : opt_(opt), source_(source), words_{vocabulary_, source} {}

  // Document `number`. The previous document is not yet in the pools, so no copy comes right
  // after its parent.
  Doc next(uint64_t number, Rng& rng) {
    Doc doc;
    double u = rng.uniform();
    if (u < opt_.exact_fraction && !originals_.empty()) {
      doc = copy_of(originals_.pick(rng), "exact");
    } else if (u < opt_.exact_fraction + opt_.near_fraction && !originals_.empty()) {
      doc = near_copy(rng);
    } else {
      doc = original(number, rng);
    }
    doc.number = number;
    if (pending_) offer(*pending_, rng);
    pending_ = doc;
    return doc;
  }

 private:
  static constexpr size_t kPoolSize = 8192;

  Doc original(uint64_t number, Rng& rng) {
    Doc doc;
    doc.family = number;
    doc.kind = "original";
    double words = std::clamp(rng.lognormal(400, 0.8), 50.0, 3000.0);
    doc.cjk = rng.chance(opt_.cjk_fraction);
    if (doc.cjk) doc.text = synthetic_chinese(han_, rng, static_cast<size_t>(words * 1.5));
    else if (source_) doc.text = sampled_english(*source_, rng, static_cast<size_t>(words));
    else doc.text = synthetic_english(vocabulary_, rng, static_cast<size_t>(words));
    return doc;
  }

  static Doc copy_of(const Doc& parent, const char* kind) {
    Doc doc = parent;
    doc.kind = kind;
    doc.edit_rate = 0;
    doc.parent = parent.number;
    doc.depth = parent.depth + 1;
    return doc;
  }

  Doc near_copy(Rng& rng) {
    double u = rng.uniform();
    if (u < 0.15) {
      Doc doc = copy_of(originals_.pick(rng), "exact_normalized");
      const int what = static_cast<int>(rng.between(1, 7));
      std::string text = normalized_variant(doc.text, doc.cjk, what, rng);
      if (text == doc.text) text = normalized_variant(doc.text, doc.cjk, 7, rng);
      if (text == doc.text) doc.kind = "exact";  // nothing to change
      doc.text = std::move(text);
      return doc;
    }
    const bool chain = u < 0.4 && !nears_.empty();
    Doc doc = copy_of(chain ? nears_.pick(rng) : originals_.pick(rng), "near");
    doc.edit_rate = kEditRates[rng.below(std::size(kEditRates))];
    doc.text = doc.cjk ? edit_chars(doc.text, doc.edit_rate, han_, rng)
                       : edit_words(doc.text, doc.edit_rate, words_, rng);
    return doc;
  }

  void offer(const Doc& doc, Rng& rng) {
    if (doc.kind == "original") originals_.offer(doc, rng);
    else if (doc.kind == "near") nears_.offer(doc, rng);
  }

  const Options& opt_;
  const SourceText* source_;
  Vocabulary vocabulary_;
  HanTable han_;
  WordSource words_;
  Reservoir originals_{kPoolSize}, nears_{kPoolSize};
  std::optional<Doc> pending_;
};

// ---- Output -----------------------------------------------------------------------------------

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20) out += "\\u00", out += kHex[c >> 4], out += kHex[c & 15];
        else out += ch;
    }
  }
  out += '"';
}

void append_doc(std::string& out, const Doc& doc) {
  char rate[32];
  std::snprintf(rate, sizeof rate, "%g", doc.edit_rate);
  out += "{\"id\":\"d" + std::to_string(doc.number) + "\",\"text\":";
  append_json_string(out, doc.text);
  out += ",\"family\":" + std::to_string(doc.family) + ",\"kind\":\"" + doc.kind +
         "\",\"edit_rate\":" + rate + ",\"parent\":";
  out += doc.parent ? "\"d" + std::to_string(*doc.parent) + "\"" : std::string("null");
  out += ",\"depth\":" + std::to_string(doc.depth) + ",\"lang\":\"" + (doc.cjk ? "zh" : "en") +
         "\"}\n";
}

// ---- Command line -----------------------------------------------------------------------------

constexpr const char* kUsage =
    "usage: dedup_corpus [--docs N] [--mb MB] [--seed S] [--exact-fraction F]\n"
    "                    [--near-fraction F] [--cjk-fraction F] [--source FILE] -o CORPUS.jsonl\n";

bool parse_uint(std::string_view s, uint64_t& v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

bool parse_double(std::string_view s, double& v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() && std::isfinite(v);
}

bool parse_fraction(std::string_view s, double& v) {
  return parse_double(s, v) && v >= 0 && v <= 1;
}

// Fills `opt`; returns an error message, empty on success.
std::string parse_options(int argc, char** argv, Options& opt) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (i + 1 >= argc) return "missing value after " + std::string(arg);
    std::string_view val = argv[++i];
    uint64_t n;
    double d;
    if (arg == "--docs" && parse_uint(val, n) && n > 0) opt.docs = n;
    else if (arg == "--mb" && parse_double(val, d) && d > 0) opt.mb = d;
    else if (arg == "--seed" && parse_uint(val, n)) opt.seed = n;
    else if (arg == "--exact-fraction" && parse_fraction(val, opt.exact_fraction)) continue;
    else if (arg == "--near-fraction" && parse_fraction(val, opt.near_fraction)) continue;
    else if (arg == "--cjk-fraction" && parse_fraction(val, opt.cjk_fraction)) continue;
    else if (arg == "--source" && !val.empty()) opt.source = val;
    else if (arg == "-o" && !val.empty()) opt.output = val;
    else return "bad option or value: " + std::string(arg) + " " + std::string(val);
  }
  if (opt.output.empty()) return "-o CORPUS.jsonl is required";
  if (opt.exact_fraction + opt.near_fraction > 1) return "exact and near fractions exceed 1";
  if (!opt.docs && !opt.mb) opt.docs = 1000;
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (std::string err = parse_options(argc, argv, opt); !err.empty()) {
    std::fprintf(stderr, "dedup_corpus: %s\n%s", err.c_str(), kUsage);
    return 2;
  }
  SourceText source;
  if (!opt.source.empty() && !source.load(opt.source)) {
    std::fprintf(stderr, "dedup_corpus: %s: unreadable or no sentences\n", opt.source.c_str());
    return 1;
  }
  FILE* out = opt.output == "-" ? stdout : std::fopen(opt.output.c_str(), "wb");
  if (!out) {
    std::fprintf(stderr, "dedup_corpus: cannot write %s\n", opt.output.c_str());
    return 1;
  }
  Rng rng(opt.seed);
  Generator gen(opt, opt.source.empty() ? nullptr : &source);
  const double max_bytes = opt.mb ? *opt.mb * 1e6 : INFINITY;
  std::string buffer;
  uint64_t bytes = 0, n = 0;
  for (; (!opt.docs || n < *opt.docs) && static_cast<double>(bytes) < max_bytes; ++n) {
    size_t before = buffer.size();
    append_doc(buffer, gen.next(n, rng));
    bytes += buffer.size() - before;
    if (buffer.size() >= (size_t{4} << 20)) {
      std::fwrite(buffer.data(), 1, buffer.size(), out);
      buffer.clear();
    }
  }
  std::fwrite(buffer.data(), 1, buffer.size(), out);
  if (std::fflush(out) != 0 || (out != stdout && std::fclose(out) != 0)) {
    std::fprintf(stderr, "dedup_corpus: error writing %s\n", opt.output.c_str());
    return 1;
  }
  std::fprintf(stderr, "dedup_corpus: %llu documents, %.1f MB\n",
               static_cast<unsigned long long>(n), static_cast<double>(bytes) / 1e6);
  return 0;
}
