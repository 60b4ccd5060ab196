// Tensor parallelism's slices (lib/model/tensor_parallel.cpp): which tensors are split and how,
// that each rank's initialised slice is the whole model's tensor cut (so every layout starts
// from the same model), that the slices put together give the whole tensor back, and the
// layouts that are refused. The collectives themselves run in tests/mpi/tensor_parallel.sh.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "llmkit/backend.hpp"
#include "llmkit/error.hpp"
#include "llmkit/model.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/parallel.hpp"

using namespace llmkit;

namespace {

ModelConfig config(ModelConfig::Family family) {
  ModelConfig c;
  c.family = family;
  c.vocab_size = 100;  // 128 rows padded
  c.dim = 32;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = family == ModelConfig::Family::llama ? 2 : 4;
  c.ffn_dim = 48;
  c.max_seq = 16;
  c.tied_embeddings = family != ModelConfig::Family::llama;  // Llama: an lm_head of its own
  if (family == ModelConfig::Family::bert) c.type_vocab_size = 2;
  return c;
}

std::vector<float> values(Backend& be, Model& m, const ParamSpec& s) {
  std::vector<float> v(s.size);
  be.download(v.data(), m.weights() + s.offset, s.size);
  return v;
}

}  // namespace

TEST_CASE("Tensor-parallel slices are the whole model's tensors cut by heads, units and vocabulary rows", "[tp]") {
  auto be = make_cpu_backend();
  auto coll = make_mpi_collectives(Comm::world());  // never called: init and slicing only
  for (auto family : {ModelConfig::Family::llama, ModelConfig::Family::gpt2, ModelConfig::Family::bert}) {
    const ModelConfig c = config(family);
    Model whole(c, *be);
    whole.init(7);
    for (int R : {2, 4}) {
      if (c.kv_heads % R) continue;
      std::vector<std::unique_ptr<Model>> slices;
      for (int r = 0; r < R; ++r) {
        ModelOptions o;
        o.tp = {R, r, coll.get(), &Comm::world()};
        slices.push_back(std::make_unique<Model>(c, *be, o));
        slices.back()->init(7);
      }
      size_t split = 0, replicated = 0;
      for (const ParamSpec& f : whole.params()) {
        INFO("family " << static_cast<int>(family) << ", " << R << " ranks, " << f.name);
        const int d = Model::tp_split(c, f.name);
        const std::vector<float> full = values(*be, whole, f);
        std::vector<std::vector<float>> parts;
        std::vector<const float*> pointers;
        for (int r = 0; r < R; ++r) {
          const ParamSpec& s = slices[static_cast<size_t>(r)]->param(f.name);
          CHECK(slices[static_cast<size_t>(r)]->full_shape(s) == f.shape);
          parts.push_back(values(*be, *slices[static_cast<size_t>(r)], s));
          std::vector<float> cut(s.size);
          slices[static_cast<size_t>(r)]->shard(s, full.data(), cut.data());
          CHECK(parts.back() == cut);  // the slice's own init is the whole tensor's cut
          if (d < 0) CHECK(parts.back() == full);
          else CHECK(s.size * static_cast<size_t>(R) == f.size);
        }
        for (const auto& p : parts) pointers.push_back(p.data());
        std::vector<float> back(f.size);
        slices[0]->unshard(slices[0]->param(f.name), pointers, back.data());
        CHECK(back == full);
        (d < 0 ? replicated : split) += f.size;
      }
      // What is split: every block's attention and MLP matrices, the vocabulary tables.
      CHECK(split > 4 * replicated);
      CHECK(Model::tp_split(c, family == ModelConfig::Family::llama ? "model.layers.1.self_attn.o_proj.weight"
                                   : family == ModelConfig::Family::gpt2 ? "h.1.attn.c_proj.weight"
                                                                         : "bert.encoder.layer.1.attention.output.dense.weight") == 1);
      CHECK(slices[1]->vocab_begin() == 128 / R);
      CHECK(slices[1]->vocab_rows() == 128 / R);
    }
  }
  CHECK(Model::tp_split(config(ModelConfig::Family::bert), "bert.encoder.layer.0.output.dense.weight") == 1);
  CHECK(Model::tp_split(config(ModelConfig::Family::bert), "bert.encoder.layer.0.output.dense.bias") == -1);
  CHECK(Model::tp_split(config(ModelConfig::Family::bert), "bert.encoder.layer.0.output.LayerNorm.weight") == -1);
  CHECK(Model::tp_split(config(ModelConfig::Family::bert), "cls.predictions.bias") == 0);
  CHECK(Model::tp_split(config(ModelConfig::Family::gpt2), "wpe") == -1);
}

TEST_CASE("Tensor-parallel layouts that do not split are usage errors naming the fix", "[tp]") {
  auto be = make_cpu_backend();
  auto coll = make_mpi_collectives(Comm::world());
  auto build = [&](ModelConfig c, int R, ModelOptions o = {}) {
    o.tp = {R, 0, coll.get(), &Comm::world()};
    Model m(c, *be, o);
  };
  const ModelConfig llama = config(ModelConfig::Family::llama);
  CHECK_THROWS_WITH(build(llama, 4), Catch::Contains("2 key/value heads (grouped-query attention) do not split over 4 ranks") &&
                                         Catch::Contains("give a divisor of 2: 1, 2"));
  ModelConfig three = config(ModelConfig::Family::gpt2);
  three.heads = three.kv_heads = 4;
  CHECK_THROWS_WITH(build(three, 3), Catch::Contains("4 attention heads do not split over 3 ranks"));
  ModelConfig odd = config(ModelConfig::Family::gpt2);
  odd.ffn_dim = 50;
  CHECK_THROWS_WITH(build(odd, 4), Catch::Contains("the MLP's 50 units do not split over 4 ranks"));
  ModelOptions lora;
  lora.lora.rank = 2;
  lora.lora.alpha = 4;
  lora.lora.targets = {"all-linear"};
  CHECK_THROWS_AS(build(llama, 2, lora), UsageError);
  CHECK_THROWS_WITH(build(llama, 2, lora), Catch::Contains("LoRA adapters are not tensor-parallel"));
}
