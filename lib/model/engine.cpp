// The inference engine; see llmkit/engine.hpp.
#include "llmkit/engine.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "llmkit/error.hpp"
#include "llmkit/tok.hpp"
#include "llmkit/tool.hpp"

namespace llmkit {

Engine::Engine(Model& model, const Tokenizer* tokenizer, int max_batch, int max_len)
    : model_(model), tok_(tokenizer), max_batch_(std::max(1, max_batch)),
      max_len_(std::min(max_len, model.config().max_seq)) {
  const ModelConfig& c = model.config();
  cache_ = std::make_unique<KVCache>(model.backend(), c.layers, max_batch_, max_len_, c.kv_heads * c.head_dim());
}

Engine::~Engine() = default;

std::vector<ScoredContinuation> Engine::score(
    const std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>>& requests) {
  std::vector<ScoredContinuation> out(requests.size());
  const int V = model_.config().vocab_size, Vp = model_.config().padded_vocab();
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

// log softmax(row / T) at t, from the raw logits
static float log_softmax_at(const float* row, int V, int32_t t, double inv_t) {
  float m = row[0];
  for (int j = 1; j < V; ++j) m = std::max(m, row[j]);
  double sum = 0;
  for (int j = 0; j < V; ++j) sum += std::exp(static_cast<double>(row[j] - m) * inv_t);
  return static_cast<float>(static_cast<double>(row[t] - m) * inv_t - std::log(sum));
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

std::vector<Generation> Engine::generate(const std::vector<std::vector<int32_t>>& prompts, const SamplingParams& p) {
  if (!p.stop.empty() && !tok_) throw Error("", "stop sequences need a tokenizer");
  if (p.n < 1 || p.n > max_batch_)
    throw Error("", "generate: " + std::to_string(p.n) + " samples a prompt with room for " + std::to_string(max_batch_) + " sequences");
  const size_t n = static_cast<size_t>(p.n);
  if (!p.seeds.empty() && p.seeds.size() != prompts.size() * n) throw Error("", "generate: a seed for each sequence, or none");
  const int Vp = model_.config().padded_vocab();
  const int eos = tok_ ? tok_->eos_id() : -1;
  // log p(t) under the row's softmax
  std::vector<Generation> out(prompts.size() * n);
  const size_t per_batch = static_cast<size_t>(max_batch_) / n;  // prompts a batch holds
  for (size_t b0 = 0; b0 < prompts.size(); b0 += per_batch) {
    const size_t b1 = std::min(prompts.size(), b0 + per_batch);
    struct Live {
      size_t seq;  // index in out
      int slot, len;
      size_t prompt_len;
      std::vector<int32_t> history;
      std::mt19937_64 rng;
    };
    std::vector<Live> live;
    std::vector<int32_t> rows;
    std::vector<CacheSegment> segs;
    const int room = std::max(1, max_len_ - p.max_tokens);
    for (size_t r = b0; r < b1; ++r) {
      const auto& pr = prompts[r];
      if (pr.empty()) throw Error("", "generate: an empty prompt");
      const int keep = std::min<int>(static_cast<int>(pr.size()), room);
      const int first_slot = static_cast<int>((r - b0) * n);
      segs.push_back({first_slot, 0, keep, static_cast<int>(rows.size())});
      rows.insert(rows.end(), pr.end() - keep, pr.end());
      for (size_t k = 0; k < n; ++k) {
        const size_t seq = r * n + k;
        const uint64_t seed = p.seeds.empty() ? p.seed * 0x9E3779B97F4A7C15ull + seq : p.seeds[seq];
        live.push_back({seq, first_slot + static_cast<int>(k), keep, static_cast<size_t>(keep), std::vector<int32_t>(pr.end() - keep, pr.end()), std::mt19937_64(seed)});
      }
    }
    // The prefill: at once, or in parts of at most prefill_rows_ rows (whole prompts), keeping
    // each prompt's last logits only (the LM head runs on those rows alone).
    std::vector<float> first_logits(segs.size() * static_cast<size_t>(Vp));
    for (size_t s0 = 0; s0 < segs.size();) {
      size_t s1 = s0;
      int count = 0;
      while (s1 < segs.size() && (s1 == s0 || prefill_rows_ <= 0 || count + segs[s1].count <= prefill_rows_)) count += segs[s1++].count;
      std::vector<CacheSegment> part(segs.begin() + static_cast<long>(s0), segs.begin() + static_cast<long>(s1));
      const int base = segs[s0].row;
      for (CacheSegment& sg : part) sg.row -= base;
      model_.forward_cached(rows.data() + base, count, part, *cache_, true);
      const float* lg = model_.logits_on_host();
      std::copy_n(lg, (s1 - s0) * static_cast<size_t>(Vp), first_logits.begin() + static_cast<long>(s0 * static_cast<size_t>(Vp)));
      s0 = s1;
    }
    // The other samples of a prompt start from a copy of its keys and values.
    if (n > 1)
      for (const CacheSegment& sg : segs)
        for (size_t k = 1; k < n; ++k) cache_->copy_positions(sg.slot + static_cast<int>(k), sg.slot, sg.count);
    std::vector<int> last_row;
    for (size_t s = 0; s < segs.size(); ++s)
      for (size_t k = 0; k < n; ++k) last_row.push_back(static_cast<int>(s));
    bool first = true;
    while (!live.empty()) {
      throw_if_stopped();
      const float* logits = first ? first_logits.data() : model_.logits_on_host();
      first = false;
      std::vector<Live> next;
      std::vector<int32_t> step_tokens;
      std::vector<CacheSegment> step_segs;
      for (size_t i = 0; i < live.size(); ++i) {
        Live& s = live[i];
        Generation& g = out[s.seq];
        const float* row = logits + static_cast<size_t>(last_row[i]) * static_cast<size_t>(Vp);
        float lp = 0, h = 0;
        const int32_t t = sample_token(row, model_.config().vocab_size, s.history, s.prompt_len, p, s.rng, &lp,
                                       p.entropy ? &h : nullptr);
        g.logprobs.push_back(lp);
        if (p.entropy) g.entropies.push_back(h);
        if (p.stop_at_eos && t == eos) {
          g.finish = "eos";
          continue;
        }
        g.tokens.push_back(t);
        s.history.push_back(t);
        if (!p.stop.empty()) {  // the text so far, to look for a stop sequence
          std::vector<uint32_t> ids(g.tokens.begin(), g.tokens.end());
          g.text = tok_->decode(ids.data(), ids.size());
          size_t cut = std::string::npos;
          for (const auto& stop : p.stop)
            if (!stop.empty()) cut = std::min(cut, g.text.find(stop));
          if (cut != std::string::npos) {
            g.text.resize(cut);
            g.finish = "stop";
            continue;
          }
        }
        if (static_cast<int>(g.tokens.size()) >= p.max_tokens || s.len + 1 >= max_len_) {
          g.finish = "length";
          continue;
        }
        step_segs.push_back({s.slot, s.len, 1, static_cast<int>(step_tokens.size())});
        step_tokens.push_back(t);
        ++s.len;
        next.push_back(std::move(s));
      }
      live = std::move(next);
      if (live.empty()) break;
      model_.forward_cached(step_tokens.data(), static_cast<int>(step_tokens.size()), step_segs, *cache_);
      last_row.clear();
      for (size_t i = 0; i < live.size(); ++i) last_row.push_back(static_cast<int>(i));
    }
  }
  if (tok_)  // the text of the sequences not already decoded and cut at a stop sequence
    for (Generation& g : out)
      if (g.finish != "stop") {
        std::vector<uint32_t> ids(g.tokens.begin(), g.tokens.end());
        g.text = tok_->decode(ids.data(), ids.size());
      }
  return out;
}

}  // namespace llmkit
