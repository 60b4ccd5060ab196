// Quality rules of llm-clean (lib/text/quality*.cpp, lib/text/words.cpp): each rule just inside
// and just outside its published threshold, the word splitter, CJK handling, parameters.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "llmkit/params.hpp"
#include "llmkit/quality.hpp"

using namespace llmkit::text;

namespace {

// A word no other call with another i returns (for i < 16^len): base-16 digits of i written
// with the letters k..z, which never spell a stop word or the a..j test phrases.
std::string uword(size_t i, size_t len = 5) {
  std::string w;
  for (size_t k = 0; k < len; ++k, i /= 16) w += static_cast<char>('k' + i % 16);
  return w;
}

struct WordGen {
  size_t next = 0;
  std::string operator()(size_t len = 5) { return uword(next++, len); }
  std::string words(size_t n) {  // n unique words separated by spaces
    std::string t;
    for (size_t i = 0; i < n; ++i) t += (i ? " " : "") + (*this)();
    return t;
  }
  std::string text_of_len(size_t len) {  // unique words filling exactly len characters
    std::string t;
    for (;;) {
      size_t left = len - t.size() - (t.empty() ? 0 : 1);
      if (!t.empty()) t += ' ';
      if (left <= 10) {
        t += (*this)(left);
        return t;
      }
      t += (*this)(5);
    }
  }
};

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string t;
  for (size_t i = 0; i < parts.size(); ++i) t += (i ? sep : "") + parts[i];
  return t;
}

QualityConfig only(bool repetition, bool quality, bool c4, bool fineweb) {
  QualityConfig cfg;
  cfg.gopher_repetition = repetition;
  cfg.gopher_quality = quality;
  cfg.c4 = c4;
  cfg.fineweb = fineweb;
  return cfg;
}

std::string check(std::string text, const QualityConfig& cfg, std::string_view lang = "en") {
  return check_quality(text, lang, cfg);
}

void set(QualityConfig& cfg, const std::string& assignment) {
  llmkit::set_param(quality_params(cfg), assignment);
}

// Gopher repetition alone, with every n-gram rule but `keep` ("top_2_grams", "dup_5_grams"...)
// set to 1, a share no document exceeds.
QualityConfig only_ngram_rule(const std::string& keep) {
  QualityConfig cfg = only(true, false, false, false);
  for (const auto& p : quality_params(cfg)) {
    bool ngram = p.name.size() > 6 && p.name.compare(p.name.size() - 6, 6, "_grams") == 0;
    if (ngram && p.name != "gopher_repetition." + keep) *p.value = 1;
  }
  return cfg;
}

const char* kEnglish =
    "The history of the city goes back more than two thousand years, to a small settlement on the banks of the river.\n"
    "Over the centuries it grew into an important center of trade, and merchants from many countries came to sell "
    "their goods in its markets.\n"
    "During the nineteenth century the arrival of the railway changed the life of the city completely, bringing new "
    "industries and thousands of workers.\n"
    "Today the old town is a popular destination for visitors, who come to see the cathedral, the castle and the "
    "narrow streets of the medieval quarter.\n"
    "The local university, founded in 1820, has a long tradition of research in medicine and engineering, and it "
    "attracts students from all over the world.\n"
    "In the summer, the city hosts a music festival that lasts for two weeks and fills the squares with concerts, "
    "dancers and street performers.";

const char* kChinese =
    "北京大学是中国近代第一所国立综合性大学，创办于1898年，初名京师大学堂。它是中国近代最早以“大学”身份和名称建立的学校，其成立标志着中国近代高等教育的开端。\n"
    "学校的校园位于北京西北郊的海淀区，占地面积很大，环境优美。未名湖和博雅塔是校园里最有名的景点，每年都有许多游客前来参观。\n"
    "在一百多年的发展过程中，北京大学培养了大量优秀的人才。许多著名的学者、作家和科学家都曾经在这里学习或者工作，他们为国家的发展做出了重要的贡献。\n"
    "今天，学校设有人文、社会科学、理学、信息与工程、医学等多个学部，开设了上百个本科专业。学生们可以根据自己的兴趣选择课程，也可以参加各种社团活动。\n"
    "学校非常重视国际交流与合作，和世界上许多著名大学建立了长期的合作关系。每年都有大量的留学生来到这里学习汉语和中国文化，同时也有很多中国学生到国外去进修。";

// Plain English prose from the Python 3.11 tutorial (python3.11-doc, tutorial/whatnow.html, as
// llm-clean extracts it): 109 whitespace words, every one with a letter. Counting the
// tokenizer's punctuation tokens as words put it under Gopher's 80% alphabetic threshold.
const char* kPythonManual =
    "You should browse through this manual, which gives complete (though terse) reference material about types, "
    "functions, and the modules in the standard library. The standard Python distribution includes a lot of "
    "additional code. There are modules to read Unix mailboxes, retrieve documents via HTTP, generate random "
    "numbers, parse command-line options, compress data, and many other tasks. Skimming through the Library "
    "Reference will give you an idea of what’s available.\n\n"
    "Installing Python Modules explains how to install additional modules written by other Python users.\n\n"
    "The Python Language Reference: A detailed explanation of Python’s syntax and semantics. It’s heavy "
    "reading, but is useful as a complete guide to the language itself.";

// Chinese prose as the Debian reference manual ships it in text form (debian-reference-zh-cn,
// debian-reference.zh-cn.txt.gz, section 1.1.10 and the note of 1.2.5), hard-wrapped at 72
// columns: lines end mid-sentence, and paragraphs end where a line ends in 。
const char* kChineseWrapped =
    "尽管连无需任何桌面环境的 Debian 系统最小安装都提供了基本的 Unix\n"
    "功能，但对新手而言，使用 apt-get(8) 安装一些基于字符终端的命令行\n"
    "和 curses 软件包（例如 mc 和 vim）依旧是一个不错的主意。\n\n"
    "如果你已经安装了这些软件包，那么不会有新的软件包被安装。\n\n"
    "为了使组权限应用到一个特定用户，这个用户需要通过使用 “sudo vigr”\n"
    "编辑 /etc/group 以及使用 “sudo vigr -s” 编辑 /etc/gshadow 成为该\n"
    "组的成员。你需要注销之后重新登录（或运行 “exec newgrp”）以启用新\n"
    "的组配置。\n\n"
    "在 Debian 系统中，硬件设备是另一种文件。如果你从一个用户账户访问\n"
    "某些设备出现问题，例如CD-ROM和USB记忆棒，你需要使这个用户成为相关\n"
    "组的成员。\n\n"
    "一些著名的由系统提供的组允许其成员不需要 root 权限访问某些特定的\n"
    "文件和设备。";

}  // namespace

// ---- words -------------------------------------------------------------------------------------

TEST_CASE("split_words splits punctuation and clitics off English words", "[quality]") {
  std::vector<std::string_view> expected = {"Hello", ",", "world", "!", "I", "do", "n't", "know", "...", "(",
                                            "U.S.", ")", "1,000", "a", ",", "b", "well-known", "end", "."};
  CHECK(split_words("Hello, world! I don't know... (U.S.) 1,000 a,b well-known end.", "en") == expected);
  CHECK(split_words("  \n\t ", "en").empty());
}

TEST_CASE("split_words uses ICU segmentation for Chinese", "[quality]") {
  auto words = split_words("我们今天去北京大学", "zh");
  REQUIRE(words.size() >= 3);
  REQUIRE(words.size() <= 6);
  CHECK(words.front() == "我们");
  CHECK(words[1] == "今天");
  size_t multi = 0;
  for (auto w : words) multi += count_code_points(w) >= 2;
  CHECK(multi >= 3);
  // Unknown language: CJK characters dominate, so the same segmentation applies.
  CHECK(split_words("我们今天去北京大学", "") == words);
  // Punctuation marks are words of their own; spaces are not words.
  auto punct = split_words("你好，世界。 再见", "zh");
  CHECK(std::find(punct.begin(), punct.end(), "，") != punct.end());
  CHECK(std::find(punct.begin(), punct.end(), "。") != punct.end());
  CHECK(std::find(punct.begin(), punct.end(), " ") == punct.end());
}

TEST_CASE("split_gopher_words: whitespace words, or ICU's words without punctuation for CJK", "[quality]") {
  std::vector<std::string_view> expected = {"Hello,", "world!", "I", "don't", "know...", "(U.S.)", "1,000", "a,b", "—", "end."};
  CHECK(split_gopher_words("Hello, world! I don't\tknow...\n(U.S.) 1,000 a,b — end.", "en") == expected);
  CHECK(split_gopher_words("  \n\t ", "en").empty());
  // Chinese: ICU's segments, but punctuation and symbols are not words.
  auto zh = split_gopher_words("你好，世界。（再见）“朋友” 1898年 ─│", "zh");
  std::vector<std::string_view> zh_expected = {"你好", "世界", "再见", "朋友", "1898", "年"};
  CHECK(zh == zh_expected);
  CHECK(split_gopher_words("你好，世界。（再见）“朋友” 1898年 ─│", "") == zh_expected);  // detected
  auto all = split_words("你好，世界。", "zh");  // the tokenizer keeps them
  CHECK(std::find(all.begin(), all.end(), "，") != all.end());
}

TEST_CASE("effective_language detects CJK text when the language is unknown", "[quality]") {
  CHECK(effective_language(kChinese, "") == "zh");
  CHECK(effective_language("東京大学は日本の国立大学である。", "") == "ja");
  CHECK(effective_language("서울대학교는 대한민국의 국립 대학교이다.", "") == "ko");
  CHECK(effective_language(kEnglish, "") == "");
  CHECK(effective_language(kChinese, "de") == "de");
}

// ---- Gopher quality ----------------------------------------------------------------------------

namespace {
// n whitespace words, two of them stop words, the last ending in '.'.
std::string gopher_doc(size_t n) {
  WordGen g;
  return "the and " + g.words(n - 2) + ".";
}
}  // namespace

TEST_CASE("gopher_quality: document length in words", "[quality]") {
  QualityConfig cfg = only(false, true, false, false);
  CHECK(check(gopher_doc(50), cfg) == "");
  CHECK(check(gopher_doc(49), cfg) == "gopher_quality:short_doc");
  CHECK(check(gopher_doc(100000), cfg) == "");
  CHECK(check(gopher_doc(100001), cfg) == "gopher_quality:long_doc");
  set(cfg, "gopher_quality.max_doc_words=60");
  CHECK(check(gopher_doc(60), cfg) == "");
  CHECK(check(gopher_doc(61), cfg) == "gopher_quality:long_doc");
}

TEST_CASE("gopher_quality: mean word length between 3 and 10", "[quality]") {
  QualityConfig cfg = only(false, true, false, false);
  set(cfg, "gopher_quality.min_stop_words=0");
  std::vector<std::string> words(50, "abc");
  CHECK(check(join(words, " "), cfg) == "");
  words[0] = "ab";
  CHECK(check(join(words, " "), cfg) == "gopher_quality:mean_word_length");
  words.assign(50, "abcdefghij");
  CHECK(check(join(words, " "), cfg) == "");
  words[0] = "abcdefghijk";
  CHECK(check(join(words, " "), cfg) == "gopher_quality:mean_word_length");
}

TEST_CASE("gopher_quality: '#' and ellipses per word at most 0.1", "[quality]") {
  QualityConfig cfg = only(false, true, false, false);
  std::string body = gopher_doc(90);  // 90 words
  auto with = [&](const std::string& sym, int n) {
    std::string t;
    for (int i = 0; i < n; ++i) t += sym + " ";
    return t + body;
  };
  CHECK(check(with("#", 10), cfg) == "");  // 10 / 100
  CHECK(check(with("#", 11), cfg) == "gopher_quality:too_many_hashes");
  CHECK(check(with("...", 10), cfg) == "");
  CHECK(check(with("...", 11), cfg) == "gopher_quality:too_many_ellipsis");
  CHECK(check(with("…", 11), cfg) == "gopher_quality:too_many_ellipsis");
}

TEST_CASE("gopher_quality: at most 90% bullet lines, 30% ellipsis-ended lines", "[quality]") {
  QualityConfig cfg = only(false, true, false, false);
  auto lines = [](int bullets, const std::string& bullet, int ellipses) {
    WordGen g;
    std::vector<std::string> out;
    for (int i = 0; i < 10; ++i)
      out.push_back((i < bullets ? bullet + " " : "") + (i == 0 ? "the and " : "") + g.words(6) +
                    (i < ellipses ? "..." : ""));
    return join(out, "\n");
  };
  CHECK(check(lines(9, "•", 0), cfg) == "");
  CHECK(check(lines(10, "•", 0), cfg) == "gopher_quality:too_many_bullets");
  CHECK(check(lines(10, "-", 0), cfg) == "gopher_quality:too_many_bullets");
  CHECK(check(lines(0, "", 3), cfg) == "");
  CHECK(check(lines(0, "", 4), cfg) == "gopher_quality:too_many_end_ellipsis");
}

TEST_CASE("gopher_quality: at least 80% of words have a letter", "[quality]") {
  QualityConfig cfg = only(false, true, false, false);
  auto doc = [](size_t alpha, size_t numbers) {
    std::string t = gopher_doc(alpha);
    t.pop_back();  // no final "." so that alpha + numbers is every word
    for (size_t i = 0; i < numbers; ++i) t += " 12345";
    return t;
  };
  CHECK(check(doc(80, 20), cfg) == "");
  CHECK(check(doc(79, 21), cfg) == "gopher_quality:below_alpha_threshold");
}

TEST_CASE("gopher_quality: at least 2 distinct stop words, matched case-sensitively", "[quality]") {
  QualityConfig cfg = only(false, true, false, false);
  WordGen g;
  std::string rest = g.words(60) + ".";
  CHECK(check("the and " + rest, cfg) == "");
  CHECK(check("the " + rest, cfg) == "gopher_quality:too_few_stop_words");
  CHECK(check("The and " + rest, cfg) == "gopher_quality:too_few_stop_words");
  // "at least two of the following words": the same word twice is one.
  CHECK(check("the the the " + rest, cfg) == "gopher_quality:too_few_stop_words");
  // A whitespace word is matched without the punctuation around it.
  CHECK(check("(the) and, " + rest, cfg) == "");
  CHECK(check("“the” to. " + rest, cfg) == "");
  CHECK(check("the andx " + rest, cfg) == "gopher_quality:too_few_stop_words");
  // The English list does not apply to another known language.
  CHECK(check("the " + rest, cfg, "de") == "");
}

TEST_CASE("gopher_quality counts whitespace words: punctuation is part of a word, not one", "[quality]") {
  QualityConfig cfg = only(false, true, false, false);
  CHECK(check(kPythonManual, cfg, "en") == "");
  CHECK(check(kPythonManual, QualityConfig(), "en") == "");  // and the whole pipeline keeps it
  // 50 words, every one with a letter and punctuation around it: alphabetic, and 50 words.
  std::string t = "the and";
  WordGen g;
  for (int i = 0; i < 48; ++i) t += " (" + g(4) + "),";
  CHECK(check(t, cfg) == "");
  // Words of symbols alone are words without a letter: 40 of 90 is under 80%.
  std::string symbols = t;
  for (int i = 0; i < 40; ++i) symbols += " |";
  CHECK(check(symbols, cfg) == "gopher_quality:below_alpha_threshold");
  // The mean word length counts the punctuation that is part of a word: "ab," is 3 long.
  std::string comma = "the and", bare = "the and";
  for (int i = 0; i < 48; ++i) {
    comma += " ab,";
    bare += " ab";
  }
  CHECK(check(comma, cfg) == "");                                 // (3 + 3 + 48 * 3) / 50 = 3
  CHECK(check(bare, cfg) == "gopher_quality:mean_word_length");  // (3 + 3 + 48 * 2) / 50 = 2.04
}

TEST_CASE("gopher_quality on Chinese uses ICU words and FineWeb-2's Chinese thresholds", "[quality]") {
  QualityConfig cfg = only(false, true, false, false);
  CHECK(check(kChinese, cfg, "zh") == "");
  CHECK(check(kChinese, cfg, "") == "");
  CHECK(check(kChinese, cfg, "zh-Hant") == "");
  // Punctuation is not a word: a Chinese document whose ICU segments are one third
  // punctuation still has every word alphabetic.
  std::string heavy;
  for (int i = 0; i < 30; ++i) heavy += "“的”、“是”，“在”。";
  CHECK(check(heavy, cfg, "zh") == "");
  QualityConfig strict = cfg;
  set(strict, "zh.gopher_quality.min_avg_word_length=2");  // ICU words here average ~1.7
  CHECK(check(kChinese, strict, "zh") == "gopher_quality:mean_word_length");
  set(strict, "gopher_quality.min_avg_word_length=1");  // the default thresholds are not Chinese's
  CHECK(check(kChinese, strict, "zh") == "gopher_quality:mean_word_length");
  QualityConfig many_stops = cfg;
  set(many_stops, "zh.gopher_quality.min_stop_words=1000");
  CHECK(check(kChinese, many_stops, "zh") == "gopher_quality:too_few_stop_words");
  // Korean has no stop-word rule (its particles are inside ICU's words).
  std::string korean;
  for (int i = 0; i < 10; ++i) korean += "서울대학교는 대한민국 서울특별시 관악구에 있는 국립 대학교이다. ";
  set(many_stops, "ko.gopher_quality.min_stop_words=1000");
  CHECK(check(korean, many_stops, "ko") == "");
}

TEST_CASE("per-language thresholds: FineWeb-2's table for zh, ja, ko", "[quality]") {
  QualityConfig cfg;
  const QualityThresholds* zh = cfg.thresholds_for("zh");
  REQUIRE(zh != nullptr);
  CHECK(cfg.thresholds_for("zh-Hant") == zh);
  CHECK(cfg.thresholds_for("zh_TW") == zh);
  CHECK(cfg.thresholds_for("en") == nullptr);
  CHECK(cfg.thresholds_for("") == nullptr);
  // configs/cmn_Hani.yml
  CHECK(zh->dup_line_frac == 0.287);
  CHECK(zh->top_n_grams[0] == 0.256);
  CHECK(zh->dup_n_grams[5] == 0.127);
  CHECK(zh->line_punct_thr == 0.106);
  CHECK(zh->new_line_ratio == 0.178);
  CHECK(zh->max_avg_word_length == 5);
  CHECK(zh->max_non_alpha_words_ratio == 0.735);
  CHECK(zh->stop_words.front() == "的");
  // fineweb-2-pipeline.py, for every language but English
  CHECK(zh->dup_para_frac == 0);
  CHECK(zh->dup_line_char_frac == 0);
  CHECK(zh->char_duplicates_ratio == 0.1);
  CHECK(cfg.thresholds_for("ja")->stop_words.front() == "の");
  CHECK(cfg.thresholds_for("ko")->stop_words.empty());
  // -P NAME sets the default thresholds, -P LANG.NAME one language's.
  set(cfg, "fineweb.line_punct_thr=0.5");
  CHECK(cfg.thresholds_for("zh")->line_punct_thr == 0.106);
  set(cfg, "zh.fineweb.line_punct_thr=0.2");
  CHECK(cfg.thresholds_for("zh")->line_punct_thr == 0.2);
  CHECK(cfg.thresholds_for("ja")->line_punct_thr == 0.096);
  CHECK(cfg.line_punct_thr == 0.5);
}

TEST_CASE("hard-wrapped Chinese prose is kept", "[quality]") {
  QualityConfig cfg;
  std::string t = kChineseWrapped;
  CHECK(check_quality(t, "zh", cfg) == "");
  CHECK(t == kChineseWrapped);  // no C4 stage for Chinese: no line is removed
  t = kChineseWrapped;
  CHECK(check_quality(t, "", cfg) == "");
  // English's thresholds would drop it: its words average under 3 characters.
  QualityConfig english = cfg;
  english.languages.clear();
  CHECK(check(kChineseWrapped, english, "zh") == "gopher_quality:mean_word_length");
}

// ---- hard-wrapped text ----------------------------------------------------------------------

namespace {
// debian-reference-en's text dump (debian-reference.en.txt.gz, section 1.2.2), as shipped:
// filled to 72 columns (indentation and no-break spaces of the dump removed).
const char* kEnglishWrapped =
    "Following the Unix tradition, the Debian GNU/Linux system\n"
    "provides the filesystem under which physical data on hard disks\n"
    "and other storage devices reside, and the interaction with the\n"
    "hardware devices such as console screens and remote serial\n"
    "consoles are represented in an unified manner under \"/dev/\".\n\n"
    "Each file, directory, named pipe (a way two programs can share\n"
    "data), or physical device on a Debian GNU/Linux system has a data\n"
    "structure called an inode which describes its associated\n"
    "attributes such as the user who owns it (owner), the group that\n"
    "it belongs to, the time last accessed, etc. The idea of\n"
    "representing just about everything in the filesystem was a Unix\n"
    "innovation, and modern Linux kernels have developed this idea\n"
    "ever further. Now, even information about processes running in\n"
    "the computer can be found in the filesystem.\n\n"
    "This abstract and unified representation of physical entities and\n"
    "internal processes is very powerful since this allows us to use\n"
    "the same command for the same kind of operation on many totally\n"
    "different devices. It is even possible to change the way the\n"
    "kernel works by writing data to special files that are linked to\n"
    "running processes.";

// Greedy filling of each paragraph to `width` columns (text without wide characters), as
// fmt(1) does.
std::string fill(const std::string& text, size_t width) {
  auto columns = [](const std::string& s) { return count_code_points(s); };
  std::string out, line;
  size_t at = 0;
  while (at <= text.size()) {
    size_t end = text.find("\n\n", at);
    std::string par = text.substr(at, end == std::string::npos ? std::string::npos : end - at);
    line.clear();
    for (size_t i = 0; i < par.size();) {
      size_t j = par.find(' ', i);
      std::string word = par.substr(i, j == std::string::npos ? std::string::npos : j - i);
      i = j == std::string::npos ? par.size() : j + 1;
      if (!line.empty() && columns(line) + 1 + columns(word) > width) {
        out += line + "\n";
        line.clear();
      }
      line += (line.empty() ? "" : " ") + word;
    }
    out += line;
    if (end == std::string::npos) break;
    out += "\n\n";
    at = end + 2;
  }
  return out;
}
}  // namespace

TEST_CASE("hard-wrapped text: the line rules see a filled paragraph as one line", "[quality]") {
  // FineWeb: 3 of the 20 physical lines end a sentence; each of the 3 paragraphs does.
  QualityConfig cfg = only(false, false, false, true);
  set(cfg, "fineweb.line_punct_thr=0.5");
  CHECK(check(kEnglishWrapped, cfg) == "");
  // The same lines, not filled (a list's lines end where their items end): lines again.
  std::string ragged = kEnglishWrapped;
  ragged.replace(ragged.find("the group that\nit belongs"), 26, "the group\nthat it belongs");
  CHECK(check(ragged, cfg) == "fineweb:line_punct_ratio");
  // A paragraph of one long line and short ones is no filler's: its lines stay lines.
  std::string list = "Installing Python Modules explains how to install additional modules.\nIndex\nModules\nNext";
  CHECK(check(list, cfg) == "fineweb:line_punct_ratio");
}

TEST_CASE("hard-wrapped text: C4 keeps a wrapped paragraph's short last line", "[quality]") {
  QualityConfig cfg = only(false, false, true, false);
  std::string wrapped = fill(kPythonManual, 76);
  // Lines of fewer than 3 words, which C4 would cut out of their paragraph if they were lines.
  size_t short_lines = 0;
  for (std::string_view line : py_splitlines(wrapped)) short_lines += !line.empty() && split_gopher_words(line, "en").size() < 3;
  REQUIRE(short_lines >= 1);
  std::string t = wrapped;
  REQUIRE(check_quality(t, "en", cfg) == "");
  CHECK(t == wrapped);
  // Filled at 40 columns (under the 50 a filler uses) its lines are lines: the short ones go.
  t = fill(kPythonManual, 40);
  std::string before = t;
  check_quality(t, "en", cfg);
  CHECK(t != before);
}

TEST_CASE("hard-wrapped text: Chinese filled to 64 columns, wide characters counting two", "[quality]") {
  QualityConfig cfg = only(false, false, false, true);
  set(cfg, "zh.fineweb.line_punct_thr=0.9");  // 5 paragraphs end in 。, 5 of 12 lines do
  CHECK(check(kChineseWrapped, cfg, "zh") == "");
  QualityConfig all;
  std::string t = kChineseWrapped;
  CHECK(check_quality(t, "zh", all) == "");
}

// ---- Gopher repetition ---------------------------------------------------------------------------

TEST_CASE("gopher_repetition: duplicate paragraphs and lines by count (0.3)", "[quality]") {
  QualityConfig cfg = only(true, false, false, false);
  auto doc = [](int repeats, const std::string& sep) {
    WordGen g;
    std::vector<std::string> parts;
    for (int i = 0; i < 6; ++i) {
      parts.push_back(g.words(8));
      if (i < repeats) parts.push_back("x");  // "x" repeats-1 times a duplicate
    }
    if (repeats > 6) parts.push_back("x");
    return join(parts, sep);
  };
  CHECK(check(doc(4, "\n\n"), cfg) == "");  // 3 duplicates of 10 paragraphs
  CHECK(check(doc(5, "\n\n"), cfg) == "gopher_repetition:dup_para_frac");  // 4 of 11
  CHECK(check(doc(4, "\n"), cfg) == "");
  CHECK(check(doc(5, "\n"), cfg) == "gopher_repetition:dup_line_frac");
  set(cfg, "gopher_repetition.dup_line_frac=0");  // 0 turns the rule off
  CHECK(check(doc(5, "\n"), cfg) == "");
}

TEST_CASE("gopher_repetition: characters in duplicate paragraphs and lines (0.2)", "[quality]") {
  QualityConfig cfg = only_ngram_rule("none");  // the repeat would also trip the n-gram rules
  // [U1, U2, U3, R, R] with |R| = 40: 40 / (u + 80 + separators) = 0.2 exactly at u = 3*40 - separators.
  auto doc = [](size_t unique_chars, const std::string& sep) {
    WordGen g;
    std::string repeated = g.text_of_len(40);
    size_t third = unique_chars / 3;
    return join({g.text_of_len(third), g.text_of_len(third), g.text_of_len(unique_chars - 2 * third), repeated, repeated}, sep);
  };
  CHECK(check(doc(112, "\n\n"), cfg) == "");
  CHECK(check(doc(111, "\n\n"), cfg) == "gopher_repetition:dup_para_char_frac");
  CHECK(check(doc(116, "\n"), cfg) == "");
  CHECK(check(doc(115, "\n"), cfg) == "gopher_repetition:dup_line_char_frac");
}

TEST_CASE("gopher_repetition: top 2/3/4-gram share 0.20/0.18/0.16", "[quality]") {
  struct Case {
    size_t n;
    std::string phrase;
    int count;
    size_t length;  // text length at which the share equals the threshold
  };
  for (const Case& c : {Case{2, "xx yy", 4, 100}, Case{3, "aa bb ccc", 2, 100}, Case{4, "aa bb cc ddd", 2, 150}}) {
    std::string rule = "top_" + std::to_string(c.n) + "_grams";
    QualityConfig cfg = only_ngram_rule(rule);
    REQUIRE(double(c.phrase.size() * c.count) / double(c.length) == cfg.top_n_grams[c.n - 2]);
    auto doc = [&](size_t length) {
      WordGen g;
      std::string t;
      for (int i = 0; i < c.count; ++i) t += (i ? " " : "") + c.phrase + " " + g.words(2);
      return t + " " + g.text_of_len(length - t.size() - 1);
    };
    std::string reason = "gopher_repetition:top_" + std::to_string(c.n) + "_gram";
    CHECK(check(doc(c.length), cfg) == "");
    CHECK(check(doc(c.length - 1), cfg) == reason);
  }
}

TEST_CASE("gopher_repetition: duplicated 5..10-gram share 0.15..0.10", "[quality]") {
  // A phrase of n words of the given lengths, twice: the second copy's letters (no spaces,
  // as datatrove's find_all_duplicate joins with "") are the duplicated characters.
  const std::vector<std::vector<size_t>> lengths = {
      {3, 3, 3, 3, 3}, {2, 2, 2, 2, 3, 3}, {4, 4, 4, 4, 4, 3, 3}, {3, 3, 3, 3, 3, 3, 3, 3},
      {3, 3, 3, 3, 2, 2, 2, 2, 2}, {3, 3, 3, 3, 3, 3, 3, 3, 3, 3}};
  for (const auto& lens : lengths) {
    size_t n = lens.size(), letters = 0;
    std::string phrase;
    for (size_t j = 0; j < n; ++j) {
      phrase += (j ? " " : "") + std::string(lens[j], static_cast<char>('a' + j));
      letters += lens[j];
    }
    QualityConfig cfg = only_ngram_rule("dup_" + std::to_string(n) + "_grams");
    double frac = cfg.dup_n_grams[n - 5];
    size_t length = static_cast<size_t>(double(letters) / frac + 0.5);
    REQUIRE(double(letters) / double(length) == frac);
    auto doc = [&](size_t len) {
      WordGen g;
      std::string t = phrase + " " + g.words(3) + " " + phrase + " " + g.words(3);
      return t + " " + g.text_of_len(len - t.size() - 1);
    };
    CHECK(check(doc(length), cfg) == "");
    CHECK(check(doc(length - 1), cfg) == "gopher_repetition:duplicated_" + std::to_string(n) + "_n_grams");
  }
}

TEST_CASE("gopher_repetition: a repeated n-gram is skipped past, as in find_all_duplicate", "[quality]") {
  // "aaa bbb ccc ddd eee" three times: the walk counts the 2nd and 3rd copies (30 letters) and
  // jumps over the overlapping repeats; counting every repeated position would give 90.
  QualityConfig cfg = only_ngram_rule("dup_5_grams");
  std::string phrase = "aaa bbb ccc ddd eee";
  auto doc = [&](size_t len) {
    WordGen g;
    std::string t = phrase + " " + phrase + " " + phrase + " " + g.words(3);
    return t + " " + g.text_of_len(len - t.size() - 1);
  };
  CHECK(check(doc(200), cfg) == "");  // 30 / 200 = 0.15
  CHECK(check(doc(199), cfg) == "gopher_repetition:duplicated_5_n_grams");
}

// ---- C4 --------------------------------------------------------------------------------------------

TEST_CASE("c4: at least 5 sentences after line removal", "[quality]") {
  QualityConfig cfg = only(false, false, true, false);
  std::vector<std::string> lines = {"This is the first sentence.", "Here is the second one.", "A third line follows.",
                                    "The fourth line is here.", "And this is the fifth."};
  CHECK(check(join(lines, "\n"), cfg) == "");
  CHECK(check(join({lines.begin(), lines.end() - 1}, "\n"), cfg) == "c4:too_few_sentences");
  // Sentences, not lines, are counted (ICU sentence segmentation, abbreviations known).
  CHECK(check("One is here. Two is here. Three is here. Four is here. Five is here.", cfg) == "");
  CHECK(check("Mr. Smith came here. Two is here. Three is here. Four is here.", cfg) == "c4:too_few_sentences");
  set(cfg, "c4.min_num_sentences=-1");
  CHECK(check("A single short line.", cfg) == "");
}

TEST_CASE("c4: bad lines are removed from the text", "[quality]") {
  QualityConfig cfg = only(false, false, true, false);
  std::string long_word_1000(1000, 'a'), long_word_1001(1001, 'a');
  std::string text = join({"The first line is kept.",
                           "Two words.",
                           "Please enable JavaScript to view this page.",
                           "This site uses cookies to improve your experience.",
                           "Read our Privacy Policy for details.",
                           "A line with a citation[1] and [edit] marks[citation needed].",
                           "Long " + long_word_1000 + " word kept.",
                           "Long " + long_word_1001 + " word dropped.",
                           "   Indented line keeps its indentation.   ",
                           "a line without terminal punctuation",
                           "More sentences follow here. And here. And here too."},
                          "\n");
  std::string expected = join({"The first line is kept.", "A line with a citation and  marks.",
                               "Long " + long_word_1000 + " word kept.", "   Indented line keeps its indentation.",
                               "a line without terminal punctuation",
                               "More sentences follow here. And here. And here too."},
                              "\n");
  std::string t = text;
  REQUIRE(check_quality(t, "en", cfg) == "");
  CHECK(t == expected);

  // The FineWeb pipeline keeps lines without terminal punctuation; C4's own default drops them.
  set(cfg, "c4.filter_no_terminal_punct=1");
  t = text + "\nThis line trails off...";
  REQUIRE(check_quality(t, "en", cfg) == "");
  CHECK(t.find("without terminal punctuation") == std::string::npos);
  CHECK(t.find("trails off") == std::string::npos);
  CHECK(t.find("The first line is kept.") == 0);
}

TEST_CASE("c4: lorem ipsum and curly brackets drop the document", "[quality]") {
  QualityConfig cfg = only(false, false, true, false);
  std::string good = "This is the first sentence.\nHere is the second one.\nA third line follows.\n"
                     "The fourth line is here.\nAnd this is the fifth.";
  CHECK(check(good + "\nLorem ipsum dolor sit amet.", cfg) == "c4:lorem_ipsum");
  CHECK(check(good + "\nThe value is {x} here.", cfg) == "c4:curly_bracket");
  // As in datatrove, only lines that survive the earlier line rules are looked at.
  CHECK(check(good + "\n{x}", cfg) == "");
  set(cfg, "c4.filter_curly_bracket=0");
  CHECK(check(good + "\nThe value is {x} here.", cfg) == "");
}

TEST_CASE("c4 on Chinese: off, as in FineWeb-2; when on, ICU words per line and 。 end sentences", "[quality]") {
  QualityConfig cfg = only(false, false, true, false);
  std::string t = std::string(kChinese) + "\n你好。";
  CHECK(check_quality(t, "zh", cfg) == "");
  CHECK(t == std::string(kChinese) + "\n你好。");  // no C4 rule for Chinese: nothing removed
  // Chinese with English's C4 rules.
  for (const char* name : {"remove_citations=1", "min_num_sentences=5", "min_words_per_line=3",
                           "max_word_length=1000", "filter_lorem_ipsum=1", "filter_javascript=1",
                           "filter_curly_bracket=1", "filter_policy=1"})
    set(cfg, std::string("zh.c4.") + name);
  t = std::string(kChinese) + "\n你好。";
  CHECK(check_quality(t, "zh", cfg) == "");
  CHECK(t == kChinese);  // 你好 is one word: the line goes; every other line has enough words
  t = "你好。今天天气很好。\n我们去公园吧。";
  CHECK(check_quality(t, "zh", cfg) == "c4:too_few_sentences");  // 3 sentences
}

// ---- FineWeb -----------------------------------------------------------------------------------------

TEST_CASE("fineweb: at least 12% of lines end in terminal punctuation", "[quality]") {
  QualityConfig cfg = only(false, false, false, true);
  auto doc = [](int lines, int with_punct) {
    WordGen g;
    std::vector<std::string> out;
    for (int i = 0; i < lines; ++i) out.push_back(g.words(8) + (i < with_punct ? "." : ""));
    return join(out, "\n");
  };
  CHECK(check(doc(25, 3), cfg) == "");  // 0.12
  CHECK(check(doc(26, 3), cfg) == "fineweb:line_punct_ratio");
  CHECK(check(doc(25, 0), cfg) == "fineweb:line_punct_ratio");
  set(cfg, "fineweb.line_punct_exclude_zero=1");
  CHECK(check(doc(25, 0), cfg) == "");
}

TEST_CASE("fineweb: at most 67% short lines", "[quality]") {
  QualityConfig cfg = only(false, false, false, true);
  auto doc = [](int short_lines) {
    WordGen g;
    std::vector<std::string> out;
    for (int i = 0; i < 100; ++i) out.push_back(g.words(i < short_lines ? 3 : 8) + ".");
    return join(out, "\n");
  };
  CHECK(check(doc(67), cfg) == "");
  CHECK(check(doc(68), cfg) == "fineweb:short_line_ratio");
  set(cfg, "fineweb.short_line_length=10");  // 3-word lines (18 characters) are no longer short
  CHECK(check(doc(68), cfg) == "");
}

TEST_CASE("fineweb: characters in duplicate lines at most 1%", "[quality]") {
  QualityConfig cfg = only(false, false, false, true);
  auto doc = [](size_t unique_chars) {  // unique lines of 80 characters, a 40-character line twice
    WordGen g;
    std::string repeated = g.text_of_len(39) + ".";
    std::vector<std::string> out = {repeated};
    for (size_t left = unique_chars; left > 0;) {
      size_t len = std::min<size_t>(left, 80);
      out.push_back(g.text_of_len(len - 1) + ".");
      left -= len;
    }
    out.push_back(repeated);
    return join(out, "\n");
  };
  CHECK(check(doc(3920), cfg) == "");  // 40 / 4000
  CHECK(check(doc(3919), cfg) == "fineweb:char_dup_ratio");
}

TEST_CASE("fineweb: at most 0.3 newlines per word", "[quality]") {
  QualityConfig cfg = only(false, false, false, true);
  auto doc = [](int lines) {  // 3 words a line ("word word ."), each line over 30 characters
    WordGen g;
    std::vector<std::string> out;
    for (int i = 0; i < lines; ++i) out.push_back(g(15) + " " + g(15) + ".");
    return join(out, "\n");
  };
  CHECK(check(doc(10), cfg) == "");  // 9 / 30
  CHECK(check(doc(11), cfg) == "fineweb:list_ratio");  // 10 / 33
  CHECK(check("\n \n\t\n", cfg) == "fineweb:empty");
}

TEST_CASE("fineweb: CJK sentence ends count as terminal punctuation", "[quality]") {
  QualityConfig cfg = only(false, false, false, true);
  CHECK(check(kChinese, cfg, "zh") == "");
  std::string quoted = join({"他说：「我们今天上午先去北京大学参观未名湖和博雅塔，然后一起吃晚饭。」",
                             "她回答：「好的，我们在学校东门见面吧，记得带上相机和学生证。」",
                             "老师说：「参观的时候请大家注意安全，不要在校园里大声喧哗。」",
                             "同学们说：「我们一定会遵守规定，也会把看到的东西记在笔记本上。」",
                             "最后他说：「明天早上八点在学校门口集合，请大家不要迟到。」"},
                            "\n");
  CHECK(check(quoted, cfg, "zh") == "");
  CHECK(check(quoted, cfg, "en") == "fineweb:line_punct_ratio");  // 」 ends a sentence only in CJK text
}

// ---- the pipeline ------------------------------------------------------------------------------------

TEST_CASE("check_quality keeps good English and Chinese documents", "[quality]") {
  QualityConfig cfg;
  CHECK(check(kEnglish, cfg, "en") == "");
  CHECK(check(kEnglish, cfg, "") == "");
  CHECK(check(kChinese, cfg, "zh") == "");
  CHECK(check(kChinese, cfg, "") == "");
}

TEST_CASE("check_quality applies the stages in FineWeb's order", "[quality]") {
  QualityConfig cfg;
  // Repeated lines (gopher_repetition) in a short document (gopher_quality): repetition first.
  CHECK(check("same line.\nsame line.\nsame line.", cfg) == "gopher_repetition:dup_line_frac");
  cfg.gopher_repetition = false;
  CHECK(check("same line.\nsame line.\nsame line.", cfg) == "gopher_quality:short_doc");
  // C4 removes a line, and the document goes on to FineWeb without it.
  cfg = QualityConfig();
  std::string t = std::string(kEnglish) + "\nPlease enable JavaScript in your browser to see this page.";
  REQUIRE(check_quality(t, "en", cfg) == "");
  CHECK(t == kEnglish);
}

TEST_CASE("quality_params exposes every threshold under datatrove's names", "[quality]") {
  QualityConfig cfg;
  auto params = quality_params(cfg);
  std::vector<std::string> names;
  for (const auto& p : params) names.push_back(p.name);
  for (const char* name : {"gopher_repetition.dup_line_frac", "gopher_repetition.dup_para_char_frac",
                           "gopher_repetition.top_2_grams", "gopher_repetition.dup_10_grams",
                           "gopher_quality.min_doc_words", "gopher_quality.max_non_alpha_words_ratio",
                           "gopher_quality.min_stop_words", "c4.min_num_sentences", "c4.filter_no_terminal_punct",
                           "c4.max_word_length", "fineweb.line_punct_thr", "fineweb.new_line_ratio",
                           "zh.gopher_quality.max_avg_word_length", "ja.fineweb.line_punct_thr",
                           "ko.gopher_repetition.dup_line_frac"})
    CHECK(std::count(names.begin(), names.end(), name) == 1);
  CHECK(params.size() == 4 * 37);  // the defaults, then zh, ja, ko
  set(cfg, "fineweb.line_punct_thr=0.5");
  CHECK(cfg.line_punct_thr == 0.5);
  set(cfg, "gopher_repetition.dup_7_grams=0.25");
  CHECK(cfg.dup_n_grams[2] == 0.25);
  CHECK_THROWS(set(cfg, "fineweb.no_such_parameter=1"));
}

TEST_CASE("check_quality gives the same answers from many threads", "[quality]") {
  QualityConfig cfg;
  const std::vector<std::pair<std::string, std::string>> docs = {
      {kEnglish, "en"}, {kChinese, "zh"}, {kChinese, ""}, {"same line.\nsame line.", "en"}};
  std::vector<std::string> expected;
  for (const auto& [text, lang] : docs) expected.push_back(check(text, cfg, lang));
  std::vector<int> mismatches(8, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round)
        for (size_t d = 0; d < docs.size(); ++d)
          mismatches[t] += check(docs[d].first, cfg, docs[d].second) != expected[d];
    });
  for (auto& th : threads) th.join();
  for (int m : mismatches) CHECK(m == 0);
}

TEST_CASE("bad input: empty text, invalid UTF-8, random bytes", "[quality]") {
  QualityConfig cfg;
  CHECK(check("", cfg) == "gopher_quality:short_doc");
  CHECK(check("", only(false, false, false, true)) == "fineweb:empty");
  // Invalid bytes inside words leave a good document good.
  std::string damaged = kEnglish;
  damaged.insert(damaged.find("history") + 3, "\xff\xfe");
  damaged.insert(damaged.find("university") + 2, "\xc3");
  CHECK(check(damaged, cfg) == "");
  // Any bytes: words are non-empty, in order, inside the text, and hold no whitespace.
  uint32_t state = 12345;
  for (int round = 0; round < 300; ++round) {
    std::string bytes;
    for (int i = 0; i < 200; ++i) {
      state = state * 1664525u + 1013904223u;
      bytes += static_cast<char>(round % 2 ? state >> 24 : " \n.,'a\xe4\xb8\xad#-"[(state >> 24) % 12]);
    }
    for (const char* lang : {"en", "zh"}) {
      size_t pos = 0;
      bool ok = true;
      for (std::string_view w : split_words(bytes, lang)) {
        ok = ok && !w.empty() && w.data() >= bytes.data() + pos && w.data() + w.size() <= bytes.data() + bytes.size() &&
             w.find_first_of(" \n") == std::string_view::npos;
        pos = static_cast<size_t>(w.data() + w.size() - bytes.data());
      }
      CHECK(ok);
    }
    std::string t = bytes;
    check_quality(t, "", cfg);  // must not crash; text stays valid for the next stage
    CHECK(t.size() <= bytes.size());
  }
}
