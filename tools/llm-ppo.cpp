// llm-ppo: preference optimisation of a tuned model. `llm-ppo dpo` learns from preference pairs
// directly (DPO, IPO, hinge, conservative DPO), on the shared training loop, fully or through
// LoRA adapters, data parallel over MPI ranks.

#include <cstring>

#include "llmkit/dpo.hpp"
#include "llmkit/error.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/options.hpp"
#include "llmkit/stats.hpp"
#include "llmkit/tool.hpp"
#include "llmkit/trainer.hpp"

using namespace llmkit;

namespace {

int dpo_main(int argc, char** argv) {
  DpoConfig cfg;
  // Hugging Face TRL's DPOConfig defaults where it has them.
  cfg.lr = 1e-6;
  cfg.warmup = 0;
  cfg.schedule = "linear";
  cfg.min_lr_frac = 0;
  cfg.weight_decay = 0;
  cfg.beta2 = 0.999;
  cfg.seq_len = 1024;
  cfg.micro_batch = 8;
  cfg.steps = 0;
  int64_t seq = 0, micro = 0, keep = 0, bad = 0, zero = 0;
  OptionParser op("llm-ppo dpo", "llm-ppo dpo --init CHECKPOINT --data FILE --out DIR [OPTIONS]",
                  "Direct preference optimisation: tunes a model (an llm-sft run, say) to prefer the\n"
                  "chosen answer of each pair over the rejected one, against the starting model as\n"
                  "reference; fully or through LoRA adapters, data parallel over MPI ranks.");
  op.enable_config();
  TuningFlags flags;
  add_tuning_options(op, cfg, flags, "pairs, JSONL(.zst): prompt, chosen, rejected (llmkit-chat(5))", false);
  op.section("DPO");
  op.number("beta", 0, "B", &cfg.beta, "how far the policy may move from the reference (default 0.1)");
  op.string("loss", 0, "NAME", &cfg.loss, "sigmoid (DPO, the default), ipo, hinge");
  op.number("label-smoothing", 0, "E", &cfg.label_smoothing,
            "the share of pairs assumed mislabelled, in [0, 0.5): conservative DPO\n(sigmoid only; default 0)");
  add_trainer_options(op, cfg, micro, seq, keep, bad, zero);
  op.section("Evaluation");
  op.integer("eval-batches", 0, "N", &cfg.eval_batches, "validation micro-batches per evaluation (default 0: all)");
  op.epilog(
      "--micro-batch and --batch-size count rows: two per pair (chosen, rejected), so both\n"
      "are even.\n\n"
      "Signals: SIGTERM, SIGINT and SIGUSR1 stop the run after the step under way with a\n"
      "checkpoint, exit 1; --resume continues from it. A second one stops at once.\n\n"
      "Exit status: 0 done, 1 runtime error or stopped by a signal, 2 usage error. See llm-ppo(1)\n"
      "and llmkit-chat(5).\n\n"
      "Example:\n"
      "  llm-ppo dpo --init runs/sft --data prefs.jsonl --val prefs-val.jsonl --out runs/dpo \\\n"
      "    --seq-len 1024 --beta 0.1 --lora-rank 16 --lr 5e-6 --epochs 1");
  std::vector<std::string> rest = op.parse(argc, argv);
  if (!rest.empty()) throw UsageError("unexpected argument '" + rest[0] + "' (data files go after --data)");
  cfg.seed = op.common().seed;
  check_tuning_options(cfg, flags);
  if (cfg.eval_batches < 0) throw UsageError("--eval-batches must be 0 or more");
  check_trainer_options(cfg, micro, seq, keep, bad, zero);
  Stats stats;
  const int rc = run_dpo(cfg, stats);
  stats.write(op.common().stats_file, "llm-ppo dpo", Comm::world());
  finish_tuning(cfg, flags, rc, stats);
  return rc;
}

int ppo_main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "dpo") == 0) return dpo_main(argc - 1, argv + 1);
  OptionParser op("llm-ppo", "llm-ppo dpo [OPTIONS]",
                  "Preference optimisation of a tuned model. Algorithms:\n"
                  "  dpo   direct preference optimisation (and IPO, hinge, conservative DPO) on\n"
                  "        preference pairs; llm-ppo dpo --help for its options");
  std::vector<std::string> rest = op.parse(argc, argv);
  if (rest.empty()) throw UsageError("give an algorithm: dpo");
  throw UsageError("unknown algorithm '" + rest[0] + "': this llm-ppo has dpo");
}

}  // namespace

int main(int argc, char** argv) { return run_tool("llm-ppo", argc, argv, ppo_main); }
