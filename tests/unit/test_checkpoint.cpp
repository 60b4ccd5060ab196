// Checkpoints (lib/model/checkpoint.cpp): save -> load gives identical logits (both families,
// fp32 exact, bf16 close), Hugging Face names and layouts, llm.c GPT-2 files read from their
// published layout, damaged files refused.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "llmkit/checkpoint.hpp"
#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/safetensors.hpp"
#include "util.hpp"

using namespace llmkit;

namespace {

std::string tmp(const std::string& name) { return "/tmp/llmkit-ckpt-" + std::to_string(::getpid()) + "-" + name; }

ModelConfig small(ModelConfig::Family f) { return test::two_layer_model(f, 50, 16, 40, 64, 12, false); }

std::vector<float> logits_of(Model& m) {
  std::vector<int32_t> tok = {1, 7, 3, 49, 0, 12, 5, 8};
  m.forward(tok.data(), nullptr, 2, 4);
  size_t n = 8 * static_cast<size_t>(m.config().padded_vocab());
  return std::vector<float>(m.logits(), m.logits() + n);
}

}  // namespace

TEST_CASE("Checkpoints round-trip: identical logits after save and load", "[checkpoint]") {
  for (auto f : {ModelConfig::Family::llama, ModelConfig::Family::gpt2}) {
    auto be = make_cpu_backend();
    Model a(small(f), *be);
    a.init(7);
    std::string path = tmp("rt.safetensors");
    save_model(path, a);
    Model b(small(f), *be);
    load_model(path, b);
    CHECK(logits_of(a) == logits_of(b));
    save_model(path, a, "BF16");
    Model c(small(f), *be);
    load_model(path, c);
    auto la = logits_of(a), lc = logits_of(c);
    double worst = 0;
    for (size_t i = 0; i < la.size(); ++i) worst = std::max(worst, static_cast<double>(std::abs(la[i] - lc[i])));
    CHECK(worst < 0.05);
    std::remove(path.c_str());
  }
}

TEST_CASE("GPT-2 checkpoints use Hugging Face's Conv1D layout and fused c_attn", "[checkpoint]") {
  auto be = make_cpu_backend();
  Model m(small(ModelConfig::Family::gpt2), *be);
  m.init(3);
  std::string path = tmp("gpt2.safetensors");
  save_model(path, m);
  SafetensorsFile f(path);
  const auto& attn = f.get("transformer.h.1.attn.c_attn.weight");
  CHECK(attn.shape == std::vector<int64_t>{16, 48});  // [in, out]: q, k, v side by side
  CHECK(f.get("transformer.wte.weight").shape == std::vector<int64_t>{50, 16});  // no padding rows
  CHECK(f.get("transformer.h.0.mlp.c_fc.weight").shape == std::vector<int64_t>{16, 64});
  // HF c_attn.weight[i][16 + j] is the key projection's weight[j][i].
  std::vector<float> hf(16 * 48);
  f.read_f32("transformer.h.1.attn.c_attn.weight", hf.data(), hf.size());
  const float* wk = m.weights() + m.param("h.1.attn.k.weight").offset;
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) REQUIRE(hf[static_cast<size_t>(i * 48 + 16 + j)] == wk[j * 16 + i]);
  // Names without "transformer." (the Hub's gpt2 files) load too.
  std::vector<std::vector<float>> data;
  std::vector<TensorView> views;
  for (const auto& name : f.names()) {
    const auto& e = f.get(name);
    size_t n = e.bytes / 4;
    data.emplace_back(n);
    f.read_f32(name, data.back().data(), n);
    views.push_back({name.substr(12), DType::f32, e.shape, data.back().data()});
  }
  std::string bare = tmp("bare.safetensors");
  write_safetensors(bare, views);
  Model n(small(ModelConfig::Family::gpt2), *be);
  load_model(bare, n);
  CHECK(logits_of(m) == logits_of(n));
  std::remove(path.c_str());
  std::remove(bare.c_str());
}

TEST_CASE("Loading refuses missing and misshapen tensors, naming them", "[checkpoint]") {
  auto be = make_cpu_backend();
  Model m(small(ModelConfig::Family::llama), *be);
  m.init(1);
  std::string path = tmp("shape.safetensors");
  save_model(path, m);
  ModelConfig wider = small(ModelConfig::Family::llama);
  wider.ffn_dim = 48;
  Model w(wider, *be);
  CHECK_THROWS_WITH(load_model(path, w), Catch::Contains("mlp.gate_proj.weight: shape"));
  Model g(small(ModelConfig::Family::gpt2), *be);
  CHECK_THROWS_WITH(load_model(path, g), Catch::Contains("tensor transformer.wte.weight is missing"));
  std::remove(path.c_str());
}

TEST_CASE("llm.c GPT-2 checkpoints (version 3) load as their published layout says", "[checkpoint]") {
  // Write one from a model's weights, in llm.c's order: wte (padded to Vp rows), wpe, then per
  // kind across layers: ln1w, ln1b, qkvw [3C, C], qkvb, attprojw, attprojb, ln2w, ln2b, fcw,
  // fcb, fcprojw, fcprojb; lnfw, lnfb.
  auto be = make_cpu_backend();
  ModelConfig c = small(ModelConfig::Family::gpt2);
  Model m(c, *be);
  m.init(5);
  const int C = c.dim, L = c.layers, T = c.max_seq, V = c.vocab_size, Vp = 64;
  auto w = [&](const std::string& name) { return m.weights() + m.param(name).offset; };
  std::vector<float> out;
  auto put = [&](const float* p, size_t n) { out.insert(out.end(), p, p + n); };
  put(w("wte"), static_cast<size_t>(V) * C);
  out.resize(out.size() + static_cast<size_t>(Vp - V) * C, 0.0f);
  put(w("wpe"), static_cast<size_t>(T) * C);
  auto each = [&](auto f) { for (int l = 0; l < L; ++l) f("h." + std::to_string(l) + "."); };
  each([&](const std::string& h) { put(w(h + "ln_1.weight"), C); });
  each([&](const std::string& h) { put(w(h + "ln_1.bias"), C); });
  each([&](const std::string& h) { for (const char* k : {"q", "k", "v"}) put(w(h + "attn." + k + ".weight"), C * C); });
  each([&](const std::string& h) { for (const char* k : {"q", "k", "v"}) put(w(h + "attn." + k + ".bias"), C); });
  each([&](const std::string& h) { put(w(h + "attn.c_proj.weight"), C * C); });
  each([&](const std::string& h) { put(w(h + "attn.c_proj.bias"), C); });
  each([&](const std::string& h) { put(w(h + "ln_2.weight"), C); });
  each([&](const std::string& h) { put(w(h + "ln_2.bias"), C); });
  each([&](const std::string& h) { put(w(h + "mlp.c_fc.weight"), 4 * C * C); });
  each([&](const std::string& h) { put(w(h + "mlp.c_fc.bias"), 4 * C); });
  each([&](const std::string& h) { put(w(h + "mlp.c_proj.weight"), 4 * C * C); });
  each([&](const std::string& h) { put(w(h + "mlp.c_proj.bias"), C); });
  put(w("ln_f.weight"), C);
  put(w("ln_f.bias"), C);
  int32_t header[256] = {20240326, 3, T, V, L, c.heads, C, Vp};
  std::string bytes(reinterpret_cast<const char*>(header), 1024);
  bytes.append(reinterpret_cast<const char*>(out.data()), out.size() * 4);
  std::string path = tmp("gpt2.bin");
  write_file_atomic(path, bytes);
  REQUIRE(is_llmc_checkpoint(path));
  ModelConfig lc = llmc_config(path);
  CHECK(lc.dim == C);
  CHECK(lc.max_seq == T);
  Model n(lc, *be);
  load_llmc(path, n);
  CHECK(logits_of(m) == logits_of(n));
  write_file_atomic(path, bytes.substr(0, bytes.size() - 8));
  CHECK_THROWS_WITH(load_llmc(path, n), Catch::Contains("truncated"));
  header[1] = 5;
  write_file_atomic(path, std::string(reinterpret_cast<const char*>(header), 1024) + bytes.substr(1024));
  CHECK_THROWS_WITH(llmc_config(path), Catch::Contains("only version 3"));
  std::remove(path.c_str());
}

TEST_CASE("Trainer state round-trips through trainer_state.json", "[checkpoint]") {
  TrainerState s;
  s.step = 42;
  s.cursor = 4242;
  s.tokens_seen = 123456789012ull;
  s.world_size = 3;
  s.seed = 7;
  s.seq_len = 256;
  s.batch_sequences = 64;
  TrainerState t = TrainerState::from_json(s.to_json(), "x");
  CHECK(t.step == 42);
  CHECK(t.tokens_seen == 123456789012ull);
  CHECK(t.world_size == 3);
  CHECK_THROWS_WITH(TrainerState::from_json("{\"step\": 1}", "state.json"), Catch::Contains("damaged trainer state"));
}

TEST_CASE("load_moments reads any range of the moments, cutting tensors where it must", "[checkpoint]") {
  auto be = make_cpu_backend();
  Model model(small(ModelConfig::Family::llama), *be);
  model.init(3);
  const size_t n = model.num_params();
  std::vector<float> m(n), v(n);
  for (size_t i = 0; i < n; ++i) {
    m[i] = static_cast<float>(i);
    v[i] = -static_cast<float>(i) - 0.5f;
  }
  const std::string out = tmp("moments");
  TrainerState state;
  state.step = 1;
  const std::string dir = save_checkpoint(out, model, m.data(), v.data(), state, "", 0);
  // Ranges that start and end inside tensors, at their edges, the whole, and an empty one.
  const size_t cut = model.params()[1].offset + 5;
  for (auto [begin, end] : {std::pair{size_t{0}, n}, std::pair{cut, n - 3}, std::pair{size_t{64}, size_t{128}},
                            std::pair{cut, cut}}) {
    INFO("range " << begin << ".." << end);
    std::vector<float> gm(end - begin, 9.0f), gv(end - begin, 9.0f);
    load_moments(dir, model, begin, end, gm.data(), gv.data());
    CHECK(gm == std::vector<float>(m.begin() + static_cast<ptrdiff_t>(begin), m.begin() + static_cast<ptrdiff_t>(end)));
    CHECK(gv == std::vector<float>(v.begin() + static_cast<ptrdiff_t>(begin), v.begin() + static_cast<ptrdiff_t>(end)));
  }
  std::filesystem::remove_all(out);
}

TEST_CASE("Reward models: score.weight saved and loaded in both families, no LM head, a classifier's config", "[checkpoint][rm]") {
  for (auto f : {ModelConfig::Family::llama, ModelConfig::Family::gpt2}) {
    INFO((f == ModelConfig::Family::llama ? "llama" : "gpt2"));
    auto be = make_cpu_backend();
    ModelConfig c = small(f);
    c.tied_embeddings = false;  // an untied Llama's lm_head.weight is not part of a reward model
    if (f == ModelConfig::Family::gpt2) c.tied_embeddings = true;
    c.classifier = true;
    ModelOptions o;
    o.scalar_head = true;
    o.lm_head = false;
    Model a(c, *be, o);
    a.init(3);
    std::string path = tmp("rm.safetensors");
    save_model(path, a);
    SafetensorsFile file(path);
    CHECK(file.has("score.weight"));
    CHECK_FALSE(file.has("lm_head.weight"));
    const ModelConfig back = ModelConfig::from_json(c.to_json(), "config.json");
    CHECK(back.classifier);
    CHECK(c.to_json().find(f == ModelConfig::Family::llama ? "\"LlamaForSequenceClassification\"" : "\"GPT2ForSequenceClassification\"") !=
          std::string::npos);
    Model b(back, *be, o);
    CHECK(load_model(path, b).empty());
    std::vector<int32_t> tok = {1, 7, 3, 49, 0, 12, 5, 8};
    a.forward(tok.data(), nullptr, 2, 4);
    b.forward(tok.data(), nullptr, 2, 4);
    CHECK(a.values() == b.values());
    // A language model's file as a reward model's start: everything but the score head.
    ModelConfig lmc = small(f);
    Model lm(lmc, *be);
    lm.init(5);
    save_model(path, lm);
    Model r(back, *be, o);
    CHECK(load_model(path, r, {"score.weight"}) == std::vector<std::string>{"score.weight"});
    CHECK_THROWS_AS(load_model(path, r), Error);
    std::remove(path.c_str());
  }
  // A classifier of three named labels (llm-sft --task classify's), and Hugging Face's default of two.
  const ModelConfig k3 = ModelConfig::from_json(R"({"architectures": ["LlamaForSequenceClassification"], "num_labels": 3, "model_type": "llama",
    "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
    "id2label": {"0": "neg", "2": "pos", "1": "neutral"}})", "c.json");
  CHECK(k3.num_labels == 3);
  CHECK(k3.labels == std::vector<std::string>{"neg", "neutral", "pos"});
  CHECK(ModelConfig::from_json(R"({"architectures": ["BertForSequenceClassification"], "model_type": "bert", "vocab_size": 50,
    "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32})", "d.json").num_labels == 2);
  CHECK_THROWS_AS(ModelConfig::from_json(R"({"architectures": ["LlamaForSequenceClassification"], "num_labels": 3, "model_type": "llama",
    "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
    "id2label": {"0": "neg", "7": "pos", "1": "neutral"}})", "e.json"), Error);
}
