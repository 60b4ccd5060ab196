#include "llmkit/clean.hpp"

#include <omp.h>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/langid.hpp"
#include "llmkit/log.hpp"
#include "llmkit/tool.hpp"

namespace llmkit {

Cleaner::Cleaner(const CleanConfig& cfg) : cfg_(cfg) {
  if (cfg.pii) pii_ = std::make_unique<text::PiiRedactor>(cfg.pii_cfg);
}

Cleaner::~Cleaner() = default;

std::string Cleaner::clean(SourceDoc& sd, Stats& stats) const {
  Document& doc = sd.doc;
  stats.add("text_bytes_in", static_cast<int64_t>(doc.text.size()));
  if (sd.html) {
    std::string utf8 = text::to_utf8(doc.text, sd.charset);
    text::Extracted ex = text::extract_main_text(utf8, cfg_.extract_cfg);
    if (ex.truncated) stats.add("html_truncated");
    doc.text = std::move(ex.text);
    if (!ex.title.empty()) doc.set_string("title", ex.title);
    stats.add("html_extracted");
  }
  if (cfg_.repair) {
    text::RepairCounts rc;
    text::repair_text(doc.text, cfg_.repair_cfg, rc);
    if (rc.invalid_utf8) stats.add("invalid_utf8_bytes", rc.invalid_utf8);
    if (rc.ansi_escapes) stats.add("ansi_escapes_removed", rc.ansi_escapes);
    if (rc.control_chars) stats.add("control_chars_removed", rc.control_chars);
    if (rc.normalized) stats.add("docs_normalized", rc.normalized);
  }
  if (doc.text.size() < cfg_.min_chars) return sd.html ? "extract:empty" : "repair:empty";
  std::string lang;
  if (cfg_.langid) {
    text::LangResult lr = text::detect_language(doc.text);
    lang = lr.code;
    doc.set_string("lang", lr.code);
    doc.set_number("lang_score", lr.score);
    if (!cfg_.keep_langs.empty()) {
      if (!text::language_matches(lr.code, cfg_.keep_langs)) return "langid:other_language";
      if (lr.score < cfg_.min_lang_score) return "langid:low_score";
    }
  }
  if (cfg_.quality) {
    std::string reason = text::check_quality(doc.text, lang, cfg_.quality_cfg);
    if (!reason.empty()) return reason;
  }
  if (pii_) {
    text::PiiCounts pc;
    if (pii_->redact(doc.text, pc) > 0) {
      stats.add("pii_email", pc.email);
      stats.add("pii_ip", pc.ip);
      stats.add("pii_phone", pc.phone);
      stats.add("pii_cn_id", pc.cn_id);
      stats.add("pii_card", pc.card);
      stats.add("docs_with_pii");
    }
  }
  return "";
}

namespace {

bool plain_jsonl(const std::string& path) {
  return path != "-" && sniff_compression(path) == Compression::none &&
         (has_suffix(path, ".jsonl") || has_suffix(path, ".json") || has_suffix(path, ".ndjson"));
}

std::unique_ptr<OutputStream> open_rank_output(const std::string& path, bool zstd, Comm& comm) {
  if (path.empty() || path == "-") {
    if (comm.size() > 1)
      throw UsageError("with " + std::to_string(comm.size()) + " MPI ranks, give -o FILE or -o DIR");
    return OutputStream::open("-", zstd);
  }
  std::string ext = zstd ? ".jsonl.zst" : ".jsonl";
  return OutputStream::open(rank_output_path(path, ext, comm.rank(), comm.size()), zstd);
}

}  // namespace

void run_clean(const std::vector<std::string>& inputs, const CleanConfig& cfg, Stats& stats) {
  Comm& comm = Comm::world();
  std::vector<std::string> files = expand_inputs(inputs.empty() ? std::vector<std::string>{"-"} : inputs);
  if (files.empty()) throw Error(inputs.empty() ? "" : inputs[0], "no input files found");
  auto parts = split_inputs(files, comm.rank(), comm.size(), plain_jsonl);
  DocumentSource source(parts, cfg.source, stats);
  Cleaner cleaner(cfg);
  auto out = open_rank_output(cfg.output, cfg.zstd, comm);
  std::unique_ptr<OutputStream> rejected;
  if (!cfg.rejected.empty()) rejected = open_rank_output(cfg.rejected, cfg.zstd, comm);

  Progress progress("llm-clean", source.total_bytes());
  std::vector<SourceDoc> batch;
  std::vector<std::string> reasons;
  std::string buf;
  int64_t docs_in = 0, docs_out = 0;
  const int threads = omp_get_max_threads();
  std::vector<Stats> thread_stats(threads);
  while (true) {
    throw_if_stopped();
    batch.clear();
    if (!source.next_batch(batch, cfg.batch_docs, cfg.batch_bytes)) break;
    reasons.assign(batch.size(), std::string());
#pragma omp parallel for schedule(dynamic, 8)
    for (size_t i = 0; i < batch.size(); ++i)
      reasons[i] = cleaner.clean(batch[i], thread_stats[omp_get_thread_num()]);
    buf.clear();
    std::string rejected_buf;
    for (size_t i = 0; i < batch.size(); ++i) {
      ++docs_in;
      if (reasons[i].empty()) {
        ++docs_out;
        serialize_document(batch[i].doc, cfg.source.jsonl, buf);
      } else {
        stats.drop(reasons[i]);
        if (rejected) {
          batch[i].doc.set_string("drop_reason", reasons[i]);
          serialize_document(batch[i].doc, cfg.source.jsonl, rejected_buf);
        }
      }
    }
    out->write(buf);
    if (rejected) rejected->write(rejected_buf);
    stats.add("bytes_out", static_cast<int64_t>(buf.size()));
    progress.update(docs_in, source.bytes_read());
  }
  for (auto& ts : thread_stats) stats.merge(ts);
  stats.add("docs_in", docs_in);
  stats.add("docs_out", docs_out);
  stats.add("bytes_in", static_cast<int64_t>(source.bytes_read()));
  out->commit();
  if (rejected) rejected->commit();
  progress.finish();
}

}  // namespace llmkit
