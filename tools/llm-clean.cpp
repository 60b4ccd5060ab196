// llm-clean: HTML/WARC/JSONL in, clean JSONL documents out.
#include <cstdio>

#include "llmkit/clean.hpp"
#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/langid.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/options.hpp"
#include "llmkit/params.hpp"
#include "llmkit/tool.hpp"

using namespace llmkit;

namespace {

void set_pii_types(text::PiiConfig& p, const std::string& list) {
  p.email = p.ip = p.phone = p.cn_id = p.card = false;
  for (const auto& t : split_list(list)) {
    if (t == "email") p.email = true;
    else if (t == "ip") p.ip = true;
    else if (t == "phone") p.phone = true;
    else if (t == "cn_id") p.cn_id = true;
    else if (t == "card") p.card = true;
    else if (t == "all") p.email = p.ip = p.phone = p.cn_id = p.card = true;
    else throw UsageError("--pii: unknown type '" + t + "' (email, ip, phone, cn_id, card, all)");
  }
}

int clean_main(int argc, char** argv) {
  CleanConfig cfg;
  bool no_extract = false, no_repair = false, no_langid = false, no_quality = false, no_pii = false;
  bool no_gq = false, no_gr = false, no_c4 = false, no_fw = false, list_params = false;
  std::vector<std::string> params;
  auto qparams = clean_params(cfg);

  OptionParser op("llm-clean", "llm-clean [OPTIONS] [INPUT...]",
                  "Extracts, repairs, identifies the language of, filters and redacts documents.\n"
                  "INPUT: JSONL(.zst/.gz) documents, HTML files, WARC/WET files (.warc, .warc.gz),\n"
                  "or directories of them; none or '-' reads stdin. Writes JSONL documents.");
  op.section("Input and output");
  add_document_options(op, cfg.source, cfg.output, cfg.zstd, true);
  op.string("rejected", 0, "FILE", &cfg.rejected,
            "write dropped documents here with their \"drop_reason\"");
  op.section("Stages (all on by default)");
  op.flag("no-extract", 0, &no_extract,
          "HTML: skip the block rules (link density, short blocks) of main-text extraction");
  op.flag("no-repair", 0, &no_repair, "skip Unicode, control character and whitespace repair");
  op.value("normalize", 0, "FORM", [&](const std::string& v) {
             if (v == "nfc") cfg.repair_cfg.normalization = text::Normalization::nfc;
             else if (v == "nfkc") cfg.repair_cfg.normalization = text::Normalization::nfkc;
             else if (v == "none") cfg.repair_cfg.normalization = text::Normalization::none;
             else throw UsageError("--normalize: use nfc, nfkc or none");
           }, "Unicode normalisation: nfc (default), nfkc, none");
  op.flag("no-langid", 0, &no_langid, "skip language identification (no \"lang\" field)");
  op.value("lang", 0, "LIST", [&](const std::string& v) { cfg.keep_langs = text::parse_language_list(v, "--lang"); },
           "keep only these languages, as CLD2's codes in \"lang\" (ISO 639-1, any case),\n"
           "e.g. en,zh (default: all)");
  op.flag("no-quality", 0, &no_quality, "skip every quality rule");
  op.flag("no-gopher-quality", 0, &no_gq, "skip the Gopher quality rules");
  op.flag("no-gopher-repetition", 0, &no_gr, "skip the Gopher repetition rules");
  op.flag("no-c4", 0, &no_c4, "skip the C4 rules");
  op.flag("no-fineweb", 0, &no_fw, "skip the FineWeb rules");
  op.value("param", 'P', "NAME=VALUE", [&](const std::string& v) { params.push_back(v); },
           "set a threshold (repeatable), e.g. -P langid.min_score=0.8");
  op.flag("list-params", 0, &list_params, "print every threshold with its value and exit");
  op.flag("no-pii", 0, &no_pii, "skip PII redaction");
  op.value("pii", 0, "LIST", [&](const std::string& v) { set_pii_types(cfg.pii_cfg, v); },
           "redact these: email,ip,phone,cn_id,card (default all)");
  op.epilog(
      "Exit status: 0 success (malformed lines are skipped and counted), 1 runtime or data\n"
      "error, 2 usage error. See llm-clean(1).\n\n"
      "Example:\n"
      "  llm-clean --lang en -o clean.jsonl.zst --stats clean.json crawl/*.warc.gz");
  std::vector<std::string> inputs = op.parse(argc, argv);

  for (const auto& p : params) set_param(qparams, p);
  if (list_params) {
    std::fputs(format_params(qparams).c_str(), stdout);
    return 0;
  }
  cfg.extract = !no_extract;
  cfg.repair = !no_repair;
  cfg.langid = !no_langid;
  cfg.quality = !no_quality;
  cfg.pii = !no_pii;
  cfg.quality_cfg.gopher_quality = !no_gq;
  cfg.quality_cfg.gopher_repetition = !no_gr;
  cfg.quality_cfg.c4 = !no_c4;
  cfg.quality_cfg.fineweb = !no_fw;
  if (!cfg.keep_langs.empty() && !cfg.langid)
    throw UsageError("--lang needs language identification (drop --no-langid)");
  check_output_path(cfg.output, "-o");
  check_output_path(cfg.rejected, "--rejected");

  Stats stats;
  run_clean(inputs, cfg, stats);
  Comm& comm = Comm::world();
  stats.reduce(comm);
  stats.write(op.common().stats_file, "llm-clean", comm);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run_tool("llm-clean", argc, argv, clean_main); }
