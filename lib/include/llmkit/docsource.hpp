// Documents from the inputs every data command takes: JSONL(.zst/.gz) files, HTML files, WARC
// and WET files (.warc, .warc.gz), directories of those, or stdin. Reads this rank's share of
// the inputs in order, in batches, and reports malformed lines as "FILE:LINE: reason" (the first
// few in full, then a count) while counting them in the stats.
// Threads: next_batch() may run on a reading thread while settle() runs on the consuming one;
// only settle() and finish() touch the Stats given to the constructor.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "llmkit/io.hpp"
#include "llmkit/jsonl.hpp"
#include "llmkit/log.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/stats.hpp"

namespace llmkit {

enum class InputFormat { detect, jsonl, html, warc };
InputFormat parse_input_format(const std::string& name);  // throws UsageError

struct SourceConfig {
  InputFormat format = InputFormat::detect;
  JsonlOptions jsonl;
  size_t max_line_bytes = 64 << 20;  // longer JSONL lines, larger HTML files: skipped, counted
  int report_limit = 10;             // malformed lines reported in full on stderr
  bool strict = false;               // a malformed line is an Error instead of a counted skip
  // Set by the commands that read JSONL documents only (llm-dedup, llm-tok): WARC or HTML
  // input is an Error that says to run llm-clean first (see non_jsonl_kind).
  bool jsonl_only = false;
};

// What the first bytes of an input (decompressed) show it to be when it is not JSONL: "a WARC
// file", "an HTML or XML file", "an llmkit token shard", "binary data", ...; "" when it may be
// JSONL (text that is not JSON is left to the line-by-line checks).
std::string non_jsonl_kind(std::string_view head);

// A document as it comes from an input. JSONL lines arrive unparsed (doc.raw holds the line)
// so that parsing can run in parallel: call parse_pending() on each, from any thread, then
// DocumentSource::settle() on the batch, in order, from one thread. For HTML (files or WARC
// records) doc.text holds the page bytes and `html` is set: the main text is extracted later.
struct SourceDoc {
  Document doc;
  bool pending_parse = false;  // JSONL line not parsed yet
  std::string error;           // why the input is malformed ("invalid_json", ...), "" if fine
  std::string detail;          // more about the error, for the message
  bool html = false;
  std::string charset;  // charset hint from the HTTP Content-Type, if any
  std::string where;    // "FILE:LINE" or "FILE@OFFSET" for messages

  // Parses a pending JSONL line with the calling thread's parser. Thread-safe.
  void parse_pending(const JsonlOptions& opts);
  bool ok() const { return error.empty() && !pending_parse; }
};

// True for a plain (uncompressed) JSONL file, which ranks may split by byte ranges.
bool splittable_input(const std::string& path);

// Expands directories (recursively, sorted) into the files in them with a known extension.
std::vector<std::string> expand_inputs(const std::vector<std::string>& args);

class DocumentSource {
 public:
  DocumentSource(std::vector<InputPart> parts, SourceConfig cfg, Stats& stats);
  ~DocumentSource();
  // Appends up to max_docs documents (or about max_bytes of text) to `batch`; false at the end.
  bool next_batch(std::vector<SourceDoc>& batch, size_t max_docs, size_t max_bytes);
  // After parse_pending() on every document of a batch: reports and counts the malformed ones,
  // in input order (with --strict, throws at the first). Documents with !ok() are to be skipped.
  void settle(std::vector<SourceDoc>& batch);
  // After the last batch: adds the reading side's counts (files, ignored records) to the stats.
  void finish();
  uint64_t bytes_read() const;  // raw (compressed) bytes consumed, for progress
  uint64_t bytes_in() const;    // decompressed bytes consumed: the bytes of the documents' lines,
                                // pages, records (the stats' bytes_in)
  uint64_t total_bytes() const { return total_bytes_; }

 private:
  struct Reader;
  bool open_next();
  void report_malformed(const std::string& where, const std::string& reason,
                        const std::string& detail = "");
  void defer_warc_skip(Reader& r, std::vector<SourceDoc>& batch);
  std::vector<InputPart> parts_;
  size_t next_part_ = 0;
  SourceConfig cfg_;
  Stats& stats_;        // consuming thread only
  Stats reader_stats_;  // reading thread only, merged by finish()
  std::unique_ptr<Reader> reader_;
  uint64_t total_bytes_ = 0, done_bytes_ = 0, done_bytes_in_ = 0;
  int64_t reported_ = 0;
};

// The documents of a source, batch by batch, as every data command reads them: the next batch is
// read on a second thread while this one is worked on; begin_batch(size) is called first (to
// size per-document results), then each document is parsed and handed to
// per_doc(index, doc, thread) in parallel (OpenMP) when it is well formed; then the batch is
// settled (malformed lines reported in order) and given to end_batch on this thread, in input
// order. Progress counts the well-formed documents. Stops at a signal (throw_if_stopped).
struct BatchLimits {
  size_t docs = 2048;
  size_t bytes = 16 << 20;
};
void for_each_batch(DocumentSource& source, const JsonlOptions& jsonl, BatchLimits limits,
                    Progress& progress, const std::function<void(size_t)>& begin_batch,
                    const std::function<void(size_t, SourceDoc&, int)>& per_doc,
                    const std::function<void(std::vector<SourceDoc>&)>& end_batch);

class OptionParser;
// The input and output options of every data command, in its "Input and output" section:
// -o/--output, --zstd, --text-field, --strict, --max-line-bytes (and, when `format` is true,
// --format for commands that read HTML and WARC too).
void add_document_options(OptionParser& op, SourceConfig& source, std::string& output, bool& zstd,
                          bool format);

// The output stream of this rank: stdout for "-" or "" (one rank only, else a UsageError),
// otherwise `path` or its per-rank part (rank_output_path) with a .jsonl or .jsonl.zst suffix.
std::unique_ptr<OutputStream> open_rank_output(const std::string& path, bool zstd, Comm& comm);

}  // namespace llmkit
