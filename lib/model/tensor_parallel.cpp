// Tensor parallelism in the model (Megatron-LM's; see TensorParallel in llmkit/model.hpp): which
// tensors are split and how, this rank's slice of a whole tensor and back, and the two places
// where the ranks' partial results meet besides the blocks' all-reduces: the vocabulary-parallel
// cross-entropy and the greedy token.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/model.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/parallel.hpp"

namespace llmkit {

namespace {

// A tensor's name within its block ("self_attn.q_proj.weight"), or "" outside the blocks.
std::string block_part(const std::string& name) {
  for (const char* prefix : {"model.layers.", "h.", "bert.encoder.layer."}) {
    const size_t n = std::strlen(prefix);
    if (name.compare(0, n, prefix) != 0) continue;
    const size_t dot = name.find('.', n);
    if (dot == std::string::npos) return "";
    return name.substr(dot + 1);
  }
  return "";
}

}  // namespace

int Model::tp_split(const ModelConfig& c, const std::string& name) {
  (void)c;
  // Column-parallel: their output units (heads, MLP units) split, so their rows and biases.
  static const std::set<std::string> rows = {
      "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "mlp.gate_proj.weight",
      "mlp.up_proj.weight", "attn.q.weight", "attn.k.weight", "attn.v.weight", "attn.q.bias", "attn.k.bias", "attn.v.bias",
      "mlp.c_fc.weight", "mlp.c_fc.bias", "attention.self.query.weight", "attention.self.query.bias",
      "attention.self.key.weight", "attention.self.key.bias", "attention.self.value.weight", "attention.self.value.bias",
      "intermediate.dense.weight", "intermediate.dense.bias"};
  // Row-parallel: their inputs split, so their columns (their bias is replicated).
  static const std::set<std::string> cols = {"self_attn.o_proj.weight", "mlp.down_proj.weight", "attn.c_proj.weight",
                                             "mlp.c_proj.weight", "attention.output.dense.weight", "output.dense.weight"};
  const std::string part = block_part(name);
  if (rows.count(part)) return 0;
  if (cols.count(part)) return 1;
  if (is_lora_tensor(name)) return -1;
  return vocabulary_rows(name) ? 0 : -1;  // the vocabulary's rows
}

// This rank's heads, units and vocabulary rows; the layouts that cannot be split are usage
// errors that say which --tp would do.
void Model::setup_tensor_parallel() {
  const TensorParallel& tp = opts_.tp;
  const ModelConfig& c = cfg_;
  if (tp.size < 1 || tp.rank < 0 || tp.rank >= tp.size) throw Error("", "internal: tensor-parallel rank " + std::to_string(tp.rank) + " of " + std::to_string(tp.size));
  if (tp.on()) {
    if (!tp.coll || !tp.comm) throw Error("", "internal: a tensor-parallel model without its group's collectives");
    auto divisors = [](int n) {
      std::string out;
      for (int d = 1; d <= n; ++d)
        if (n % d == 0) out += (out.empty() ? "" : ", ") + std::to_string(d);
      return out;
    };
    const std::string flag = "--tp " + std::to_string(tp.size);
    if (c.heads % tp.size)
      throw UsageError(flag + ": the model's " + std::to_string(c.heads) + " attention heads do not split over " + std::to_string(tp.size) +
                       " ranks (give a divisor of " + std::to_string(c.heads) + ": " + divisors(c.heads) + ")");
    if (c.kv_heads % tp.size)
      throw UsageError(flag + ": the model's " + std::to_string(c.kv_heads) + " key/value heads (grouped-query attention) do not split over " +
                       std::to_string(tp.size) + " ranks; a key/value head is not replicated here (give a divisor of " +
                       std::to_string(c.kv_heads) + ": " + divisors(c.kv_heads) + ")");
    if (c.ffn_dim % tp.size)
      throw UsageError(flag + ": the MLP's " + std::to_string(c.ffn_dim) + " units do not split over " + std::to_string(tp.size) + " ranks");
    if (c.padded_vocab() % tp.size)
      throw UsageError(flag + ": the vocabulary's " + std::to_string(c.padded_vocab()) + " rows (padded to a multiple of 64) do not split over " +
                       std::to_string(tp.size) + " ranks (give a power of two up to 64)");
    if (opts_.lora.rank > 0) throw UsageError(flag + ": LoRA adapters are not tensor-parallel here (give --tp 1; adapters need little memory)");
    for (const auto& [name, type] : opts_.weight_types)
      if (type != ggml::Type::f32) throw UsageError(flag + ": quantized matrices (QLoRA, GGUF) are not tensor-parallel here (give --tp 1)");
  }
  heads_l_ = c.heads / tp.size;
  kv_l_ = c.kv_heads / tp.size;
  ffn_l_ = c.ffn_dim / tp.size;
  vocab_l_ = c.padded_vocab() / tp.size;
  vocab_lo_ = tp.rank * vocab_l_;
  // Attention sees this rank's heads only: head_dim() = dim / heads stays the model's.
  attn_cfg_ = c;
  attn_cfg_.heads = heads_l_;
  attn_cfg_.kv_heads = kv_l_;
  attn_cfg_.dim = heads_l_ * c.head_dim();
}

std::vector<int64_t> Model::full_shape(const ParamSpec& s) const {
  std::vector<int64_t> shape = s.shape;
  const int d = tp_split(cfg_, s.name);
  if (d >= 0 && opts_.tp.on()) shape[static_cast<size_t>(d)] *= opts_.tp.size;
  return shape;
}

void Model::shard(const ParamSpec& s, const float* full, float* local) const {
  const int d = opts_.tp.on() ? tp_split(cfg_, s.name) : -1;
  const size_t r = static_cast<size_t>(opts_.tp.rank);
  if (d < 0) {
    std::copy(full, full + s.size, local);
  } else if (d == 0) {  // rows (or a vector's values): one contiguous block
    std::copy(full + r * s.size, full + (r + 1) * s.size, local);
  } else {  // columns: each row's block
    const size_t rows = static_cast<size_t>(s.shape[0]), cols = static_cast<size_t>(s.shape[1]);
    const size_t full_cols = cols * static_cast<size_t>(opts_.tp.size);
    for (size_t i = 0; i < rows; ++i) std::copy(full + i * full_cols + r * cols, full + i * full_cols + (r + 1) * cols, local + i * cols);
  }
}

void Model::unshard(const ParamSpec& s, const std::vector<const float*>& slices, float* full) const {
  const int d = opts_.tp.on() ? tp_split(cfg_, s.name) : -1;
  if (slices.size() != static_cast<size_t>(opts_.tp.size)) throw Error("", "internal: " + std::to_string(slices.size()) + " slices of " + s.name);
  if (d < 0) {
    std::copy(slices[0], slices[0] + s.size, full);
  } else if (d == 0) {
    for (size_t r = 0; r < slices.size(); ++r) std::copy(slices[r], slices[r] + s.size, full + r * s.size);
  } else {
    const size_t rows = static_cast<size_t>(s.shape[0]), cols = static_cast<size_t>(s.shape[1]);
    const size_t full_cols = cols * slices.size();
    for (size_t r = 0; r < slices.size(); ++r)
      for (size_t i = 0; i < rows; ++i) std::copy(slices[r] + i * cols, slices[r] + (i + 1) * cols, full + i * full_cols + r * cols);
  }
}

void Model::tp_reduce(float* x, size_t n) {
  if (opts_.tp.on()) opts_.tp.coll->allreduce_sum(x, n);
}

// log p(target) = logit(target) - log sum over the whole vocabulary of exp(logit): each rank has
// its shard's log-sum-exp and, where it holds the target, the target's logit. The ranks
// exchange those (2 floats per row, not the [N, V] logits) and every rank ends with the
// whole-vocabulary logp and log-sum-exp (the backward's softmax needs the latter).
void Model::vocab_parallel_logp(float* logp_out, float* lse_out, int N) {
  const int valid = std::clamp(cfg_.vocab_size - vocab_lo_, 0, vocab_l_), R = opts_.tp.size, me = opts_.tp.rank;
  const size_t n = static_cast<size_t>(N);
  be_.crossentropy_forward(logp_out, acts_.logits, targets_l_.data(), N, valid, vocab_l_);  // logit(t) - shard's lse
  be_.logsumexp(lse_out, acts_.logits, N, valid, vocab_l_);
  std::vector<float> local_logp(n), lse(n * static_cast<size_t>(R)), target_logit(n, 0.0f);
  be_.download(local_logp.data(), logp_out, n);
  be_.download(lse.data() + n * static_cast<size_t>(me), lse_out, n);
  for (size_t i = 0; i < n; ++i)
    if (targets_l_[i] >= 0) target_logit[i] = local_logp[i] + lse[n * static_cast<size_t>(me) + i];
  opts_.tp.comm->allgatherv(lse.data(), std::vector<size_t>(static_cast<size_t>(R), n));
  opts_.tp.comm->allreduce_sum(target_logit.data(), n);
  std::vector<float> logp(n, 0.0f), total(n);
  for (size_t i = 0; i < n; ++i) {
    float hi = -std::numeric_limits<float>::infinity();
    for (int r = 0; r < R; ++r) hi = std::max(hi, lse[n * static_cast<size_t>(r) + i]);
    double sum = 0;
    for (int r = 0; r < R; ++r) {
      const float x = lse[n * static_cast<size_t>(r) + i];
      if (x != -std::numeric_limits<float>::infinity()) sum += std::exp(static_cast<double>(x) - hi);
    }
    total[i] = hi + static_cast<float>(std::log(sum));
    if (targets_[i] >= 0) logp[i] = target_logit[i] - total[i];
  }
  be_.upload(logp_out, logp.data(), n);
  be_.upload(lse_out, total.data(), n);
}

std::vector<float> Model::logits_row(size_t row) {
  const size_t width = static_cast<size_t>(vocab_l_), R = static_cast<size_t>(opts_.tp.size);
  std::vector<float> out(width * R);
  be_.download(out.data() + width * static_cast<size_t>(opts_.tp.rank), acts_.logits + row * width, width);
  if (opts_.tp.on()) opts_.tp.comm->allgatherv(out.data(), std::vector<size_t>(R, width));
  return out;
}

void Model::argmax(int32_t* out) {
  const int N = B_ * T_;
  if (!opts_.tp.on()) return be_.argmax(out, acts_.logits, N, cfg_.vocab_size, vocab_l_);
  // Each rank's best (its value and global index), then the best of the ranks: the first of
  // equals, as the ranks hold the vocabulary in order.
  const int valid = std::clamp(cfg_.vocab_size - vocab_lo_, 0, vocab_l_), R = opts_.tp.size, me = opts_.tp.rank;
  const size_t n = static_cast<size_t>(N);
  std::vector<int32_t> best(n);
  std::vector<float> value(n), all(2 * n * static_cast<size_t>(R));
  be_.argmax(best.data(), acts_.logits, N, valid, vocab_l_, value.data());
  float* mine = all.data() + 2 * n * static_cast<size_t>(me);
  for (size_t i = 0; i < n; ++i) {
    mine[2 * i] = value[i];
    mine[2 * i + 1] = static_cast<float>(vocab_lo_ + best[i]);  // exact: vocabularies are below 2^24
  }
  opts_.tp.comm->allgatherv(all.data(), std::vector<size_t>(static_cast<size_t>(R), 2 * n));
  for (size_t i = 0; i < n; ++i) {
    size_t pick = 0;
    for (size_t r = 1; r < static_cast<size_t>(R); ++r)
      if (all[2 * (r * n + i)] > all[2 * (pick * n + i)]) pick = r;
    out[i] = static_cast<int32_t>(all[2 * (pick * n + i) + 1]);
  }
}

}  // namespace llmkit
