// llm-pretrain: trains a transformer from scratch on token shards — a decoder (Llama or GPT-2
// shape) on next tokens, or a BERT encoder on masked ones — data parallel over MPI ranks (NCCL
// between GPUs), with checkpoints and resumption.

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/stats.hpp"
#include "llmkit/options.hpp"
#include "llmkit/pretrain.hpp"
#include "llmkit/tool.hpp"
#include "llmkit/trainer.hpp"

using namespace llmkit;

namespace {

int pretrain_main(int argc, char** argv) {
  PretrainConfig cfg;
  int64_t seq = 0, micro = 0, keep = 0, bad = 0, zero = 0;
  bool no_verify = false;
  std::string plot;
  OptionParser op("llm-pretrain", "llm-pretrain --train SHARDS --out DIR [OPTIONS]",
                  "Trains a transformer from scratch on token shards (llm-tok encode, or llm.c .bin\n"
                  "files): a decoder on next tokens, or a BERT encoder on masked ones (--objective\n"
                  "mlm); data parallel over MPI ranks, writing OUT/metrics.jsonl and checkpoints\n"
                  "OUT/step-NNNNNNNN/ (Hugging Face safetensors).");
  op.enable_config();
  op.section("Model and data");
  op.string("model", 0, "NAME|FILE", &cfg.model,
            "llama-tiny (default), llama-25m, gpt2-124m, llama-125m, bert-tiny, bert-base,\n"
            "or a config.json");
  op.value("train", 0, "SHARDS", [&](const std::string& v) { cfg.train.push_back(v); },
           "training shards: paths or quoted glob patterns (repeatable)");
  op.value("val", 0, "SHARDS", [&](const std::string& v) { cfg.val.push_back(v); },
           "validation shards (repeatable)");
  op.string("tokenizer", 0, "MODEL", &cfg.tokenizer,
            "SentencePiece model or WordPiece vocab.txt copied into every checkpoint (checked\n"
            "against the shards; --objective mlm needs it)");
  op.string("init", 0, "PATH", &cfg.init,
            "start from these weights: a checkpoint directory or a model.safetensors");
  op.flag("no-verify", 0, &no_verify, "skip the shards' payload checksums at start");
  add_trainer_options(op, cfg, micro, seq, keep, bad, zero);
  op.section("Pretraining");
  op.integer("batch-tokens", 0, "N", &cfg.batch_tokens,
             "tokens per optimizer step over all ranks, instead of --batch-size rows\n"
             "(a multiple of seq-len x micro-batch x ranks)");
  op.integer("eval-batches", 0, "N", &cfg.eval_batches, "micro-batches of validation windows (default 8)");
  op.string("objective", 0, "clm|mlm", &cfg.objective,
            "clm: next-token prediction (default; Llama, GPT-2); mlm: masked tokens (BERT):\n"
            "each row is [CLS] and seq-len - 1 tokens of the shards, masked afresh every step");
  op.number("mlm-probability", 0, "P", &cfg.mlm.probability,
            "mlm: the share of tokens chosen (default 0.15); of those 80% become [MASK],\n"
            "10% a random token, 10% stay, as in BERT");
  op.flag("whole-word", 0, &cfg.mlm.whole_word, "mlm: choose whole words (a token and its ## pieces) at once");
  op.flag("nsp", 0, &cfg.nsp,
          "mlm: also next-sentence prediction, as the original BERT (BertForPreTraining):\n"
          "rows [CLS] A [SEP] B [SEP], B A's continuation or, half the time, another text's");
  op.integer("sample-every", 0, "N", &cfg.sample_every,
             "every N steps print a continuation the model samples after 8 tokens of validation\n"
             "data (decoded with --tokenizer when given); mlm: masked tokens and the model's\n"
             "guesses");
  op.string("plot", 0, "RUN", &plot,
            "draw RUN/metrics.jsonl (or the metrics file given) into loss.png beside it with\n"
            "gnuplot and exit (no training)");
  op.epilog(
      "Signals: SIGTERM, SIGINT and SIGUSR1 (Slurm's --signal=USR1@120) stop the run after the\n"
      "step under way with a checkpoint, exit 1; --resume continues from it. A second one stops\n"
      "at once without it (exit 128 + signal), saying which steps are lost.\n\n"
      "Exit status: 0 done, 1 runtime error or stopped by a signal, 2 usage error. See\n"
      "llm-pretrain(1).\n\n"
      "Example:\n"
      "  llm-pretrain --model llama-tiny --train 'shards/train-*.tok' --val shards/val-00000.tok \\\n"
      "    --out runs/r1 --seq-len 256 --micro-batch 8 --batch-tokens 16384 --steps 2000");
  std::vector<std::string> rest = op.parse(argc, argv);
  if (!plot.empty()) {
    plot_metrics(plot);
    return 0;
  }
  if (!rest.empty()) throw UsageError("unexpected argument '" + rest[0] + "' (shards go after --train)");
  if (cfg.batch_tokens < 0) throw UsageError("--batch-tokens must be positive");
  if (cfg.eval_batches < 1) throw UsageError("--eval-batches must be at least 1");
  if (cfg.objective != "clm" && cfg.objective != "mlm") throw UsageError("--objective: '" + cfg.objective + "' (clm, mlm)");
  if (!(cfg.mlm.probability > 0 && cfg.mlm.probability < 1)) throw UsageError("--mlm-probability must be between 0 and 1");
  cfg.seed = op.common().seed;
  cfg.verify_shards = !no_verify;
  check_trainer_options(cfg, micro, seq, keep, bad, zero);
  Stats stats;
  int rc = run_pretrain(cfg, stats);
  // Every rank counted the same steps: rank 0's counts are the run's.
  stats.write(op.common().stats_file, "llm-pretrain", Comm::world());
  return rc;
}

}  // namespace

int main(int argc, char** argv) { return run_tool("llm-pretrain", argc, argv, pretrain_main); }
