// llm-dedup's engine; the passes and the memory model are described in llmkit/dedup.hpp.
#include "llmkit/dedup.hpp"

#include <omp.h>
#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <tuple>
#include <unordered_map>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"
#include "llmkit/spill.hpp"
#include "llmkit/tool.hpp"

namespace llmkit {

// ---- Normalisation and keys ----------------------------------------------------------------

namespace {

bool ascii_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// Appends s to out with whitespace runs collapsed to one space, trimmed; lower-cases ASCII
// letters when `lower`. Non-ASCII blanks that survive NFKC (U+0085, U+1680, U+2028, U+2029)
// count as whitespace too.
void collapse_blanks(std::string_view s, bool lower, std::string& out) {
  bool pending = false;
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t blank = 0;
    if (ascii_space(c)) blank = 1;
    else if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x85) blank = 2;
    else if (c == 0xE1 && s.substr(i, 3) == "\xE1\x9A\x80") blank = 3;
    else if (c == 0xE2 && (s.substr(i, 3) == "\xE2\x80\xA8" || s.substr(i, 3) == "\xE2\x80\xA9")) blank = 3;
    if (blank) {
      pending = true;
      i += blank - 1;
      continue;
    }
    if (pending && !out.empty()) out += ' ';
    pending = false;
    out += static_cast<char>(lower && c >= 'A' && c <= 'Z' ? c + 32 : c);
  }
}

}  // namespace

void normalize_for_exact(std::string_view text, std::string& out) {
  out.clear();
  bool ascii = true;
  for (char c : text) ascii &= static_cast<unsigned char>(c) < 0x80;
  if (ascii) {  // NFKC_Casefold of ASCII is ASCII lower case
    collapse_blanks(text, true, out);
    return;
  }
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nf = icu::Normalizer2::getNFKCCasefoldInstance(status);
  thread_local std::string folded;
  folded.clear();
  if (U_SUCCESS(status)) {
    icu::StringByteSink<std::string> sink(&folded);
    nf->normalizeUTF8(0, icu::StringPiece(text.data(), static_cast<int32_t>(text.size())), sink,
                      nullptr, status);
  }
  if (U_FAILURE(status)) {  // invalid UTF-8 cannot come from the parser; be safe anyway
    folded.assign(text);
  }
  collapse_blanks(folded, false, out);
}

Hash128 exact_hash(std::string_view text, bool normalize) {
  XXH128_hash_t h;
  if (normalize) {
    thread_local std::string norm;
    normalize_for_exact(text, norm);
    h = XXH3_128bits(norm.data(), norm.size());
  } else {
    h = XXH3_128bits(text.data(), text.size());
  }
  return {h.high64, h.low64};
}

uint64_t line_key(std::string_view line) {
  size_t b = 0, e = line.size();
  while (b < e && ascii_space(static_cast<unsigned char>(line[b]))) ++b;
  while (e > b && ascii_space(static_cast<unsigned char>(line[e - 1]))) --e;
  if (b == e) return 0;
  thread_local std::string key;
  key.clear();
  for (size_t i = b; i < e; ++i) {
    char c = line[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    else if (c >= '0' && c <= '9') c = '0';
    key += c;
  }
  uint64_t h = XXH3_64bits_withSeed(key.data(), key.size(), 0x6c696e65);
  return h ? h : 1;
}

// ---- The S-curve -----------------------------------------------------------------------------

std::string explain_lsh(int bands, int rows, double threshold) {
  char line[160];
  std::string out;
  snprintf(line, sizeof line,
           "MinHash LSH: %d bands x %d rows = %d hash functions; verified threshold %.2f\n"
           "P(candidate | Jaccard s) = 1 - (1 - s^%d)^%d\n\n", bands, rows, bands * rows,
           threshold, rows, bands);
  out += line;
  out += "similarity  P(candidate)\n";
  for (int i = 0; i <= 20; ++i) {
    double s = i / 20.0;
    snprintf(line, sizeof line, "%10.2f  %12.4f\n", s, text::lsh_candidate_probability(s, bands, rows));
    out += line;
  }
  double steep = std::pow(1.0 / bands, 1.0 / rows);
  snprintf(line, sizeof line,
           "\nsteepest at s = (1/%d)^(1/%d) = %.3f; at the threshold %.2f: %.4f of pairs "
           "become candidates (recall bound), at 0.5: %.4f\n", bands, rows, steep, threshold,
           text::lsh_candidate_probability(threshold, bands, rows),
           text::lsh_candidate_probability(0.5, bands, rows));
  out += line;
  return out;
}

void plot_lsh(const std::string& png, int bands, int rows, double threshold) {
  std::string script =
      "set terminal pngcairo size 800,500 noenhanced\n"
      "set output '" + png + "'\n"
      "set title 'MinHash LSH S-curve: " + std::to_string(bands) + " bands x " +
      std::to_string(rows) + " rows'\n"
      "set xlabel 'Jaccard similarity s'\nset ylabel 'P(candidate pair)'\n"
      "set grid\nset key left top\nset xrange [0:1]\nset yrange [0:1.02]\n"
      "set arrow from " + std::to_string(threshold) + ",0 to " + std::to_string(threshold) +
      ",1.02 nohead dashtype 2\n"
      "plot 1-(1-x**" + std::to_string(rows) + ")**" + std::to_string(bands) +
      " title '1-(1-s^" + std::to_string(rows) + ")^" + std::to_string(bands) +
      "' lw 2, x title 'y = s' dashtype 3\n";
  if (png.find('\'') != std::string::npos) throw UsageError("--plot: file name with a quote");
  FILE* gp = popen("gnuplot 2>&1", "w");
  if (!gp) throw Error("gnuplot", errno_message("cannot run gnuplot", errno));
  fputs(script.c_str(), gp);
  int rc = pclose(gp);
  if (rc != 0)
    throw Error("gnuplot", rc == 127 << 8 || rc == 127
                               ? "gnuplot not found (Debian: apt-get install gnuplot-nox)"
                               : "gnuplot failed drawing " + png);
  if (file_size(png) == 0) throw Error(png, "gnuplot wrote no image");
}

// ---- Records ---------------------------------------------------------------------------------

namespace {

constexpr int kRankShift = 40;  // doc = rank << 40 | ordinal within the rank's part
constexpr uint64_t kOrdinalMask = (uint64_t{1} << kRankShift) - 1;
int doc_owner(uint64_t doc) { return static_cast<int>(doc >> kRankShift); }
uint64_t doc_ordinal(uint64_t doc) { return doc & kOrdinalMask; }

// A document in the keep order: the least of a cluster is kept. pri is 0 for --keep first and
// ~length for --keep longest; doc breaks ties in input order, whatever the rank count (ranks
// hold consecutive parts of the input).
struct Node {
  uint64_t pri = 0, doc = 0;
};
bool operator<(const Node& a, const Node& b) { return std::tie(a.pri, a.doc) < std::tie(b.pri, b.doc); }
bool operator==(const Node& a, const Node& b) { return a.pri == b.pri && a.doc == b.doc; }
struct NodeHash {
  size_t operator()(const Node& n) const { return XXH3_64bits(&n, sizeof n); }
};

struct ExactRec {  // at the hash owner
  uint64_t hi, lo;
  Node node;
  bool operator<(const ExactRec& o) const { return std::tie(hi, lo, node) < std::tie(o.hi, o.lo, o.node); }
};
struct BandRec {  // at the bucket owner
  uint64_t key;
  Node node;
  bool operator<(const BandRec& o) const { return std::tie(key, node) < std::tie(o.key, o.node); }
};
struct PairRec {  // a < b; at the owner of a
  Node a, b;
  bool operator<(const PairRec& o) const { return std::tie(a, b) < std::tie(o.a, o.b); }
  bool operator==(const PairRec& o) const { return a == o.a && b == o.b; }
};
struct DupRec {  // exact duplicate `doc` of `first`; at the owner of doc
  uint64_t doc;
  Node first;
  bool operator<(const DupRec& o) const { return std::tie(doc, first) < std::tie(o.doc, o.first); }
};
struct LineRec {  // line `hash` occurs in `doc`; at the line's owner, then the doc's
  uint64_t hash, doc;
  bool operator<(const LineRec& o) const { return std::tie(hash, doc) < std::tie(o.hash, o.doc); }
};
struct DocLine {
  uint64_t doc, hash;
  bool operator<(const DocLine& o) const { return std::tie(doc, hash) < std::tie(o.doc, o.hash); }
};
struct Assign {  // `doc` is in the cluster kept as `root`, with Jaccard `sim` to it (NaN unknown)
  uint64_t doc;
  Node root;
  double sim;
  uint64_t exact;  // 1: doc is an exact duplicate (of a document in this cluster)
  bool operator<(const Assign& o) const { return doc < o.doc; }
};
struct Edge {
  Node a, b;
  double sim;
};

template <class T>
std::vector<T> drain(ExternalSorter<T>& sorter) {
  std::vector<T> out;
  out.reserve(sorter.count());
  for (T v; sorter.next(v);) out.push_back(v);
  return out;
}

// Union-find over nodes; every set's root is its least node.
class Forest {
 public:
  void unite(const Node& a, const Node& b) {
    uint32_t ra = find(id(a)), rb = find(id(b));
    if (ra == rb) return;
    if (nodes_[ra] < nodes_[rb]) parent_[rb] = ra;
    else parent_[ra] = rb;
  }
  // (member, root) for every node that is not a root.
  std::vector<PairRec> links() {
    std::vector<PairRec> out;
    for (uint32_t i = 0; i < nodes_.size(); ++i) {
      uint32_t r = find(i);
      if (r != i) out.push_back({nodes_[i], nodes_[r]});
    }
    return out;
  }
  size_t size() const { return nodes_.size(); }

 private:
  uint32_t id(const Node& n) {
    auto [it, fresh] = ids_.try_emplace(n, static_cast<uint32_t>(nodes_.size()));
    if (fresh) {
      nodes_.push_back(n);
      parent_.push_back(it->second);
    }
    return it->second;
  }
  uint32_t find(uint32_t i) {
    uint32_t r = i;
    while (parent_[r] != r) r = parent_[r];
    while (parent_[i] != r) {  // path compression
      uint32_t next = parent_[i];
      parent_[i] = r;
      i = next;
    }
    return r;
  }
  std::unordered_map<Node, uint32_t, NodeHash> ids_;
  std::vector<Node> nodes_;
  std::vector<uint32_t> parent_;
};

// Shingle sets of some of this rank's documents, in a temporary file.
class ShingleStore {
 public:
  explicit ShingleStore(const std::string& dir) : file_(dir, "shingle sets", false) {}
  void put(uint64_t ordinal, const std::vector<uint64_t>& sh) {
    index_.push_back({ordinal, file_.size(), sh.size()});
    file_.append(sh.data(), sh.size() * sizeof(uint64_t));
  }
  // False when the document has no stored set.
  bool get(uint64_t ordinal, std::vector<uint64_t>& out) const {
    auto it = std::lower_bound(index_.begin(), index_.end(), ordinal,
                               [](const Entry& e, uint64_t o) { return e.ordinal < o; });
    if (it == index_.end() || it->ordinal != ordinal) return false;
    out.resize(it->count);
    file_.read_at(it->offset, out.data(), it->count * sizeof(uint64_t));
    return true;
  }

 private:
  struct Entry {
    uint64_t ordinal, offset, count;
  };
  TempFile file_;
  std::vector<Entry> index_;  // ordinals ascending (put in input order)
};

// ---- The run ---------------------------------------------------------------------------------

class Deduper {
 public:
  Deduper(std::vector<InputPart> parts, const DedupConfig& cfg, Stats& stats)
      : cfg_(cfg), comm_(Comm::world()), stats_(stats), parts_(std::move(parts)),
        tmp_(temp_dir(cfg.tmp)), rank_(static_cast<uint64_t>(comm_.rank())) {}

  void run();

 private:
  using BatchWork = std::function<void(std::vector<SourceDoc>&, const std::vector<int64_t>&)>;
  void pass(const char* what, const BatchWork& work);
  void exact_pass();
  void near_pass();
  void find_pairs(ExternalSorter<BandRec>& buckets);
  void frequent_lines(ExternalSorter<LineRec>& lines);
  void shingle_pass(const std::vector<uint64_t>& needed);
  std::vector<Edge> verify(const std::vector<PairRec>& pairs, double min_sim);
  void cluster(const std::vector<Edge>& edges);
  void resolve_exact_clusters();
  void output_pass();

  Node node_of(uint64_t ordinal, const Document& doc) const {
    uint64_t pri = cfg_.keep == KeepPolicy::longest ? ~static_cast<uint64_t>(doc.text.size()) : 0;
    return {pri, rank_ << kRankShift | ordinal};
  }
  bool empty_text(std::string_view t) const {
    for (char c : t)
      if (!ascii_space(static_cast<unsigned char>(c))) return false;
    return true;
  }
  size_t budget(double share) const { return static_cast<size_t>(static_cast<double>(cfg_.mem) * share); }

  const DedupConfig& cfg_;
  Comm& comm_;
  Stats& stats_;
  std::vector<InputPart> parts_;
  std::string tmp_;
  uint64_t rank_;
  bool first_pass_ = true;
  int64_t docs_ = 0;              // documents in this rank's part
  std::vector<int64_t> offsets_;  // global number of each rank's first document

  std::vector<DupRec> exact_dups_;  // by doc
  std::vector<PairRec> firsts_;     // (first copy, duplicate) by first; with --clusters
  std::vector<PairRec> pairs_;      // candidate pairs (a here), unique
  std::vector<DocLine> line_hits_;  // frequent lines of this rank's documents, by doc
  std::unique_ptr<ShingleStore> store_;
  std::vector<Assign> assigns_;  // by doc
};

void Deduper::pass(const char* what, const BatchWork& work) {
  SourceConfig scfg = cfg_.source;
  Stats pass_stats;
  if (!first_pass_) scfg.report_limit = -1;  // malformed lines were reported by the first pass
  DocumentSource source(parts_, scfg, first_pass_ ? stats_ : pass_stats);
  Progress progress(what, source.total_bytes());
  std::vector<int64_t> ordinals;
  int64_t next = 0;
  for_each_batch(
      source, cfg_.source.jsonl, cfg_.batch, progress, [](size_t) {},
      [](size_t, SourceDoc&, int) {},
      [&](std::vector<SourceDoc>& batch) {
        ordinals.assign(batch.size(), -1);
        for (size_t i = 0; i < batch.size(); ++i)
          if (batch[i].ok()) ordinals[i] = next++;
        work(batch, ordinals);
      });
  source.finish();
  if (first_pass_) {
    docs_ = next;
    stats_.add("bytes_in", static_cast<int64_t>(source.bytes_in()));
    stats_.add("bytes_in_compressed", static_cast<int64_t>(source.bytes_read()));
    offsets_.assign(1, 0);
    for (int64_t n : comm_.allgather(docs_)) offsets_.push_back(offsets_.back() + n);
  } else if (next != docs_) {
    throw Error(parts_.empty() ? "" : parts_[0].path,
                "the input changed while llm-dedup was reading it (" + std::to_string(docs_) +
                    " documents, then " + std::to_string(next) + ")");
  }
  first_pass_ = false;
  progress.finish();
}

// Pass A: exact duplicates. Also counts the documents (every run makes this pass).
void Deduper::exact_pass() {
  Shuffle<ExactRec> shuffle(comm_, tmp_, budget(0.9), "exact hashes");
  std::vector<Hash128> hashes;
  std::vector<uint8_t> hashed;
  pass("documents (exact pass)", [&](std::vector<SourceDoc>& batch, const std::vector<int64_t>& ord) {
    hashes.resize(batch.size());
    hashed.assign(batch.size(), 0);
    if (cfg_.exact) {
#pragma omp parallel for schedule(dynamic, 16)
      for (size_t i = 0; i < batch.size(); ++i) {
        if (ord[i] < 0 || empty_text(batch[i].doc.text)) continue;
        hashes[i] = exact_hash(batch[i].doc.text, cfg_.normalize);
        hashed[i] = 1;
      }
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      if (ord[i] < 0) continue;
      if (empty_text(batch[i].doc.text)) stats_.add("docs_empty");
      if (!hashed[i]) continue;
      Node n = node_of(static_cast<uint64_t>(ord[i]), batch[i].doc);
      shuffle.add(static_cast<int>(hashes[i].lo % static_cast<uint64_t>(comm_.size())),
                  {hashes[i].hi, hashes[i].lo, n});
    }
  });
  if (!cfg_.exact) return;
  // Each group of equal hashes keeps its least node; the others learn which one that is.
  auto& sorted = shuffle.finish();
  Shuffle<DupRec> dups(comm_, tmp_, budget(0.25), "exact duplicates");
  Shuffle<PairRec> firsts(comm_, tmp_, budget(0.25), "exact duplicates");
  ExactRec prev{}, r{};
  bool have = false;
  Node first;
  while (sorted.next(r)) {
    if (have && r.hi == prev.hi && r.lo == prev.lo) {
      dups.add(doc_owner(r.node.doc), {r.node.doc, first});
      if (!cfg_.clusters.empty()) firsts.add(doc_owner(first.doc), {first, r.node});
    } else {
      first = r.node;
    }
    prev = r;
    have = true;
  }
  exact_dups_ = drain(dups.finish());
  firsts_ = drain(firsts.finish());
}

// Pass B: band keys and line hashes of the documents that are not exact duplicates.
void Deduper::near_pass() {
  const bool lines = cfg_.line_min_docs > 0;
  if (!cfg_.near && !lines) return;
  const size_t bands = static_cast<size_t>(cfg_.minhash.bands);
  Shuffle<BandRec> band_shuffle(comm_, tmp_, budget(lines ? 0.6 : 0.9), "band keys");
  Shuffle<LineRec> line_shuffle(comm_, tmp_, budget(lines ? 0.3 : 0.01), "line hashes");
  std::vector<std::vector<uint64_t>> keys, line_keys;
  std::vector<uint8_t> skip;
  size_t dup_at = 0;
  const uint64_t size = static_cast<uint64_t>(comm_.size());
  pass("documents (near pass)", [&](std::vector<SourceDoc>& batch, const std::vector<int64_t>& ord) {
    keys.resize(batch.size());
    line_keys.resize(batch.size());
    skip.assign(batch.size(), 1);
    for (size_t i = 0; i < batch.size(); ++i) {
      if (ord[i] < 0 || empty_text(batch[i].doc.text)) continue;
      uint64_t doc = rank_ << kRankShift | static_cast<uint64_t>(ord[i]);
      while (dup_at < exact_dups_.size() && exact_dups_[dup_at].doc < doc) ++dup_at;
      skip[i] = dup_at < exact_dups_.size() && exact_dups_[dup_at].doc == doc;
    }
#pragma omp parallel for schedule(dynamic, 4)
    for (size_t i = 0; i < batch.size(); ++i) {
      keys[i].clear();
      line_keys[i].clear();
      if (skip[i]) continue;
      const std::string& t = batch[i].doc.text;
      if (cfg_.near) {
        thread_local std::vector<uint64_t> shingles, sig;
        text::shingle_hashes(t, cfg_.minhash, shingles);
        if (!shingles.empty()) {
          text::minhash_signature(shingles, cfg_.minhash, sig);
          text::band_keys(sig, cfg_.minhash, keys[i]);
        }
      }
      if (lines) {
        for (size_t b = 0; b <= t.size();) {
          size_t e = t.find('\n', b);
          if (e == std::string::npos) e = t.size();
          if (uint64_t k = line_key(std::string_view(t).substr(b, e - b))) line_keys[i].push_back(k);
          b = e + 1;
        }
        std::sort(line_keys[i].begin(), line_keys[i].end());
        line_keys[i].erase(std::unique(line_keys[i].begin(), line_keys[i].end()), line_keys[i].end());
      }
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      if (skip[i]) continue;
      Node n = node_of(static_cast<uint64_t>(ord[i]), batch[i].doc);
      if (!keys[i].empty()) stats_.add("docs_hashed");
      for (size_t b = 0; b < keys[i].size() && b < bands; ++b)
        band_shuffle.add(static_cast<int>(keys[i][b] % size), {keys[i][b], n});
      for (uint64_t k : line_keys[i]) line_shuffle.add(static_cast<int>(k % size), {k, n.doc});
    }
  });
  if (cfg_.near) find_pairs(band_shuffle.finish());
  if (lines) frequent_lines(line_shuffle.finish());
}

// Buckets of equal band keys become candidate pairs: all pairs in a small bucket; in a large
// one each member pairs with the first few members and with the one before it (each member is
// then compared with the documents most likely to be its kept copy, in linear work).
void Deduper::find_pairs(ExternalSorter<BandRec>& buckets) {
  constexpr size_t kAllPairs = 16, kAnchors = 4;
  Shuffle<PairRec> shuffle(comm_, tmp_, budget(0.25), "candidate pairs");
  std::vector<Node> members;
  auto flush = [&] {
    const size_t n = members.size();
    if (n >= 2) {
      stats_.add("buckets_shared");
      auto add = [&](size_t i, size_t j) {
        if (!(members[i] == members[j]))
          shuffle.add(doc_owner(members[i].doc), {members[i], members[j]});
      };
      for (size_t j = 1; j < n; ++j) {
        if (!cfg_.verify) add(0, j);
        else if (n <= kAllPairs) for (size_t i = 0; i < j; ++i) add(i, j);
        else {
          for (size_t i = 0; i < std::min(j, kAnchors); ++i) add(i, j);
          if (j > kAnchors) add(j - 1, j);
        }
      }
    }
    members.clear();
  };
  BandRec r{}, prev{};
  bool have = false;
  while (buckets.next(r)) {
    if (have && r.key != prev.key) flush();
    members.push_back(r.node);
    prev = r;
    have = true;
  }
  flush();
  auto& sorted = shuffle.finish();
  pairs_.clear();
  for (PairRec p; sorted.next(p);)
    if (pairs_.empty() || !(pairs_.back() == p)) pairs_.push_back(p);
  stats_.add("candidate_pairs", static_cast<int64_t>(pairs_.size()));
}

// Lines found in at least --lines documents: every such (document, line) goes to the
// document's owner. A group's documents are held only until the count is reached.
void Deduper::frequent_lines(ExternalSorter<LineRec>& lines) {
  Shuffle<DocLine> hits(comm_, tmp_, budget(0.25), "frequent lines");
  const size_t min_docs = static_cast<size_t>(cfg_.line_min_docs);
  std::vector<uint64_t> held;
  uint64_t hash = 0, last_doc = 0;
  size_t count = 0;
  int64_t frequent = 0;
  for (LineRec r; lines.next(r);) {
    if (count == 0 || r.hash != hash) {
      hash = r.hash;
      count = 0;
      held.clear();
    } else if (r.doc == last_doc) {
      continue;
    }
    last_doc = r.doc;
    ++count;
    if (count < min_docs) {
      held.push_back(r.doc);
      continue;
    }
    if (count == min_docs) {
      ++frequent;
      for (uint64_t d : held) hits.add(doc_owner(d), {d, hash});
      held.clear();
    }
    hits.add(doc_owner(r.doc), {r.doc, hash});
  }
  stats_.add("frequent_lines", frequent);
  line_hits_ = drain(hits.finish());
}

// Pass C: the shingle sets of the documents in candidate pairs, into the store.
void Deduper::shingle_pass(const std::vector<uint64_t>& needed) {
  store_ = std::make_unique<ShingleStore>(tmp_);
  std::vector<std::vector<uint64_t>> sets;
  std::vector<uint8_t> want;
  size_t at = 0;
  pass("documents (verify pass)", [&](std::vector<SourceDoc>& batch, const std::vector<int64_t>& ord) {
    sets.resize(batch.size());
    want.assign(batch.size(), 0);
    for (size_t i = 0; i < batch.size(); ++i) {
      if (ord[i] < 0) continue;
      uint64_t o = static_cast<uint64_t>(ord[i]);
      while (at < needed.size() && needed[at] < o) ++at;
      want[i] = at < needed.size() && needed[at] == o;
    }
#pragma omp parallel for schedule(dynamic, 4)
    for (size_t i = 0; i < batch.size(); ++i)
      if (want[i]) text::shingle_hashes(batch[i].doc.text, cfg_.minhash, sets[i]);
    for (size_t i = 0; i < batch.size(); ++i)
      if (want[i]) store_->put(static_cast<uint64_t>(ord[i]), sets[i]);
  });
}

// Exact Jaccard of each pair (a on this rank): a's set travels to b's owner, which computes it.
// Returns the pairs with similarity >= min_sim among those whose b is here.
std::vector<Edge> Deduper::verify(const std::vector<PairRec>& pairs, double min_sim) {
  const int size = comm_.size();
  std::vector<Edge> edges;
  // Jaccard of a's set with each b's (b here), on all threads; edges in a stable order.
  auto compare = [&](const std::vector<std::pair<const std::vector<uint64_t>*, std::vector<Node>>>& work,
                     const std::vector<Node>& as) {
    std::vector<std::vector<Edge>> found(work.size());
    std::atomic<bool> missing{false};
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t w = 0; w < work.size(); ++w) {
      thread_local std::vector<uint64_t> set_b;
      for (const Node& b : work[w].second) {
        if (!store_->get(doc_ordinal(b.doc), set_b)) {
          missing = true;
          continue;
        }
        double sim = text::jaccard(*work[w].first, set_b);
        if (sim >= min_sim) found[w].push_back({as[w], b, sim});
      }
    }
    if (missing) throw Error("", "internal: no shingle set for a document in a candidate pair");
    for (auto& f : found) edges.insert(edges.end(), f.begin(), f.end());
  };
  std::vector<std::vector<uint64_t>> sets;
  std::vector<std::pair<const std::vector<uint64_t>*, std::vector<Node>>> work;
  std::vector<Node> as;
  if (size == 1) {  // everything is here: no messages, groups of 256 documents at a time
    for (size_t i = 0; i < pairs.size();) {
      sets.clear();
      work.clear();
      as.clear();
      sets.reserve(256);
      while (i < pairs.size() && sets.size() < 256) {
        sets.emplace_back();
        if (!store_->get(doc_ordinal(pairs[i].a.doc), sets.back()))
          throw Error("", "internal: no shingle set for a document in a candidate pair");
        std::vector<Node> bs;
        size_t j = i;
        for (; j < pairs.size() && pairs[j].a == pairs[i].a; ++j) bs.push_back(pairs[j].b);
        work.emplace_back(&sets.back(), std::move(bs));
        as.push_back(pairs[i].a);
        i = j;
      }
      compare(work, as);
    }
    return edges;
  }
  std::vector<Spool> out;
  const size_t share = std::min<size_t>(budget(0.2) / size, 64 << 20);
  for (int r = 0; r < size; ++r) out.emplace_back(tmp_, share, 0, "shingle sets in transit");
  std::vector<uint64_t> set_a;
  std::vector<std::vector<Node>> by_rank(size);
  std::string msg;
  for (size_t i = 0; i < pairs.size();) {
    size_t j = i;
    for (; j < pairs.size() && pairs[j].a == pairs[i].a; ++j)
      by_rank[doc_owner(pairs[j].b.doc)].push_back(pairs[j].b);
    if (!store_->get(doc_ordinal(pairs[i].a.doc), set_a))
      throw Error("", "internal: no shingle set for a document in a candidate pair");
    for (int r = 0; r < size; ++r) {
      if (by_rank[r].empty()) continue;
      // [Node a][u64 nb][nb Nodes][u64 ns][ns shingles]
      msg.clear();
      uint64_t nb = by_rank[r].size(), ns = set_a.size();
      msg.append(reinterpret_cast<const char*>(&pairs[i].a), sizeof(Node));
      msg.append(reinterpret_cast<const char*>(&nb), 8);
      msg.append(reinterpret_cast<const char*>(by_rank[r].data()), nb * sizeof(Node));
      msg.append(reinterpret_cast<const char*>(&ns), 8);
      msg.append(reinterpret_cast<const char*>(set_a.data()), ns * 8);
      out[r].append(msg.data(), msg.size());
      by_rank[r].clear();
    }
    i = j;
  }
  exchange(comm_, out, 32 << 20, [&](int, const std::string& chunk) {
    sets.clear();
    work.clear();
    as.clear();
    size_t records = 0;
    for_each_record(chunk, [&](const char*, size_t) { ++records; });
    sets.reserve(records);  // work points into sets
    for_each_record(chunk, [&](const char* p, size_t) {
      Node a;
      uint64_t nb, ns;
      std::memcpy(&a, p, sizeof a);
      std::memcpy(&nb, p + sizeof a, 8);
      std::vector<Node> bs(nb);
      std::memcpy(bs.data(), p + sizeof a + 8, nb * sizeof(Node));
      const char* q = p + sizeof a + 8 + nb * sizeof(Node);
      std::memcpy(&ns, q, 8);
      sets.emplace_back(ns);
      std::memcpy(sets.back().data(), q + 8, ns * 8);
      work.emplace_back(&sets.back(), std::move(bs));
      as.push_back(a);
    });
    compare(work, as);
  });
  return edges;
}

// Connected components of the edges: forests merged up a binary tree of ranks; rank 0 sends
// every member (and, with --clusters, every root) its assignment.
void Deduper::cluster(const std::vector<Edge>& edges) {
  const int size = comm_.size(), rank = comm_.rank();
  Forest forest;
  for (const Edge& e : edges) forest.unite(e.a, e.b);
  for (int step = 1; step < size; step *= 2) {
    std::vector<Spool> out;
    for (int r = 0; r < size; ++r) out.emplace_back(tmp_, budget(0.2) / size, sizeof(PairRec), "clusters");
    if (rank % (2 * step) == step)
      for (const PairRec& p : forest.links()) out[rank - step].append(&p, sizeof p);
    exchange(comm_, out, 32 << 20, [&](int, const std::string& chunk) {
      for (size_t i = 0; i + sizeof(PairRec) <= chunk.size(); i += sizeof(PairRec)) {
        PairRec p;
        std::memcpy(&p, chunk.data() + i, sizeof p);
        forest.unite(p.a, p.b);
      }
    });
  }
  std::vector<PairRec> links;
  if (rank == 0) links = forest.links();
  const bool clusters = !cfg_.clusters.empty();
  stats_.add("near_cluster_docs", rank == 0 ? static_cast<int64_t>(forest.size()) : 0);
  if (clusters && cfg_.verify) {
    // Similarity of each member to its kept document: (root, member) pairs verified at the
    // member's owner.
    Shuffle<PairRec> to_roots(comm_, tmp_, budget(0.25), "cluster members");
    for (const PairRec& l : links) to_roots.add(doc_owner(l.b.doc), {l.b, l.a});
    auto root_pairs = drain(to_roots.finish());
    for (const Edge& e : verify(root_pairs, -1.0)) assigns_.push_back({e.b.doc, e.a, e.sim, 0});
  } else {
    Shuffle<Assign> to_members(comm_, tmp_, budget(0.25), "cluster members");
    for (const PairRec& l : links) to_members.add(doc_owner(l.a.doc), {l.a.doc, l.b, std::nan(""), 0});
    assigns_ = drain(to_members.finish());
  }
  if (clusters) {  // roots are in their own cluster
    Shuffle<Assign> to_roots(comm_, tmp_, budget(0.1), "cluster roots");
    Node last{};
    bool have = false;
    std::vector<Node> roots;
    for (const PairRec& l : links) roots.push_back(l.b);
    std::sort(roots.begin(), roots.end());
    for (const Node& r : roots) {
      if (have && r == last) continue;
      to_roots.add(doc_owner(r.doc), {r.doc, r, 1.0, 0});
      last = r;
      have = true;
    }
    for (const Assign& a : drain(to_roots.finish())) assigns_.push_back(a);
  }
  std::sort(assigns_.begin(), assigns_.end());
}

// With --clusters: exact duplicates join the cluster of their first copy (or the first copy's
// own cluster, when it has no near duplicates).
void Deduper::resolve_exact_clusters() {
  Shuffle<Assign> to_dups(comm_, tmp_, budget(0.25), "exact duplicates");
  std::vector<Assign> own;
  for (size_t i = 0; i < firsts_.size();) {
    const Node first = firsts_[i].a;
    auto it = std::lower_bound(assigns_.begin(), assigns_.end(), Assign{first.doc, {}, 0, 0});
    Assign to;
    if (it != assigns_.end() && it->doc == first.doc) {
      to = *it;
    } else {
      to = {first.doc, first, 1.0, 0};
      own.push_back(to);
    }
    for (; i < firsts_.size() && firsts_[i].a == first; ++i)
      to_dups.add(doc_owner(firsts_[i].b.doc), {firsts_[i].b.doc, to.root, to.sim, 1});
  }
  for (const Assign& a : drain(to_dups.finish())) assigns_.push_back(a);
  assigns_.insert(assigns_.end(), own.begin(), own.end());
  std::sort(assigns_.begin(), assigns_.end());
}

// Pass D: the survivors, unchanged (but for removed lines), in input order.
void Deduper::output_pass() {
  auto out = open_rank_output(cfg_.output, cfg_.zstd, comm_);
  std::unique_ptr<OutputStream> clusters;
  if (!cfg_.clusters.empty()) clusters = open_rank_output(cfg_.clusters, false, comm_);
  size_t dup_at = 0, assign_at = 0, line_at = 0;
  std::string buf, cbuf, kept;
  std::vector<uint64_t> drop_keys;
  int64_t docs_out = 0, lines_removed = 0, docs_lines = 0;
  auto global = [&](uint64_t doc) {
    return offsets_[static_cast<size_t>(doc_owner(doc))] + static_cast<int64_t>(doc_ordinal(doc));
  };
  pass("documents (output pass)", [&](std::vector<SourceDoc>& batch, const std::vector<int64_t>& ord) {
    buf.clear();
    cbuf.clear();
    for (size_t i = 0; i < batch.size(); ++i) {
      if (ord[i] < 0) continue;
      Document& d = batch[i].doc;
      const uint64_t doc = rank_ << kRankShift | static_cast<uint64_t>(ord[i]);
      while (dup_at < exact_dups_.size() && exact_dups_[dup_at].doc < doc) ++dup_at;
      while (assign_at < assigns_.size() && assigns_[assign_at].doc < doc) ++assign_at;
      const bool exact_dup = dup_at < exact_dups_.size() && exact_dups_[dup_at].doc == doc;
      const Assign* a = assign_at < assigns_.size() && assigns_[assign_at].doc == doc ? &assigns_[assign_at] : nullptr;
      if (clusters && a) {
        cbuf += "{\"doc\":" + std::to_string(global(doc)) + ",\"id\":";
        if (d.has_id) append_json_string(cbuf, d.id);
        else cbuf += "null";
        cbuf += ",\"cluster\":" + std::to_string(global(a->root.doc)) + ",\"similarity\":";
        if (std::isnan(a->sim)) {
          cbuf += "null";
        } else {
          char num[32];
          snprintf(num, sizeof num, "%.4f", a->sim);
          cbuf += num;
        }
        cbuf += a->root.doc == doc ? ",\"kept\":true" : ",\"kept\":false";
        cbuf += exact_dup ? ",\"exact\":true}\n" : ",\"exact\":false}\n";
      }
      if (exact_dup) {
        stats_.drop("exact_duplicate");
        continue;
      }
      if (a && a->root.doc != doc) {
        stats_.drop("near_duplicate");
        continue;
      }
      drop_keys.clear();
      while (line_at < line_hits_.size() && line_hits_[line_at].doc < doc) ++line_at;
      for (; line_at < line_hits_.size() && line_hits_[line_at].doc == doc; ++line_at)
        drop_keys.push_back(line_hits_[line_at].hash);
      if (drop_keys.empty()) {
        buf += d.raw;
        buf += '\n';
      } else {
        kept.clear();
        int64_t removed = 0;
        const std::string& t = d.text;
        for (size_t b = 0; b <= t.size();) {
          size_t e = t.find('\n', b);
          if (e == std::string::npos) e = t.size();
          std::string_view line = std::string_view(t).substr(b, e - b);
          uint64_t k = line_key(line);
          if (k && std::binary_search(drop_keys.begin(), drop_keys.end(), k)) {
            ++removed;
          } else {
            if (!kept.empty()) kept += '\n';
            kept += line;
          }
          b = e + 1;
        }
        lines_removed += removed;
        ++docs_lines;
        if (empty_text(kept)) {
          stats_.drop("empty_after_line_dedup");
          continue;
        }
        d.text = kept;
        serialize_document(d, cfg_.source.jsonl, buf);
      }
      ++docs_out;
    }
    out->write(buf);
    stats_.add("bytes_out", static_cast<int64_t>(buf.size()));
    if (clusters) clusters->write(cbuf);
  });
  stats_.add("docs_out", docs_out);
  stats_.add("lines_removed", lines_removed);
  stats_.add("docs_with_lines_removed", docs_lines);
  out->commit();
  stats_.add("bytes_out_compressed", static_cast<int64_t>(out->bytes_written()));
  if (clusters) clusters->commit();
}

void Deduper::run() {
  exact_pass();
  stats_.add("docs_in", docs_);
  stats_.add("exact_duplicates", static_cast<int64_t>(exact_dups_.size()));
  near_pass();
  std::vector<Edge> edges;
  if (cfg_.near) {
    if (cfg_.verify) {
      // Which of this rank's documents need a shingle set: the a's here, the b's elsewhere.
      Shuffle<uint64_t> needs(comm_, tmp_, budget(0.25), "documents to verify");
      for (const PairRec& p : pairs_) {
        needs.add(doc_owner(p.a.doc), doc_ordinal(p.a.doc));
        needs.add(doc_owner(p.b.doc), doc_ordinal(p.b.doc));
      }
      std::vector<uint64_t> needed;
      auto& sorted = needs.finish();
      for (uint64_t o; sorted.next(o);)
        if (needed.empty() || needed.back() != o) needed.push_back(o);
      shingle_pass(needed);
      edges = verify(pairs_, cfg_.threshold);
      stats_.add("verified_pairs", static_cast<int64_t>(edges.size()));
    } else {
      for (const PairRec& p : pairs_) edges.push_back({p.a, p.b, std::nan("")});
    }
    pairs_.clear();
    pairs_.shrink_to_fit();
  }
  cluster(edges);
  if (!cfg_.clusters.empty()) resolve_exact_clusters();
  output_pass();
  stats_.add("spilled_bytes", static_cast<int64_t>(spilled_bytes_total()));
}

// stdin and pipes (process substitution) cannot be read four times: they are copied to a
// temporary file first, read by path through /proc/self/fd (the file has no name).
std::unique_ptr<TempFile> spool_input(const std::string& tmp, const std::string& path,
                                      std::string& copy_path) {
  auto file = std::make_unique<TempFile>(
      tmp, "a copy of " + (path == "-" ? std::string("stdin") : path), false);
  auto in = open_input(path);
  std::vector<char> buf(1 << 20);
  for (size_t n; (n = in->read(buf.data(), buf.size())) > 0;) file->append(buf.data(), n);
  copy_path = "/proc/self/fd/" + std::to_string(file->fd());
  return file;
}

bool rereadable(const std::string& path) {
  struct stat st;
  return path != "-" && !path.empty() && ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

void run_dedup(const std::vector<std::string>& inputs, const DedupConfig& cfg, Stats& stats) {
  Comm& comm = Comm::world();
  std::vector<std::string> files = expand_inputs(inputs.empty() ? std::vector<std::string>{"-"} : inputs);
  if (files.empty()) throw Error(inputs.empty() ? "" : inputs[0], "no input files found");
  if (comm.size() > (1 << 23)) throw Error("", "too many MPI ranks");
  std::vector<std::unique_ptr<TempFile>> copies;
  std::vector<std::pair<std::string, std::string>> labels;  // copy path, name for messages
  for (auto& f : files) {
    if (rereadable(f)) continue;
    if (comm.size() > 1) throw UsageError("stdin and pipes need a single process: give files under MPI");
    std::string copy;
    copies.push_back(spool_input(temp_dir(cfg.tmp), f, copy));
    labels.emplace_back(copy, f == "-" || f.empty() ? "(stdin)" : f);
    f = copy;
  }
  auto parts = split_inputs(files, comm.rank(), comm.size(), splittable_input);
  for (auto& p : parts)
    for (const auto& [copy, label] : labels)
      if (p.path == copy) p.label = label;
  Deduper(parts, cfg, stats).run();
}

}  // namespace llmkit
