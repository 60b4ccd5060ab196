// The step-level engine; see llmkit/scheduler.hpp.
#include "llmkit/scheduler.hpp"

#include <xxhash.h>

#include <algorithm>
#include <cmath>

#include "llmkit/error.hpp"
#include "llmkit/tok.hpp"

namespace llmkit {

constexpr int kB = KVCache::kBlock;

// ---- BlockPool ----

BlockPool::BlockPool(int blocks) : blocks_(static_cast<size_t>(std::max(0, blocks))) {
  for (int b = blocks - 1; b >= 0; --b) free_.push_back(b);
}

int32_t BlockPool::allocate() {
  int32_t b = -1;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (!lru_.empty()) {  // the cached block unused longest: forgotten
    b = lru_.front();
    lru_.pop_front();
    by_hash_.erase(blocks_[static_cast<size_t>(b)].hash);
    blocks_[static_cast<size_t>(b)].cached = false;
  } else {
    return -1;
  }
  blocks_[static_cast<size_t>(b)].refs = 1;
  return b;
}

void BlockPool::release(int32_t b) {
  Block& k = blocks_.at(static_cast<size_t>(b));
  if (k.refs <= 0) throw Error("", "internal: KV block " + std::to_string(b) + " released twice");
  if (--k.refs > 0) return;
  if (k.cached) k.lru = lru_.insert(lru_.end(), b);
  else free_.push_back(b);
}

int32_t BlockPool::find(uint64_t hash, const int32_t* tokens) {
  const auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return -1;
  Block& k = blocks_[static_cast<size_t>(it->second)];
  if (!std::equal(k.tokens.begin(), k.tokens.end(), tokens)) return -1;  // a hash collision
  if (k.refs++ == 0) lru_.erase(k.lru);
  return it->second;
}

void BlockPool::publish(int32_t b, uint64_t hash, const int32_t* tokens) {
  Block& k = blocks_.at(static_cast<size_t>(b));
  if (k.cached || by_hash_.count(hash)) return;  // the same prefix computed twice: one is kept
  k.cached = true;
  k.hash = hash;
  std::copy_n(tokens, kB, k.tokens.begin());
  by_hash_[hash] = b;
}

void BlockPool::forget() {
  for (int32_t b : lru_) free_.push_back(b);
  lru_.clear();
  for (Block& k : blocks_) k.cached = false;
  by_hash_.clear();
}

uint64_t BlockPool::chain(uint64_t parent, const int32_t* tokens) {
  return XXH3_64bits_withSeed(tokens, sizeof(int32_t) * kB, parent);
}

// ---- TextStream ----

namespace {

// The hash a sequence's chain of blocks starts from: keys and values differ with the adapter.
uint64_t chain_seed(int adapter) { return adapter == 0 ? 0 : 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(adapter); }

// How many bytes at the end of s begin a UTF-8 character that is not complete.
size_t incomplete_utf8_tail(const std::string& s) {
  for (size_t back = 1; back <= std::min<size_t>(3, s.size()); ++back) {
    const auto c = static_cast<unsigned char>(s[s.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    const size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return len > back ? back : 0;
  }
  return 0;
}

}  // namespace

TextStream::TextStream(const Tokenizer* tok, const std::vector<int32_t>& prompt, std::vector<std::string> stop,
                       bool behind_prompt)
    : tok_(tok), stop_(std::move(stop)) {
  stop_.erase(std::remove(stop_.begin(), stop_.end(), std::string()), stop_.end());
  if (!tok_ || !behind_prompt) return;
  // A few of the prompt's tokens before the generated ones: decoded alone, a first piece loses
  // its leading space ("▁world" is "world").
  const size_t n = std::min<size_t>(4, prompt.size());
  ids_.assign(prompt.end() - static_cast<long>(n), prompt.end());
  context_ = n;
  context_text_ = tok_->decode(ids_.data(), ids_.size());
}

bool TextStream::push(int32_t token) {
  if (stopped_) return true;
  ids_.push_back(static_cast<uint32_t>(token));
  if (!tok_) return false;
  const std::string all = tok_->decode(ids_.data(), ids_.size());
  if (all.compare(0, context_text_.size(), context_text_) == 0) text_ = all.substr(context_text_.size());
  else text_ = tok_->decode(ids_.data() + context_, ids_.size() - context_);
  size_t cut = std::string::npos;
  for (const std::string& s : stop_) cut = std::min(cut, text_.find(s));
  if (cut == std::string::npos) return false;
  text_.resize(std::max(cut, taken_));
  stopped_ = true;
  return true;
}

std::string TextStream::take(bool all) {
  size_t end = text_.size();
  if (!all && !stopped_) {
    end -= incomplete_utf8_tail(text_);
    // U+FFFD at the end: a byte piece whose character the next tokens may complete.
    static const std::string kReplacement = "\xEF\xBF\xBD";
    while (end >= 3 && text_.compare(end - 3, 3, kReplacement) == 0) end -= 3;
    size_t hold = 0;  // the longest tail that a stop string begins with
    for (const std::string& s : stop_)
      for (size_t len = std::min(s.size() - 1, end); len > hold; --len)
        if (text_.compare(end - len, len, s, 0, len) == 0) {
          hold = len;
          break;
        }
    end -= hold;
  }
  if (end <= taken_) return {};
  std::string out = text_.substr(taken_, end - taken_);
  taken_ = end;
  return out;
}

// ---- Scheduler ----

struct Scheduler::Sequence {
  uint64_t id = 0;
  std::vector<int32_t> tokens;  // the prompt, then what was generated
  size_t prompt_len = 0;
  SamplingParams params;
  int top_logprobs = -1;
  uint64_t group = 0;
  bool trace = false;
  int adapter = 0;
  std::mt19937_64 rng;
  std::unique_ptr<TextStream> text;
  int slot = -1;
  int computed = 0;         // positions whose keys and values are in the cache
  int published = 0;        // leading full blocks published or found in the cache
  uint64_t chain_hash = 0;  // the hash of those blocks (set at admission)
  int cached = 0;           // prompt positions found in the cache when first admitted
  bool admitted = false;
  std::string finish;
  int generated() const { return static_cast<int>(tokens.size() - prompt_len); }
};

Scheduler::Scheduler(Model& model, const Tokenizer* tok, SchedulerOptions options)
    : model_(model), tok_(tok), opts_(options),
      context_(options.context > 0 ? std::min(options.context, model.config().max_seq) : model.config().max_seq),
      pool_(options.kv_blocks > 0 ? options.kv_blocks : std::max(1, options.max_seqs) * ((context_ + kB - 1) / kB)) {
  if (opts_.max_seqs < 1) throw Error("", "max_seqs must be at least 1");
  if (opts_.max_batch_tokens < opts_.max_seqs)
    throw Error("", "max_batch_tokens (" + std::to_string(opts_.max_batch_tokens) + ") below max_seqs (" +
                        std::to_string(opts_.max_seqs) + "): every running sequence needs a row a step");
  const ModelConfig& c = model.config();
  cache_ = std::make_unique<KVCache>(model.backend(), c.layers, c.kv_heads * c.head_dim(), pool_.total());
  cache_->set_slots(opts_.max_seqs);
  for (int s = opts_.max_seqs - 1; s >= 0; --s) free_slots_.push_back(s);
}

Scheduler::~Scheduler() = default;

uint64_t Scheduler::add(SequenceRequest r) {
  const int V = model_.config().vocab_size;
  if (r.prompt.empty()) throw Error("", "an empty prompt");
  for (int32_t t : r.prompt)
    if (t < 0 || t >= V) throw Error("", "token id " + std::to_string(t) + " outside the vocabulary of " + std::to_string(V));
  const long need = static_cast<long>(r.prompt.size()) + std::max(0, r.params.max_tokens);
  if (need > context_)
    throw Error("", std::to_string(r.prompt.size()) + " prompt tokens and " + std::to_string(r.params.max_tokens) +
                        " to generate exceed the context of " + std::to_string(context_));
  if ((need + kB - 1) / kB > pool_.total())
    throw Error("", "a sequence of " + std::to_string(need) + " tokens needs more KV blocks than the " +
                        std::to_string(pool_.total()) + " of the pool");
  if (!r.params.stop.empty() && !tok_) throw Error("", "stop strings need a tokenizer");
  auto s = std::make_unique<Sequence>();
  s->id = next_id_++;
  s->prompt_len = r.prompt.size();
  s->params = r.params;
  s->top_logprobs = r.top_logprobs;
  s->group = r.group;
  s->trace = r.trace;
  s->adapter = r.adapter;
  if (r.adapter != 0 && !opts_.use_adapter) throw Error("", "a sequence names adapter " + std::to_string(r.adapter) + " on a scheduler without adapters");
  s->rng.seed(r.params.seeds.empty() ? r.params.seed : r.params.seeds.front());
  s->text = std::make_unique<TextStream>(tok_, r.prompt, r.params.stop, r.text_behind_prompt);
  s->tokens = std::move(r.prompt);
  const uint64_t id = s->id;
  waiting_.push_back(std::move(s));
  return id;
}

void Scheduler::cancel(uint64_t id) { cancels_.push_back(id); }

// The adapter this step runs: of those the running and waiting sequences name, the next after
// the last step's in id order, around (each gets its turn).
int Scheduler::pick_adapter() const {
  if (!opts_.use_adapter) return 0;
  int next = -1, lowest = -1;
  auto consider = [&](int a) {
    if (lowest < 0 || a < lowest) lowest = a;
    if (a > adapter_ && (next < 0 || a < next)) next = a;
  };
  for (const auto& r : running_) consider(r->adapter);
  for (const auto& w : waiting_) consider(w->adapter);
  return next >= 0 ? next : lowest >= 0 ? lowest : adapter_;
}

bool Scheduler::grow(Sequence& s, int positions) {
  std::vector<int32_t>& table = cache_->table(s.slot);
  while (static_cast<int>(table.size()) * kB < positions) {
    const int32_t b = pool_.allocate();
    if (b < 0) return false;
    table.push_back(b);
  }
  return true;
}

void Scheduler::free_blocks(Sequence& s) {
  if (s.slot < 0) return;
  for (int32_t b : cache_->table(s.slot)) pool_.release(b);
  cache_->table(s.slot).clear();
  free_slots_.push_back(s.slot);
  s.slot = -1;
  s.computed = s.published = 0;  // admission sets them and chain_hash again
}

// Back to the head of the queue with its tokens: recomputed when there is room again.
void Scheduler::preempt(Sequence& s) {
  free_blocks(s);
  ++counters_.preemptions;
  const auto it = std::find_if(running_.begin(), running_.end(), [&](const auto& p) { return p.get() == &s; });
  waiting_.push_front(std::move(*it));
  running_.erase(it);
}

void Scheduler::publish_full_blocks(Sequence& s) {
  if (!opts_.prefix_caching) return;
  const std::vector<int32_t>& table = cache_->table(s.slot);
  while ((s.published + 1) * kB <= s.computed) {
    const int32_t* toks = s.tokens.data() + static_cast<size_t>(s.published) * kB;
    s.chain_hash = BlockPool::chain(s.chain_hash, toks);
    pool_.publish(table[static_cast<size_t>(s.published)], s.chain_hash, toks);
    ++s.published;
  }
}

void Scheduler::sample(Sequence& s, const float* logits, SequenceUpdate& u) {
  const int V = model_.config().vocab_size;
  float lp = 0, h = 0;
  const int32_t t = sample_token(logits, V, s.tokens, s.prompt_len, s.params, s.rng, s.trace ? &lp : nullptr,
                                 s.trace && s.params.entropy ? &h : nullptr);
  if (s.trace) {
    u.sampled_logprobs.push_back(lp);
    if (s.params.entropy) u.entropies.push_back(h);
  }
  ++counters_.generation_tokens;
  const bool eos = s.params.stop_at_eos && tok_ && t == tok_->eos_id();
  if (!eos) {
    if (s.top_logprobs >= 0) {  // log softmax of the logits as the model gave them
      const double lse = log_sum_exp(logits, V);
      TokenLogprob lp;
      lp.token = t;
      lp.logprob = static_cast<float>(logits[t] - lse);
      const int k = std::min(s.top_logprobs, V);
      std::vector<int32_t> idx(static_cast<size_t>(V));
      for (int j = 0; j < V; ++j) idx[static_cast<size_t>(j)] = j;
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                        [&](int32_t a, int32_t b) { return logits[a] != logits[b] ? logits[a] > logits[b] : a < b; });
      for (int i = 0; i < k; ++i) lp.top.emplace_back(idx[static_cast<size_t>(i)], static_cast<float>(logits[idx[static_cast<size_t>(i)]] - lse));
      u.logprobs.push_back(std::move(lp));
    }
    s.tokens.push_back(t);
    u.tokens.push_back(t);
  }
  if (eos) s.finish = "eos";
  else if (s.text->push(t)) s.finish = "stop";
  else if (s.generated() >= s.params.max_tokens || static_cast<int>(s.tokens.size()) >= context_) s.finish = "length";
}

std::vector<SequenceUpdate> Scheduler::step() {
  std::vector<SequenceUpdate> out;
  auto update = [&](const Sequence& s) {
    SequenceUpdate u;
    u.id = s.id;
    u.prompt_tokens = static_cast<int>(s.prompt_len);
    u.cached_tokens = s.cached;
    u.completion_tokens = s.generated();
    return u;
  };
  for (uint64_t id : cancels_) {
    const auto w = std::find_if(waiting_.begin(), waiting_.end(), [&](const auto& p) { return p->id == id; });
    if (w != waiting_.end()) {
      out.push_back(update(**w));
      waiting_.erase(w);
    } else {
      const auto r = std::find_if(running_.begin(), running_.end(), [&](const auto& p) { return p->id == id; });
      if (r == running_.end()) continue;
      free_blocks(**r);
      out.push_back(update(**r));
      running_.erase(r);
    }
    out.back().finish = "abort";
    ++counters_.aborted;
  }
  cancels_.clear();

  // Running sequences first, oldest first: a decode's one token or a prefill's next chunk.
  struct Work {
    Sequence* s;
    int start, count;
  };
  std::vector<Work> work;
  int budget = opts_.max_batch_tokens;
  bool preempted = false;
  // One adapter a step (all of them the base's when there are none).
  const int adapter = pick_adapter();
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence& s = *running_[i];
    if (s.adapter != adapter) continue;
    const int k = std::min(static_cast<int>(s.tokens.size()) - s.computed, budget);
    while (!grow(s, s.computed + k)) {  // no block free: the newest sequence makes room
      Sequence& victim = *running_.back();
      preempted = true;
      preempt(victim);
      if (&victim == &s) break;
    }
    if (s.slot < 0) break;  // it was the newest itself
    work.push_back({&s, s.computed, k});
    budget -= k;
  }
  // Then waiting sequences, in order, while there is room (never past one that waits for blocks).
  for (size_t i = 0; !preempted && i < waiting_.size() && budget > 0 && !free_slots_.empty();) {
    Sequence& s = *waiting_[i];
    // Another adapter's sequence waits for its turn; a sample whose group's prompt is being
    // prefilled waits for its blocks (the sequences after them may go first).
    if (s.adapter != adapter) {
      ++i;
      continue;
    }
    if (s.group && !s.admitted && std::any_of(running_.begin(), running_.end(), [&](const auto& o) {
          return o->group == s.group && o->computed < static_cast<int>(o->prompt_len);
        })) {
      ++i;
      continue;
    }
    std::vector<int32_t> found;
    uint64_t hash = chain_seed(s.adapter);
    if (opts_.prefix_caching) {  // full blocks of its tokens already computed, the last token not
      const size_t full = (s.tokens.size() - 1) / kB;
      for (size_t b = 0; b < full; ++b) {
        const int32_t* toks = s.tokens.data() + b * kB;
        const uint64_t h = BlockPool::chain(hash, toks);
        const int32_t blk = pool_.find(h, toks);
        if (blk < 0) break;
        found.push_back(blk);
        hash = h;
      }
    }
    const int start = static_cast<int>(found.size()) * kB;
    const int k = std::min(static_cast<int>(s.tokens.size()) - start, budget);
    const int need = (start + k + kB - 1) / kB - static_cast<int>(found.size());
    if (need > pool_.available()) {
      for (int32_t b : found) pool_.release(b);
      break;
    }
    if (!s.admitted) {
      s.admitted = true;
      admitted_.push_back(s.id);
      s.cached = std::min(start, static_cast<int>(s.prompt_len));
      counters_.prompt_tokens += s.prompt_len;
      if (opts_.prefix_caching) {
        counters_.prefix_queries += s.prompt_len;
        counters_.prefix_hits += static_cast<uint64_t>(s.cached);
      }
    }
    s.slot = free_slots_.back();
    free_slots_.pop_back();
    cache_->table(s.slot) = std::move(found);
    s.computed = start;
    s.published = start / kB;
    s.chain_hash = hash;
    if (!grow(s, start + k)) throw Error("", "internal: KV blocks counted free were not");
    running_.push_back(std::move(waiting_[i]));
    waiting_.erase(waiting_.begin() + static_cast<long>(i));
    work.push_back({&s, start, k});
    budget -= k;
  }
  if (work.empty()) return out;

  ++counters_.steps;
  if (adapter != adapter_) {
    opts_.use_adapter(adapter);
    adapter_ = adapter;
  }
  std::vector<int32_t> rows;
  std::vector<CacheSegment> segs;
  for (const Work& w : work) {
    segs.push_back({w.s->slot, w.start, w.count, static_cast<int>(rows.size())});
    rows.insert(rows.end(), w.s->tokens.begin() + w.start, w.s->tokens.begin() + w.start + w.count);
  }
  model_.forward_cached(rows.data(), static_cast<int>(rows.size()), segs, *cache_, true);
  const float* logits = model_.logits_on_host();
  const size_t Vp = static_cast<size_t>(model_.config().padded_vocab());
  for (size_t i = 0; i < work.size(); ++i) {
    Sequence& s = *work[i].s;
    s.computed += work[i].count;
    publish_full_blocks(s);
    if (s.computed < static_cast<int>(s.tokens.size())) continue;  // a prefill's chunk: more to come
    SequenceUpdate u = update(s);
    sample(s, logits + i * Vp, u);
    u.completion_tokens = s.generated() + (s.finish == "eos" ? 1 : 0);  // </s> counts
    u.finish = s.finish;
    u.text = s.text->take(!s.finish.empty());
    out.push_back(std::move(u));
  }
  for (size_t i = 0; i < running_.size();) {
    if (!running_[i]->finish.empty()) {
      free_blocks(*running_[i]);
      running_.erase(running_.begin() + static_cast<long>(i));
    } else {
      ++i;
    }
  }
  return out;
}

}  // namespace llmkit
