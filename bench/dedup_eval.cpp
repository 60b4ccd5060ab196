// Scores a near-duplicate clustering (llm-dedup --clusters) against the exact truth: every
// pair of corpus documents whose shingle sets (llmkit::text::shingle_hashes, as llm-dedup
// uses) have Jaccard similarity >= T, found by brute force over all pairs (OpenMP). Two
// documents whose texts are equal after NFKC case folding and collapsing whitespace runs count
// as J = 1 whatever their shingles (they are exact duplicates). Documents with no shingles take
// part in no Jaccard pair.
//
//   dedup_eval [--threshold T] [--ngram N] [--json] CORPUS.jsonl CLUSTERS.jsonl
//
// CORPUS.jsonl: one document per non-empty line, with "text" (document number = 0-based index
// of the non-empty line); "id" and dedup_corpus's "family", "kind", "edit_rate", "parent" and
// "depth" are used when present. CLUSTERS.jsonl: one row per document in a duplicate cluster,
// {"doc":N,"id":...,"cluster":K,"similarity":S|null,"kept":bool,"exact":bool}, K the document
// number of the cluster's kept member; a document not listed is alone (kept).
//
// Prints the true pairs (J >= T), the found pairs (true pairs in one cluster), recall = found /
// true (1 when there are none); removed documents (kept false), precision = removed documents
// with some J >= T partner anywhere / removed, and the share of removed documents with J >= T
// to their cluster's kept member; true pairs left with both documents kept; consistency of the
// clusters file; and, for a dedup_corpus corpus, recall by copy kind and edit rate (each copy
// against its parent) and the true pairs across families (0 unless originals collide).
// --threshold T: default 0.8. --ngram N: word and CJK n-gram size (default 5). --json: one
// JSON object instead. Exit status 0 when it ran, 2 on a usage error, 1 on unreadable input.
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "llmkit/minhash.hpp"

namespace {

using nlohmann::json;

struct Options {
  double threshold = 0.8;
  int ngram = 5;
  bool json = false;
  std::string corpus, clusters;
};

struct Document {
  std::string id;                    // "" when absent
  std::optional<int64_t> family;     // dedup_corpus fields, when present
  std::string kind, parent;          // parent: the id of the document copied, "" when absent
  std::optional<double> edit_rate;
  int depth = 0;
  std::string normalized;            // NFKC case-folded, whitespace collapsed and trimmed
  std::vector<uint64_t> shingles;
};

struct Row {
  int64_t cluster = -1;
  bool kept = true, exact = false;
  std::optional<double> similarity;
};

struct Pair {
  uint32_t a, b;  // a < b
  double j;
};

// Unreadable or malformed input: exit status 1.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- Reading ----------------------------------------------------------------------------------

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(path + ": cannot open");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    if (line.find_first_not_of(" \t\r") != std::string::npos) lines.push_back(line);
  if (in.bad()) throw InputError(path + ": read error");
  return lines;
}

json parse_line(const std::string& path, size_t index, const std::string& line) {
  json j = json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    throw InputError(path + ": row " + std::to_string(index) + " is not a JSON object");
  return j;
}

std::string string_field(const json& j, const char* key) {  // "" when absent or not a string
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::optional<int64_t> integer_field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

std::optional<double> number_field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

// Whitespace-collapsed, trimmed NFKC_Casefold form of `text`.
std::string normalize(std::string_view text, const icu::Normalizer2& nfkc_cf) {
  UErrorCode status = U_ZERO_ERROR;
  icu::StringPiece piece(text.data(), static_cast<int32_t>(text.size()));
  icu::UnicodeString folded = nfkc_cf.normalize(icu::UnicodeString::fromUTF8(piece), status);
  if (U_FAILURE(status)) return std::string(text);
  icu::UnicodeString collapsed;
  bool space = false;
  for (int32_t i = 0; i < folded.length();) {
    UChar32 c = folded.char32At(i);
    i += U16_LENGTH(c);
    if (u_isUWhiteSpace(c)) {
      space = !collapsed.isEmpty();
      continue;
    }
    if (space) collapsed.append(static_cast<UChar>(' '));
    space = false;
    collapsed.append(c);
  }
  std::string out;
  collapsed.toUTF8String(out);
  return out;
}

std::vector<Document> read_corpus(const std::string& path, const llmkit::text::MinHashConfig& cfg) {
  std::vector<std::string> lines = read_lines(path);
  std::vector<Document> docs(lines.size());
  std::vector<std::string> texts(lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    json j = parse_line(path, i, lines[i]);
    if (!j.contains("text") || !j["text"].is_string())
      throw InputError(path + ": document " + std::to_string(i) + " has no string \"text\"");
    texts[i] = j["text"].get<std::string>();
    Document& d = docs[i];
    d.id = string_field(j, "id");
    d.family = integer_field(j, "family");
    d.kind = string_field(j, "kind");
    d.parent = string_field(j, "parent");
    d.edit_rate = number_field(j, "edit_rate");
    d.depth = static_cast<int>(integer_field(j, "depth").value_or(0));
  }
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfkc_cf = icu::Normalizer2::getNFKCCasefoldInstance(status);
  if (U_FAILURE(status)) throw std::runtime_error("ICU NFKC_Casefold data unavailable");
#pragma omp parallel for schedule(dynamic, 16)
  for (size_t i = 0; i < docs.size(); ++i) {
    llmkit::text::shingle_hashes(texts[i], cfg, docs[i].shingles);
    docs[i].normalized = normalize(texts[i], *nfkc_cf);
  }
  return docs;
}

// Rows by document number; throws InputError on a malformed row.
std::unordered_map<int64_t, Row> read_clusters(const std::string& path,
                                               const std::vector<Document>& docs,
                                               std::map<std::string, int64_t>& problems) {
  std::vector<std::string> lines = read_lines(path);
  std::unordered_map<int64_t, Row> rows;
  for (size_t i = 0; i < lines.size(); ++i) {
    json j = parse_line(path, i, lines[i]);
    auto number = [&](const char* key) -> int64_t {
      if (!j.contains(key) || !j[key].is_number_integer())
        throw InputError(path + ": row " + std::to_string(i) + " has no integer \"" + key + "\"");
      return j[key].get<int64_t>();
    };
    int64_t doc = number("doc");
    Row row;
    row.cluster = number("cluster");
    if (!j.contains("kept") || !j["kept"].is_boolean())
      throw InputError(path + ": row " + std::to_string(i) + " has no boolean \"kept\"");
    row.kept = j["kept"].get<bool>();
    row.exact = j.contains("exact") && j["exact"].is_boolean() && j["exact"].get<bool>();
    if (j.contains("similarity") && j["similarity"].is_number())
      row.similarity = j["similarity"].get<double>();
    auto in_range = [&](int64_t k) { return k >= 0 && static_cast<uint64_t>(k) < docs.size(); };
    if (!in_range(doc) || !in_range(row.cluster)) {
      ++problems["rows with doc or cluster out of range (ignored)"];
      continue;
    }
    if (j.contains("id") && j["id"].is_string() && j["id"].get<std::string>() != docs[doc].id)
      ++problems["rows whose id is not the document's"];
    if (!rows.emplace(doc, row).second) ++problems["documents listed twice (first row used)"];
  }
  return rows;
}

// ---- Similarity -------------------------------------------------------------------------------

// Jaccard of two sorted sets when it can reach `threshold`, else -1 (the merge stops as soon
// as the intersection cannot get large enough). Computed as llmkit::text::jaccard does.
double jaccard_at_least(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b,
                        double threshold) {
  const size_t total = a.size() + b.size();
  // J >= T  <=>  common >= T * total / (1 + T); one less, for rounding, is safe.
  const double need_d = std::ceil(threshold * static_cast<double>(total) / (1 + threshold)) - 1;
  const size_t need = need_d > 0 ? static_cast<size_t>(need_d) : 0;
  size_t common = 0, i = 0, k = 0;
  while (i < a.size() && k < b.size()) {
    if (common + std::min(a.size() - i, b.size() - k) < need) return -1;
    if (a[i] < b[k]) ++i;
    else if (b[k] < a[i]) ++k;
    else ++common, ++i, ++k;
  }
  double j = static_cast<double>(common) / static_cast<double>(total - common);
  return j >= threshold ? j : -1;
}

// All pairs with shingle Jaccard >= threshold: documents sorted by set size, each compared
// with the larger ones while |small| / |large| (an upper bound on J) stays >= threshold.
std::vector<Pair> jaccard_pairs(const std::vector<Document>& docs, double threshold) {
  std::vector<uint32_t> order;
  for (uint32_t i = 0; i < docs.size(); ++i)
    if (!docs[i].shingles.empty()) order.push_back(i);
  std::sort(order.begin(), order.end(), [&](uint32_t x, uint32_t y) {
    return docs[x].shingles.size() < docs[y].shingles.size();
  });
  std::vector<Pair> pairs;
#pragma omp parallel
  {
    std::vector<Pair> local;
#pragma omp for schedule(dynamic, 8) nowait
    for (size_t p = 0; p < order.size(); ++p) {
      const auto& small = docs[order[p]].shingles;
      for (size_t q = p + 1; q < order.size(); ++q) {
        const auto& large = docs[order[q]].shingles;
        // |small| / |large| bounds J from above, and only grows worse further on.
        if (static_cast<double>(small.size()) / static_cast<double>(large.size()) < threshold)
          break;
        if (double j = jaccard_at_least(small, large, threshold); j >= 0)
          local.push_back({std::min(order[p], order[q]), std::max(order[p], order[q]), j});
      }
    }
#pragma omp critical
    pairs.insert(pairs.end(), local.begin(), local.end());
  }
  return pairs;
}

uint64_t pair_key(uint32_t a, uint32_t b) { return (uint64_t{a} << 32) | b; }

// Adds the pairs of documents with equal normalized text (J = 1), then sorts all pairs.
void add_exact_pairs(const std::vector<Document>& docs, std::vector<Pair>& pairs) {
  std::unordered_set<uint64_t> have;
  for (const Pair& p : pairs) have.insert(pair_key(p.a, p.b));
  std::unordered_map<std::string_view, std::vector<uint32_t>> groups;
  for (uint32_t i = 0; i < docs.size(); ++i)
    if (!docs[i].normalized.empty()) groups[docs[i].normalized].push_back(i);
  for (const auto& [text, members] : groups)
    for (size_t x = 0; x < members.size(); ++x)
      for (size_t y = x + 1; y < members.size(); ++y)
        if (have.insert(pair_key(members[x], members[y])).second)
          pairs.push_back({members[x], members[y], 1.0});
  std::sort(pairs.begin(), pairs.end(),
            [](const Pair& x, const Pair& y) { return pair_key(x.a, x.b) < pair_key(y.a, y.b); });
}

// Similarity of two documents as the truth defines it.
double similarity(const Document& x, const Document& y) {
  if (!x.normalized.empty() && x.normalized == y.normalized) return 1.0;
  if (x.shingles.empty() || y.shingles.empty()) return 0.0;
  return llmkit::text::jaccard(x.shingles, y.shingles);
}

// ---- Scoring ----------------------------------------------------------------------------------

struct Bucket {  // copies of one kind and edit rate, against the document they copy
  size_t copies = 0, similar = 0, found_similar = 0, clustered = 0;
  double sum_j = 0;
};

struct Report {
  size_t docs = 0, docs_with_shingles = 0, true_pairs = 0, found_pairs = 0, residual_pairs = 0;
  size_t removed = 0, removed_with_partner = 0, removed_similar_to_kept = 0;
  size_t cross_family_pairs = 0, exact_rows = 0, exact_rows_not_equal = 0, similarity_rows = 0;
  double similarity_error_sum = 0, similarity_error_max = 0;
  bool has_families = false;
  std::map<std::string, int64_t> problems;
  std::map<std::pair<std::string, double>, Bucket> buckets;  // (kind, edit rate)
};

void score_pairs(const std::vector<Document>& docs, const std::vector<Pair>& pairs,
                 const std::vector<int64_t>& label, const std::vector<bool>& removed, Report& r) {
  std::vector<bool> has_partner(docs.size());
  r.true_pairs = pairs.size();
  for (const Pair& p : pairs) {
    r.found_pairs += label[p.a] == label[p.b];
    r.residual_pairs += !removed[p.a] && !removed[p.b];
    has_partner[p.a] = has_partner[p.b] = true;
    if (docs[p.a].family && docs[p.b].family && *docs[p.a].family != *docs[p.b].family)
      ++r.cross_family_pairs;
  }
  for (size_t i = 0; i < docs.size(); ++i)
    if (removed[i]) ++r.removed, r.removed_with_partner += has_partner[i];
}

void score_rows(const std::vector<Document>& docs, const std::unordered_map<int64_t, Row>& rows,
                double threshold, Report& r) {
  for (const auto& [doc, row] : rows) {
    const Document& d = docs[doc];
    const Document& kept = docs[row.cluster];
    auto it = rows.find(row.cluster);
    if (it != rows.end() && !it->second.kept)
      ++r.problems["rows whose cluster's member is removed"];
    if (it != rows.end() && it->second.cluster != row.cluster)
      ++r.problems["rows whose cluster's member is in another cluster"];
    if (!row.kept && row.cluster == doc)
      ++r.problems["removed documents that are their own cluster"];
    if (row.kept && row.cluster != doc) ++r.problems["kept documents in another's cluster"];
    if (doc == row.cluster) continue;
    double j = similarity(d, kept);
    if (!row.kept && j >= threshold) ++r.removed_similar_to_kept;
    if (row.exact) ++r.exact_rows, r.exact_rows_not_equal += d.normalized != kept.normalized;
    if (row.similarity) {
      double err = std::fabs(*row.similarity - j);
      ++r.similarity_rows;
      r.similarity_error_sum += err;
      r.similarity_error_max = std::max(r.similarity_error_max, err);
    }
  }
}

// Each copy (dedup_corpus's kind other than "original") against its parent, the document it
// was copied from (the family's original when there is no "parent" field): the edit rate is
// that of this one step, so a chain's copies are measured against the near copy they edit.
void score_families(const std::vector<Document>& docs, const std::vector<int64_t>& label,
                    double threshold, Report& r) {
  std::unordered_map<int64_t, uint32_t> originals;
  std::unordered_map<std::string_view, uint32_t> by_id;
  for (uint32_t i = 0; i < docs.size(); ++i) {
    if (docs[i].family && docs[i].kind == "original") originals.emplace(*docs[i].family, i);
    if (!docs[i].id.empty()) by_id.emplace(docs[i].id, i);
  }
  r.has_families = !originals.empty();
  for (uint32_t i = 0; i < docs.size(); ++i) {
    const Document& d = docs[i];
    if (!d.family || d.kind.empty() || d.kind == "original") continue;
    auto it = d.parent.empty() ? originals.find(*d.family) : originals.end();
    auto parent = by_id.find(d.parent);
    if (d.parent.empty() ? it == originals.end() : parent == by_id.end()) continue;
    const uint32_t p = d.parent.empty() ? it->second : parent->second;
    std::string kind = d.kind + (d.kind == "near" && d.depth > 1 ? " (chain)" : "");
    Bucket& b = r.buckets[{kind, d.edit_rate.value_or(0)}];
    double j = similarity(d, docs[p]);
    bool together = label[i] == label[p];
    ++b.copies;
    b.sum_j += j;
    b.similar += j >= threshold;
    b.found_similar += j >= threshold && together;
    b.clustered += together;
  }
}

Report evaluate(const std::vector<Document>& docs, const std::vector<Pair>& pairs,
                const std::unordered_map<int64_t, Row>& rows, double threshold,
                std::map<std::string, int64_t> problems) {
  Report r;
  r.problems = std::move(problems);
  r.docs = docs.size();
  for (const Document& d : docs) r.docs_with_shingles += !d.shingles.empty();
  std::vector<int64_t> label(docs.size());
  std::vector<bool> removed(docs.size());
  for (size_t i = 0; i < docs.size(); ++i) label[i] = static_cast<int64_t>(i);
  for (const auto& [doc, row] : rows) label[doc] = row.cluster, removed[doc] = !row.kept;
  score_pairs(docs, pairs, label, removed, r);
  score_rows(docs, rows, threshold, r);
  score_families(docs, label, threshold, r);
  return r;
}

// ---- Output -----------------------------------------------------------------------------------

double ratio(size_t num, size_t den, double if_empty) {
  return den ? static_cast<double>(num) / static_cast<double>(den) : if_empty;
}

double mean(double sum, size_t count) { return count ? sum / static_cast<double>(count) : 0.0; }

json report_json(const Report& r, double threshold) {
  json j = {{"threshold", threshold},
            {"documents", r.docs},
            {"documents_with_shingles", r.docs_with_shingles},
            {"true_pairs", r.true_pairs},
            {"found_pairs", r.found_pairs},
            {"recall", ratio(r.found_pairs, r.true_pairs, 1.0)},
            {"removed", r.removed},
            {"removed_with_partner", r.removed_with_partner},
            {"precision", ratio(r.removed_with_partner, r.removed, 1.0)},
            {"removed_similar_to_kept", r.removed_similar_to_kept},
            {"removed_similar_to_kept_fraction", ratio(r.removed_similar_to_kept, r.removed, 1.0)},
            {"residual_pairs", r.residual_pairs},
            {"exact_rows", r.exact_rows},
            {"exact_rows_not_normalized_equal", r.exact_rows_not_equal},
            {"similarity_rows", r.similarity_rows},
            {"similarity_error_mean", mean(r.similarity_error_sum, r.similarity_rows)},
            {"similarity_error_max", r.similarity_error_max},
            {"problems", r.problems}};
  if (r.has_families) {
    j["cross_family_pairs"] = r.cross_family_pairs;
    json buckets = json::array();
    for (const auto& [key, b] : r.buckets)
      buckets.push_back({{"kind", key.first},
                         {"edit_rate", key.second},
                         {"copies", b.copies},
                         {"mean_jaccard", mean(b.sum_j, b.copies)},
                         {"similar", b.similar},
                         {"found_similar", b.found_similar},
                         {"recall", ratio(b.found_similar, b.similar, 1.0)},
                         {"clustered", b.clustered}});
    j["by_edit_rate"] = buckets;
  }
  return j;
}

void print_text(const Report& r, double threshold) {
  std::printf("documents                     %zu (%zu with shingles)\n", r.docs,
              r.docs_with_shingles);
  std::printf("true pairs (J >= %g)           %zu\n", threshold, r.true_pairs);
  std::printf("found pairs (same cluster)    %zu\n", r.found_pairs);
  std::printf("recall                        %.4f\n", ratio(r.found_pairs, r.true_pairs, 1.0));
  std::printf("removed documents             %zu\n", r.removed);
  std::printf("  with a J >= T partner       %zu\n", r.removed_with_partner);
  std::printf("precision                     %.4f\n",
              ratio(r.removed_with_partner, r.removed, 1.0));
  std::printf("removed with J >= T to kept   %zu (%.4f)\n", r.removed_similar_to_kept,
              ratio(r.removed_similar_to_kept, r.removed, 1.0));
  std::printf("true pairs left, both kept    %zu\n", r.residual_pairs);
  std::printf("exact rows                    %zu (%zu not equal after normalization)\n",
              r.exact_rows, r.exact_rows_not_equal);
  if (r.similarity_rows)
    std::printf("similarity vs exact J         mean error %.4f, max %.4f (%zu rows)\n",
                mean(r.similarity_error_sum, r.similarity_rows),
                r.similarity_error_max, r.similarity_rows);
  for (const auto& [what, count] : r.problems)
    std::printf("PROBLEM: %s: %lld\n", what.c_str(), static_cast<long long>(count));
  if (!r.has_families) return;
  std::printf("true pairs across families    %zu\n", r.cross_family_pairs);
  std::printf("\ncopies vs their parent (the original, or for a chain the copy edited):\n");
  std::printf("%-18s %6s %7s %7s %7s %9s %9s\n", "kind", "rate", "copies", "mean J", "J>=T",
              "recall", "clustered");
  for (const auto& [key, b] : r.buckets)
    std::printf("%-18s %6g %7zu %7.3f %7zu %9.4f %9zu\n", key.first.c_str(), key.second, b.copies,
                mean(b.sum_j, b.copies), b.similar,
                ratio(b.found_similar, b.similar, 1.0), b.clustered);
}

// ---- Command line -----------------------------------------------------------------------------

constexpr const char* kUsage =
    "usage: dedup_eval [--threshold T] [--ngram N] [--json] CORPUS.jsonl CLUSTERS.jsonl\n";

// Fills `opt`; returns an error message, empty on success.
std::string parse_options(int argc, char** argv, Options& opt) {
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--json") {
      opt.json = true;
    } else if (arg == "--threshold" || arg == "--ngram") {
      if (i + 1 >= argc) return "missing value after " + std::string(arg);
      std::string_view v = argv[++i];
      const char* end = v.data() + v.size();
      bool ok = arg == "--threshold"
                    ? std::from_chars(v.data(), end, opt.threshold).ptr == end &&
                          opt.threshold > 0 && opt.threshold <= 1
                    : std::from_chars(v.data(), end, opt.ngram).ptr == end && opt.ngram >= 1 &&
                          opt.ngram <= 64;
      if (v.empty() || !ok) return "bad value for " + std::string(arg) + ": " + std::string(v);
    } else if (arg.size() > 1 && arg[0] == '-') {
      return "unknown option " + std::string(arg);
    } else {
      files.emplace_back(arg);
    }
  }
  if (files.size() != 2) return "expected CORPUS.jsonl and CLUSTERS.jsonl";
  opt.corpus = files[0];
  opt.clusters = files[1];
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (std::string err = parse_options(argc, argv, opt); !err.empty()) {
    std::fprintf(stderr, "dedup_eval: %s\n%s", err.c_str(), kUsage);
    return 2;
  }
  try {
    llmkit::text::MinHashConfig cfg;
    cfg.ngram = cfg.cjk_ngram = opt.ngram;
    std::vector<Document> docs = read_corpus(opt.corpus, cfg);
    std::map<std::string, int64_t> problems;
    auto rows = read_clusters(opt.clusters, docs, problems);
    std::vector<Pair> pairs = jaccard_pairs(docs, opt.threshold);
    add_exact_pairs(docs, pairs);
    Report r = evaluate(docs, pairs, rows, opt.threshold, std::move(problems));
    if (opt.json) std::printf("%s\n", report_json(r, opt.threshold).dump().c_str());
    else print_text(r, opt.threshold);
  } catch (const InputError& e) {
    std::fprintf(stderr, "dedup_eval: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dedup_eval: %s\n", e.what());
    return 1;
  }
  return 0;
}
