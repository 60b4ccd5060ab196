// The inference engine; see llmkit/engine.hpp.
#include "llmkit/engine.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "llmkit/error.hpp"
#include "llmkit/scheduler.hpp"
#include "llmkit/tok.hpp"
#include "llmkit/tool.hpp"

namespace llmkit {

Engine::Engine(Model& model, const Tokenizer* tokenizer, int max_batch, int max_len)
    : model_(model), tok_(tokenizer), max_batch_(std::max(1, max_batch)),
      max_len_(std::min(max_len, model.config().max_seq)) {}

Engine::~Engine() = default;

std::vector<ScoredContinuation> Engine::score(
    const std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>>& requests) {
  std::vector<ScoredContinuation> out(requests.size());
  const int V = model_.config().vocab_size, Vp = model_.config().padded_vocab();
  if (!cache_) {  // slots of max_len_ positions each, tables fixed
    const ModelConfig& c = model_.config();
    cache_ = std::make_unique<KVCache>(model_.backend(), c.layers, max_batch_, max_len_, c.kv_heads * c.head_dim());
  }
  for (size_t b0 = 0; b0 < requests.size(); b0 += static_cast<size_t>(max_batch_)) {
    throw_if_stopped();
    const size_t b1 = std::min(requests.size(), b0 + static_cast<size_t>(max_batch_));
    std::vector<int32_t> rows;
    std::vector<CacheSegment> segs;
    std::vector<int> cont_start;  // row of each request's first continuation token
    std::vector<int> first_kept;  // index in the continuation of the first token scored
    for (size_t r = b0; r < b1; ++r) {
      const auto& [ctx, cont] = requests[r];
      if (cont.empty()) throw Error("", "score: an empty continuation");
      // Context then continuation, the last token not fed (nothing after it to predict); cut
      // from the left to fit the context window, as lm-evaluation-harness does.
      std::vector<int32_t> seq(ctx);
      seq.insert(seq.end(), cont.begin(), cont.end());
      if (ctx.empty()) throw Error("", "score: an empty context (give at least one token, e.g. <s>)");
      int keep = std::min<int>(static_cast<int>(seq.size()) - 1, max_len_);
      int drop = static_cast<int>(seq.size()) - 1 - keep;
      segs.push_back({static_cast<int>(r - b0), 0, keep, static_cast<int>(rows.size())});
      cont_start.push_back(static_cast<int>(rows.size()) + static_cast<int>(ctx.size()) - 1 - drop);
      first_kept.push_back(std::max(0, drop - static_cast<int>(ctx.size()) + 1));
      rows.insert(rows.end(), seq.begin() + drop, seq.end() - 1);
    }
    model_.forward_cached(rows.data(), static_cast<int>(rows.size()), segs, *cache_);
    const float* logits = model_.logits_on_host();
    // Log-softmax of each continuation row, on all threads (rows of V columns each).
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t r = b0; r < b1; ++r) {
      const auto& cont = requests[r].second;
      ScoredContinuation& sc = out[r];
      sc.greedy = true;
      for (size_t i = static_cast<size_t>(first_kept[r - b0]); i < cont.size(); ++i) {
        const int row = cont_start[r - b0] + static_cast<int>(i);
        const float* l = logits + static_cast<size_t>(row) * Vp;
        float m = l[0];
        int arg = 0;
        for (int j = 1; j < V; ++j)
          if (l[j] > m) m = l[j], arg = j;
        double s = 0;
        for (int j = 0; j < V; ++j) s += std::exp(static_cast<double>(l[j] - m));
        sc.logprob += static_cast<double>(l[cont[i]] - m) - std::log(s);
        sc.greedy = sc.greedy && arg == cont[i];
        ++sc.tokens;
      }
    }
  }
  return out;
}

double log_sum_exp(const float* row, int V, double scale) {
  float m = row[0];
  for (int j = 1; j < V; ++j) m = std::max(m, row[j]);
  double sum = 0;
  for (int j = 0; j < V; ++j) sum += std::exp(static_cast<double>(row[j] - m) * scale);
  return static_cast<double>(m) * scale + std::log(sum);
}

// log softmax(row / T) at t, from the raw logits
static float log_softmax_at(const float* row, int V, int32_t t, double inv_t) {
  return static_cast<float>(static_cast<double>(row[t]) * inv_t - log_sum_exp(row, V, inv_t));
}

int32_t sample_token(const float* logits, int V, const std::vector<int32_t>& history, size_t prompt_len,
                     const SamplingParams& p, std::mt19937_64& rng, float* logprob, float* entropy) {
  std::vector<double> l(logits, logits + V);
  const bool penalized = p.presence_penalty != 0.0 || p.frequency_penalty != 0.0;
  if (penalized) {
    std::vector<int> count(static_cast<size_t>(V), 0);
    for (size_t i = std::min(prompt_len, history.size()); i < history.size(); ++i)
      if (history[i] >= 0 && history[i] < V) ++count[static_cast<size_t>(history[i])];
    for (int j = 0; j < V; ++j)
      if (const int c = count[static_cast<size_t>(j)]; c > 0) l[static_cast<size_t>(j)] -= p.presence_penalty + p.frequency_penalty * c;
  }
  if (p.repetition_penalty != 1.0) {
    std::vector<char> seen(static_cast<size_t>(V), 0);
    for (int32_t t : history)
      if (t >= 0 && t < V && !seen[static_cast<size_t>(t)]) {
        seen[static_cast<size_t>(t)] = 1;
        double& x = l[static_cast<size_t>(t)];
        x = x > 0 ? x / p.repetition_penalty : x * p.repetition_penalty;
      }
  }
  auto greedy = [&] {
    const auto t = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
    if (logprob) *logprob = log_softmax_at(logits, V, t, 1.0);
    return t;
  };
  if (p.temperature <= 0 && !entropy) return greedy();
  const double T = p.temperature > 0 ? p.temperature : 1.0;
  const double m = *std::max_element(l.begin(), l.end());
  std::vector<double> prob(static_cast<size_t>(V));
  double all = 0;
  for (int j = 0; j < V; ++j) all += prob[static_cast<size_t>(j)] = std::exp((l[static_cast<size_t>(j)] - m) / T);
  if (entropy) {  // H = log Z - sum p z, z = (l - m) / T
    double pz = 0;
    for (int j = 0; j < V; ++j) pz += prob[static_cast<size_t>(j)] * (l[static_cast<size_t>(j)] - m) / T;
    *entropy = static_cast<float>(std::log(all) - pz / all);
  }
  if (p.temperature <= 0) return greedy();
  const double unit = static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);
  auto draw = [&]() -> int32_t {
    if (p.top_k <= 0 && p.top_p >= 1.0 && p.min_p <= 0) {
      // No cut-off: the draw walks the vocabulary in id order, no sorting (most of a
      // rollout's time otherwise).
      const double u = unit * all;
      double acc = 0;
      for (int j = 0; j < V; ++j) {
        acc += prob[static_cast<size_t>(j)];
        if (u < acc) return j;
      }
      return V - 1;
    }
    std::vector<int> idx(static_cast<size_t>(V));
    std::iota(idx.begin(), idx.end(), 0);
    // Most likely first; ties by id, so the order (and the draw) is reproducible. Only the head
    // that can be drawn is put in order: partial sorts, never the whole vocabulary unless the
    // head is that large.
    auto likelier = [&](int a, int b) {
      return prob[static_cast<size_t>(a)] != prob[static_cast<size_t>(b)] ? prob[static_cast<size_t>(a)] > prob[static_cast<size_t>(b)] : a < b;
    };
    size_t sorted = 0;
    auto sort_head = [&](size_t k) {
      if (k <= sorted) return;
      std::partial_sort(idx.begin(), idx.begin() + static_cast<long>(k), idx.end(), likelier);
      sorted = k;
    };
    size_t keep = static_cast<size_t>(V);
    if (p.top_k > 0) keep = std::min(keep, static_cast<size_t>(p.top_k));
    if (p.min_p > 0) {  // relative to the most likely token, whose prob[] is exp(0) = 1
      const double floor = p.min_p;
      size_t above = 0;
      for (int j = 0; j < V; ++j) above += prob[static_cast<size_t>(j)] >= floor;
      keep = std::min(keep, std::max<size_t>(1, above));
    }
    if (keep < static_cast<size_t>(V)) sort_head(keep);
    if (p.top_p < 1.0) {  // the smallest head whose mass reaches top_p of what is kept
      double mass = 0;
      if (keep == static_cast<size_t>(V)) mass = all;
      else
        for (size_t i = 0; i < keep; ++i) mass += prob[static_cast<size_t>(idx[i])];
      double t = 0;
      size_t k = 0;
      for (size_t want = std::min<size_t>(keep, 256);; want = std::min(keep, want * 4)) {
        sort_head(want);
        while (k < want && t < p.top_p * mass) t += prob[static_cast<size_t>(idx[k++])];
        if (t >= p.top_p * mass || want == keep) break;
      }
      keep = std::max<size_t>(1, k);
    }
    double total = 0;
    for (size_t i = 0; i < keep; ++i) total += prob[static_cast<size_t>(idx[i])];
    const double u = unit * total;
    double acc = 0;
    for (size_t i = 0; i < keep; ++i) {
      acc += prob[static_cast<size_t>(idx[i])];
      if (u < acc) return idx[i];
    }
    return idx[keep - 1];
  };
  const int32_t t = draw();
  // log softmax(logits / T) at t: from the sums just made, unless a repetition penalty changed
  // the logits they were made of.
  if (logprob)
    *logprob = p.repetition_penalty == 1.0 && !penalized ? static_cast<float>((l[static_cast<size_t>(t)] - m) / p.temperature - std::log(all))
                                           : log_softmax_at(logits, V, t, 1.0 / p.temperature);
  return t;
}

// Generation runs on the step-level scheduler (llmkit/scheduler.hpp), as llm-serve's does: the
// prompts' sequences go in at once, continuous batching does the rest.
std::vector<Generation> Engine::generate(const std::vector<std::vector<int32_t>>& prompts, const SamplingParams& p) {
  if (!p.stop.empty() && !tok_) throw Error("", "stop sequences need a tokenizer");
  if (p.n < 1 || p.n > max_batch_)
    throw Error("", "generate: " + std::to_string(p.n) + " samples a prompt with room for " + std::to_string(max_batch_) + " sequences");
  const size_t n = static_cast<size_t>(p.n);
  if (!p.seeds.empty() && p.seeds.size() != prompts.size() * n) throw Error("", "generate: a seed for each sequence, or none");
  if (!scheduler_) {
    SchedulerOptions o;
    o.max_seqs = max_batch_;
    o.context = max_len_;
    o.max_batch_tokens = max_batch_;
    scheduler_ = std::make_unique<Scheduler>(model_, tok_, o);
  }
  // The weights may have changed since the last call (a trainer's rollouts): no cached prefix
  // from then is valid. Within the call, a prompt's samples share its blocks.
  scheduler_->forget_prefixes();
  // Prefill whole batches at once unless told to keep to prefill_rows_ rows a pass.
  scheduler_->set_max_batch_tokens(prefill_rows_ > 0 ? prefill_rows_ : max_batch_ * max_len_);
  std::vector<Generation> out(prompts.size() * n);
  std::vector<std::pair<uint64_t, size_t>> ids;  // scheduler id, index in out
  const int room = std::max(1, max_len_ - p.max_tokens);
  for (size_t r = 0; r < prompts.size(); ++r)
    if (prompts[r].empty()) throw Error("", "generate: an empty prompt");
  try {
    for (size_t r = 0; r < prompts.size(); ++r) {
      const auto& pr = prompts[r];
      // Cut from the left to leave room for max_tokens.
      const int keep = std::min<int>(static_cast<int>(pr.size()), room);
      SequenceRequest sr;
      sr.prompt.assign(pr.end() - keep, pr.end());
      sr.params = p;
      sr.params.n = 1;
      sr.params.seeds.clear();
      sr.params.max_tokens = std::min(p.max_tokens, max_len_ - keep);
      sr.group = n > 1 ? ++groups_ : 0;
      sr.trace = true;
      sr.text_behind_prompt = false;
      for (size_t k = 0; k < n; ++k) {
        const size_t seq = r * n + k;
        sr.params.seed = p.seeds.empty() ? sequence_seed(p.seed, seq) : p.seeds[seq];
        ids.emplace_back(scheduler_->add(sr), seq);
      }
    }
    std::map<uint64_t, size_t> index(ids.begin(), ids.end());
    while (!scheduler_->idle()) {
      throw_if_stopped();
      for (SequenceUpdate& u : scheduler_->step()) {
        Generation& g = out[index.at(u.id)];
        g.tokens.insert(g.tokens.end(), u.tokens.begin(), u.tokens.end());
        g.logprobs.insert(g.logprobs.end(), u.sampled_logprobs.begin(), u.sampled_logprobs.end());
        g.entropies.insert(g.entropies.end(), u.entropies.begin(), u.entropies.end());
        g.text += u.text;
        if (!u.finish.empty()) g.finish = u.finish;
      }
    }
  } catch (...) {  // nothing of this call stays in the scheduler
    for (const auto& [id, seq] : ids) scheduler_->cancel(id);
    while (!scheduler_->idle()) scheduler_->step();
    throw;
  }
  return out;
}

}  // namespace llmkit
