// llm-eval: perplexity, multiple-choice and generative benchmarks with lm-evaluation-harness
// semantics, on llmkit/Hugging Face checkpoints or llm.c GPT-2 files.
#include <cstdio>
#include <cstring>

#include "llmkit/error.hpp"
#include "llmkit/eval.hpp"
#include "llmkit/io.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/options.hpp"
#include "llmkit/stats.hpp"
#include "llmkit/tool.hpp"

using namespace llmkit;

namespace {

int eval_main(int argc, char** argv) {
  EvalConfig cfg;
  std::string format = "json", output = "-";
  int64_t fewshot = 0, batch = cfg.batch_size, seq = 0, stride = 0, max_gen = cfg.max_gen_tokens;
  bool no_verify = false;
  OptionParser op("llm-eval", "llm-eval ppl|mc|gen|mlm|classify --model PATH [OPTIONS] INPUT...",
                  "Evaluates a model. ppl: perplexity of token shards (llm-tok, llm.c .bin) or of JSONL\n"
                  "documents; mc: multiple choice, rows {\"context\", \"choices\", \"gold\"}; gen: generation,\n"
                  "rows {\"prompt\", \"answer\"}, scored by exact match after GSM8K-style extraction;\n"
                  "mlm: an encoder's (BERT's) masked-token accuracy and pseudo-perplexity on shards or\n"
                  "JSONL documents; classify: a sequence classifier's (llm-sft --task classify)\n"
                  "predictions, accuracy and macro-F1 on rows {\"text\", \"label\"}.");
  op.section("Model and output");
  op.string("model", 'm', "PATH", &cfg.model,
            "checkpoint or run directory, model.safetensors, or an llm.c GPT-2 .bin (required)");
  op.string("tokenizer", 0, "MODEL", &cfg.tokenizer, "SentencePiece model (default: the checkpoint's)");
  op.string("output", 'o', "FILE", &output, "write the report here (default stdout)");
  op.string("format", 0, "FMT", &format, "report as json (default) or text");
  op.string("log-samples", 0, "FILE", &cfg.log_samples, "one JSONL row per example: inputs, scores, prediction");
  std::string cache;
  bool no_cache = false;
  op.string("cache", 0, "FILE", &cache,
            "keep the results of finished examples here as the run goes, so that a stopped or\n"
            "killed run continues where it was (default with -o FILE: FILE.cache; removed at the end)");
  op.flag("no-cache", 0, &no_cache, "keep no cache: a stopped run starts over");
  op.string("text-field", 0, "NAME", &cfg.source.jsonl.text_field, "ppl on JSONL: the text field (default \"text\")");
  op.string("device", 0, "DEV", &cfg.device,
            "auto (default: cuda when a GPU is visible, else cpu), cpu, cuda (GPU number local\n"
            "rank modulo the GPUs visible), cuda:N");
  op.string("precision", 0, "P", &cfg.precision,
            "GPU matmuls: fp32 (default: the CPU's scores up to rounding), tf32, bf16");
  op.section("Examples");
  op.integer("limit", 0, "N", &cfg.limit, "only the first N examples (windows for ppl on shards and for mlm)");
  op.integer("num-fewshot", 0, "K", &fewshot,
             "K solved examples before each one: the row's \"fewshot\", else K others of the task\n"
             "chosen with --seed (default 0)");
  op.integer("batch-size", 0, "N", &batch, "examples per batch (default 8)");
  op.section("Perplexity");
  op.integer("seq-len", 0, "T", &seq,
             "window length in tokens (default: the length the checkpoint was trained with,\n"
             "from its trainer_state.json; else the model's context, at most 1024)");
  op.integer("max-tokens", 0, "N", &cfg.max_tokens, "on shards: score about N tokens, from the start");
  op.integer("stride", 0, "S", &stride,
             "on shards: windows every S tokens, each scoring its last S (sliding windows with\n"
             "context; default: S = T, consecutive windows)");
  op.flag("no-verify", 0, &no_verify, "skip the shards' payload checksums");
  op.section("Generation");
  op.value("until", 0, "TEXT", [&](const std::string& v) { cfg.until.push_back(v); },
           "stop generating at this text (repeatable; \\n is a newline)");
  op.integer("max-gen-tokens", 0, "N", &max_gen, "longest generation (default 256)");
  op.string("regex", 0, "RE", &cfg.regex,
            "also score the answer its first capture group extracts (RE2 syntax)");
  op.epilog(
      "Exit status: 0 success, 1 runtime or data error, 2 usage error. See llm-eval(1).\n\n"
      "Examples:\n"
      "  llm-eval ppl --model runs/r1 shards/val-00000.tok\n"
      "  llm-eval mc --model runs/r1 --num-fewshot 5 --format text hellaswag.jsonl\n"
      "  llm-eval gen --model runs/r1 --until Question: --until '\\n\\n' gsm8k.jsonl\n"
      "  llm-eval mlm --model runs/bert --limit 50 shards/val-00000.tok\n"
      "  llm-eval classify --model runs/cls --log-samples pred.jsonl test.jsonl");
  std::vector<std::string> args = op.parse(argc, argv);
  if (args.empty()) throw UsageError("give a task type: ppl, mc, gen, mlm or classify");
  const std::string kind = args[0];
  args.erase(args.begin());
  if (kind != "ppl" && kind != "mc" && kind != "gen" && kind != "mlm" && kind != "classify")
    throw UsageError("unknown task type '" + kind + "' (ppl, mc, gen, mlm, classify)");
  if (cfg.model.empty()) throw UsageError("--model is required");
  if (format != "json" && format != "text") throw UsageError("--format: use json or text");
  if (fewshot < 0 || batch < 1 || seq < 0 || stride < 0 || max_gen < 1 || cfg.limit < 0 || cfg.max_tokens < 0)
    throw UsageError("--num-fewshot, --limit, --seq-len, --stride, --max-tokens must be 0 or more; --batch-size, --max-gen-tokens 1 or more");
  if (!cfg.regex.empty()) extract_regex("", cfg.regex);  // a bad expression is a usage error now
  for (auto& u : cfg.until)
    for (size_t at; (at = u.find("\\n")) != std::string::npos;) u.replace(at, 2, "\n");
  cfg.num_fewshot = static_cast<int>(fewshot);
  cfg.batch_size = static_cast<int>(batch);
  cfg.seq_len = static_cast<int>(seq);
  cfg.stride = static_cast<int>(stride);
  cfg.max_gen_tokens = static_cast<int>(max_gen);
  cfg.seed = op.common().seed;
  cfg.verify = !no_verify;
  if (no_cache && !cache.empty()) throw UsageError("--cache and --no-cache exclude each other");
  cfg.cache = no_cache ? "" : !cache.empty() ? cache : output != "-" && !output.empty() ? output + ".cache" : "";
  check_output_file(output, "-o");
  check_output_file(cfg.log_samples, "--log-samples");
  check_output_file(cfg.cache, "--cache");
  Stats stats;
  run_eval(kind, args, cfg, [&](const nlohmann::json& report) {
    stats.add("examples", report.value("examples", int64_t{0}));
    stats.add("tokens", static_cast<int64_t>(report.value("tokens_per_sec", 0.0) * report.value("wall_seconds", 0.0)));
    std::string text = format == "json" ? report.dump(2) + "\n" : report_text(report);
    auto out = OutputStream::open(output, false);
    out->write(text);
    out->commit();
  });
  stats.write(op.common().stats_file, "llm-eval", Comm::world());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run_tool("llm-eval", argc, argv, eval_main); }
