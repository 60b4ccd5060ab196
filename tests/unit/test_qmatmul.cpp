// Matmuls on ggml blocks (lib/backend/cpu/qmatmul.cpp) and models held quantized
// (ModelOptions::weight_types, quantize_model, open_gguf_model): every weight type's dot product
// against one computed here from the documented layouts of both operands, every kernel against
// the others, the same bits for any row grouping and thread count, the matmul against
// dequantize-then-sgemm, and a GGUF file read back evaluating exactly as the model quantized in
// memory.
#include <catch2/catch.hpp>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "../../lib/backend/cpu/qmatmul.hpp"
#include "llmkit/backend.hpp"
#include "llmkit/checkpoint.hpp"
#include "llmkit/io.hpp"
#include "llmkit/model.hpp"
#include "llmkit/quant.hpp"
#include "llmkit/tok.hpp"
#include "util.hpp"

using namespace llmkit;
using test::h2f;
using test::randn;
using test::with_threads;
namespace gg = llmkit::ggml;

namespace {

const gg::Type kTypes[] = {gg::Type::q8_0, gg::Type::q4_0, gg::Type::q4_1, gg::Type::q5_0,
                           gg::Type::q5_1, gg::Type::q4_k, gg::Type::q5_k, gg::Type::q6_k};

bool k_type(gg::Type t) { return t == gg::Type::q4_k || t == gg::Type::q5_k || t == gg::Type::q6_k; }

// The activations' blocks decoded from their layout (qmatmul.cpp): A8_0 d (fp16) + 32 int8;
// A8_1 d, s (fp16) + 32 int8; A8_K d (fp32) + 256 int8 + 16 int16 sums (checked here too).
std::vector<double> decode_activations(gg::Type w, const uint8_t* a, int n) {
  std::vector<double> x(static_cast<size_t>(n));
  if (k_type(w)) {
    for (int b = 0; b < n / 256; ++b, a += 292) {
      float d;
      std::memcpy(&d, a, 4);
      const auto* q = reinterpret_cast<const int8_t*>(a + 4);
      for (int j = 0; j < 16; ++j) {
        int16_t s;
        std::memcpy(&s, a + 260 + 2 * j, 2);
        int sum = 0;
        for (int l = 0; l < 16; ++l) sum += q[16 * j + l];
        REQUIRE(s == sum);
      }
      for (int j = 0; j < 256; ++j) x[static_cast<size_t>(256 * b + j)] = static_cast<double>(d) * q[j];
    }
    return x;
  }
  const bool with_sum = w == gg::Type::q4_1 || w == gg::Type::q5_1;
  for (int b = 0; b < n / 32; ++b, a += with_sum ? 36 : 34) {
    const auto* q = reinterpret_cast<const int8_t*>(a + (with_sum ? 4 : 2));
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      x[static_cast<size_t>(32 * b + j)] = static_cast<double>(h2f(a)) * q[j];
      sum += q[j];
    }
    if (with_sum) REQUIRE(h2f(a + 2) == Approx(h2f(a) * static_cast<float>(sum)).epsilon(2e-3).margin(1e-6));
  }
  return x;
}


}  // namespace

TEST_CASE("qmatmul: each weight type's dot product is the dot of both operands' decoded blocks", "[qmatmul]") {
  for (const int n : {1024, 1280 + 32}) {  // an even and an odd number of 32-value blocks
  for (gg::Type t : kTypes) {
    if (n % gg::traits(t).block != 0) continue;
    INFO(gg::traits(t).name << " n=" << n);
    const std::vector<float> wv = randn(n, 1), xv = randn(4 * n, 2, 0.5f);
    std::vector<uint8_t> w(gg::row_bytes(t, n));
    gg::quantize(t, wv.data(), w.data(), n);
    std::vector<float> wd(n);
    gg::dequantize(t, w.data(), wd.data(), n);
    const size_t ab = cpu::qactivation_row_bytes(t, n);
    std::vector<uint8_t> a(4 * ab);
    const void* rows[4];
    for (int r = 0; r < 4; ++r) {
      cpu::quantize_activations(t, xv.data() + r * n, a.data() + r * ab, n);
      rows[r] = a.data() + r * ab;
    }
    for (cpu::QKernel k : {cpu::QKernel::portable, cpu::QKernel::avx2, cpu::QKernel::avx512}) {
      if (!cpu::qkernel_available(k)) continue;
      INFO(cpu::qkernel_name(k));
      float four[4];
      cpu::qdot(k, t, n, w.data(), rows, 4, four);
      for (int r = 0; r < 4; ++r) {
        const std::vector<double> x = decode_activations(t, a.data() + r * ab, n);
        double want = 0, size = 0;
        for (int i = 0; i < n; ++i) want += wd[static_cast<size_t>(i)] * x[static_cast<size_t>(i)], size += std::fabs(wd[static_cast<size_t>(i)] * x[static_cast<size_t>(i)]);
        if (t == gg::Type::q4_1 || t == gg::Type::q5_1) {
          // The weight's min meets the activations' sum as A8_1 stores it, d * sum in fp16.
          const size_t wb = gg::traits(t).bytes;
          for (int b = 0; b < n / 32; ++b) {
            const uint8_t* ab8 = a.data() + r * ab + 36 * static_cast<size_t>(b);
            double sum = 0;
            for (int j = 0; j < 32; ++j) sum += x[static_cast<size_t>(32 * b + j)];
            want += h2f(w.data() + wb * b + 2) * (h2f(ab8 + 2) - sum);
          }
        }
        CHECK(std::fabs(four[r] - want) <= 1e-5 * size);
        // One row at a time, or in other groups, gives the same bits: the matmul's tiles may
        // group rows as the shape says.
        for (int R = 1; R <= 3; ++R) {
          float some[4];
          const void* sub[4] = {rows[r], rows[(r + 1) % 4], rows[(r + 2) % 4], rows[(r + 3) % 4]};
          cpu::qdot(k, t, n, w.data(), sub, R, some);
          CHECK(std::memcmp(&some[0], &four[r], 4) == 0);
        }
      }
    }
    // The activations' quantization loses less than a percent of a product.
    double exact = 0, size = 0;
    for (int i = 0; i < n; ++i) exact += static_cast<double>(wd[static_cast<size_t>(i)]) * xv[static_cast<size_t>(i)], size += std::fabs(wd[static_cast<size_t>(i)] * xv[static_cast<size_t>(i)]);
    float got;
    cpu::qdot(cpu::qkernel(), t, n, w.data(), rows, 1, &got);
    CHECK(std::fabs(got - exact) <= 1e-2 * size);
  }
  }
}

namespace {

// |a - b| / |b| (Euclidean norms).
double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < b.size(); ++i) err += (a[i] - b[i]) * (a[i] - b[i]), norm += b[i] * b[i];
  return std::sqrt(err / norm);
}

// OC rows of C values quantized to t: the blocks (rb bytes a row) and their dequantized values.
struct Blocks {
  size_t rb;
  std::vector<uint8_t> w;
  std::vector<float> wd;
  Blocks(gg::Type t, const std::vector<float>& wv, int OC, int C)
      : rb(gg::row_bytes(t, C)), w(rb * OC), wd(static_cast<size_t>(OC) * C) {
    for (int o = 0; o < OC; ++o) {
      gg::quantize(t, wv.data() + static_cast<size_t>(o) * C, w.data() + rb * o, C);
      gg::dequantize(t, w.data() + rb * o, wd.data() + static_cast<size_t>(o) * C, C);
    }
  }
};

}  // namespace

// 7 rows: integer dot products; 40: the int8 GEMM with AVX-512 VNNI, else slices dequantized
// into sgemm.
TEST_CASE("qmatmul: the matmul against dequantize-then-sgemm, with a bias, on any thread count", "[qmatmul]") {
  auto be = make_cpu_backend();
  for (const int N : {7, 40}) {
  const int C = 512, OC = 45;
  const std::vector<float> x = randn(static_cast<size_t>(N) * C, 3), bias = randn(OC, 4), wv = randn(static_cast<size_t>(OC) * C, 5, 0.05f);
  for (gg::Type t : kTypes) {
    INFO(gg::traits(t).name);
    const Blocks q(t, wv, OC, C);
    std::vector<float> want(static_cast<size_t>(N) * OC), y1(want.size()), y2(want.size());
    be->matmul_forward(want.data(), x.data(), q.wd.data(), bias.data(), N, C, OC);
    const QuantWeight qw{t, q.w.data(), q.rb};
    with_threads(1, [&] { be->matmul_forward_quant(y1.data(), x.data(), qw, bias.data(), N, C, OC); });
    with_threads(2, [&] { be->matmul_forward_quant(y2.data(), x.data(), qw, bias.data(), N, C, OC); });
    CHECK(std::memcmp(y1.data(), y2.data(), y1.size() * 4) == 0);
    CHECK(rel_error(y1, want) < 1e-2);
    // The backward: dx += dy W with the weight dequantized.
    const std::vector<float> dy = randn(static_cast<size_t>(N) * OC, 6);
    std::vector<float> dx(static_cast<size_t>(N) * C, 1.0f), dx_want(dx);
    be->matmul_backward_quant(dx.data(), dy.data(), qw, N, C, OC);
    be->matmul_backward(dx_want.data(), nullptr, nullptr, dy.data(), x.data(), q.wd.data(), N, C, OC);
    for (size_t i = 0; i < dx.size(); ++i) REQUIRE(dx[i] == Approx(dx_want[i]).margin(1e-4));
  }
  }
}

// The int8 GEMM of batched rows: the AVX-512 VNNI and AMX kernels give their portable
// reference's bits (every type, rows and outputs that are not whole tiles), and all are close to
// dequantize-then-sgemm.
TEST_CASE("qmatmul: the int8 GEMM of batched rows equals its reference and is close to fp32", "[qmatmul]") {
  auto be = make_cpu_backend();
  const int C = 512, OC = 77;  // AMX: 64 rows a slice, 4 groups of 16; then 13 rows: 8 + 5 with VNNI
  for (const int N : {16, 37}) {
    const std::vector<float> x = randn(static_cast<size_t>(N) * C, 13), bias = randn(OC, 14), wv = randn(static_cast<size_t>(OC) * C, 15, 0.05f);
    for (gg::Type t : kTypes) {
      INFO(gg::traits(t).name << " N=" << N);
      const Blocks q(t, wv, OC, C);
      std::vector<float> want(static_cast<size_t>(N) * OC), ref(want.size()), got(want.size());
      be->matmul_forward(want.data(), x.data(), q.wd.data(), bias.data(), N, C, OC);
      with_threads(2, [&] { cpu::qmatmul_int8(ref.data(), x.data(), t, q.w.data(), q.rb, bias.data(), N, C, OC, cpu::QKernel::portable); });
      CHECK(rel_error(ref, want) < 1e-2);
      for (cpu::QKernel k : {cpu::QKernel::avx512, cpu::QKernel::amx}) {
        if (!cpu::qkernel_available(k)) continue;
        INFO(cpu::qkernel_name(k));
        std::fill(got.begin(), got.end(), 0.0f);
        with_threads(1, [&] { cpu::qmatmul_int8(got.data(), x.data(), t, q.w.data(), q.rb, bias.data(), N, C, OC, k); });
        CHECK(std::memcmp(got.data(), ref.data(), got.size() * 4) == 0);
      }
    }
  }
}

namespace {

ModelConfig config(ModelConfig::Family family, int vocab) {
  ModelConfig c;
  c.family = family;
  c.vocab_size = vocab;
  c.dim = 256;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = family == ModelConfig::Family::llama ? 2 : 4;
  c.ffn_dim = family == ModelConfig::Family::llama ? 512 : 1024;
  c.max_seq = 32;
  c.tied_embeddings = family != ModelConfig::Family::llama;
  return c;
}

// A SentencePiece model trained here (export_gguf puts the vocabulary in the file).
std::string tokenizer_file(const std::string& dir) {
  const std::string model = dir + "/tokenizer.model";
  if (file_size(model) > 0) return model;
  std::mt19937 rng(7);
  const char* words[] = {"alpha", "beta", "gamma", "delta", "block", "scale", "row", "column", "weight", "value"};
  std::string jsonl;
  for (int d = 0; d < 200; ++d) {
    std::string text;
    for (int w = 0; w < 40; ++w) text += std::string(words[rng() % 10]) + " ";
    jsonl += "{\"text\":\"" + text + "\"}\n";
  }
  write_file_atomic(dir + "/text.jsonl", jsonl);
  TrainConfig cfg;
  cfg.output = model;
  cfg.vocab_size = 300;
  cfg.sample = 0;
  Stats stats;
  train_tokenizer({dir + "/text.jsonl"}, cfg, stats);
  return model;
}

std::vector<float> logits_of(Model& m, const std::vector<int32_t>& tokens) {
  std::vector<int32_t> targets(tokens.begin() + 1, tokens.end());
  targets.push_back(-1);
  m.forward(tokens.data(), targets.data(), 1, static_cast<int>(tokens.size()));
  const float* l = m.logits_on_host();
  return std::vector<float>(l, l + tokens.size() * static_cast<size_t>(m.config().padded_vocab()));
}

}  // namespace

TEST_CASE("qmatmul: a model quantized in memory evaluates as its GGUF file read back, close to fp32", "[qmatmul]") {
  const std::string dir = (std::filesystem::temp_directory_path() / "llmkit-qmodel-test").string();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string tok = tokenizer_file(dir);
  const int vocab = static_cast<int>(Tokenizer(tok).vocab_size());
  auto be = make_cpu_backend();
  std::mt19937 rng(11);
  std::vector<int32_t> tokens(24);
  for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
  for (auto family : {ModelConfig::Family::llama, ModelConfig::Family::gpt2}) {
    const ModelConfig c = config(family, vocab);
    const std::string ckpt = dir + (family == ModelConfig::Family::llama ? "/llama" : "/gpt2");
    std::filesystem::create_directories(ckpt);
    Model m(c, *be);
    m.init(5);
    write_file_atomic(ckpt + "/config.json", c.to_json());
    save_model(ckpt + "/model.safetensors", m, "F32");
    std::filesystem::copy_file(tok, ckpt + "/tokenizer.model", std::filesystem::copy_options::overwrite_existing);
    const std::vector<float> fp32 = logits_of(m, tokens);
    for (const char* scheme : {"q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k"}) {
      INFO(ckpt << " " << scheme);
      const QuantScheme s = QuantScheme::named(scheme);
      std::unique_ptr<Model> q = quantize_model(m, s);
      CHECK(q->quantized());
      CHECK(q->weight_bytes() < m.weight_bytes() / 3);
      const std::vector<float> mem = logits_of(*q, tokens);
      const std::string file = ckpt + "/" + scheme + ".gguf";
      export_gguf(ckpt, file, s);
      LoadedModel g = open_gguf_model(file, *be);
      CHECK(g.model->quantized());
      CHECK(g.model->weight_bytes() == q->weight_bytes());
      const std::vector<float> read = logits_of(*g.model, tokens);
      REQUIRE(read.size() == mem.size());
      CHECK(std::memcmp(read.data(), mem.data(), mem.size() * 4) == 0);
      // Close to the fp32 model's (initialised weights, logits of a few tenths).
      const double rel = rel_error(mem, fp32);
      INFO("relative error " << rel);
      CHECK(rel < (std::string(scheme).rfind("q4", 0) == 0 ? 0.2 : 0.1));
    }
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("qmatmul: QLoRA, adapters trained through a quantized base: the forward is the dequantized base's, gradients match finite differences",
          "[qmatmul]") {
  for (const char* scheme : {"q4_0", "nf4"}) {
  INFO(scheme);
  ModelConfig c;
  c.family = ModelConfig::Family::llama;
  c.vocab_size = 40;
  c.dim = 64;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn_dim = 128;  // rows of whole NF4 blocks too
  c.max_seq = 16;
  c.tied_embeddings = false;
  ModelOptions o;
  o.lora.rank = 3;
  o.lora.alpha = 6;
  o.lora.targets = {"all-linear"};
  auto be = make_cpu_backend();
  Model m(c, *be, o);
  m.init(2);
  std::mt19937 rng(5);
  std::normal_distribution<float> d(0.0f, 0.3f);
  for (const ParamSpec& s : m.params())
    if (Model::is_lora_tensor(s.name))
      for (size_t i = 0; i < s.size; ++i) m.weights()[s.offset + i] = d(rng);
  std::unique_ptr<Model> q = quantize_model(m, QuantScheme::named(scheme));
  q->freeze([](const std::string& name) { return !Model::is_lora_tensor(name); });
  // The same model in fp32 with every quantized matrix replaced by its blocks' values.
  Model ref(c, *be, o);
  std::copy(m.weights(), m.weights() + m.num_params(), ref.weights());
  int held = 0;
  for (const ParamSpec& s : q->params()) {
    if (!s.quantized()) continue;
    ++held;
    const ParamSpec& r = ref.param(s.name);
    const int64_t cols = s.shape[1];
    std::vector<uint8_t> row(s.row_bytes);
    for (int64_t i = 0; i < s.shape[0]; ++i) {
      float* v = ref.weights() + r.offset + static_cast<size_t>(i * cols);
      gg::quantize(s.type, v, row.data(), cols);
      gg::dequantize(s.type, row.data(), v, cols);
    }
  }
  CHECK(held == 2 * 7 + 2);  // every layer's matrices, the embedding and the LM head
  const int B = 2, T = 6;
  std::vector<int32_t> tok(B * T), tgt(B * T);
  for (auto& x : tok) x = static_cast<int32_t>(rng() % 40);
  for (auto& x : tgt) x = static_cast<int32_t>(rng() % 40);
  auto loss = [&](Model& mm) {
    mm.forward(tok.data(), tgt.data(), B, T);
    return mm.mean_loss();
  };
  CHECK(loss(*q) == Approx(loss(ref)).epsilon(1e-5));
  q->zero_grad();
  loss(*q);
  q->backward_mean();
  std::vector<float> grad(q->grads(), q->grads() + q->num_grads());
  int checked = 0;
  for (const ParamSpec& s : q->params()) {
    if (!Model::is_lora_tensor(s.name)) {
      CHECK(!s.trainable());
      continue;
    }
    for (int k = 0; k < 2; ++k) {
      const size_t k_in = rng() % s.size, i = s.offset + k_in;
      const float saved = q->weights()[i];
      const float eps = 1e-2f;
      q->weights()[i] = saved + eps;
      const double up = loss(*q);
      q->weights()[i] = saved - eps;
      const double down = loss(*q);
      q->weights()[i] = saved;
      const double numeric = (up - down) / (2.0 * eps);
      INFO(s.name << " index " << k_in << ": analytic " << grad[s.grad_offset + k_in] << " numeric " << numeric);
      CHECK(std::abs(grad[s.grad_offset + k_in] - numeric) <= 2e-3 + 2e-2 * std::abs(numeric));
      ++checked;
    }
  }
  CHECK(checked == 2 * 7 * 2 * 2);
  }
}
