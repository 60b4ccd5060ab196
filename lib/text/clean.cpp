#include "llmkit/clean.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <map>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/langid.hpp"
#include "llmkit/log.hpp"
#include "llmkit/prefetch.hpp"
#include "llmkit/tool.hpp"

namespace llmkit {

std::vector<Param> clean_params(CleanConfig& cfg) {
  std::vector<Param> params = {
      {"extract.max_link_density", &cfg.max_link_density,
       "HTML blocks with a larger share of link text are boilerplate"},
      {"extract.min_block_chars", &cfg.min_block_chars,
       "HTML blocks this long (CJK characters count 3) are good on their own"},
      {"extract.short_block_chars", &cfg.short_block_chars,
       "shorter HTML blocks are kept only between good blocks"},
      {"langid.max_bytes", &cfg.lang_max_bytes, "bytes of each document CLD2 reads"},
      {"langid.min_score", &cfg.min_lang_score, "with --lang, the lowest lang_score kept"},
  };
  for (auto& p : text::quality_params(cfg.quality_cfg)) params.push_back(p);
  return params;
}

Cleaner::Cleaner(const CleanConfig& cfg) : cfg_(cfg), extract_cfg_(cfg.extract_cfg), html_repair_cfg_(cfg.repair_cfg) {
  html_repair_cfg_.normalize_whitespace = false;
  // The language of a document the quality rules drop is written nowhere unless --lang may
  // drop it first or --rejected writes it: then it need not be found when the rules drop the
  // document whatever it is.
  lazy_langid_ = cfg.langid && cfg.quality && cfg.keep_langs.empty() && cfg.rejected.empty() &&
                 !cfg.lang_of_dropped;
  if (cfg.pii) pii_ = std::make_unique<text::PiiRedactor>(cfg.pii_cfg);
  if (cfg.extract) {
    extract_cfg_.max_link_density = cfg.max_link_density;
    extract_cfg_.min_block_chars = static_cast<size_t>(cfg.min_block_chars);
    extract_cfg_.short_block_chars = static_cast<size_t>(cfg.short_block_chars);
  } else {
    // Every block is good: only the element-level removal (script, nav, ...) remains.
    extract_cfg_.max_link_density = 1.0;
    extract_cfg_.min_block_chars = 0;
    extract_cfg_.short_block_chars = 0;
    extract_cfg_.keep_tables = true;
  }
}

Cleaner::~Cleaner() = default;

std::string Cleaner::clean(SourceDoc& sd, Stats& stats) const {
  Document& doc = sd.doc;
  stats.add("text_bytes_in", static_cast<int64_t>(doc.text.size()));
  if (sd.html) {
    std::string utf8 = text::to_utf8(doc.text, sd.charset);
    text::Extracted ex = text::extract_main_text(utf8, extract_cfg_);
    if (ex.truncated) stats.add("html_truncated");
    doc.text = std::move(ex.text);
    if (!ex.title.empty()) doc.set_string("title", ex.title);
    stats.add("html_extracted");
  }
  if (cfg_.repair) {
    text::RepairCounts rc;
    // Extraction has normalized the whitespace of HTML text, outside <pre>, whose whitespace
    // (code's indentation) it keeps exactly; repair must not collapse it.
    text::repair_text(doc.text, sd.html ? html_repair_cfg_ : cfg_.repair_cfg, rc);
    if (rc.invalid_utf8) stats.add("invalid_utf8_bytes", rc.invalid_utf8);
    if (rc.ansi_escapes) stats.add("ansi_escapes_removed", rc.ansi_escapes);
    if (rc.control_chars) stats.add("control_chars_removed", rc.control_chars);
    if (rc.normalized) stats.add("docs_normalized", rc.normalized);
  }
  if (doc.text.size() < cfg_.min_chars) return sd.html ? "extract:empty" : "repair:empty";
  const size_t lang_bytes = static_cast<size_t>(cfg_.lang_max_bytes);
  if (lazy_langid_ && !text::may_detect_cjk(doc.text, lang_bytes)) {
    if (std::string reason = quality_then_langid(doc, lang_bytes); !reason.empty()) return reason;
  } else {
    std::string lang;
    if (cfg_.langid) {
      text::LangResult lr = text::detect_language(doc.text, lang_bytes);
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

// The quality rules before language identification, for a text CLD2 cannot call Chinese,
// Japanese or Korean: the rules' verdicts for every language it can give are found in one pass
// (English and the others differ only by the stop-word rule), and CLD2 runs only when the
// document is kept (its "lang" is written) or the verdicts differ. Its input is the text as it
// was before C4 removed lines, and the decisions are check_quality's for CLD2's language.
std::string Cleaner::quality_then_langid(Document& doc, size_t lang_bytes) const {
  thread_local std::string before;  // the text CLD2 reads, and the rules' input should CLD2
  before.assign(doc.text);          // give a language the verdicts do not cover
  const text::NonCjkVerdicts v = text::check_quality_non_cjk(doc.text, cfg_.quality_cfg);
  if (!v.other.empty() && v.other == v.english) return v.other;  // dropped, whatever the language
  const text::LangResult lr = text::detect_language(before, lang_bytes);
  doc.set_string("lang", lr.code);
  doc.set_number("lang_score", lr.score);
  if (text::NonCjkVerdicts::covers(lr.code, cfg_.quality_cfg)) return v.for_language(lr.code);
  doc.text.swap(before);  // not expected (may_detect_cjk said no): the rules again, in order
  return text::check_quality(doc.text, lr.code, cfg_.quality_cfg);
}

namespace {

// A filter that keeps nothing is usually a mistake (a --lang the data has none of, a threshold
// on the wrong scale): say so, with the reasons, over all ranks. Rank 0 writes the warning.
void warn_if_all_dropped(const Stats& stats, const std::map<std::string, int64_t>& found_langs,
                         const CleanConfig& cfg, Comm& comm) {
  Stats all;
  all.add("docs_in", stats.get("docs_in"));
  all.add("docs_out", stats.get("docs_out"));
  for (const auto& [reason, n] : stats.drops())
    if (reason.rfind("malformed:", 0) != 0) all.drop(reason, n);
  for (const auto& [lang, n] : found_langs) all.add("lang:" + lang, n);
  all.reduce(comm);
  if (comm.rank() != 0 || all.get("docs_in") == 0 || all.get("docs_out") > 0) return;
  auto top = [](const std::map<std::string, int64_t>& counts, const std::string& prefix, size_t k) {
    std::vector<std::pair<int64_t, std::string>> v;
    for (const auto& [name, n] : counts)
      if (name.rfind(prefix, 0) == 0) v.emplace_back(-n, name.substr(prefix.size()));
    std::sort(v.begin(), v.end());
    std::string s;
    for (size_t i = 0; i < v.size() && i < k; ++i) s += (i ? ", " : "") + v[i].second + " " + std::to_string(-v[i].first);
    if (v.size() > k) s += ", ...";
    return s;
  };
  std::string msg = "every document was dropped (" + std::to_string(all.get("docs_in")) + " in, 0 out): " +
                    top(all.drops(), "", 3);
  if (all.dropped("langid:other_language") > 0) {
    std::string keep;
    for (const auto& l : cfg.keep_langs) keep += (keep.empty() ? "" : ",") + l;
    msg += "; the languages found: " + top(all.counters(), "lang:", 5) + " (--lang " + keep + ")";
  }
  LLMKIT_WARN("%s", msg.c_str());
}

}  // namespace

void run_clean(const std::vector<std::string>& inputs, const CleanConfig& cfg, Stats& stats) {
  Comm& comm = Comm::world();
  std::vector<std::string> files = expand_inputs(inputs.empty() ? std::vector<std::string>{"-"} : inputs);
  if (files.empty()) throw Error(inputs.empty() ? "" : inputs[0], "no input files found");
  auto parts = split_inputs(files, comm.rank(), comm.size(), splittable_input);
  DocumentSource source(parts, cfg.source, stats);
  Cleaner cleaner(cfg);
  auto out = open_rank_output(cfg.output, cfg.zstd, comm);
  std::unique_ptr<OutputStream> rejected;
  if (!cfg.rejected.empty()) rejected = open_rank_output(cfg.rejected, cfg.zstd, comm);

  Progress progress("documents", source.total_bytes());
  // Parsing, cleaning and serialising run on all threads; only writing bytes is serial.
  std::vector<std::string> reasons, lines, langs;
  std::string buf, rejected_buf;
  int64_t docs_in = 0, docs_out = 0;
  std::map<std::string, int64_t> found_langs;  // of the documents --lang dropped
  std::vector<Stats> thread_stats(omp_get_max_threads());
  for_each_batch(
      source, cfg.source.jsonl, {cfg.batch_docs, cfg.batch_bytes}, progress,
      [&](size_t n) {
        reasons.assign(n, std::string());
        lines.assign(n, std::string());
        langs.assign(n, std::string());
      },
      [&](size_t i, SourceDoc& sd, int thread) {
        reasons[i] = cleaner.clean(sd, thread_stats[thread]);
        if (reasons[i] == "langid:other_language")
          for (const auto& [key, value] : sd.doc.updates)
            if (key == "lang") langs[i] = value.substr(1, value.size() - 2);  // a JSON string
        if (!reasons[i].empty()) {
          if (!rejected) return;
          sd.doc.set_string("drop_reason", reasons[i]);
        }
        serialize_document(sd.doc, cfg.source.jsonl, lines[i]);
      },
      [&](std::vector<SourceDoc>& batch) {
        buf.clear();
        rejected_buf.clear();
        for (size_t i = 0; i < batch.size(); ++i) {
          if (!batch[i].ok()) continue;
          ++docs_in;
          if (reasons[i].empty()) {
            ++docs_out;
            buf += lines[i];
          } else {
            stats.drop(reasons[i]);
            rejected_buf += lines[i];
            if (!langs[i].empty()) found_langs[langs[i]]++;
          }
        }
        out->write(buf);
        if (rejected) rejected->write(rejected_buf);
        stats.add("bytes_out", static_cast<int64_t>(buf.size()));
      });
  source.finish();
  for (auto& ts : thread_stats) stats.merge(ts);
  stats.add("docs_in", docs_in);
  stats.add("docs_out", docs_out);
  // Bytes as the documents hold them, uncompressed, in and out; the compressed figures beside.
  stats.add("bytes_in", static_cast<int64_t>(source.bytes_in()));
  stats.add("bytes_in_compressed", static_cast<int64_t>(source.bytes_read()));
  out->commit();
  stats.add("bytes_out_compressed", static_cast<int64_t>(out->bytes_written()));
  if (rejected) rejected->commit();
  progress.finish();
  warn_if_all_dropped(stats, found_langs, cfg, comm);
}

}  // namespace llmkit
