// llm-rm: reward models from preference pairs (Bradley-Terry, as TRL's RewardTrainer), saved as
// Hugging Face *ForSequenceClassification directories; `llm-rm score` writes each row with its
// reward.

#include <cstring>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/options.hpp"
#include "llmkit/rm.hpp"
#include "llmkit/stats.hpp"
#include "llmkit/tool.hpp"
#include "llmkit/trainer.hpp"

using namespace llmkit;

namespace {

int score_main(int argc, char** argv) {
  ScoreOptions o;
  std::string out;
  int64_t seq = 0, batch = o.batch;
  OptionParser op("llm-rm score", "llm-rm score --model RM [OPTIONS] FILE...",
                  "Writes each row of the files (JSONL(.zst): preference rows, or chat rows) with its\n"
                  "reward: \"chosen_reward\" and \"rejected_reward\" for a pair, \"reward\" otherwise.");
  op.string("model", 0, "PATH", &o.model, "the reward model: an llm-rm run or checkpoint directory");
  op.string("tokenizer", 0, "MODEL", &o.tokenizer, "SentencePiece model (default: the model's tokenizer.model)");
  op.string("template", 0, "NAME", &o.chat_template, "chat template (default: the one the model was trained with)");
  op.integer("seq-len", 0, "T", &seq, "tokens scored per sequence at most (default: the training length)");
  op.integer("batch", 0, "N", &batch, "sequences per forward pass (default 8)");
  op.string("out", 'o', "FILE", &out, "output file (default: standard output)");
  op.flag("strict", 0, &o.strict, "a malformed row is an error (default: skipped with a warning, counted)");
  op.string("device", 0, "DEV", &o.device, "cpu, cuda, cuda:N or auto (default auto)");
  std::vector<std::string> files = op.parse(argc, argv);
  if (files.empty()) throw UsageError("give one or more FILEs (- for standard input)");
  if (seq < 0) throw UsageError("--seq-len must be positive");
  o.seq_len = static_cast<int>(seq);
  o.batch = static_cast<int>(batch);
  if (!out.empty() && out != "-") check_output_file(out, "-o");
  Stats stats;
  auto stream = OutputStream::open(out, has_suffix(out, ".zst"));
  score_rows(o, files, *stream, stats);
  stream->commit();
  stats.write(op.common().stats_file, "llm-rm score", Comm::world());
  return 0;
}

int rm_main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "score") == 0) return score_main(argc - 1, argv + 1);
  RmConfig cfg;
  use_trl_defaults(cfg, 1e-5);
  int64_t seq = 0, micro = 0, keep = 0, bad = 0, zero = 0;
  OptionParser op("llm-rm", "llm-rm --init CHECKPOINT --data FILE --out DIR [OPTIONS]\n       llm-rm score --model RM FILE...",
                  "Trains a reward model on preference pairs: the model of --init with a scalar head\n"
                  "read at the last token, taught that the chosen answer scores above the rejected\n"
                  "one (Bradley-Terry); saved as Hugging Face's *ForSequenceClassification.");
  op.enable_config();
  TuningFlags flags;
  add_tuning_options(op, cfg, flags, "pairs, JSONL(.zst): prompt, chosen, rejected, margin (llmkit-chat(5))", false);
  op.section("Reward");
  op.number("center-rewards", 0, "C", &cfg.center_rewards,
            "add C times the mean of (chosen + rejected reward)^2, keeping rewards near 0\n(default 0)");
  add_trainer_options(op, cfg, micro, seq, keep, bad, zero);
  op.section("Evaluation");
  op.integer("eval-batches", 0, "N", &cfg.eval_batches, "validation micro-batches per evaluation (default 0: all)");
  op.epilog(
      "--micro-batch and --batch-size count rows: two per pair (chosen, rejected), so both\n"
      "are even.\n\n"
      "Signals: SIGTERM, SIGINT and SIGUSR1 stop the run after the step under way with a\n"
      "checkpoint, exit 1; --resume continues from it. A second one stops at once.\n\n"
      "Exit status: 0 done, 1 runtime error or stopped by a signal, 2 usage error. See llm-rm(1)\n"
      "and llmkit-chat(5).\n\n"
      "Example:\n"
      "  llm-rm --init runs/sft --data prefs.jsonl --val prefs-val.jsonl --out runs/rm --epochs 1\n"
      "  llm-rm score --model runs/rm answers.jsonl > scored.jsonl");
  std::vector<std::string> rest = op.parse(argc, argv);
  if (!rest.empty()) throw UsageError("unexpected argument '" + rest[0] + "' (data files go after --data)");
  cfg.seed = op.common().seed;
  check_tuning_options(cfg, flags);
  check_trainer_options(cfg, micro, seq, keep, bad, zero);
  return run_tuning_command(cfg, flags, "llm-rm", op.common().stats_file, [&](Stats& st) { return run_rm(cfg, st); });
}

}  // namespace

int main(int argc, char** argv) { return run_tool("llm-rm", argc, argv, rm_main); }
