#include "llmkit/docsource.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <cstring>
#include <filesystem>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"
#include "llmkit/options.hpp"
#include "llmkit/prefetch.hpp"
#include "llmkit/tool.hpp"
#include "llmkit/warc.hpp"

namespace llmkit {
namespace {

bool ends_with_any(const std::string& s, std::initializer_list<const char*> suffixes) {
  for (const char* suf : suffixes)
    if (has_suffix(s, suf)) return true;
  return false;
}

InputFormat format_from_name(const std::string& path) {
  if (ends_with_any(path, {".html", ".htm", ".xhtml"})) return InputFormat::html;
  if (ends_with_any(path, {".warc", ".warc.gz", ".warc.zst", ".wet", ".wet.gz", ".wet.zst"}))
    return InputFormat::warc;
  if (ends_with_any(path, {".jsonl", ".jsonl.zst", ".jsonl.gz", ".json", ".json.zst", ".json.gz",
                           ".ndjson", ".ndjson.zst", ".ndjson.gz"}))
    return InputFormat::jsonl;
  return InputFormat::detect;
}

InputFormat format_from_bytes(std::string_view head) {
  size_t i = 0;
  while (i < head.size() && std::isspace(static_cast<unsigned char>(head[i]))) ++i;
  head.remove_prefix(i);
  if (head.substr(0, 5) == "WARC/") return InputFormat::warc;
  if (!head.empty() && head[0] == '{') return InputFormat::jsonl;
  if (!head.empty() && head[0] == '<') return InputFormat::html;
  return InputFormat::jsonl;  // let the JSONL reader report what is wrong, line by line
}

// An input stream whose first bytes were already read for format detection.
class PrefixedStream : public InputStream {
 public:
  PrefixedStream(std::unique_ptr<InputStream> in, std::string prefix)
      : in_(std::move(in)), prefix_(std::move(prefix)) {
    name_ = in_->name();
    compression_ = in_->compression();
  }
  size_t read(char* buf, size_t n) override {
    if (pos_ < prefix_.size()) {
      size_t k = std::min(n, prefix_.size() - pos_);
      std::memcpy(buf, prefix_.data() + pos_, k);
      pos_ += k;
      return k;
    }
    return in_->read(buf, n);
  }
  uint64_t raw_bytes_read() const override { return in_->raw_bytes_read(); }
  uint64_t bytes_read() const override { return in_->bytes_read(); }  // the prefix came through it

 private:
  std::unique_ptr<InputStream> in_;
  std::string prefix_;
  size_t pos_ = 0;
};

// Reads up to n bytes, growing the buffer as data arrives (n may be a large limit).
std::string read_head(InputStream& in, size_t n) {
  std::string head;
  char buf[65536];
  while (head.size() < n) {
    size_t r = in.read(buf, std::min(sizeof buf, n - head.size()));
    if (r == 0) break;
    head.append(buf, r);
  }
  return head;
}

std::string compression_name(Compression c) {
  return c == Compression::gzip ? " (gzip-compressed)" : c == Compression::zstd ? " (zstd-compressed)" : "";
}

// Bytes that text does not hold: control characters other than tab, newlines, form feed and
// escape, and bytes outside well-formed UTF-8 sequences (a sequence cut at the end of `head`
// counts as well formed).
size_t odd_bytes(std::string_view head) {
  size_t odd = 0;
  for (size_t i = 0; i < head.size();) {
    const unsigned char c = static_cast<unsigned char>(head[i]);
    if (c < 0x80) {
      odd += (c < 0x20 && c != '\t' && c != '\n' && c != '\v' && c != '\f' && c != '\r' && c != 0x1b) || c == 0x7f;
      ++i;
      continue;
    }
    const size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    size_t k = 1;
    while (len && k < len && i + k < head.size() && (static_cast<unsigned char>(head[i + k]) & 0xC0) == 0x80) ++k;
    if (len == 0 || (k < len && i + k < head.size())) {
      ++odd;
      ++i;
    } else {
      i += k;
    }
  }
  return odd;
}

}  // namespace

std::string non_jsonl_kind(std::string_view head) {
  auto starts = [&](std::string_view magic) { return head.substr(0, magic.size()) == magic; };
  if (starts(std::string_view("LLMKTOK\0", 8))) return "an llmkit token shard";
  if (head.size() >= 4) {
    uint32_t magic;
    std::memcpy(&magic, head.data(), 4);
    if (magic == 20240520 || magic == 20240801) return "an llm.c token file";
    if (magic == 20240326) return "an llm.c GPT-2 checkpoint";
  }
  if (starts("\x1f\x8b") || starts("\x28\xb5\x2f\xfd")) return "compressed data inside compressed data";
  if (starts("PK\x03\x04")) return "a zip archive";
  if (head.size() >= 262 && head.substr(257, 5) == "ustar") return "a tar archive";
  std::string_view text = head;
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);  // a UTF-8 byte order mark
  size_t i = 0;
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  text.remove_prefix(i);
  if (text.substr(0, 5) == "WARC/") return "a WARC file";
  if (!text.empty() && text[0] == '<') return "an HTML or XML file";
  if (!text.empty() && text[0] == '{') return "";  // JSON lines; a bad one later is a counted skip
  if (head.find('\0') != std::string_view::npos || odd_bytes(head) * 10 > head.size()) return "binary data";
  return "";
}

bool splittable_input(const std::string& path) {
  return path != "-" && format_from_name(path) == InputFormat::jsonl &&
         sniff_compression(path) == Compression::none;
}

InputFormat parse_input_format(const std::string& name) {
  if (name == "auto" || name == "detect") return InputFormat::detect;
  if (name == "jsonl") return InputFormat::jsonl;
  if (name == "html") return InputFormat::html;
  if (name == "warc" || name == "wet") return InputFormat::warc;
  throw UsageError("unknown input format '" + name + "' (use auto, jsonl, html or warc)");
}

std::vector<std::string> expand_inputs(const std::vector<std::string>& args) {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  for (const auto& a : args) {
    if (a == "-" || !is_directory(a)) {
      out.push_back(a);
      continue;
    }
    std::vector<std::string> found;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(a, fs::directory_options::follow_directory_symlink, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      // In a directory, ".json" files are usually single JSON documents (configs, indexes),
      // not JSONL: only the unambiguous names are taken. Named on the command line, they count.
      std::string p = it->path().string();
      bool json_only = ends_with_any(p, {".json", ".json.zst", ".json.gz"});
      if (it->is_regular_file(ec) && !json_only && format_from_name(p) != InputFormat::detect)
        found.push_back(p);
    }
    if (ec) throw Error(a, errno_message("cannot list directory", ec.value()));
    std::sort(found.begin(), found.end());  // a stable order, whatever the file system says
    out.insert(out.end(), found.begin(), found.end());
  }
  return out;
}

// One open input: JSONL lines, a single HTML page, or WARC records.
struct DocumentSource::Reader {
  InputFormat format;
  std::string path;
  std::unique_ptr<LineReader> lines;  // jsonl
  std::unique_ptr<InputStream> stream;  // html, warc
  std::unique_ptr<text::WarcReader> warc;
  int64_t warc_skipped_seen = 0;
  bool html_done = false;
  uint64_t bytes() const {
    if (lines) return lines->raw_bytes_read();
    return stream ? stream->raw_bytes_read() : 0;
  }
  uint64_t uncompressed_bytes() const {
    if (lines) return lines->bytes();
    return stream ? stream->bytes_read() : 0;
  }
};

DocumentSource::DocumentSource(std::vector<InputPart> parts, SourceConfig cfg, Stats& stats)
    : parts_(std::move(parts)), cfg_(std::move(cfg)), stats_(stats) {
  for (const auto& p : parts_) {
    uint64_t size = file_size(p.path);
    total_bytes_ += p.whole ? size : std::min(p.end, size) - p.begin;
  }
}

DocumentSource::~DocumentSource() = default;

void DocumentSource::finish() {
  stats_.merge(reader_stats_);
  reader_stats_ = Stats();
}

uint64_t DocumentSource::bytes_read() const { return done_bytes_ + (reader_ ? reader_->bytes() : 0); }
uint64_t DocumentSource::bytes_in() const {
  return done_bytes_in_ + (reader_ ? reader_->uncompressed_bytes() : 0);
}

void DocumentSource::report_malformed(const std::string& where, const std::string& reason,
                                      const std::string& detail) {
  stats_.drop("malformed:" + reason);
  std::string what = detail.empty() ? reason : reason + ": " + detail;
  if (cfg_.strict) throw Error(where, "malformed input: " + what + " (--strict)");
  if (reported_ < cfg_.report_limit)
    LLMKIT_WARN("%s: skipped: %s", where.c_str(), what.c_str());
  else if (reported_ == cfg_.report_limit)
    LLMKIT_WARN("further malformed input is counted in the stats but not reported (-v shows all)");
  else if (log_enabled(LogLevel::debug))
    LLMKIT_DEBUG("%s: skipped: %s", where.c_str(), what.c_str());
  ++reported_;
}

// Called on the reading thread: the skip travels in the batch as a document in error, to be
// reported and counted by settle() on the consuming thread, in order.
void DocumentSource::defer_warc_skip(Reader& r, std::vector<SourceDoc>& batch) {
  // last_error() reads "NAME:OFFSET: reason": split it into place and reason.
  r.warc_skipped_seen = r.warc->skipped();
  const std::string& msg = r.warc->last_error();
  size_t sep = msg.find(": ", r.stream->name().size());
  SourceDoc sd;
  sd.where = sep == std::string::npos ? r.stream->name() : msg.substr(0, sep);
  sd.error = "warc_record";
  sd.detail = sep == std::string::npos ? msg : msg.substr(sep + 2);
  batch.push_back(std::move(sd));
}

bool DocumentSource::open_next() {
  if (reader_) {
    done_bytes_ += reader_->bytes();
    done_bytes_in_ += reader_->uncompressed_bytes();
    reader_.reset();
  }
  if (next_part_ >= parts_.size()) return false;
  const InputPart& part = parts_[next_part_++];
  auto r = std::make_unique<Reader>();
  r->path = part.path;
  InputFormat fmt = cfg_.format;
  if (fmt == InputFormat::detect) fmt = format_from_name(part.path);
  if (!part.whole) {
    // Byte ranges are only handed out for plain JSONL (see split_inputs' splittable test).
    r->format = InputFormat::jsonl;
    r->lines = open_lines(part.path, part.begin, part.end, cfg_.max_line_bytes);
  } else {
    auto in = open_input(part.path);
    if (!part.label.empty()) in->set_name(part.label);
    if (fmt == InputFormat::detect || fmt == InputFormat::jsonl) {
      // The first bytes say what the input is: JSON lines, or something that reading line by
      // line would only turn into a heap of malformed-line warnings and an empty output.
      std::string head = read_head(*in, 512);
      const std::string kind = non_jsonl_kind(head);
      const std::string what = kind + compression_name(in->compression());
      if (fmt == InputFormat::detect) fmt = format_from_bytes(head);
      if (cfg_.jsonl_only && !kind.empty()) {
        const bool page = kind == "a WARC file" || kind == "an HTML or XML file";
        throw Error(in->name(), what + ", not JSONL documents: " +
                                    (page ? "run llm-clean on it first, to extract the text (llm-clean -o docs.jsonl.zst " +
                                                part.path + ")"
                                          : "give JSONL documents, one JSON object a line (llmkit-jsonl(5))"));
      }
      if (fmt == InputFormat::jsonl && !kind.empty() && kind != "a WARC file" && kind != "an HTML or XML file")
        throw Error(in->name(), what + ", not HTML, WARC or JSONL documents");
      if (fmt == InputFormat::jsonl && !kind.empty())
        throw Error(in->name(), what + ", not JSONL documents: read it with --format auto");
      in = std::make_unique<PrefixedStream>(std::move(in), std::move(head));
    }
    r->format = fmt;
    if (fmt == InputFormat::jsonl)
      r->lines = std::make_unique<LineReader>(std::move(in), cfg_.max_line_bytes);
    else
      r->stream = std::move(in);
    if (fmt == InputFormat::warc)
      r->warc = std::make_unique<text::WarcReader>(*r->stream, r->stream->name(), cfg_.max_line_bytes);
  }
  reader_stats_.add("files_in");
  reader_ = std::move(r);
  return true;
}

bool DocumentSource::next_batch(std::vector<SourceDoc>& batch, size_t max_docs, size_t max_bytes) {
  const size_t start = batch.size();  // deferred errors are entries of the batch too
  size_t bytes = 0, added = 0;
  while (added < max_docs && bytes < max_bytes) {
    if (!reader_ && !open_next()) break;
    Reader& r = *reader_;
    SourceDoc sd;
    bool got = false;
    if (r.format == InputFormat::jsonl) {
      std::string_view line;
      bool too_long = false;
      while (r.lines->next(line, too_long)) {
        if (!too_long && line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
        sd.where = r.lines->name() + ":" + std::to_string(r.lines->line_number());
        if (too_long)
          sd.error = "line_too_long";
        else
          sd.doc.raw.assign(line.data(), line.size());
        sd.pending_parse = !too_long;
        got = true;
        break;
      }
    } else if (r.format == InputFormat::html) {
      if (!r.html_done) {
        r.html_done = true;
        std::string page = read_head(*r.stream, cfg_.max_line_bytes + 1);
        if (page.size() > cfg_.max_line_bytes) {
          sd.where = r.stream->name();
          sd.error = "too_large";
          got = true;
        } else {
          sd.doc.text = std::move(page);
          sd.doc.set_string("id", r.path);
          sd.doc.id = r.path;
          sd.html = true;
          sd.where = r.stream->name();
          got = true;
        }
      }
    } else {
      text::WarcRecord rec;
      while (r.warc->next(rec)) {
        if (r.warc->skipped() > r.warc_skipped_seen) defer_warc_skip(r, batch);
        bool html = text::is_html_document(rec);
        if (!html && !text::is_text_document(rec)) {
          reader_stats_.add("warc_records_ignored");
          continue;
        }
        sd.doc.text = std::move(rec.payload);
        sd.doc.id = rec.record_id;
        sd.doc.set_string("id", rec.record_id);
        sd.doc.set_string("url", rec.target_uri);
        if (!rec.date.empty()) sd.doc.set_string("date", rec.date);
        sd.html = html;
        sd.charset = rec.http_content_type;
        sd.where = r.stream->name() + "@" + std::to_string(rec.offset);
        got = true;
        break;
      }
      if (!got && r.warc->skipped() > r.warc_skipped_seen) defer_warc_skip(r, batch);
    }
    if (!got) {  // this input is exhausted: on to the next (open_next counts its bytes)
      if (!open_next()) break;
      continue;
    }
    bytes += sd.doc.text.size() + sd.doc.raw.size();
    ++added;
    batch.push_back(std::move(sd));
  }
  return batch.size() > start;
}


void SourceDoc::parse_pending(const JsonlOptions& opts) {
  if (!pending_parse) return;
  pending_parse = false;
  // One parser per thread and text field: simdjson parsers keep their buffers between lines.
  thread_local std::unique_ptr<JsonlParser> parser;
  thread_local std::string parser_field;
  if (!parser || parser_field != opts.text_field) {
    parser = std::make_unique<JsonlParser>(opts);
    parser_field = opts.text_field;
  }
  error = parser->parse(doc.raw, doc);  // parses in place, no copy of the line
}

void DocumentSource::settle(std::vector<SourceDoc>& batch) {
  for (auto& sd : batch) {
    if (sd.pending_parse) sd.parse_pending(cfg_.jsonl);
    if (!sd.error.empty())
      report_malformed(sd.where, sd.error, sd.detail);
    else if (sd.doc.invalid_utf8)
      stats_.add("invalid_utf8_bytes", static_cast<int64_t>(sd.doc.invalid_utf8));
  }
}

void for_each_batch(DocumentSource& source, const JsonlOptions& jsonl, BatchLimits limits,
                    Progress& progress, const std::function<void(size_t)>& begin_batch,
                    const std::function<void(size_t, SourceDoc&, int)>& per_doc,
                    const std::function<void(std::vector<SourceDoc>&)>& end_batch) {
  std::atomic<uint64_t> bytes_read{0};
  Prefetch<std::vector<SourceDoc>> reader([&](std::vector<SourceDoc>& next) {
    next.clear();
    bool more = source.next_batch(next, limits.docs, limits.bytes);
    bytes_read = source.bytes_read();
    return more;
  });
  std::vector<SourceDoc> batch;
  uint64_t docs = 0;
  while (true) {
    throw_if_stopped();
    if (!reader.get(batch)) break;
    begin_batch(batch.size());
    // An exception may not leave an OpenMP loop: the first one is kept and rethrown after it.
    std::exception_ptr failure;
    std::atomic<bool> failed{false};
#pragma omp parallel for schedule(dynamic, 8)
    for (size_t i = 0; i < batch.size(); ++i) {
      if (failed) continue;
      try {
        SourceDoc& sd = batch[i];
        sd.parse_pending(jsonl);
        if (sd.ok()) per_doc(i, sd, omp_get_thread_num());
      } catch (...) {
#pragma omp critical(llmkit_batch_failure)
        if (!failure) failure = std::current_exception();
        failed = true;
      }
    }
    if (failure) std::rethrow_exception(failure);
    source.settle(batch);
    for (const auto& sd : batch) docs += sd.ok();
    end_batch(batch);
    progress.update(docs, bytes_read);
  }
}

void add_document_options(OptionParser& op, SourceConfig& source, std::string& output, bool& zstd,
                          bool format) {
  op.string("output", 'o', "PATH", &output,
            "output file or directory (default stdout; per-rank parts under MPI)");
  op.flag("zstd", 0, &zstd, "compress the output with zstd (implied by a .zst name)");
  if (format)
    op.value("format", 0, "FMT", [&source](const std::string& v) { source.format = parse_input_format(v); },
             "input format: auto (default), jsonl, html, warc");
  op.string("text-field", 0, "NAME", &source.jsonl.text_field,
            "JSONL field holding the text (default \"text\")");
  op.flag("strict", 0, &source.strict, "stop with exit 1 at the first malformed input line");
  op.value("max-line-bytes", 0, "SIZE",
           [&source](const std::string& v) { source.max_line_bytes = parse_bytes(v, "--max-line-bytes"); },
           format ? "longest JSONL line or HTML page accepted (default 64M)"
                  : "longest JSONL line accepted (default 64M)");
}

std::unique_ptr<OutputStream> open_rank_output(const std::string& path, bool zstd, Comm& comm) {
  if (path.empty() || path == "-") {
    if (comm.size() > 1)
      throw UsageError("with " + std::to_string(comm.size()) + " MPI ranks, give -o FILE or -o DIR");
    return OutputStream::open("-", zstd);
  }
  std::string ext = zstd ? ".jsonl.zst" : ".jsonl";
  // "DIR/" names a directory of parts: made when missing (by every rank; it may be shared).
  if (path.back() == '/') {
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec && !is_directory(path)) throw Error(path, "cannot create the directory: " + ec.message());
  }
  return OutputStream::open(rank_output_path(path, ext, comm.rank(), comm.size()), zstd);
}

}  // namespace llmkit
