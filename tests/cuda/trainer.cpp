// llm-pretrain's training loop (run_pretrain) on the CUDA backend's code, through the CPU
// emulator: what the kernel tests do not reach — device memory for the optimizer state, bf16
// activation handles (reserved, inaccessible address ranges: a host access faults), checkpoints
// written from and read into device memory, --resume, --recompute, --save-dtype bf16 and the
// peak device memory in metrics.jsonl — against the same run on the CPU. Then the post-training
// objectives on the same code: llm-sft with LoRA, packing and a teacher (the distillation
// kernel, two models' bf16 weight copies on one backend), QLoRA on Q4_0 and NF4 bases, llm-ppo
// dpo and llm-rm (the scalar head, no LM head).
#include <cmath>
#include <cstdio>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "llmkit/backend.hpp"
#include "llmkit/cuda.hpp"
#include "llmkit/dpo.hpp"
#include "llmkit/pretrain.hpp"
#include "llmkit/rm.hpp"
#include "llmkit/sft.hpp"
#include "llmkit/tok.hpp"
#include "llmkit/stats.hpp"

using namespace llmkit;
namespace fs = std::filesystem;

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%-64s %s\n", what.c_str(), ok ? "ok" : "FAILED");
  failures += !ok;
}

std::vector<double> losses(const std::string& run, bool* device_mem = nullptr) {
  std::ifstream f(run + "/metrics.jsonl");
  std::vector<double> out;
  for (std::string line; std::getline(f, line);) {
    const size_t k = line.find("\"loss\":");
    if (k == std::string::npos) continue;
    out.push_back(std::stod(line.substr(k + 7)));
    if (device_mem) *device_mem = line.find("\"peak_device_mem\":") != std::string::npos;
  }
  return out;
}

// Both have `steps` losses, each within rel of the other's.
bool track(const std::vector<double>& a, const std::vector<double>& b, size_t steps, double rel, double* worst) {
  *worst = 0;
  if (a.size() != steps || b.size() != steps) return false;
  for (size_t i = 0; i < steps; ++i) *worst = std::max(*worst, std::abs(a[i] - b[i]) / std::abs(a[i]));
  return *worst <= rel;
}

int run(PretrainConfig c) {
  Stats stats;
  return run_pretrain(c, stats);
}

}  // namespace

int main() {
  set_cuda_backend_factory([](const std::string& precision) { return make_emulated_cuda_backend(precision); });
  const fs::path dir = fs::temp_directory_path() / ("llmkit-trainer-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  // Tokens of a repeating pattern with noise (learnable), as an llm.c v1 file.
  const std::string tokens = (dir / "tokens.bin").string();
  {
    std::mt19937 rng(4);
    const int n = 6000;
    std::vector<int32_t> header(256, 0);
    header[0] = 20240520, header[1] = 1, header[2] = n;
    std::vector<uint16_t> t(n);
    for (int i = 0; i < n; ++i) t[static_cast<size_t>(i)] = static_cast<uint16_t>(rng() % 5 == 0 ? rng() % 96 : (i * 7) % 96);
    std::ofstream f(tokens, std::ios::binary);
    f.write(reinterpret_cast<const char*>(header.data()), 1024);
    f.write(reinterpret_cast<const char*>(t.data()), static_cast<std::streamsize>(t.size() * 2));
  }
  // Head size 32: bf16 takes the fused attention.
  const std::string config = (dir / "config.json").string();
  std::ofstream(config) << R"({"model_type": "llama", "vocab_size": 96, "hidden_size": 64, "intermediate_size": 96,
    "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64})";
  PretrainConfig base;
  base.model = config;
  base.train = {tokens};
  base.seq_len = 24;
  base.micro_batch = 2;
  base.batch_tokens = 96;  // two micro-batches: gradient accumulation too
  base.steps = 6;
  base.warmup = 1;
  base.lr = 3e-3;
  base.eval_every = 0;
  auto with = [&](const std::string& name, const std::string& device, const std::string& precision) {
    PretrainConfig c = base;
    c.out = (dir / name).string();
    c.device = device;
    c.precision = precision;
    return c;
  };
  double worst = 0;
  check(run(with("cpu", "cpu", "bf16")) == 0, "CPU run");
  const auto cpu = losses((dir / "cpu").string());

  check(run(with("fp32", "cuda", "fp32")) == 0, "emulated CUDA run, fp32");
  bool device_mem = false;
  const auto fp32 = losses((dir / "fp32").string(), &device_mem);
  bool ok = track(cpu, fp32, 6, 1e-4, &worst);
  check(ok, "  losses as the CPU's (fp32), worst " + std::to_string(worst));
  check(device_mem, "  metrics.jsonl has peak_device_mem");

  // bf16, recomputed MLP, bf16 checkpoints, stopped at step 3 and resumed.
  PretrainConfig b = with("bf16", "cuda", "bf16");
  b.recompute = true;
  b.save_dtype = "bf16";
  b.stop_at = 3;
  check(run(b) == 0, "emulated CUDA run, bf16, --recompute, stopped at step 3");
  b.stop_at = 0;
  b.resume = true;
  check(run(b) == 0, "  resumed to step 6");
  const auto bf16 = losses((dir / "bf16").string());
  ok = track(cpu, bf16, 6, 2e-2, &worst);
  check(ok, "  losses track the CPU's (bf16), worst " + std::to_string(worst));

  // A checkpoint of the emulated GPU run, continued on the CPU.
  PretrainConfig x = with("x", "cuda", "fp32");
  x.stop_at = 3;
  check(run(x) == 0, "emulated CUDA run to step 3");
  x.device = "cpu";
  x.stop_at = 0;
  x.resume = true;
  check(run(x) == 0, "  resumed on the CPU");
  ok = track(cpu, losses((dir / "x").string()), 6, 1e-4, &worst);
  check(ok, "  losses as the CPU's, worst " + std::to_string(worst));

  // ---- Post-training on the base the CPU run made, with a tokenizer of ChatML's markers ----
  const std::string docs = (dir / "docs.jsonl").string(), chat = (dir / "chat.jsonl").string(), prefs = (dir / "prefs.jsonl").string();
  {
    std::mt19937 rng(9);
    const char* words[] = {"cat", "dog", "sat", "on", "mat", "red", "big", "ran"};
    std::ofstream d(docs), c(chat), p(prefs);
    for (int i = 0; i < 60; ++i) {
      std::string text;
      for (int k = 0; k < 12; ++k) text += std::string(k ? " " : "") + words[rng() % 8];
      const int a = static_cast<int>(rng() % 5), b2 = static_cast<int>(rng() % 5);
      d << "{\"text\": \"" << text << " add " << a << " and " << b2 << " " << a + b2 << "\"}\n";
      c << R"({"messages": [{"role": "user", "content": "add )" << a << " and " << b2 << R"("}, {"role": "assistant", "content": ")"
        << a + b2 << "\"}]}\n";
      p << R"({"prompt": "add )" << a << " and " << b2 << R"( ", "chosen": ")" << a + b2 << R"(", "rejected": ")" << words[rng() % 8]
        << "\"}\n";
    }
  }
  const std::string ckpt = (dir / "cpu" / "step-00000006").string();
  {
    TrainConfig tc;
    tc.output = ckpt + "/tokenizer.model";
    tc.vocab_size = 48;  // the model has 96: a tokenizer may use fewer
    tc.byte_fallback = false;
    tc.specials = {"<|im_start|>", "<|im_end|>"};
    Stats st;
    train_tokenizer({docs}, tc, st);
  }
  auto tuned = [&](SftConfig& c, const std::string& name, const std::string& device, const std::string& precision) {
    c.init = ckpt;
    c.out = (dir / name).string();
    c.device = device;
    c.precision = precision;
    c.seq_len = 48;
    c.micro_batch = 4;
    c.batch_rows = 8;
    c.steps = 4;
    c.warmup = 0;
    c.lr = 3e-3;
    c.eval_every = 0;
  };
  auto sft = [&](const std::string& name, const std::string& device, const std::string& precision) {
    SftConfig c;
    c.data = {chat};
    tuned(c, name, device, precision);
    c.packing = true;
    c.lora.rank = 4;
    c.lora.alpha = 8;
    c.lora.targets = {"all-linear"};
    c.teacher = ckpt;
    c.kd_alpha = 0.5;
    c.divergence.kind = Divergence::Kind::jsd;
    c.divergence.beta = 0.3f;
    Stats st;
    return run_sft(c, st);
  };
  check(sft("sft-cpu", "cpu", "fp32") == 0, "llm-sft, LoRA, packed, a teacher: CPU");
  check(sft("sft-fp32", "cuda", "fp32") == 0, "  emulated CUDA, fp32");
  ok = track(losses((dir / "sft-cpu").string()), losses((dir / "sft-fp32").string()), 4, 1e-4, &worst);
  check(ok, "  losses as the CPU's, worst " + std::to_string(worst));
  check(sft("sft-bf16", "cuda", "bf16") == 0, "  emulated CUDA, bf16 (student and teacher: a bf16 copy each)");
  ok = track(losses((dir / "sft-cpu").string()), losses((dir / "sft-bf16").string()), 4, 3e-2, &worst);
  check(ok, "  losses track the CPU's, worst " + std::to_string(worst));

  // QLoRA: the base held in Q4_0 blocks and in NF4 on the device (dequantized into the GEMMs),
  // the adapters trained on it as on the CPU.
  auto qlora = [&](const std::string& name, const std::string& device, const std::string& type) {
    SftConfig c;
    c.data = {chat};
    tuned(c, name, device, "fp32");
    c.lora.rank = 4;
    c.lora.alpha = 8;
    c.lora.targets = {"all-linear"};
    c.qlora = type;
    Stats st;
    return run_sft(c, st);
  };
  for (const std::string type : {"q4_0", "nf4"}) {
    check(qlora("qlora-cpu-" + type, "cpu", type) == 0, "llm-sft --qlora " + type + ": CPU");
    check(qlora("qlora-cuda-" + type, "cuda", type) == 0, "  emulated CUDA, fp32");
    ok = track(losses((dir / ("qlora-cpu-" + type)).string()), losses((dir / ("qlora-cuda-" + type)).string()), 4, 1e-4, &worst);
    check(ok, "  losses as the CPU's, worst " + std::to_string(worst));
  }

  auto dpo = [&](const std::string& name, const std::string& device) {
    DpoConfig c;
    c.data = {prefs};
    tuned(c, name, device, "fp32");
    Stats st;
    c.tokenizer = ckpt + "/tokenizer.model";
    return run_dpo(c, st);
  };
  check(dpo("dpo-cpu", "cpu") == 0, "llm-ppo dpo: CPU");
  check(dpo("dpo-cuda", "cuda") == 0, "  emulated CUDA, fp32");
  ok = track(losses((dir / "dpo-cpu").string()), losses((dir / "dpo-cuda").string()), 4, 1e-4, &worst);
  check(ok, "  losses as the CPU's, worst " + std::to_string(worst));

  auto rm = [&](const std::string& name, const std::string& device) {
    RmConfig c;
    c.data = {prefs};
    tuned(c, name, device, "fp32");
    c.tokenizer = ckpt + "/tokenizer.model";
    Stats st;
    return run_rm(c, st);
  };
  check(rm("rm-cpu", "cpu") == 0, "llm-rm: CPU");
  check(rm("rm-cuda", "cuda") == 0, "  emulated CUDA, fp32");
  ok = track(losses((dir / "rm-cpu").string()), losses((dir / "rm-cuda").string()), 4, 1e-4, &worst);
  check(ok, "  losses as the CPU's, worst " + std::to_string(worst));

  fs::remove_all(dir);
  std::printf("%d failures\n", failures);
  return failures ? 1 : 0;
}
