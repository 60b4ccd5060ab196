// llm-dedup: exact, near-duplicate (MinHash-LSH) and line-level deduplication of JSONL documents.
#include <cmath>
#include <cstdio>

#include "llmkit/dedup.hpp"
#include "llmkit/docsource.hpp"
#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/options.hpp"
#include "llmkit/tool.hpp"

using namespace llmkit;

namespace {

int dedup_main(int argc, char** argv) {
  DedupConfig cfg;
  cfg.source.format = InputFormat::jsonl;
  cfg.source.jsonl_only = true;
  bool no_exact = false, no_near = false, no_verify = false, explain = false;
  std::string plot;
  int64_t ngram = cfg.minhash.ngram, cjk_ngram = cfg.minhash.cjk_ngram;
  int64_t bands = cfg.minhash.bands, rows = cfg.minhash.rows;

  OptionParser op("llm-dedup", "llm-dedup [OPTIONS] [INPUT...]",
                  "Removes exact and near-duplicate documents (MinHash-LSH) and, with --lines,\n"
                  "lines repeated across many documents. INPUT: JSONL(.zst/.gz) files or\n"
                  "directories of them; none or '-' reads stdin. Writes the surviving documents\n"
                  "unchanged, in input order.");
  op.section("Input and output");
  add_document_options(op, cfg.source, cfg.output, cfg.zstd, false);
  op.string("clusters", 0, "FILE", &cfg.clusters,
            "write one JSONL row per document in a duplicate cluster: doc, id, cluster,\n"
            "similarity to the kept document, kept, exact");
  op.section("Exact duplicates");
  op.flag("no-exact", 0, &no_exact, "skip exact dedup");
  op.value("normalize", 0, "MODE", [&](const std::string& v) {
             if (v == "nfkc") cfg.normalize = true;
             else if (v == "none") cfg.normalize = false;
             else throw UsageError("--normalize: use nfkc or none");
           },
           "text hashed for exact dedup: nfkc (default: NFKC, case-folded, blanks\n"
           "collapsed) or none (the text as it is)");
  op.section("Near duplicates (MinHash LSH; defaults from FineWeb)");
  op.flag("no-near", 0, &no_near, "skip near-duplicate dedup");
  op.integer("ngram", 0, "N", &ngram, "words per shingle (default 5)");
  op.integer("cjk-ngram", 0, "N", &cjk_ngram, "characters per shingle in CJK text (default 5)");
  op.integer("bands", 0, "B", &bands, "LSH bands (default 14)");
  op.integer("rows", 0, "R", &rows, "hash functions per band (default 8)");
  op.number("threshold", 0, "J", &cfg.threshold,
            "exact Jaccard of the shingle sets for a verified duplicate (default 0.8)");
  op.flag("no-verify", 0, &no_verify, "every candidate pair (a shared band) is a duplicate");
  op.value("keep", 0, "WHICH", [&](const std::string& v) {
             if (v == "first") cfg.keep = KeepPolicy::first;
             else if (v == "longest") cfg.keep = KeepPolicy::longest;
             else throw UsageError("--keep: use first or longest");
           },
           "the document a cluster keeps: first (in input order, default) or longest");
  op.flag("explain", 0, &explain,
          "print the LSH S-curve for --bands/--rows as a table and exit");
  op.string("plot", 0, "FILE.png", &plot, "with --explain: draw the S-curve with gnuplot");
  op.section("Line dedup (CCNet style)");
  op.integer("lines", 0, "N", &cfg.line_min_docs,
             "remove lines found in N or more documents (menus, cookie notices); 0: off");
  op.section("Memory");
  op.value("mem", 0, "SIZE", [&](const std::string& v) { cfg.mem = parse_bytes(v, "--mem"); },
           "memory for hashes, band keys and pairs per rank (default 2G); the rest\n"
           "spills to sorted runs in --tmp");
  op.string("tmp", 0, "DIR", &cfg.tmp, "directory for spilled runs (default $TMPDIR or /tmp)");
  op.epilog(
      "Exit status: 0 success (malformed lines are skipped and counted), 1 runtime or data\n"
      "error, 2 usage error. See llm-dedup(1).\n\n"
      "Examples:\n"
      "  llm-dedup -o dedup.jsonl.zst --stats dedup.json clean.jsonl.zst\n"
      "  mpirun -np 4 llm-dedup --mem 8G --tmp /scratch -o dedup/ clean/\n"
      "  llm-dedup --explain --bands 20 --rows 5");
  std::vector<std::string> inputs = op.parse(argc, argv);

  if (ngram < 1 || cjk_ngram < 1) throw UsageError("--ngram and --cjk-ngram must be at least 1");
  if (bands < 1 || rows < 1 || bands * rows > 65536)
    throw UsageError("--bands and --rows must be at least 1, bands*rows at most 65536");
  if (!(cfg.threshold > 0 && cfg.threshold <= 1)) throw UsageError("--threshold must be in (0, 1]");
  if (cfg.line_min_docs < 0 || cfg.line_min_docs == 1)
    throw UsageError("--lines must be 0 (off) or at least 2");
  if (cfg.mem < (1 << 20)) throw UsageError("--mem must be at least 1M");
  cfg.minhash.ngram = static_cast<int>(ngram);
  cfg.minhash.cjk_ngram = static_cast<int>(cjk_ngram);
  cfg.minhash.bands = static_cast<int>(bands);
  cfg.minhash.rows = static_cast<int>(rows);
  cfg.minhash.seed = static_cast<uint64_t>(op.common().seed);
  cfg.exact = !no_exact;
  cfg.near = !no_near;
  cfg.verify = !no_verify;
  if (!plot.empty()) explain = true;
  if (!plot.empty()) check_output_file(plot, "--plot");
  if (explain) {
    std::fputs(explain_lsh(cfg.minhash.bands, cfg.minhash.rows, cfg.threshold).c_str(), stdout);
    if (!plot.empty()) plot_lsh(plot, cfg.minhash.bands, cfg.minhash.rows, cfg.threshold);
    return 0;
  }

  check_output_path(cfg.output, "-o");
  check_output_path(cfg.clusters, "--clusters");
  if (!cfg.tmp.empty()) check_output_dir(cfg.tmp, "--tmp");
  Stats stats;
  run_dedup(inputs, cfg, stats);
  Comm& comm = Comm::world();
  stats.reduce(comm);
  if (comm.rank() == 0) {
    int64_t cand = stats.get("candidate_pairs"), ver = stats.get("verified_pairs");
    if (cfg.near && cfg.verify && cand > 0)
      stats.set_derived("false_candidate_rate", 1.0 - static_cast<double>(ver) / static_cast<double>(cand));
    LLMKIT_INFO("%lld documents in, %lld out: %lld exact and %lld near duplicates removed, "
                "%lld lines removed",
                static_cast<long long>(stats.get("docs_in")), static_cast<long long>(stats.get("docs_out")),
                static_cast<long long>(stats.dropped("exact_duplicate")),
                static_cast<long long>(stats.dropped("near_duplicate")),
                static_cast<long long>(stats.get("lines_removed")));
  }
  stats.write(op.common().stats_file, "llm-dedup", comm);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run_tool("llm-dedup", argc, argv, dedup_main); }
