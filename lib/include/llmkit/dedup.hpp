// llm-dedup's engine (lib/text/dedup.cpp): exact, near-duplicate (MinHash-LSH) and line-level
// deduplication of JSONL documents, on one process or across MPI ranks, in bounded memory.
//
// The passes over this rank's share of the input (each a fresh read; stdin is copied to a
// temporary file first):
//   A  exact: xxh3-128 of the normalised text, shuffled to owner ranks by hash; all but the
//      first of each group are duplicates.
//   B  near: shingles -> MinHash signature -> band keys, shuffled to owner ranks by key, and
//      (--lines) normalised line hashes, shuffled by hash. Exact duplicates are skipped.
//      Bucket owners emit candidate pairs, deduplicated at the owner of their first document.
//   C  verify: the shingle sets of the documents in candidate pairs are recomputed and kept in
//      a temporary file; each pair's exact Jaccard is computed at the owner of its second
//      document, the first one's set travelling there.
//   clustering: union-find over verified pairs on each rank, forests merged up a binary tree
//      of ranks to rank 0, which sends every member its cluster's kept document (the least in
//      the keep order: input order, or longest first).
//   D  output: survivors written unchanged in input order (lines removed where --lines found
//      them frequent), --clusters rows for every document in a cluster.
// Memory: the record structures (hashes, band keys, pairs, line hashes) stay within --mem,
// spilling sorted runs to --tmp; rank 0 holds one entry per document in a cluster.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "llmkit/docsource.hpp"
#include "llmkit/minhash.hpp"
#include "llmkit/stats.hpp"

namespace llmkit {

enum class KeepPolicy { first, longest };

struct DedupConfig {
  std::string output = "-";
  bool zstd = false;
  SourceConfig source;
  BatchLimits batch;
  bool exact = true;      // exact dedup on
  bool normalize = true;  // exact: hash the normalised text (NFKC casefold, blanks collapsed)
  bool near = true;       // MinHash-LSH near-dup dedup on
  text::MinHashConfig minhash;
  double threshold = 0.8;  // verified Jaccard for a near duplicate
  bool verify = true;      // off: every candidate pair is a duplicate
  KeepPolicy keep = KeepPolicy::first;
  int64_t line_min_docs = 0;  // --lines N: remove lines found in >= N documents; 0 off
  std::string clusters;       // --clusters FILE
  size_t mem = size_t{2} << 30;
  std::string tmp;  // --tmp DIR ("" = $TMPDIR or /tmp)
};

// The text exact dedup hashes: NFKC with case folding (ICU's NFKC_Casefold), runs of
// whitespace collapsed to one space, trimmed.
void normalize_for_exact(std::string_view text, std::string& out);

struct Hash128 {
  uint64_t hi = 0, lo = 0;
};
// xxh3-128 of the text, normalised first when `normalize`.
Hash128 exact_hash(std::string_view text, bool normalize);

// The key of a line for --lines: xxh3-64 of the line trimmed, ASCII lower-cased, digits as 0
// (CCNet's normalisation, simplified); 0 for a blank line.
uint64_t line_key(std::string_view line);

// The LSH S-curve as a table: similarity, probability of becoming a candidate, and the
// threshold where the curve is steepest, (1/bands)^(1/rows).
std::string explain_lsh(int bands, int rows, double threshold);
// Draws the S-curve with gnuplot into a PNG file (Error if gnuplot is missing or fails).
void plot_lsh(const std::string& png, int bands, int rows, double threshold);

void run_dedup(const std::vector<std::string>& inputs, const DedupConfig& cfg, Stats& stats);

}  // namespace llmkit
