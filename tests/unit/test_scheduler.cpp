// The step-level engine (lib/model/scheduler.cpp): the block pool's reference counts and prefix
// cache, text as a stream with stop strings held back, and generations that equal the batch
// engine's whatever the batch, the prefill chunks, the pool size (preemption) and the prefix
// cache, with cancelled sequences' blocks given back.
#include <catch2/catch.hpp>

#include <map>
#include <random>
#include <vector>

#include "llmkit/engine.hpp"
#include "llmkit/error.hpp"
#include "llmkit/scheduler.hpp"
#include "util.hpp"

using namespace llmkit;

namespace {

ModelConfig small(ModelConfig::Family f) { return test::tiny_model(f, 96); }
std::vector<int32_t> ids(int n, uint64_t seed) { return test::random_ids(n, seed); }

// Every sequence to its end; tokens by the order they were added.
std::vector<std::vector<int32_t>> run(Scheduler& s, const std::vector<std::vector<int32_t>>& prompts, const SamplingParams& p,
                                      std::vector<SequenceUpdate>* last = nullptr) {
  std::map<uint64_t, size_t> index;
  for (size_t i = 0; i < prompts.size(); ++i) index[s.add({prompts[i], p, -1})] = i;
  std::vector<std::vector<int32_t>> out(prompts.size());
  if (last) last->resize(prompts.size());
  for (int steps = 0; !s.idle(); ++steps) {
    REQUIRE(steps < 10000);
    for (SequenceUpdate& u : s.step()) {
      auto& toks = out[index.at(u.id)];
      toks.insert(toks.end(), u.tokens.begin(), u.tokens.end());
      if (last && !u.finish.empty()) (*last)[index.at(u.id)] = u;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("The block pool counts references, finds published blocks and evicts the least recently used", "[scheduler]") {
  BlockPool pool(3);
  const int32_t a = pool.allocate(), b = pool.allocate(), c = pool.allocate();
  CHECK(a != b);
  CHECK(b != c);
  CHECK(pool.allocate() == -1);
  CHECK(pool.in_use() == 3);
  std::vector<int32_t> ta(KVCache::kBlock, 7), tb(KVCache::kBlock, 8);
  const uint64_t ha = BlockPool::chain(0, ta.data()), hb = BlockPool::chain(ha, tb.data());
  CHECK(ha != hb);
  CHECK(BlockPool::chain(0, tb.data()) != hb);  // the same tokens after another prefix
  pool.publish(a, ha, ta.data());
  pool.publish(b, hb, tb.data());
  CHECK(pool.find(ha, ta.data()) == a);  // shared: two references
  pool.release(a);
  CHECK(pool.available() == 0);
  pool.release(a);
  pool.release(b);
  pool.release(c);
  CHECK(pool.available() == 3);
  CHECK(pool.find(ha, tb.data()) == -1);  // the hash without its tokens is not a hit
  // c was never published: it goes first; then a, released before b.
  CHECK(pool.allocate() == c);
  CHECK(pool.allocate() == a);
  CHECK(pool.find(ha, ta.data()) == -1);
  CHECK(pool.find(hb, tb.data()) == b);
  CHECK(pool.allocate() == -1);
  CHECK_THROWS_AS((pool.release(b), pool.release(b)), Error);
  // Forgotten (new weights): still there to allocate, never found.
  pool.publish(c, hb, tb.data());
  pool.release(c);
  pool.release(a);
  CHECK(pool.available() == 3);
  pool.forget();
  CHECK(pool.available() == 3);
  CHECK(pool.find(hb, tb.data()) == -1);
}

TEST_CASE("Text streams hold back stop strings' beginnings and incomplete characters", "[scheduler]") {
  const Tokenizer& tok = test::chat_tokenizer(false);
  auto enc = [&](const std::string& s) {
    std::vector<uint32_t> v;
    tok.encode(s, v);
    return std::vector<int32_t>(v.begin(), v.end());
  };
  const std::vector<int32_t> prompt = enc("say");
  {
    TextStream ts(&tok, prompt, {"re pa"});
    std::string streamed;
    bool stopped = false;
    for (int32_t t : enc("hello there paris add")) {
      stopped = ts.push(t);
      streamed += ts.take(stopped);
      if (stopped) break;
      CHECK(ts.text().compare(0, streamed.size(), streamed) == 0);
      CHECK(streamed.find("re") == std::string::npos);  // "re" could begin "re pa": held
    }
    CHECK(stopped);
    CHECK(streamed == " hello the");  // the leading space kept: decoded behind the prompt
    CHECK(ts.text() == streamed);
  }
  {
    TextStream ts(&tok, prompt, {});
    std::string streamed;
    const std::vector<int32_t> cafe = enc("café");
    for (size_t i = 0; i < cafe.size(); ++i) {
      ts.push(cafe[i]);
      const std::string part = ts.take();
      CHECK(part.find("\xEF\xBF\xBD") == std::string::npos);  // a lone byte of é never goes out
      streamed += part;
    }
    streamed += ts.take(true);
    CHECK(streamed == " café");
  }
}

TEST_CASE("The scheduler's greedy tokens are the engine's, whatever the batch, the chunks, the pool or the cache", "[scheduler]") {
  for (auto f : {ModelConfig::Family::llama, ModelConfig::Family::gpt2}) {
    auto be = make_cpu_backend();
    Model m(small(f), *be);
    m.init(3);
    std::vector<int32_t> shared = ids(40, 99);
    std::vector<std::vector<int32_t>> prompts = {ids(5, 1), ids(23, 2), shared, ids(1, 3), ids(17, 4)};
    prompts.push_back(shared);
    prompts.back().insert(prompts.back().end(), {5, 6, 7});
    SamplingParams p;
    p.max_tokens = 20;
    p.stop_at_eos = false;
    std::vector<std::vector<int32_t>> expect;
    Engine engine(m, nullptr, 1, 96);
    for (const auto& pr : prompts) expect.push_back(engine.generate({pr}, p)[0].tokens);
    struct Case {
      const char* what;
      SchedulerOptions o;
      bool preempts;
    };
    const std::vector<Case> cases = {
        {"all at once", {8, 0, 512, true, 0}, false},
        {"3 at a time, 7 rows a step (prefills in chunks)", {3, 0, 7, true, 0}, false},
        {"a pool of 8 blocks (preemption)", {6, 8, 64, true, 0}, true},
        {"no prefix cache, 1 at a time", {1, 0, 16, false, 0}, false},
    };
    for (const Case& c : cases) {
      INFO(c.what);
      Scheduler s(m, nullptr, c.o);
      std::vector<SequenceUpdate> last;
      CHECK(run(s, prompts, p, &last) == expect);
      CHECK(s.kv_blocks_in_use() == 0);
      CHECK((s.counters().preemptions > 0) == c.preempts);
      for (const auto& u : last) {
        CHECK(u.finish == "length");
        CHECK(u.completion_tokens == 20);
      }
      CHECK(s.counters().generation_tokens == 20 * prompts.size());
      // Again: the prompts' full blocks are in the cache now.
      const uint64_t hits = s.counters().prefix_hits;
      CHECK(run(s, prompts, p, &last) == expect);
      if (c.o.max_seqs == 8) {  // a pool of 48 blocks: nothing evicted
        CHECK(last[2].cached_tokens == 32);  // (40 - 1) / 16 blocks: the last token is computed again
        CHECK(last[5].cached_tokens == 32);
        CHECK(s.counters().prefix_hits - hits == 0 + 16 + 32 + 0 + 16 + 32);
      }
    }
  }
}

TEST_CASE("A cancelled sequence ends at the next step and gives its blocks back", "[scheduler]") {
  auto be = make_cpu_backend();
  Model m(small(ModelConfig::Family::llama), *be);
  m.init(4);
  Scheduler s(m, nullptr, {4, 0, 64, true, 0});
  SamplingParams p;
  p.max_tokens = 30;
  p.stop_at_eos = false;
  const uint64_t a = s.add({ids(20, 5), p, 2}), b = s.add({ids(9, 6), p, -1});
  s.step();
  s.step();
  CHECK(s.running() == 2);
  s.cancel(a);
  s.cancel(12345);  // unknown: ignored
  bool aborted = false;
  size_t b_tokens = 0;
  while (!s.idle())
    for (const auto& u : s.step()) {
      if (u.id == a) {
        CHECK_FALSE(aborted);
        aborted = u.finish == "abort";
      }
      if (u.id == b) b_tokens += u.tokens.size();
      for (const auto& lp : u.logprobs) {  // a's: its token first among equals or below the best
        CHECK(lp.top.size() == 2);
        CHECK(lp.top[0].second >= lp.top[1].second);
        CHECK(lp.logprob <= lp.top[0].second);
      }
    }
  CHECK(aborted);
  CHECK(b_tokens == 30 - 2);  // two before the cancel, in the two steps
  CHECK(s.kv_blocks_in_use() == 0);
  CHECK(s.counters().aborted == 1);
  CHECK_THROWS_AS(s.add({ids(90, 7), p, -1}), Error);  // 90 + 30 above the context of 96
  CHECK_THROWS_AS(s.add({{}, p, -1}), Error);
  CHECK_THROWS_AS(s.add({{61}, p, -1}), Error);
}

TEST_CASE("A group's samples wait for its prompt's blocks, then draw as they would alone", "[scheduler]") {
  auto be = make_cpu_backend();
  Model m(small(ModelConfig::Family::gpt2), *be);
  m.init(8);
  SamplingParams p;
  p.max_tokens = 12;
  p.stop_at_eos = false;
  p.temperature = 1.0;
  const std::vector<int32_t> a = ids(37, 21), b = ids(20, 22);
  // Alone: one sequence at a time, each with its seed.
  std::vector<std::vector<int32_t>> alone;
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    Scheduler s(m, nullptr, {1, 0, 64, false, 0});
    SamplingParams q = p;
    q.seed = seed;
    alone.push_back(run(s, {seed <= 3 ? a : b}, q)[0]);
  }
  // Together: groups of 3 for each prompt, added at once.
  Scheduler s(m, nullptr, {8, 0, 512, true, 0});
  std::map<uint64_t, size_t> index;
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    SequenceRequest r{seed <= 3 ? a : b, p, -1};
    r.params.seed = seed;
    r.group = seed <= 3 ? 1 : 2;
    index[s.add(r)] = seed - 1;
  }
  std::vector<std::vector<int32_t>> got(6);
  std::vector<int> cached(6, -1);
  int first_step_running = -1;
  while (!s.idle()) {
    auto updates = s.step();
    if (first_step_running < 0) first_step_running = s.running();
    for (const auto& u : updates) {
      got[index.at(u.id)].insert(got[index.at(u.id)].end(), u.tokens.begin(), u.tokens.end());
      cached[index.at(u.id)] = u.cached_tokens;
    }
  }
  CHECK(got == alone);
  CHECK(first_step_running == 2);  // the two leaders; their samples the step after
  CHECK(cached == std::vector<int>{0, 32, 32, 0, 16, 16});
}

TEST_CASE("Adapters take turns by step; the prefix cache keeps each adapter's blocks apart", "[scheduler]") {
  auto be = make_cpu_backend();
  Model m(small(ModelConfig::Family::llama), *be);
  m.init(9);
  int active = 0, switches = 0;
  SchedulerOptions o{8, 0, 64, true, 0};
  o.use_adapter = [&](int a) {
    active = a;
    ++switches;
  };
  Scheduler s(m, nullptr, o);
  SamplingParams p;
  p.max_tokens = 6;
  p.stop_at_eos = false;
  const std::vector<int32_t> prompt = ids(30, 31);
  std::map<uint64_t, int> adapter_of;
  for (int a : {0, 1, 2, 1, 0, 2}) {
    SequenceRequest r{prompt, p, -1};
    r.adapter = a;
    adapter_of[s.add(r)] = a;
  }
  std::map<uint64_t, int> tokens;
  while (!s.idle())
    for (const auto& u : s.step()) {
      CHECK(adapter_of.at(u.id) == active);  // a step runs one adapter's sequences
      tokens[u.id] += static_cast<int>(u.tokens.size());
    }
  for (const auto& [id, n] : tokens) CHECK(n == 6);
  CHECK(switches >= 3 * 6 - 1);  // three adapters in turn, a step each
  // The same prompt again under adapter 1: its own blocks are found; under adapter 3, none.
  auto cached = [&](int a) {
    SequenceRequest r{prompt, p, -1};
    r.adapter = a;
    const uint64_t id = s.add(r);
    int c = -1;
    while (!s.idle())
      for (const auto& u : s.step())
        if (u.id == id) c = u.cached_tokens;
    return c;
  };
  CHECK(cached(1) == 16);
  CHECK(cached(3) == 0);
  Scheduler plain(m, nullptr, {8, 0, 64, true, 0});
  SequenceRequest r{prompt, p, -1};
  r.adapter = 1;
  CHECK_THROWS_AS(plain.add(r), Error);
}
