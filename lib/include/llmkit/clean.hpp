// llm-clean's pipeline as a library: extraction, repair, language id, quality rules, PII.
// The command parses options into a CleanConfig and calls run_clean().
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "llmkit/docsource.hpp"
#include "llmkit/html.hpp"
#include "llmkit/pii.hpp"
#include "llmkit/quality.hpp"
#include "llmkit/unicode.hpp"

namespace llmkit {

struct CleanConfig {
  SourceConfig source;
  bool extract = true;  // HTML: the block rules (link density, short blocks) on; off keeps
                        // every text block outside script/style/nav/footer/aside and the like
  text::ExtractConfig extract_cfg;
  // Extraction thresholds as parameters (-P extract.NAME=V); copied into extract_cfg.
  double max_link_density = 0.5, min_block_chars = 60, short_block_chars = 20;
  bool repair = true;
  text::RepairConfig repair_cfg;
  bool langid = true;
  std::vector<std::string> keep_langs;  // empty: keep every language
  double min_lang_score = 0.65;         // with keep_langs: drop below this score
  double lang_max_bytes = 4096;         // CLD2 reads at most this much of each document
  bool quality = true;
  text::QualityConfig quality_cfg;
  bool pii = true;
  text::PiiConfig pii_cfg;
  size_t min_chars = 1;  // documents shorter than this after cleaning are dropped ("empty")

  std::string output;    // "" or "-": stdout; a directory or a file (per-rank parts under MPI)
  bool zstd = false;
  std::string rejected;  // "" or a file (per-rank parts under MPI) for dropped documents
  // Every document gets its "lang" fields, dropped ones too. Otherwise (without keep_langs and
  // rejected) a document the quality rules drop whatever its language has none: CLD2 is not run.
  bool lang_of_dropped = false;
  size_t batch_docs = 2048;
  size_t batch_bytes = 16 << 20;
};

// Every tunable threshold of the command, for -P NAME=VALUE and --list-params: extraction,
// language id and the quality rules. The Params point into `cfg`.
std::vector<Param> clean_params(CleanConfig& cfg);

// What happened to one document. Thread-safe given a shared const Cleaner.
class Cleaner {
 public:
  explicit Cleaner(const CleanConfig& cfg);  // cfg must outlive the Cleaner
  ~Cleaner();
  // Cleans `sd` in place. Returns "" to keep it, else the drop reason "stage:rule".
  std::string clean(SourceDoc& sd, Stats& stats) const;

 private:
  std::string quality_then_langid(Document& doc, size_t lang_bytes) const;
  const CleanConfig& cfg_;
  bool lazy_langid_ = false;
  text::ExtractConfig extract_cfg_;
  text::RepairConfig html_repair_cfg_;  // repair_cfg without whitespace normalization
  std::unique_ptr<text::PiiRedactor> pii_;
};

// Runs the whole command on this rank's share of `inputs`; fills `stats` (not yet reduced).
void run_clean(const std::vector<std::string>& inputs, const CleanConfig& cfg, Stats& stats);

}  // namespace llmkit
