// llm-ppo: preference optimisation of a tuned model. `llm-ppo dpo` learns from preference pairs
// directly (DPO, IPO, hinge, conservative DPO); `llm-ppo grpo` and `llm-ppo ppo` learn from the
// model's own answers, scored by rules, commands or reward models. All on the shared training
// loop, fully or through LoRA adapters, data parallel over MPI ranks.

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "llmkit/dpo.hpp"
#include "llmkit/rl.hpp"
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

// The options of every rollout algorithm: sampling, the rollouts file, rewards, passes.
struct RolloutFlags {
  int64_t max_new = 256, top_k = 0, passes = 1, mini_batches = 1;
  std::string weights;
};

std::string shortest(double x) {
  char b[32];
  snprintf(b, sizeof b, "%g", x);
  return b;
}

void add_rollout_options(OptionParser& op, RolloutConfig& cfg, RolloutFlags& f, const char* passes_name, const char* passes_help) {
  op.section("Rollouts");
  op.integer("max-new-tokens", 0, "N", &f.max_new, "tokens an answer has at most (default 256)");
  op.number("temperature", 0, "T", &cfg.temperature, "sampling temperature (default " + shortest(cfg.temperature) + ")");
  op.number("top-p", 0, "P", &cfg.top_p, "nucleus sampling (default 1: off)");
  op.integer("top-k", 0, "K", &f.top_k, "the K likeliest tokens only (default 0: off)");
  op.number("min-p", 0, "P", &cfg.min_p, "tokens at least P times the likeliest's probability (default 0: off)");
  op.value("stop", 0, "TEXT", [&cfg](const std::string& v) { cfg.stop.push_back(v); }, "an answer ends before this text (repeatable)");
  op.string("rollouts", 0, "FILE", &cfg.rollouts, "write every prompt, answer, reward and advantage as JSONL");
  op.integer(passes_name, 0, "N", &f.passes, passes_help);
  op.integer("mini-batches", 0, "M", &f.mini_batches,
             "optimizer steps per pass: a rollout batch is M x --batch-size answers,\n"
             "shuffled per pass (default 1)");
  op.section("Rewards");
  op.value("reward", 0, "rule:NAME", [&cfg](const std::string& v) { cfg.rewards.push_back(v); },
           "a built-in rule: rule:exact[:FIELD], rule:boxed[:FIELD], rule:regex:PATTERN\n(repeatable)");
  op.value("reward-cmd", 0, "CMD", [&cfg](const std::string& v) { cfg.rewards.push_back("cmd:" + v); },
           "a command reading JSONL rows on stdin, writing one number a line (repeatable)");
  op.value("reward-model", 0, "PATH", [&cfg](const std::string& v) { cfg.rewards.push_back("model:" + v); },
           "a reward model (llm-rm's) scoring each prompt and answer (repeatable)");
  op.string("reward-weights", 0, "LIST", &f.weights, "weights of the rewards, in the order given (default 1 each)");
  op.number("missing-eos-penalty", 0, "P", &cfg.missing_eos_penalty, "subtracted from an answer cut by --max-new-tokens (default 0)");
  op.number("reward-clip", 0, "C", &cfg.reward_clip, "clip each answer's reward to [-C, C] (default 0: no clipping)");
}

void check_rollout_options(RolloutConfig& cfg, const RolloutFlags& f) {
  cfg.max_new_tokens = static_cast<int>(f.max_new);
  cfg.top_k = static_cast<int>(f.top_k);
  cfg.iterations = static_cast<int>(f.passes);
  cfg.mini_batches = static_cast<int>(f.mini_batches);
  if (f.passes < 1) throw UsageError("passes over a rollout batch (--num-iterations, --ppo-epochs) must be 1 or more");
  if (f.mini_batches < 1) throw UsageError("--mini-batches must be 1 or more");
  for (const std::string& w : split_list(f.weights)) {
    char* end = nullptr;
    const double v = std::strtod(w.c_str(), &end);
    if (w.empty() || *end != '\0' || !std::isfinite(v)) throw UsageError("--reward-weights: '" + w + "' is not a number");
    cfg.reward_weights.push_back(v);
  }
  if (!(cfg.temperature > 0)) throw UsageError("--temperature must be positive (the answers are sampled)");
}

int grpo_main(int argc, char** argv) {
  GrpoConfig cfg;
  use_trl_defaults(cfg, 1e-6);
  int64_t seq = 0, micro = 0, keep = 0, bad = 0, zero = 0, group = cfg.group;
  RolloutFlags rf;
  OptionParser op("llm-ppo grpo", "llm-ppo grpo --init CHECKPOINT --data PROMPTS --reward rule:NAME --out DIR [OPTIONS]",
                  "Group relative policy optimisation: the model answers each prompt G times on\n"
                  "llmkit's own engine, the answers are scored (rules, a command, a reward model),\n"
                  "and it is pushed toward the answers that scored above their group's mean.");
  op.enable_config();
  TuningFlags flags;
  add_tuning_options(op, cfg, flags, "prompts, JSONL(.zst): {\"prompt\": text or messages, ...} (llmkit-chat(5))", false);
  add_rollout_options(op, cfg, rf, "num-iterations", "passes over each rollout batch (GRPO's mu; default 1)");
  op.section("GRPO");
  op.integer("group-size", 0, "G", &group, "answers per prompt (default 8)");
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
  check_rollout_options(cfg, rf);
  check_tuning_options(cfg, flags);
  check_trainer_options(cfg, micro, seq, keep, bad, zero);
  return run_tuning_command(cfg, flags, "llm-ppo grpo", op.common().stats_file, [&](Stats& st) { return run_grpo(cfg, st); });
}

int ppo_only_main(int argc, char** argv) {
  PpoConfig cfg;
  use_trl_defaults(cfg, 3e-6);
  cfg.temperature = 0.7;
  cfg.iterations = 4;
  int64_t seq = 0, micro = 0, keep = 0, bad = 0, zero = 0;
  RolloutFlags rf;
  rf.passes = 4;
  OptionParser op("llm-ppo ppo", "llm-ppo ppo --init CHECKPOINT --data PROMPTS --reward-model RM --out DIR [OPTIONS]",
                  "Proximal policy optimisation (RLHF): the model answers each prompt on llmkit's own\n"
                  "engine, a reward model (or a rule, a command) scores the answer, a KL penalty per\n"
                  "token keeps the model near where it started, and a value head on the model's own\n"
                  "trunk gives the advantages (GAE) that the clipped policy loss follows.");
  op.enable_config();
  TuningFlags flags;
  add_tuning_options(op, cfg, flags, "prompts, JSONL(.zst): {\"prompt\": text or messages, ...} (llmkit-chat(5))", false);
  add_rollout_options(op, cfg, rf, "ppo-epochs", "passes over each rollout batch (default 4)");
  op.section("PPO");
  op.number("kl-coef", 0, "C", &cfg.kl_coef, "the per-token KL penalty's weight in the reward (default 0.05; 0: no\nreference)");
  op.string("kl-estimator", 0, "NAME", &cfg.kl_estimator, "k1 (logp - ref, the default) or k3 (unbiased, never negative)");
  op.number("gamma", 0, "G", &cfg.gamma, "GAE's discount (default 1)");
  op.number("lam", 0, "L", &cfg.lam, "GAE's lambda (default 0.95)");
  op.number("cliprange", 0, "E", &cfg.cliprange, "the policy ratio's clip range 1 +- E (default 0.2)");
  op.number("cliprange-value", 0, "E", &cfg.cliprange_value, "the value's clip range around its rollout estimate (default 0.2)");
  op.number("vf-coef", 0, "C", &cfg.vf_coef, "the value loss's weight (default 0.1)");
  op.flag("whiten-rewards", 0, &cfg.whiten_rewards, "scale the per-token rewards to unit variance over the rollout batch");
  add_trainer_options(op, cfg, micro, seq, keep, bad, zero);
  op.epilog(
      "--batch-size and --micro-batch count answers (one per prompt). The value head is a\n"
      "second head, score.weight, on the policy's last hidden state (the checkpoint keeps\n"
      "it; language-model readers ignore it). With --lora-rank the reference is the base\n"
      "with the adapters off, never a second copy. --val PROMPTS scores greedy answers every\n"
      "--eval-every steps (val_reward).\n\n"
      "Exit status: 0 done, 1 runtime error or stopped by a signal, 2 usage error. See llm-ppo(1).\n\n"
      "Example:\n"
      "  llm-ppo ppo --init runs/sft --reward-model runs/rm --data prompts.jsonl --kl-coef 0.05 \\\n"
      "    --batch-size 64 --mini-batches 2 --lora-rank 16 --out runs/ppo --lr 3e-6");
  std::vector<std::string> rest = op.parse(argc, argv);
  if (!rest.empty()) throw UsageError("unexpected argument '" + rest[0] + "' (prompt files go after --data)");
  cfg.seed = op.common().seed;
  check_rollout_options(cfg, rf);
  check_tuning_options(cfg, flags);
  check_trainer_options(cfg, micro, seq, keep, bad, zero);
  return run_tuning_command(cfg, flags, "llm-ppo ppo", op.common().stats_file, [&](Stats& st) { return run_ppo(cfg, st); });
}

int ppo_main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "dpo") == 0) return dpo_main(argc - 1, argv + 1);
  if (argc > 1 && std::strcmp(argv[1], "grpo") == 0) return grpo_main(argc - 1, argv + 1);
  if (argc > 1 && std::strcmp(argv[1], "ppo") == 0) return ppo_only_main(argc - 1, argv + 1);
  OptionParser op("llm-ppo", "llm-ppo dpo|grpo|ppo [OPTIONS]",
                  "Preference optimisation of a tuned model. Algorithms:\n"
                  "  dpo   direct preference optimisation (and IPO, hinge, conservative DPO) on\n"
                  "        preference pairs; llm-ppo dpo --help for its options\n"
                  "  grpo  group relative policy optimisation with rewards from rules, commands or\n"
                  "        reward models; llm-ppo grpo --help\n"
                  "  ppo   proximal policy optimisation with a value head, per-token KL to the\n"
                  "        starting model and GAE (RLHF); llm-ppo ppo --help");
  std::vector<std::string> rest = op.parse(argc, argv);
  if (rest.empty()) throw UsageError("give an algorithm: dpo, grpo, ppo");
  throw UsageError("unknown algorithm '" + rest[0] + "': this llm-ppo has dpo, grpo and ppo");
}

}  // namespace

int main(int argc, char** argv) { return run_tool("llm-ppo", argc, argv, ppo_main); }
