// llm-sft: instruction tuning on chat data (TRL's formats), full or with LoRA adapters, packed
// or not, data parallel over MPI ranks; `llm-sft merge` folds an adapter into its base.

#include <cmath>
#include <cstring>

#include "llmkit/classify.hpp"
#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/options.hpp"
#include "llmkit/sft.hpp"
#include "llmkit/stats.hpp"
#include "llmkit/tool.hpp"
#include "llmkit/trainer.hpp"

using namespace llmkit;

namespace {

int merge_main(int argc, char** argv) {
  std::string out;
  OptionParser op("llm-sft merge", "llm-sft merge ADAPTER -o DIR",
                  "Folds a LoRA adapter (an adapter directory, or an llm-sft run or checkpoint that\n"
                  "holds one) into its base: DIR gets a plain checkpoint with W + (alpha/r) B A.");
  op.string("out", 'o', "DIR", &out, "the merged checkpoint's directory");
  std::vector<std::string> rest = op.parse(argc, argv);
  if (rest.size() != 1) throw UsageError("give one ADAPTER directory");
  if (out.empty()) throw UsageError("-o DIR is required");
  merge_adapter(rest[0], out);
  return 0;
}

int sft_main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "merge") == 0) return merge_main(argc - 1, argv + 1);
  SftConfig cfg;
  use_trl_defaults(cfg, 2e-5);
  int64_t seq = 0, micro = 0, keep = 0, bad = 0, zero = 0, show = 0;
  OptionParser op("llm-sft", "llm-sft --init CHECKPOINT --data FILE --out DIR [OPTIONS]\n       llm-sft merge ADAPTER -o DIR",
                  "Tunes a model on chat data (JSONL: messages, prompt/completion or text rows, as\n"
                  "Hugging Face TRL reads them), training only what the assistant says, fully or\n"
                  "through LoRA adapters saved as PEFT does; data parallel over MPI ranks. With\n"
                  "--task classify, a sequence classifier on labelled texts instead (BERT or decoder).");
  op.enable_config();
  TuningFlags flags;
  add_tuning_options(op, cfg, flags, "rows, JSONL(.zst): chat data (llmkit-chat(5))", true);
  op.integer("show-masks", 0, "N", &show, "print N examples with their trained tokens between [[ and ]], and exit");
  std::string task = "sft";
  op.string("task", 0, "sft|classify", &task,
            "sft: chat tuning (default); classify: a K-label classifier on rows {\"text\",\n"
            "\"label\"} or {\"text_a\", \"text_b\", \"label\"}, on BERT's [CLS] or a decoder's\n"
            "last token, accuracy and macro-F1 on --val (--seq-len default 128)");
  op.section("Distillation");
  double kd_temperature = 1.0, kd_beta = 0.5;
  std::string kd_loss = "kl";
  op.string("teacher", 0, "PATH", &cfg.teacher,
            "distil from this model (checkpoint, run or adapter directory; the same\n"
            "tokenizer): the loss mixes the NLL with a divergence from its distribution");
  op.number("kd-alpha", 0, "A", &cfg.kd_alpha, "the divergence's weight, in (0, 1]; the NLL's is 1 - A (default 0.5)");
  op.number("kd-temperature", 0, "T", &kd_temperature, "softmax temperature of both distributions (default 1)");
  op.string("kd-loss", 0, "NAME", &kd_loss,
            "kl: T^2 KL(teacher || student), Hinton's (default); jsd: TRL GKD's\n"
            "generalised Jensen-Shannon divergence, see --kd-beta");
  op.number("kd-beta", 0, "B", &kd_beta, "jsd's interpolation: 0 forward KL, 1 reverse KL (default 0.5)");
  add_trainer_options(op, cfg, micro, seq, keep, bad, zero);
  op.section("Evaluation");
  op.integer("eval-batches", 0, "N", &cfg.eval_batches, "validation micro-batches per evaluation (default 0: all)");
  op.epilog(
      "Signals: SIGTERM, SIGINT and SIGUSR1 stop the run after the step under way with a\n"
      "checkpoint, exit 1; --resume continues from it. A second one stops at once.\n\n"
      "Exit status: 0 done, 1 runtime error or stopped by a signal, 2 usage error. See llm-sft(1)\n"
      "and llmkit-chat(5).\n\n"
      "Example:\n"
      "  llm-sft --init runs/base --data chat.jsonl --val chat-val.jsonl --out runs/sft \\\n"
      "    --seq-len 1024 --packing --lora-rank 16 --lora-alpha 32 --lr 2e-4 --epochs 3");
  std::vector<std::string> rest = op.parse(argc, argv);
  if (!rest.empty()) throw UsageError("unexpected argument '" + rest[0] + "' (data files go after --data)");
  cfg.seed = op.common().seed;
  check_tuning_options(cfg, flags);
  if (kd_loss == "kl") cfg.divergence.kind = Divergence::Kind::kl;
  else if (kd_loss == "jsd") cfg.divergence.kind = Divergence::Kind::jsd;
  else throw UsageError("--kd-loss must be kl or jsd, not '" + kd_loss + "'");
  if (!(kd_temperature > 0 && std::isfinite(kd_temperature))) throw UsageError("--kd-temperature must be positive");
  if (!(kd_beta >= 0 && kd_beta <= 1)) throw UsageError("--kd-beta must be in [0, 1]");
  if (!(cfg.kd_alpha > 0 && cfg.kd_alpha <= 1)) throw UsageError("--kd-alpha must be in (0, 1] (0 would not use the teacher)");
  if (cfg.teacher.empty() && (kd_loss != "kl" || kd_temperature != 1.0 || kd_beta != 0.5 || cfg.kd_alpha != 0.5))
    throw UsageError("--kd-alpha, --kd-temperature, --kd-loss and --kd-beta need --teacher");
  cfg.divergence.temperature = static_cast<float>(kd_temperature);
  cfg.divergence.beta = static_cast<float>(kd_beta);
  if (show > 0) {
    if (seq < 1) seq = cfg.seq_len;
    cfg.seq_len = static_cast<int>(seq);
    show_masks(cfg, show, stdout);
    return 0;
  }
  if (task != "sft" && task != "classify") throw UsageError("--task: '" + task + "' (sft, classify)");
  const bool classify = task == "classify";
  if (classify) {
    if (cfg.packing) throw UsageError("--packing: classification rows are one text (or pair) each");
    if (!cfg.teacher.empty()) throw UsageError("--teacher: distillation is for --task sft");
    if (seq == 0) cfg.seq_len = 128;  // Hugging Face's run_glue's max_seq_length
  }
  check_trainer_options(cfg, micro, seq, keep, bad, zero);
  return run_tuning_command(cfg, flags, "llm-sft", op.common().stats_file,
                            [&](Stats& st) { return classify ? run_classify(cfg, st) : run_sft(cfg, st); });
}

}  // namespace

int main(int argc, char** argv) { return run_tool("llm-sft", argc, argv, sft_main); }
