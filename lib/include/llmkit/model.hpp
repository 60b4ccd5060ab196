// Transformers (lib/model/model.cpp): the decoder-only Llama and GPT-2 families and the BERT
// encoder, configured by a Hugging Face-style config.json, with explicit forward and backward
// passes over a Backend.
//
// Parameters live in one buffer, gradients in another of the same layout, so that optimizers,
// all-reduces and checkpoints see flat arrays. Embedding rows are padded to a multiple of 64
// (padded_vocab); the padding rows stay zero and get no gradient.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <map>

#include "llmkit/backend.hpp"
#include "llmkit/ggml.hpp"

namespace llmkit {

struct Linear;  // lib/model/layers.hpp
class Collectives;
class Comm;

struct ModelConfig {
  // bert: an encoder (Hugging Face's BertForMaskedLM): bidirectional attention, learned
  // absolute positions and token-type (segment) embeddings summed and layer-normed, post-LN
  // blocks with biases, GELU, and the MLM head (dense, GELU, LayerNorm, the decoder tied to the
  // word embeddings with a bias of its own).
  enum class Family { llama, gpt2, bert } family = Family::llama;
  int vocab_size = 0;
  int dim = 0;        // hidden size
  int layers = 0;
  int heads = 0;
  int kv_heads = 0;   // = heads without grouped-query attention
  int ffn_dim = 0;    // intermediate size (GPT-2: 4 * dim)
  int max_seq = 0;    // max_position_embeddings / n_positions
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  bool tied_embeddings = true;
  int type_vocab_size = 0;  // BERT's token types (segments): 2
  // BERT with the next-sentence-prediction head beside the MLM head (BertForPreTraining: the
  // pooler, then cls.seq_relationship [2, dim]): the model's score head, 2 outputs.
  bool nsp = false;
  bool gelu_erf = false;    // the exact GELU (BERT's "gelu"), not the tanh approximation
  // A sequence classifier: Hugging Face's *ForSequenceClassification, a score head of num_labels
  // outputs and no LM head: a reward model (num_labels 1) or llm-sft --task classify's. Its
  // labels' names (id2label), empty: LABEL_0, LABEL_1, ...
  bool classifier = false;
  int num_labels = 1;
  std::vector<std::string> labels;

  int head_dim() const { return dim / heads; }
  bool encoder() const { return family == Family::bert; }  // bidirectional attention, no generation
  int padded_vocab() const { return (vocab_size + 63) / 64 * 64; }
  // Parses a Hugging Face config.json (LlamaForCausalLM or GPT2LMHeadModel); Error naming
  // `where` on anything missing or inconsistent.
  static ModelConfig from_json(const std::string& json, const std::string& where);
  // A preset name from share/llmkit/models (llama-tiny, llama-25m, gpt2-124m, llama-125m,
  // bert-tiny, bert-base) or a path to a config.json.
  static ModelConfig load(const std::string& name_or_path);
  std::string to_json() const;  // Hugging Face config.json
  void validate(const std::string& where) const;
};

// One parameter tensor: its name (Hugging Face's for Llama; llmkit's own for GPT-2, whose
// Conv1D and fused-qkv layout is converted when checkpoints are read and written), shape as
// stored, offset in the flat weight buffer, offset in the gradient buffer (which holds the
// trainable tensors only: kFrozen for a frozen one), and whether weight decay applies. A matrix
// held as ggml blocks (ModelOptions::weight_types) has no fp32 values: its rows of row_bytes
// bytes start at byte qoffset of the quantized buffer, and it is always frozen.
struct ParamSpec {
  static constexpr size_t kFrozen = SIZE_MAX;
  std::string name;
  std::vector<int64_t> shape;
  size_t offset = 0, size = 0;
  bool decay = false;
  size_t grad_offset = kFrozen;
  ggml::Type type = ggml::Type::f32;
  size_t qoffset = 0, row_bytes = 0;
  bool trainable() const { return grad_offset != kFrozen; }
  bool quantized() const { return type != ggml::Type::f32; }
};

// Keys and values of earlier positions, per layer, in a pool of fixed-size blocks of kBlock
// positions: a sequence ("slot") owns a block table, and position p of it lives at row p % kBlock
// of block table[p / kBlock]. Memory goes to the positions in use, blocks are shared between
// sequences with a common prefix, and a sequence grows by a block at a time (what vLLM calls
// paged attention). The pool's owner decides which blocks a table holds: the fixed constructor
// gives each of `slots` sequences its own max_len positions; a scheduler hands blocks out as
// sequences grow (lib/model/scheduler.cpp).
class KVCache {
 public:
  static constexpr int kBlock = 16;
  // A pool of `blocks` blocks; tables empty.
  KVCache(Backend& be, int layers, int kv_dim, int blocks);
  // `slots` sequences of up to max_len positions each, with fixed tables.
  KVCache(Backend& be, int layers, int slots, int max_len, int kv_dim);
  ~KVCache();
  KVCache(const KVCache&) = delete;
  KVCache& operator=(const KVCache&) = delete;
  // Block b's rows of a layer: [kBlock, kv_dim].
  float* k(int layer, int block) { return k_ + offset(layer, block); }
  float* v(int layer, int block) { return v_ + offset(layer, block); }
  // The layer's whole pool, as the attention kernels index it through a table.
  const float* k_pool(int layer) const { return k_ + offset(layer, 0); }
  const float* v_pool(int layer) const { return v_ + offset(layer, 0); }
  std::vector<int32_t>& table(int slot) { return tables_.at(static_cast<size_t>(slot)); }
  const std::vector<int32_t>& table(int slot) const { return tables_.at(static_cast<size_t>(slot)); }
  void set_slots(int slots) { tables_.resize(static_cast<size_t>(slots)); }
  int slots() const { return static_cast<int>(tables_.size()); }
  // Positions a slot has room for.
  int capacity(int slot) const { return static_cast<int>(table(slot).size()) * kBlock; }
  int blocks() const { return blocks_; }
  int kv_dim() const { return kv_dim_; }
  // Keys and values of one block, all layers.
  static size_t block_bytes(int layers, int kv_dim) { return 2 * static_cast<size_t>(layers) * kBlock * kv_dim * sizeof(float); }
  size_t bytes() const { return block_bytes(layers_, kv_dim_) * blocks_; }
  // Copies the first `positions` positions of slot `from` into slot `to` (both tables long enough).
  void copy_positions(int to, int from, int positions);

 private:
  size_t offset(int layer, int block) const {
    return (static_cast<size_t>(layer) * blocks_ + block) * static_cast<size_t>(kBlock) * kv_dim_;
  }
  Backend& be_;
  int layers_, kv_dim_, blocks_;
  std::vector<std::vector<int32_t>> tables_;
  float *k_ = nullptr, *v_ = nullptr;
};

// New tokens of one sequence in a cached forward: rows [row, row + count) of the batch, at
// positions start..start+count-1 of cache slot `slot`.
struct CacheSegment {
  int slot = 0, start = 0, count = 0, row = 0;
};

// Low-rank adapters (LoRA) on the model's linear layers, as Hugging Face PEFT makes them.
struct LoraOptions {
  int rank = 0;  // 0: none
  float alpha = 0;
  float dropout = 0;
  bool rslora = false;  // scale alpha / sqrt(rank) instead of alpha / rank
  // PEFT module names: Llama q_proj k_proj v_proj o_proj gate_proj up_proj down_proj; GPT-2
  // c_attn (q, k and v: one adapter) c_proj (attention's and the MLP's) c_fc; or all-linear.
  std::vector<std::string> targets;
  float scale() const;
};

// Tensor parallelism as Megatron-LM does it (Shoeybi et al. 2019): each of `size` ranks holds a
// slice of every block and of the vocabulary. Attention is split by heads (q, k, v by rows,
// the output projection by columns) and the MLP by its hidden units (gate/up/fc by rows,
// down/c_proj by columns), so a block needs one all-reduce of its attention's output and one
// of its MLP's in the forward pass, and the same two of its input's gradient in the backward
// pass. The token embedding and the LM head are split by vocabulary rows: a token's embedding
// comes from the rank holding its row (an all-reduce), and the cross-entropy combines the
// ranks' per-row log-sum-exp and target logit (a few floats per token) without ever gathering
// the logits. Norms, biases after a row-parallel matrix, position and token-type embeddings and
// score heads are replicated: every rank computes the same gradient for them.
struct TensorParallel {
  int size = 1, rank = 0;
  Collectives* coll = nullptr;  // the group's collectives on the backend's memory (activations)
  Comm* comm = nullptr;         // the same ranks on the host (per-row sums, checkpoint gathers)
  bool on() const { return size > 1; }
};

struct ModelOptions {
  // A score head on the final hidden state, as Hugging Face's *ForSequenceClassification has
  // it: a reward model's score, PPO's value head, a classifier's logits; num_labels outputs for
  // a classifier, else one. Decoders: "score.weight" [K, dim], at every position (the last
  // token's is the sequence's). BERT: the pooler (dense and tanh) then "classifier" [K, dim]
  // with a bias, at every position (the [CLS] token's is the sequence's).
  bool scalar_head = false;
  // Activation recomputation for the MLP: the gate/up (fc) outputs and the activation, 3 x ffn
  // floats per token and layer and the largest part of the activations, are kept for one layer
  // only and recomputed in the backward pass from the stored norm output (two of the three MLP
  // matmuls again: about a quarter more FLOPs for the MLP's forward). Gradients are identical.
  bool recompute_mlp = false;
  // Adapters: tensors after the base's, named as the base's module plus ".lora_A.weight" and
  // ".lora_B.weight" (PEFT's names without its "base_model.model." prefix).
  LoraOptions lora;
  // The LM head and its logits: off for a reward model, which reads the scalar head only (and
  // holds neither an untied lm_head.weight nor the [tokens, vocabulary] logits).
  bool lm_head = true;
  // Matrices held as ggml blocks (Q8_0, Q4_K, ...) instead of fp32, by tensor name: the linear
  // layers' weights and the token embedding (a GGUF model's; lib/quant fills this). They take
  // their blocks' bytes only, are frozen, and their matmuls read the blocks (the backend's
  // matmul_forward_quant); an adapter on them trains as QLoRA does.
  std::map<std::string, ggml::Type> weight_types;
  // Every tensor frozen from the start: no gradient memory is ever allocated (llm-eval,
  // llm-serve). freeze() can thaw tensors later.
  bool inference = false;
  // This rank's slice of a tensor-parallel model (size 1: the whole model). ParamSpec shapes are
  // then the slices'; checkpoints still hold whole tensors (checkpoint.cpp slices and gathers).
  TensorParallel tp;
  // ZeRO-2's gradient window: the blocks' gradients share one buffer the size of the largest
  // block's, zeroed before each block's backward, so the gradient hook must take each block's
  // range (grad_at) before the next block's backward writes over it, and the gradients of a
  // backward pass no longer accumulate into the next one's in the blocks. The gradients before
  // and after the blocks (embeddings, heads, adapters) keep their own places.
  bool gradient_window = false;
  // ZeRO-3 over these data-parallel collectives (null: off): after shard(), each rank holds its
  // segment of the flat parameters (segment_counts over the ranks) and the tensors outside the
  // blocks whole; a block's parameters are gathered into a window just before its forward and
  // its backward. Every parameter must be trained (the weights' and gradients' layouts are then
  // one), and every rank must run the same forward and backward passes while sharded.
  Collectives* zero3 = nullptr;
};

class Model {
 public:
  Model(const ModelConfig& cfg, Backend& backend, ModelOptions options = {});
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return cfg_; }
  Backend& backend() { return be_; }
  const std::vector<ParamSpec>& params() const { return specs_; }
  const ParamSpec& param(const std::string& name) const;
  size_t num_params() const { return total_; }  // padding rows included
  size_t num_params_unpadded() const;            // what a checkpoint holds
  // Floats of grads(): the trainable tensors' (all of them until freeze()), each at its spec's
  // grad_offset, in the specs' order. A frozen tensor pays for no gradient, and the optimizer
  // keeps no state for it.
  size_t num_grads() const { return total_grads_; }
  // Where the gradient of offset `offset` of that layout is held: in grads() at the same offset,
  // or with the gradient window (ModelOptions::gradient_window) in the window for a block's
  // (the block whose backward ran last). Floats grads() holds.
  float* grad_at(size_t offset);
  size_t grad_buffer_floats() const { return grad_floats_; }
  // Whether a gradient offset is a block's, held in the window (overwritten by the next block's
  // backward); the others add up over backward passes until zero_grad().
  bool in_gradient_window(size_t offset) const {
    return opts_.gradient_window && offset >= grad_layer_begin_.front() && offset < grad_layer_begin_.back();
  }
  size_t num_trainable_unpadded() const;
  float* weights() { return w_; }  // all of them, unless sharded (ZeRO-3)
  // ---- ZeRO-3 (ModelOptions::zero3) ----
  // shard(): keep this rank's segment [begin, end) of the flat parameters (weight_shard()), the
  // tensors before and after the blocks whole, and a window of one block; release the rest.
  // materialize(): gather every rank's segment back into whole weights (for evaluation,
  // sampling, checkpoints). Both collective. sync_replicated(): after the segments changed (an
  // optimizer step), the tensors outside the blocks again from their owners' segments.
  void shard();
  void materialize();
  void sync_replicated();
  bool sharded() const { return sharded_; }
  float* weight_shard() { return wshard_; }
  size_t weight_buffer_floats() const { return sharded_ ? wfloats_ : total_; }  // weights() holds
  float* grads() { return g_; }
  // Whether some matrices are ggml blocks (ModelOptions::weight_types), and the bytes of all
  // weights as held (fp32 values and blocks): what a forward pass reads.
  bool quantized() const { return qtotal_ > 0; }
  size_t weight_bytes() const;
  // A quantized matrix's blocks from host memory: `rows` rows of its spec's row_bytes (fewer than
  // its shape's rows leave the rest zero: the embedding's padding).
  void set_quantized(const std::string& name, const void* blocks, int64_t rows);

  // GPT-2-style initialisation: N(0, 0.02), residual projections N(0, 0.02/sqrt(2 layers)),
  // norm weights 1, biases 0; adapters as init_lora. Deterministic for a seed.
  void init(uint64_t seed);
  // Adapters only, as PEFT: A uniform in +-1/sqrt(in), B zero, so the model computes what its
  // base does until B trains.
  void init_lora(uint64_t seed);
  bool has_lora() const { return opts_.lora.rank > 0; }
  const ModelOptions& options() const { return opts_; }
  // Whether a tensor is an adapter's (its name ends in .lora_A.weight or .lora_B.weight).
  static bool is_lora_tensor(const std::string& name);
  // Whether a tensor may be held as ggml blocks (ModelOptions::weight_types): the linear layers'
  // weights, the token embedding and the LM head.
  static bool can_hold_blocks(const std::string& name);
  // Whether a tensor has a row (or, for a vector, a value) per token of the vocabulary: the
  // embedding, an untied LM head, BERT's decoder bias. Its rows past vocab_size are padding.
  static bool vocabulary_rows(const std::string& name);
  // The adapters off (the base model alone: DPO's reference under LoRA) or on again.
  void set_lora_enabled(bool on);
  // W += scale B A into every adapted weight, then the adapters are off for good: the model is
  // the plain model they made. The adapter tensors stay (zero effect).
  void merge_lora();
  // Dropout (the adapters') for the next forward and its backward: the run's seed, and the
  // index of the batch's first token in the run's stream of tokens, so that a token's mask does
  // not depend on the batch it is in (nor on the micro-batch size or the ranks); seed 0 turns
  // it off (evaluation, inference).
  void set_dropout_seed(uint64_t seed, uint64_t first_token = 0) {
    dropout_seed_ = seed;
    dropout_row0_ = first_token;
  }

  // Called with each linear layer's input in forward() and forward_cached(): the weight's tensor
  // name and its [N, C] input rows in the backend's memory (an importance matrix's statistics:
  // llm-quant imatrix). An empty function: no calls.
  using InputObserver = std::function<void(const std::string& weight, const float* x, int N, int C)>;
  void set_input_observer(InputObserver f) { observer_ = std::move(f); }

  // The temperature of logp() (and of backward's d(logp)): log softmax(logits / T), as GRPO's
  // trainer computes its log-probabilities at the sampling temperature (TRL does). Default 1.
  void set_logit_temperature(float t) { logit_temperature_ = t; }

  // BERT's token types (segment ids, < type_vocab_size) of the next forward's B*T tokens; without
  // them (or for another family) every token's type is 0. Used by that forward and its backward.
  void set_token_types(std::vector<int32_t> types) { next_types_ = std::move(types); }

  // Forward over tokens[B*T] (each row a sequence starting at position 0, or with `starts`
  // several packed back to back: see backend.hpp; checked). With targets (same shape, < 0
  // ignored) it also computes each target's log-probability, logp(). A decoder's targets are the
  // next tokens; an encoder's (BERT's masked-language model) the tokens at masked positions.
  void forward(const int32_t* tokens, const int32_t* targets, int B, int T, const int32_t* starts = nullptr);
  const float* logits() const { return acts_.logits; }  // [B*T, padded_vocab], the backend's memory
  // The same in host memory: the backend's own on the CPU, a copy from a GPU.
  const float* logits_on_host();

  // Inference: runs new tokens (rows of several sequences, each continuing its cache slot)
  // through the model, writing their keys and values into the cache; logits() then holds one
  // row per new token, or with last_only one per segment, its last token's (a prompt's prefill
  // needs no more: the LM head runs on those rows only). No activations are kept for a backward
  // pass.
  void forward_cached(const int32_t* tokens, int rows, const std::vector<CacheSegment>& segments,
                      KVCache& cache, bool last_only = false);
  // With a score head: its outputs at every position [B*T, K] (K = score_outputs()), after
  // forward (host array).
  std::vector<float> values() const;
  int score_outputs() const { return cfg_.classifier ? cfg_.num_labels : cfg_.nsp ? 2 : 1; }
  // The score head's tensors (empty without one), and whether a name is one of a model's.
  std::vector<std::string> head_tensors() const;
  static bool is_head_tensor(const std::string& name);
  std::vector<float> logp() const;                      // [B*T], after forward with targets
  // Mean negative log-likelihood over the targets >= 0 of the last forward.
  double mean_loss() const;

  // Backward from d(loss)/d(logp) per token and, with a score head, d(loss)/d(value) per
  // position and output (host arrays of B*T and B*T*K; either may be null): the entry point of
  // every objective.
  // Gradients accumulate into grads(); call zero_grad() between steps.
  // Knowledge distillation in backward(): the teacher's logits for the same rows (its own
  // forward's logits(), over the same vocabulary), each row's weight (host, B*T; 0: no
  // divergence there) and the divergence (backend.hpp); backward() writes each row's divergence
  // into kd_loss (host, B*T) and adds weight times its gradient to the logits' gradient.
  struct Distillation {
    const float* teacher_logits = nullptr;
    const float* weight = nullptr;
    Divergence divergence;
    float* kd_loss = nullptr;
  };
  void backward(const float* dlogp, const float* dvalue = nullptr, const Distillation* kd = nullptr);
  // Backward of mean_loss() scaled by `scale` (1/accumulation steps and the like), with a score
  // head's d(loss)/d(value) added when dvalue is given (BERT's next-sentence loss beside MLM).
  void backward_mean(float scale = 1.0f, const float* dvalue = nullptr);
  void zero_grad();
  // Called during backward() as soon as a range of grads() is final, so that its all-reduce can
  // start while the backward pass goes on: each layer's range (in the order the backward
  // finishes them, last layer first), then the rest (embeddings, final norm, heads, adapters)
  // at the end. The ranges tile the whole buffer; some may be empty. An empty function: no
  // calls.
  using GradientHook = std::function<void(size_t offset, size_t count)>;
  void set_gradient_hook(GradientHook hook) { hook_ = std::move(hook); }
  // Frozen parameters get no gradient, and the backward pass skips computing it (a reference
  // model, a base under LoRA adapters). Applies to the tensors whose name `frozen` accepts; the
  // gradient buffer is laid out again (zeroed) for the trainable ones.
  void freeze(const std::function<bool(const std::string&)>& frozen);
  bool is_frozen(const std::string& name) const;

  // ---- Tensor parallelism (ModelOptions::tp) ----
  const TensorParallel& tensor_parallel() const { return opts_.tp; }
  // How a tensor of this configuration is split over tensor-parallel ranks: -1 replicated, 0 by
  // rows (column-parallel matrices, their biases, vocabulary tables), 1 by columns
  // (row-parallel matrices).
  static int tp_split(const ModelConfig& c, const std::string& name);
  // The whole tensor's shape of this rank's slice `s`.
  std::vector<int64_t> full_shape(const ParamSpec& s) const;
  // This rank's slice of a whole tensor (row-major in full_shape(s)) into `local` (s.size floats).
  void shard(const ParamSpec& s, const float* full, float* local) const;
  // The whole tensor from every rank's slice of it (in rank order), into `full`.
  void unshard(const ParamSpec& s, const std::vector<const float*>& slices, float* full) const;
  // The vocabulary rows this rank holds: [vocab_begin(), vocab_begin() + vocab_rows()), of which
  // those below vocab_size are tokens; the logits' row width.
  int vocab_begin() const { return vocab_lo_; }
  int vocab_rows() const { return vocab_l_; }
  // Row `row` of the last forward's logits on the host, over the whole (padded) vocabulary:
  // gathered from the ranks' shards under tensor parallelism (collective).
  std::vector<float> logits_row(size_t row);
  // The greedy token (the largest logit, the first of equals) of each row of the last forward,
  // into out (host, B*T): over the whole vocabulary when it is split over ranks (collective).
  void argmax(int32_t* out);

  // FLOPs of one forward+backward over B*T tokens: 6 * matmul params * tokens plus attention.
  double flops_per_step(int B, int T) const;
  // FLOPs of a forward alone (a teacher's, a reference model's): 2 * matmul params * tokens plus
  // attention.
  double flops_per_forward(int B, int T) const;
  // Bytes of activations this model holds for B x T (in the backend's activation type).
  size_t activation_bytes(int B, int T) const;

 // The blocks and their activations (model.cpp); public so that the attention sites there can
 // name them, opaque elsewhere.
  struct Layer;
  struct LayerActs;
  class AttentionSite;

 private:
  struct Acts {
    float* logits = nullptr;
    float* buf = nullptr;    // activations and their gradients (the backend's activation type)
    float* stats = nullptr;  // fp32 per-row values: norms' mean and rstd, lse, logp, values
    size_t floats = 0, stat_floats = 0;
  };
  // Values of activations, and of fp32 statistics, for `tokens` rows.
  // inference: one layer's activations (forward_cached reuses them layer after layer), no
  // gradients' scratch.
  void activation_sizes(size_t tokens, size_t& acts, size_t& stats, bool inference = false) const;
  void build_specs();
  void ensure_acts(int B, int T);
  void ensure_rows(int rows, bool inference = false);
  float* w(const std::string& name);

  void bind();  // sets the per-layer weight and gradient pointers
  void bind_lora();
  size_t adapted_linears() const;  // per layer
  void mlp_hidden(const Layer& L, LayerActs& a, int N);
  void linear_forward(const Linear& lin, float* y, const float* x, int N, float* mid);
  void linear_backward(const Linear& lin, float* dx, const float* dy, const float* x, int N, const float* mid);
  void layer_forward(int layer, LayerActs& a, float* out, int N, AttentionSite& site);
  void layer_backward(int layer, LayerActs& a, int N, AttentionSite& site, bool recompute);
  void mlp_backward(int layer, LayerActs& a, const float* dy, float* dx, int N);
  void attention_backward(int layer, LayerActs& a, AttentionSite& site, const float* dy, const float* in, float* dx, int N);
  void head_forward(const float* x, int N);
  ModelConfig cfg_;
  ModelOptions opts_;
  Backend& be_;
  std::vector<bool> frozen_;  // per ParamSpec
  std::vector<ParamSpec> specs_;
  size_t total_ = 0, total_grads_ = 0;
  size_t window_ = 0, grad_floats_ = 0;  // the gradient window's floats (0: none), and grads()'s
  // ZeRO-3: sharded or whole; the segments; this rank's; the weights' window (the largest
  // block's floats) and the floats of the compact buffer (before the blocks, window, after).
  bool sharded_ = false;
  std::vector<size_t> seg_counts_;
  size_t seg_lo_ = 0, seg_hi_ = 0, wwindow_ = 0, wfloats_ = 0;
  float* wshard_ = nullptr;
  int fetched_ = -1;  // the block in the window
  float* weight_at(size_t offset);  // where the weight of a flat offset is held now
  // The windows' compact layout (gradients under ZeRO-2, weights under ZeRO-3), for blocks that
  // start at begins[l] and end at begins.back(): [before the blocks | one block | after them].
  // The largest block's size, and where offset `offset` of the flat layout is held in it (a
  // block's offsets all map into the one window).
  static size_t largest_block(const std::vector<size_t>& begins);
  static size_t windowed(const std::vector<size_t>& begins, size_t window, size_t offset);
  void fetch_block(int layer);      // a block's parameters into the window (sharded only; collective)
  void layout_grads();
  float* w_ = nullptr;
  float* g_ = nullptr;
  float* q_ = nullptr;  // the quantized matrices' blocks (qtotal_ bytes)
  size_t qtotal_ = 0;
  Acts acts_;
  std::vector<Layer> layers_;
  std::vector<LayerActs> acts_layers_;
  struct Top;
  std::unique_ptr<Top> top_;
  int B_ = 0, T_ = 0, cap_tokens_ = 0;
  bool acts_inference_ = false;  // the activations are laid out for forward_cached only
  std::vector<int32_t> tokens_, targets_, starts_, types_, next_types_;
  void embed_forward(float* x0, int B, int T, const int32_t* starts);
  void embed_backward(int B, int T, const int32_t* starts);
  void head_backward(int N, bool lm, bool scored);
  std::vector<float> host_logits_;
  GradientHook hook_;
  InputObserver observer_;
  uint64_t dropout_seed_ = 0, dropout_row0_ = 0;
  float logit_temperature_ = 1.0f;
  bool exact_ = false;  // forward(): quantized matrices against fp32 activations
  bool lora_on_ = true;
  // Tensor parallelism: this rank's heads, key/value heads, MLP units and vocabulary rows, the
  // first of them, and the configuration its attention sees (its heads only).
  int heads_l_ = 0, kv_l_ = 0, ffn_l_ = 0, vocab_l_ = 0, vocab_lo_ = 0;
  ModelConfig attn_cfg_;
  std::vector<int32_t> tokens_l_, targets_l_;  // tokens and targets as this rank's vocabulary rows (-1: another's)
  void setup_tensor_parallel();
  void tp_reduce(float* x, size_t n);  // the sum over the group's ranks, in place
  // The cross-entropy's logp and log-sum-exp over the whole vocabulary (the backend's [N] arrays).
  void vocab_parallel_logp(float* logp, float* lse, int N);
  std::vector<size_t> layer_begin_;       // offset of each layer's first parameter, then its end
  std::vector<size_t> grad_layer_begin_;  // the same in the gradient buffer
};

}  // namespace llmkit
