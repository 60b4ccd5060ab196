// Importance matrices (llm-quant imatrix, llm-quant --imatrix): the mean square of each input
// column of every matrix over calibration text, as llama.cpp's llama-imatrix collects them, and
// the GGUF file that carries them (llama.cpp's imatrix GGUF layout: <tensor>.in_sum2 and
// <tensor>.counts per matrix, imatrix.* metadata).
#include <algorithm>
#include <map>
#include <vector>

#include "llmkit/backend.hpp"
#include "llmkit/error.hpp"
#include "llmkit/gguf.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"
#include "llmkit/model.hpp"
#include "llmkit/quant.hpp"
#include "llmkit/shard.hpp"
#include "llmkit/tool.hpp"

namespace llmkit {

std::string gguf_tensor_name(const ModelConfig& c, const std::string& name) {
  const bool llama = c.family == ModelConfig::Family::llama;
  if (name == "model.embed_tokens.weight" || name == "wte") return "token_embd.weight";
  if (name == "lm_head.weight") return "output.weight";
  const std::string prefix = llama ? "model.layers." : "h.";
  if (name.rfind(prefix, 0) != 0) return "";
  const size_t dot = name.find('.', prefix.size());
  if (dot == std::string::npos) return "";
  const std::string layer = name.substr(prefix.size(), dot - prefix.size()), rest = name.substr(dot + 1);
  static const std::map<std::string, std::string> llama_names = {
      {"self_attn.q_proj.weight", "attn_q.weight"},   {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},   {"self_attn.o_proj.weight", "attn_output.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},    {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"}};
  static const std::map<std::string, std::string> gpt2_names = {
      {"attn.q.weight", "attn_qkv.weight"},   {"attn.k.weight", "attn_qkv.weight"}, {"attn.v.weight", "attn_qkv.weight"},
      {"attn.c_proj.weight", "attn_output.weight"}, {"mlp.c_fc.weight", "ffn_up.weight"}, {"mlp.c_proj.weight", "ffn_down.weight"}};
  const auto& names = llama ? llama_names : gpt2_names;
  const auto it = names.find(rest);
  return it == names.end() ? "" : "blk." + layer + "." + it->second;
}

int calibration_window(const ModelConfig& c, int seq_len) {
  const int T = seq_len > 0 ? seq_len : std::min(512, c.max_seq);
  if (T < 2 || T > c.max_seq)
    throw UsageError("--seq-len " + std::to_string(T) + " is outside 2.." + std::to_string(c.max_seq) + " (the model's context)");
  return T;
}

void run_calibration(Model& m, const std::vector<std::string>& calib, int seq_len, int64_t chunks, ImatrixReport& r,
                     const CalibrationObserver& seen) {
  if (calib.empty()) throw UsageError("no calibration shards given (llm-tok encode's .tok files)");
  if (chunks < 1) throw UsageError("--chunks must be at least 1");
  const ModelConfig& c = m.config();
  const int T = calibration_window(c, seq_len);
  Backend& be = m.backend();
  std::vector<float> host;
  m.set_input_observer([&](const std::string& weight, const float* x, int N, int C) {
    const std::string g = gguf_tensor_name(c, weight);
    if (g.empty() || has_suffix(weight, "attn.k.weight") || has_suffix(weight, "attn.v.weight")) return;
    const float* h = be.host_view(const_cast<float*>(x));
    if (!h) {
      host.resize(static_cast<size_t>(N) * C);
      be.download(host.data(), x, host.size());
      h = host.data();
    }
    seen(g, h, N, C);
  });
  struct Detach {  // the observer refers to this call's state: gone with it, also on an error
    Model& m;
    ~Detach() { m.set_input_observer(nullptr); }
  } detach{m};
  std::vector<int32_t> tokens(static_cast<size_t>(T));
  std::vector<uint32_t> buf(static_cast<size_t>(T));
  const int64_t first = r.chunks;
  for (const std::string& path : calib) {
    const ShardReader shard(path);
    if (shard.info().vocab_size > static_cast<uint64_t>(c.vocab_size))
      throw Error(path, "vocabulary of " + std::to_string(shard.info().vocab_size) + " is larger than the model's " +
                            std::to_string(c.vocab_size));
    for (uint64_t at = 0; at + static_cast<uint64_t>(T) <= shard.size() && r.chunks - first < chunks; at += static_cast<uint64_t>(T)) {
      throw_if_stopped();
      shard.read(at, buf.size(), buf.data());
      for (int t = 0; t < T; ++t) {
        if (buf[static_cast<size_t>(t)] >= static_cast<uint32_t>(c.vocab_size))
          throw Error(path, "token " + std::to_string(buf[static_cast<size_t>(t)]) + " is outside the model's vocabulary");
        tokens[static_cast<size_t>(t)] = static_cast<int32_t>(buf[static_cast<size_t>(t)]);
      }
      m.forward(tokens.data(), nullptr, 1, T);
      ++r.chunks;
      r.tokens += T;
    }
    if (r.chunks - first >= chunks) break;
  }
  if (r.chunks == first)
    throw Error(calib.front(), "holds no window of --seq-len " + std::to_string(T) + " tokens: nothing to calibrate on");
}

ImatrixReport make_imatrix(const ImatrixConfig& cfg) {
  // run_calibration's checks, before the model is read
  if (cfg.calib.empty()) throw UsageError("no calibration shards given (llm-tok encode's .tok files)");
  if (cfg.chunks < 1) throw UsageError("--chunks must be at least 1");
  auto be = make_cpu_backend();
  LoadedModel lm = open_model(cfg.model, *be);
  Model& m = *lm.model;
  require_decoder(m, cfg.model, "calibration for GGUF");
  const ModelConfig& c = m.config();
  if (c.classifier) throw Error(cfg.model, "is a reward model: an importance matrix is for a language model's GGUF file");
  const int T = calibration_window(c, cfg.seq_len);
  struct Sums {
    std::vector<double> sq;
    double rows = 0;
  };
  std::map<std::string, Sums> acc;
  ImatrixReport r;
  run_calibration(m, cfg.calib, T, cfg.chunks, r, [&](const std::string& g, const float* h, int N, int C) {
    Sums& s = acc[g];
    if (s.sq.empty()) s.sq.assign(static_cast<size_t>(C), 0.0);
    for (int n = 0; n < N; ++n)
      for (int k = 0; k < C; ++k) {
        const double v = h[static_cast<size_t>(n) * C + k];
        s.sq[static_cast<size_t>(k)] += v * v;
      }
    s.rows += N;
  });
  GgufWriter g;
  g.set("general.type", GgufValue::text("imatrix"));
  g.set("imatrix.datasets", GgufValue::texts(cfg.calib));
  g.set("imatrix.chunk_count", GgufValue::u32v(static_cast<uint32_t>(r.chunks)));
  g.set("imatrix.chunk_size", GgufValue::u32v(static_cast<uint32_t>(T)));
  for (const auto& [name, s] : acc) {
    const std::vector<float> sq(s.sq.begin(), s.sq.end());
    const float rows = static_cast<float>(s.rows);
    g.add_tensor(name + ".in_sum2", {static_cast<int64_t>(sq.size()), 1}, ggml::Type::f32, sq.data());
    g.add_tensor(name + ".counts", {1, 1}, ggml::Type::f32, &rows);
    ++r.tensors;
  }
  g.write(cfg.out);
  return r;
}

std::map<std::string, std::vector<float>> read_imatrix(const std::string& path) {
  const GgufFile f(path);
  std::map<std::string, std::vector<float>> out;
  for (const GgufTensor& t : f.tensors()) {
    const std::string suffix = ".in_sum2";
    if (t.name.size() <= suffix.size() || t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    const std::string name = t.name.substr(0, t.name.size() - suffix.size());
    const GgufTensor* counts = f.tensor(name + ".counts");
    if (!counts) throw Error(path, "has " + t.name + " without " + name + ".counts");
    std::vector<float> sq = f.values(t);
    const std::vector<float> n = f.values(*counts);
    // One matrix per tensor (no experts): the sums over the rows seen, divided by their count.
    if (n.size() != 1 || !(n[0] > 0) || (t.ne.size() > 1 && t.ne[1] != 1))
      throw Error(path, name + ": an importance matrix of one matrix with a positive count is read (not a mixture of experts')");
    for (float& v : sq) v /= n[0];
    out[name] = std::move(sq);
  }
  if (out.empty()) throw Error(path, "holds no importance matrix (no <tensor>.in_sum2 tensors): make one with llm-quant imatrix");
  return out;
}

}  // namespace llmkit
