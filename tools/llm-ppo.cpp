// llm-ppo: preference optimisation of a tuned model. `llm-ppo dpo` learns from preference pairs
// directly (DPO, IPO, hinge, conservative DPO), on the shared training loop, fully or through
// LoRA adapters, data parallel over MPI ranks.

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "llmkit/dpo.hpp"
#include "llmkit/grpo.hpp"
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
  use_trl_defaults(cfg, 1e-6);
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
  check_trainer_options(cfg, micro, seq, keep, bad, zero);
  return run_tuning_command(cfg, flags, "llm-ppo dpo", op.common().stats_file, [&](Stats& st) { return run_dpo(cfg, st); });
}

int grpo_main(int argc, char** argv) {
  GrpoConfig cfg;
  use_trl_defaults(cfg, 1e-6);
  cfg.max_new_tokens = 256;
  int64_t seq = 0, micro = 0, keep = 0, bad = 0, zero = 0, group = cfg.group, max_new = cfg.max_new_tokens, top_k = 0;
  std::string weights;
  OptionParser op("llm-ppo grpo", "llm-ppo grpo --init CHECKPOINT --data PROMPTS --reward rule:NAME --out DIR [OPTIONS]",
                  "Group relative policy optimisation: the model answers each prompt G times on\n"
                  "llmkit's own engine, the answers are scored (rules, a command), and it is pushed\n"
                  "toward the answers that scored above their group's mean.");
  op.enable_config();
  TuningFlags flags;
  add_tuning_options(op, cfg, flags, "prompts, JSONL(.zst): {\"prompt\": text or messages, ...} (llmkit-chat(5))", false);
  op.section("Rollouts");
  op.integer("group-size", 0, "G", &group, "answers per prompt (default 8)");
  op.integer("max-new-tokens", 0, "N", &max_new, "tokens an answer has at most (default 256)");
  op.number("temperature", 0, "T", &cfg.temperature, "sampling temperature (default 1)");
  op.number("top-p", 0, "P", &cfg.top_p, "nucleus sampling (default 1: off)");
  op.integer("top-k", 0, "K", &top_k, "the K likeliest tokens only (default 0: off)");
  op.number("min-p", 0, "P", &cfg.min_p, "tokens at least P times the likeliest's probability (default 0: off)");
  op.value("stop", 0, "TEXT", [&](const std::string& v) { cfg.stop.push_back(v); }, "an answer ends before this text (repeatable)");
  op.string("rollouts", 0, "FILE", &cfg.rollouts, "write every prompt, answer, reward and advantage as JSONL");
  op.section("Rewards");
  op.value("reward", 0, "rule:NAME", [&](const std::string& v) { cfg.rewards.push_back(v); },
           "a built-in rule: rule:exact[:FIELD], rule:boxed[:FIELD], rule:regex:PATTERN\n(repeatable)");
  op.value("reward-cmd", 0, "CMD", [&](const std::string& v) { cfg.rewards.push_back("cmd:" + v); },
           "a command reading JSONL rows on stdin, writing one number a line (repeatable)");
  op.value("reward-model", 0, "PATH", [&](const std::string& v) { cfg.rewards.push_back("model:" + v); },
           "a reward model (llm-rm's) scoring each prompt and answer (repeatable)");
  op.string("reward-weights", 0, "LIST", &weights, "weights of the rewards, in the order given (default 1 each)");
  op.number("missing-eos-penalty", 0, "P", &cfg.missing_eos_penalty, "subtracted from an answer cut by --max-new-tokens (default 0)");
  op.section("GRPO");
  op.number("epsilon", 0, "E", &cfg.epsilon, "the ratio's clip range 1 +- E (default 0.2)");
  op.number("epsilon-high", 0, "E", &cfg.epsilon_high, "the upper clip 1 + E instead (DAPO's clip-higher; default --epsilon)");
  op.string("loss-type", 0, "NAME", &cfg.loss_type,
            "grpo (a sequence's mean, then the batch's; default), bnpo (a micro-batch's\n"
            "tokens), dr_grpo (sequences x --max-new-tokens), dapo (the batch's tokens)");
  op.string("scale-rewards", 0, "HOW", &cfg.scale_rewards, "divide advantages by the std of the group (default), batch, or none");
  op.number("beta", 0, "B", &cfg.beta, "weight of the k3 KL to the starting model (default 0: none)");
  add_trainer_options(op, cfg, micro, seq, keep, bad, zero);
  op.epilog(
      "--batch-size and --micro-batch count answers (rows): a step answers --batch-size /\n"
      "--group-size prompts, a rank whole prompts. --val PROMPTS scores greedy answers\n"
      "every --eval-every steps (val_reward).\n\n"
      "Exit status: 0 done, 1 runtime error or stopped by a signal, 2 usage error. See llm-ppo(1).\n\n"
      "Example:\n"
      "  llm-ppo grpo --init runs/sft --data problems.jsonl --reward rule:exact --group-size 8 \\\n"
      "    --max-new-tokens 256 --batch-size 64 --out runs/grpo --lr 1e-6");
  std::vector<std::string> rest = op.parse(argc, argv);
  if (!rest.empty()) throw UsageError("unexpected argument '" + rest[0] + "' (prompt files go after --data)");
  cfg.seed = op.common().seed;
  cfg.group = static_cast<int>(group);
  cfg.max_new_tokens = static_cast<int>(max_new);
  cfg.top_k = static_cast<int>(top_k);
  for (const std::string& w : split_list(weights)) {
    char* end = nullptr;
    const double v = std::strtod(w.c_str(), &end);
    if (w.empty() || *end != '\0' || !std::isfinite(v)) throw UsageError("--reward-weights: '" + w + "' is not a number");
    cfg.reward_weights.push_back(v);
  }
  if (!(cfg.temperature > 0)) throw UsageError("--temperature must be positive (sampling: the group's answers must differ)");
  check_tuning_options(cfg, flags);
  check_trainer_options(cfg, micro, seq, keep, bad, zero);
  return run_tuning_command(cfg, flags, "llm-ppo grpo", op.common().stats_file, [&](Stats& st) { return run_grpo(cfg, st); });
}

int ppo_main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "dpo") == 0) return dpo_main(argc - 1, argv + 1);
  if (argc > 1 && std::strcmp(argv[1], "grpo") == 0) return grpo_main(argc - 1, argv + 1);
  OptionParser op("llm-ppo", "llm-ppo dpo|grpo [OPTIONS]",
                  "Preference optimisation of a tuned model. Algorithms:\n"
                  "  dpo   direct preference optimisation (and IPO, hinge, conservative DPO) on\n"
                  "        preference pairs; llm-ppo dpo --help for its options\n"
                  "  grpo  group relative policy optimisation with rewards from rules, commands or\n"
                  "        reward models; llm-ppo grpo --help");
  std::vector<std::string> rest = op.parse(argc, argv);
  if (rest.empty()) throw UsageError("give an algorithm: dpo, grpo");
  throw UsageError("unknown algorithm '" + rest[0] + "': this llm-ppo has dpo and grpo");
}

}  // namespace

int main(int argc, char** argv) { return run_tool("llm-ppo", argc, argv, ppo_main); }
