// The step-level engine (lib/model/scheduler.cpp): continuous batching over a paged KV cache.
// Sequences are added and cancelled at any time; each step() admits waiting sequences, runs one
// forward pass over a chunk of every prefill and one token of every decode (together at most
// max_batch_tokens rows), samples, and retires what finished. Full KV blocks are remembered by
// the hash of their tokens and everything before them, so a prompt that begins as an earlier
// one did (a shared system prompt) is not prefilled again. When the pool runs out, the sequence
// admitted last is preempted: its blocks go back, and it is recomputed later from its tokens.
// llm-serve drives it from one thread.
#pragma once
#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "llmkit/engine.hpp"
#include "llmkit/model.hpp"

namespace llmkit {

class Tokenizer;

// The blocks of a paged KV cache, reference counted; full blocks are published under the hash
// of their tokens chained to their prefix's, and kept (unreferenced, least recently used first
// to go) until their memory is needed.
class BlockPool {
 public:
  explicit BlockPool(int blocks);
  int total() const { return static_cast<int>(blocks_.size()); }
  // Blocks that allocate() can hand out: never used, or cached and unreferenced.
  int available() const { return static_cast<int>(free_.size() + lru_.size()); }
  // Blocks referenced by a sequence.
  int in_use() const { return total() - available(); }
  // A block for a sequence's own use (reference count 1), evicting the least recently used
  // cached block when no block is free; -1 when every block is referenced.
  int32_t allocate();
  void release(int32_t block);
  // The cached block holding `tokens` (kBlock of them) after the prefix hashed `hash`'s parent,
  // retained; -1 if none.
  int32_t find(uint64_t hash, const int32_t* tokens);
  // `block` (referenced) now holds these tokens' keys and values: it can be found by hash.
  void publish(int32_t block, uint64_t hash, const int32_t* tokens);
  // Forgets every published block (the weights changed: their keys and values are stale).
  void forget();
  // The hash of a full block of tokens after a prefix whose hash is `parent` (0: none).
  static uint64_t chain(uint64_t parent, const int32_t* tokens);

 private:
  struct Block {
    int refs = 0;
    bool cached = false;  // published: by_hash_ points here
    uint64_t hash = 0;
    std::array<int32_t, KVCache::kBlock> tokens{};
    std::list<int32_t>::iterator lru;  // valid when cached and refs == 0
  };
  std::vector<Block> blocks_;
  std::vector<int32_t> free_;
  std::list<int32_t> lru_;
  std::unordered_map<uint64_t, int32_t> by_hash_;
};

// Generated tokens as text, the way a client sees it arrive: the text after the prompt (decoded
// behind the prompt's last tokens, so that a leading space survives), cut before the first
// stop string, with what may still change held back (an incomplete UTF-8 character, the start
// of a stop string). What take() gives, concatenated, is text() once finished.
class TextStream {
 public:
  // behind_prompt false: the generated tokens decoded alone (as Hugging Face's decode of a
  // continuation, which lm-evaluation-harness scores).
  TextStream(const Tokenizer* tok, const std::vector<int32_t>& prompt, std::vector<std::string> stop, bool behind_prompt = true);
  // Adds a generated token; true when the text now holds a stop string (and was cut before it).
  bool push(int32_t token);
  // The text ready since the last take(); with `all`, everything (at the end of the sequence).
  std::string take(bool all = false);
  const std::string& text() const { return text_; }

 private:
  const Tokenizer* tok_;
  std::vector<uint32_t> ids_;  // the prompt's last tokens, then the generated
  size_t context_ = 0;         // how many of ids_ are the prompt's
  std::string context_text_;   // their text
  std::vector<std::string> stop_;
  std::string text_;
  size_t taken_ = 0;
  bool stopped_ = false;
};

struct SchedulerOptions {
  int max_seqs = 16;             // sequences in the batch at once
  int kv_blocks = 0;             // blocks of KVCache::kBlock positions; 0: max_seqs whole contexts
  int max_batch_tokens = 512;    // rows of one forward pass: decodes, then chunks of prefills
  bool prefix_caching = true;
  int context = 0;               // positions a sequence may reach; 0: the model's
  // Sequences name an adapter (0: the base model). A step runs the sequences of one adapter,
  // the adapters in turn; this puts the model in that adapter's state before the forward pass.
  std::function<void(int adapter)> use_adapter;
};

// A sequence to generate. params.n is 1: a caller that wants n samples adds n sequences, with
// the same group.
struct SequenceRequest {
  std::vector<int32_t> prompt;
  SamplingParams params;
  int top_logprobs = -1;  // -1: none; else each token's log-probability and this many likeliest
  // Samples of one prompt (0: none): while one of them prefills, the others wait, then find its
  // blocks in the prefix cache and compute only the prompt's last, partial block themselves.
  uint64_t group = 0;
  // Record each sampled token's log p under softmax(logits / temperature) (and its entropy with
  // params.entropy), as a trainer recomputes it (Generation::logprobs).
  bool trace = false;
  bool text_behind_prompt = true;  // TextStream's behind_prompt
  int adapter = 0;                 // SchedulerOptions::use_adapter's; 0: the base model
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;  // log softmax of the model's logits (before any sampling setting)
  std::vector<std::pair<int32_t, float>> top;
};

// What a step did for a sequence.
struct SequenceUpdate {
  uint64_t id = 0;
  std::vector<int32_t> tokens;  // new tokens (an end-of-sequence token is not among them)
  std::vector<TokenLogprob> logprobs;
  std::vector<float> sampled_logprobs, entropies;  // with trace: one a token, and one for </s> at "eos"
  std::string text;             // new text (with a tokenizer)
  std::string finish;           // "" while running; "eos" (end of sequence), "stop" (a stop string), "length", "abort"
  int prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
};

struct SchedulerCounters {
  uint64_t prompt_tokens = 0, generation_tokens = 0, preemptions = 0;
  uint64_t prefix_queries = 0, prefix_hits = 0;  // prompt tokens looked up, and found, in the cache
  uint64_t steps = 0, aborted = 0;
};

class Scheduler {
 public:
  Scheduler(Model& model, const Tokenizer* tok, SchedulerOptions options);
  ~Scheduler();
  // Queues a sequence; an Error when the prompt is empty, holds an id outside the vocabulary,
  // or with max_tokens does not fit the context or the KV pool.
  uint64_t add(SequenceRequest request);
  // Ends the sequence at the next step (an update with finish "abort"); unknown ids are ignored.
  void cancel(uint64_t id);
  // One forward pass (none when nothing is to run) and what it produced.
  std::vector<SequenceUpdate> step();
  bool idle() const { return running_.empty() && waiting_.empty() && cancels_.empty(); }
  // The prefix cache emptied: for a model whose weights changed (a trainer's rollouts).
  void forget_prefixes() { pool_.forget(); }
  // Rows of a forward pass from the next step on (at least max_seqs).
  void set_max_batch_tokens(int rows) { opts_.max_batch_tokens = std::max(rows, opts_.max_seqs); }
  int running() const { return static_cast<int>(running_.size()); }
  int waiting() const { return static_cast<int>(waiting_.size()); }
  double kv_usage() const { return static_cast<double>(pool_.in_use()) / pool_.total(); }
  int kv_blocks() const { return pool_.total(); }
  int kv_blocks_in_use() const { return pool_.in_use(); }
  size_t kv_bytes() const { return cache_->bytes(); }
  int context() const { return context_; }
  const SchedulerCounters& counters() const { return counters_; }
  // The sequences admitted for the first time since the last call (their queue time ends).
  std::vector<uint64_t> take_admitted() { return std::exchange(admitted_, {}); }

 private:
  struct Sequence;
  bool grow(Sequence& s, int positions);
  void preempt(Sequence& s);
  void free_blocks(Sequence& s);
  void publish_full_blocks(Sequence& s);
  void sample(Sequence& s, const float* logits, SequenceUpdate& u);

  Model& model_;
  const Tokenizer* tok_;
  SchedulerOptions opts_;
  int context_;
  std::unique_ptr<KVCache> cache_;
  BlockPool pool_;
  std::vector<int> free_slots_;
  uint64_t next_id_ = 1;
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;  // in admission order
  int pick_adapter() const;
  std::vector<uint64_t> cancels_, admitted_;
  int adapter_ = 0;  // the model's adapter state (use_adapter's last call)
  SchedulerCounters counters_;
};

}  // namespace llmkit
