// llm-eval: perplexity, multiple choice, generation; see llmkit/eval.hpp.
#include "llmkit/eval.hpp"
#include "llmkit/classify.hpp"
#include "llmkit/mlm.hpp"

#include <re2/re2.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <map>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>

#include "llmkit/checkpoint.hpp"
#include "llmkit/engine.hpp"
#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/shard.hpp"
#include "llmkit/tok.hpp"
#include "llmkit/tool.hpp"
#include "llmkit/words.hpp"
#include "eval_cache.hpp"

namespace llmkit {

// ---- Prompts ---------------------------------------------------------------------------------------

namespace {
template <class Ex, class Ctx, class Ans>
std::string assemble(const std::string& description, const std::vector<const Ex*>& shots, const std::string& context,
                     Ctx ctx_of, Ans answer_of) {
  std::string s = description;
  for (const Ex* shot : shots) s += ctx_of(*shot) + " " + answer_of(*shot) + "\n\n";
  return s + context;
}
}  // namespace

std::string mc_context(const McExample& ex, const std::vector<const McExample*>& shots) {
  return assemble(ex.description, shots, ex.context, [](const McExample& e) { return e.context; },
                  [](const McExample& e) { return e.choices.at(static_cast<size_t>(e.gold)); });
}

std::string gen_context(const GenExample& ex, const std::vector<const GenExample*>& shots) {
  return assemble(ex.description, shots, ex.prompt, [](const GenExample& e) { return e.prompt; },
                  [](const GenExample& e) { return e.answer; });
}

std::vector<size_t> choose_shots(size_t i, size_t n, int k, uint64_t seed) {
  std::vector<size_t> out;
  if (k <= 0 || n <= 1) return out;
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + i + 1);
  std::vector<size_t> pool;
  for (size_t j = 0; j < n; ++j)
    if (j != i) pool.push_back(j);
  for (size_t t = 0; t < pool.size() && static_cast<int>(out.size()) < k; ++t) {  // partial Fisher-Yates
    size_t r = t + static_cast<size_t>(rng() % (pool.size() - t));
    std::swap(pool[t], pool[r]);
    out.push_back(pool[t]);
  }
  return out;
}

std::pair<int, int> mc_predict(const std::vector<double>& ll, const std::vector<std::string>& choices) {
  if (ll.empty() || ll.size() != choices.size()) throw Error("", "mc_predict: one log-likelihood per choice");
  int best = 0, best_norm = 0;
  for (size_t c = 1; c < ll.size(); ++c) {
    if (ll[c] > ll[static_cast<size_t>(best)]) best = static_cast<int>(c);
    // Length in characters (code points), as Python's len() in lm-evaluation-harness.
    auto norm = [&](size_t k) { return ll[k] / static_cast<double>(std::max<size_t>(1, text::count_code_points(choices[k]))); };
    if (norm(c) > norm(static_cast<size_t>(best_norm))) best_norm = static_cast<int>(c);
  }
  return {best, best_norm};
}

// ---- GSM8K extraction ----------------------------------------------------------------------------

std::string extract_regex(const std::string& text, const std::string& regex) {
  RE2::Options quiet;
  quiet.set_log_errors(false);
  RE2 re(regex, quiet);
  if (!re.ok()) throw UsageError("--regex: " + re.error());
  re2::StringPiece in(text), group;
  if (re.NumberOfCapturingGroups() == 0) {
    re2::StringPiece whole;
    RE2 wrapped("(" + regex + ")", quiet);
    return RE2::PartialMatch(in, wrapped, &whole) ? std::string(whole) : "[invalid]";
  }
  return RE2::PartialMatch(in, re, &group) ? std::string(group) : "[invalid]";
}

std::string extract_strict(const std::string& text) { return extract_regex(text, R"(#### (\-?[0-9\.\,]+))"); }

std::string extract_flexible(const std::string& text) {
  static const RE2 re(R"((-?[$0-9.,]{2,})|(-?[0-9]+))");
  re2::StringPiece in(text), a, b;
  std::string last = "[invalid]";
  while (RE2::FindAndConsume(&in, re, &a, &b)) last = !a.empty() ? std::string(a) : std::string(b);
  return last;
}

std::string normalize_answer(const std::string& s) {
  std::string t = s;
  static const RE2 upto_hashes(R"((?s).*#### )");
  RE2::GlobalReplace(&t, upto_hashes, "");
  static const RE2 commas(","), dollars(R"(\$)"), final_dot(R"(\.$)");
  RE2::GlobalReplace(&t, commas, "");
  RE2::GlobalReplace(&t, dollars, "");
  RE2::GlobalReplace(&t, final_dot, "");
  for (char& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return t;
}

// ---- The run -------------------------------------------------------------------------------------

namespace {

using Clock = std::chrono::steady_clock;

struct Metric {
  double value = 0, stderr_ = NAN;
};

// Mean and its standard error (sample standard deviation / sqrt(n)), as lm-evaluation-harness.
Metric mean_stderr(const std::vector<double>& xs) {
  Metric m;
  if (xs.empty()) return m;
  double s = 0;
  for (double x : xs) s += x;
  m.value = s / static_cast<double>(xs.size());
  if (xs.size() > 1) {
    double v = 0;
    for (double x : xs) v += (x - m.value) * (x - m.value);
    m.stderr_ = std::sqrt(v / static_cast<double>(xs.size() - 1) / static_cast<double>(xs.size()));
  }
  return m;
}

nlohmann::json metric_json(const Metric& m) {
  nlohmann::json j;
  j["value"] = m.value;
  j["stderr"] = std::isnan(m.stderr_) ? nlohmann::json(nullptr) : nlohmann::json(m.stderr_);
  return j;
}

// What a task file that is not JSONL rows is, said before a JSON parser's message would be.
void check_task_file(const std::string& path, const std::string& what) {
  auto in = open_input(path);
  std::string head(512, '\0');
  size_t n = 0;
  for (size_t r; n < head.size() && (r = in->read(head.data() + n, head.size() - n)) > 0;) n += r;
  head.resize(n);
  const std::string kind = non_jsonl_kind(head);
  if (kind.empty()) return;
  const bool shard = kind == "an llmkit token shard" || kind == "an llm.c token file";
  throw Error(path, kind + ", not JSONL " + what + " rows" +
                        (shard ? ": token shards are read by llm-eval ppl" : " (see llm-eval(1), TASK FILES)"));
}

std::vector<nlohmann::json> read_rows(const std::vector<std::string>& inputs, const std::string& what) {
  std::vector<nlohmann::json> rows;
  for (const auto& path : inputs) {
    check_task_file(path, what);
    auto lines = open_lines(path);
    std::string_view line;
    bool too_long = false;
    while (lines->next(line, too_long)) {
      if (too_long) throw Error(path + ":" + std::to_string(lines->line_number()), "line too long");
      if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
      try {
        rows.push_back(nlohmann::json::parse(line));
      } catch (const nlohmann::json::parse_error& e) {
        throw Error(path + ":" + std::to_string(lines->line_number()),
                    "not a JSON object: invalid JSON at byte " + std::to_string(e.byte) + " of the line");
      }
      if (!rows.back().is_object())
        throw Error(path + ":" + std::to_string(lines->line_number()), what + " rows are JSON objects");
      rows.back()["__where"] = path + ":" + std::to_string(lines->line_number());
    }
  }
  return rows;
}

McExample mc_from(const nlohmann::json& j, const std::string& where) {
  McExample e;
  try {
    e.context = j.at("context").get<std::string>();
    e.choices = j.at("choices").get<std::vector<std::string>>();
    e.gold = j.at("gold").get<int>();
    if (j.contains("id")) e.id = j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump();
    if (j.contains("description")) e.description = j["description"].get<std::string>();
    if (j.contains("fewshot"))
      for (const auto& s : j["fewshot"]) e.fewshot.push_back(mc_from(s, where));
  } catch (const nlohmann::json::exception& ex) {
    throw Error(where, std::string("not a multiple-choice row {context, choices, gold}: ") + ex.what());
  }
  if (e.choices.empty() || e.gold < 0 || e.gold >= static_cast<int>(e.choices.size()))
    throw Error(where, "gold " + std::to_string(e.gold) + " is not an index of the " + std::to_string(e.choices.size()) + " choices");
  return e;
}

GenExample gen_from(const nlohmann::json& j, const std::string& where) {
  GenExample e;
  try {
    e.prompt = j.at("prompt").get<std::string>();
    e.answer = j.at("answer").get<std::string>();
    if (j.contains("id")) e.id = j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump();
    if (j.contains("description")) e.description = j["description"].get<std::string>();
    if (j.contains("fewshot"))
      for (const auto& s : j["fewshot"]) e.fewshot.push_back(gen_from(s, where));
  } catch (const nlohmann::json::exception& ex) {
    throw Error(where, std::string("not a generative row {prompt, answer}: ") + ex.what());
  }
  return e;
}

// The shots of example i: the first k of its own "fewshot", else k others of the task.
template <class Ex>
std::vector<const Ex*> shots_for(const std::vector<Ex>& ex, size_t i, int k, uint64_t seed) {
  std::vector<const Ex*> shots;
  if (!ex[i].fewshot.empty()) {
    for (int j = 0; j < std::min<int>(k, static_cast<int>(ex[i].fewshot.size())); ++j)
      shots.push_back(&ex[i].fewshot[static_cast<size_t>(j)]);
  } else {
    for (size_t j : choose_shots(i, ex.size(), k, seed)) shots.push_back(&ex[j]);
  }
  return shots;
}

// The 0/1 outcomes `key` of the rows of every block, in example order.
std::vector<double> outcomes(const std::vector<nlohmann::json>& blocks, const char* key) {
  std::vector<double> xs;
  for (const auto& b : blocks)
    for (const auto& row : b["rows"]) xs.push_back(row.at(key).get<bool>() ? 1.0 : 0.0);
  return xs;
}

class Evaluator {
 public:
  Evaluator(const EvalConfig& cfg) : cfg_(cfg), comm_(Comm::world()), be_(make_backend(cfg.device, cfg.precision, comm_.local_rank())) {}
  nlohmann::json run(const std::string& kind, const std::vector<std::string>& inputs);
  // After the report is written: the cache has served its purpose.
  void done() {
    if (cache_) cache_->remove();
  }

 private:
  using Compute = std::function<nlohmann::json(size_t first, size_t last)>;
  // The model, and its tokenizer (an Error without one when need_tokenizer): a language model
  // (a decoder: ppl, mc, gen), an encoder's MLM (mlm) or a sequence classifier (classify).
  enum class Wants { lm, mlm, classifier };
  void load(bool need_tokenizer, Wants wants = Wants::lm);
  // ppl's window: --seq-len, else the length the checkpoint was trained with (so that the loss
  // of the validation shards is the val_loss llm-pretrain logged), else the model's context (at
  // most 1024).
  int window_length() const {
    if (cfg_.seq_len > 0) return cfg_.seq_len;
    if (lm_.train_seq_len > 0) return std::min(lm_.train_seq_len, lm_.model->config().max_seq);
    return std::min(lm_.model->config().max_seq, 1024);
  }
  // Blocks of batch_size examples, dealt to the ranks in turn, so a block holds the same
  // examples whatever the rank count.
  bool mine(size_t block) const { return static_cast<int>(block % static_cast<size_t>(comm_.size())) == comm_.rank(); }
  std::vector<int32_t> encode(const std::string& s) const {
    std::vector<uint32_t> ids;
    tok_->encode(s, ids);
    return std::vector<int32_t>(ids.begin(), ids.end());
  }
  std::pair<std::vector<int32_t>, std::vector<int32_t>> encode_pair(std::string context, std::string cont) const;
  int32_t doc_start() const { return tok_->eos_id() >= 0 ? tok_->eos_id() : tok_->bos_id(); }
  // What the results depend on: the task type, the weights, the tokenizer, the task files, the
  // device and every option that changes a score; `options` adds the task type's own.
  nlohmann::json identity(const std::string& kind, const std::vector<std::string>& inputs, nlohmann::json options) const;
  // Evaluates this rank's blocks of the n examples with compute(first, last), each block's
  // record taken from the cache when an earlier run finished it, else computed and appended to
  // the cache; returns every block's record in block order on rank 0 (empty elsewhere).
  std::vector<nlohmann::json> run_blocks(size_t n, const nlohmann::json& id, const Compute& compute);
  void check_stop(size_t done, size_t total) const;
  nlohmann::json finish(nlohmann::json report, const std::vector<nlohmann::json>& blocks);

  nlohmann::json ppl_shards(const std::vector<std::string>& inputs);
  nlohmann::json ppl_text(const std::vector<std::string>& inputs);
  nlohmann::json mc(const std::vector<std::string>& inputs);
  nlohmann::json gen(const std::vector<std::string>& inputs);
  nlohmann::json mlm(const std::vector<std::string>& inputs);
  nlohmann::json classify(const std::vector<std::string>& inputs);

  const EvalConfig& cfg_;
  Comm& comm_;
  std::unique_ptr<Backend> be_;
  LoadedModel lm_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<EvalCache> cache_;
  Clock::time_point t0_ = Clock::now();
  double tokens_ = 0;  // through the model in this run (cached blocks not counted)
};

void Evaluator::load(bool need_tokenizer, Wants wants) {
  ModelOptions mo;
  mo.inference = true;  // no gradient memory
  lm_ = open_model(cfg_.model, *be_, mo);
  const ModelConfig& c = lm_.model->config();
  if (wants == Wants::classifier && !c.classifier)
    throw UsageError(cfg_.model + " is not a sequence classifier (llm-sft --task classify makes one)");
  if (wants != Wants::classifier && c.classifier)
    throw UsageError(cfg_.model + " is a sequence classifier (no LM head): " +
                     (c.num_labels == 1 ? "score text with llm-rm score" : "evaluate it with llm-eval classify"));
  if (wants != Wants::classifier && c.encoder() != (wants == Wants::mlm))
    throw UsageError(wants == Wants::mlm ? cfg_.model + " is not an encoder: llm-eval mlm scores masked tokens of a BERT model (decoders: ppl)"
                                         : cfg_.model + " is a BERT encoder: score it with llm-eval mlm (masked tokens, pseudo-perplexity)");
  std::string tp = !cfg_.tokenizer.empty() ? cfg_.tokenizer : lm_.tokenizer;
  if (!tp.empty()) {
    tok_ = std::make_unique<Tokenizer>(tp);
    if (tok_->vocab_size() > static_cast<uint64_t>(lm_.model->config().vocab_size))
      throw Error(tp, "vocabulary of " + std::to_string(tok_->vocab_size()) + " is larger than the model's " +
                          std::to_string(lm_.model->config().vocab_size));
  } else if (need_tokenizer) {
    throw Error(cfg_.model, "has no tokenizer.model: give --tokenizer");
  }
}

// lm-evaluation-harness's encode_pair: the context's trailing spaces move to the continuation,
// the pair is encoded whole and split after the context's own tokens (so merges across the
// boundary count for the continuation). The context starts after a document separator.
std::pair<std::vector<int32_t>, std::vector<int32_t>> Evaluator::encode_pair(std::string context, std::string cont) const {
  size_t keep = context.find_last_not_of(' ');
  keep = keep == std::string::npos ? 0 : keep + 1;
  cont = context.substr(keep) + cont;
  context.resize(keep);
  std::vector<int32_t> whole = encode(context + cont), ctx = encode(context);
  std::vector<int32_t> c(whole.begin() + static_cast<long>(std::min(ctx.size(), whole.size())), whole.end());
  ctx.insert(ctx.begin(), doc_start());
  return {ctx, c};
}

nlohmann::json Evaluator::identity(const std::string& kind, const std::vector<std::string>& inputs,
                                   nlohmann::json options) const {
  nlohmann::json id;
  id["type"] = kind;
  // The weights: a checkpoint's model.safetensors, an adapter's tensors and its base's record.
  std::string weights;
  if (is_directory(lm_.source)) {
    for (const char* f : {"/model.safetensors", "/adapter_model.safetensors", "/llmkit_base.json"})
      if (file_size(lm_.source + f) > 0) weights += file_digest(lm_.source + f);
  } else {
    weights = file_digest(lm_.source);
  }
  id["model"] = {{"path", lm_.source}, {"weights", weights}};
  if (tok_) id["tokenizer"] = tok_->hash();
  for (const auto& p : inputs) id["inputs"].push_back({{"path", p}, {"digest", file_digest(p)}});
  id["device"] = be_->name();
  if (std::string(be_->name()) != "cpu") id["precision"] = cfg_.precision;
  options["batch_size"] = cfg_.batch_size;
  options["limit"] = cfg_.limit;
  id["options"] = std::move(options);
  return id;
}

void Evaluator::check_stop(size_t done, size_t total) const {
  if (!stop_requested()) return;
  if (stop_signal() == 0) throw_if_stopped();  // another thread's error
  std::string msg = "stopped by signal " + std::to_string(stop_signal()) + " after " + std::to_string(done) + " of " +
                    std::to_string(total) + " examples";
  if (cache_) msg += "; their results are kept in " + cache_->path() + ": the same command continues from there";
  throw Error("", msg);
}

std::vector<nlohmann::json> Evaluator::run_blocks(size_t n, const nlohmann::json& id, const Compute& compute) {
  const size_t B = static_cast<size_t>(cfg_.batch_size), blocks = (n + B - 1) / B;
  if (!cfg_.cache.empty()) cache_ = std::make_unique<EvalCache>(cfg_.cache, id, comm_);
  size_t total = 0, cached = 0;
  for (size_t b = 0; b < blocks; ++b) {
    if (!mine(b)) continue;
    const size_t k = std::min(n, (b + 1) * B) - b * B;
    total += k;
    if (cache_ && cache_->find(b)) cached += k;
  }
  if (cache_ && cache_->size() > 0 && comm_.rank() == 0)
    LLMKIT_INFO("resuming from %s: %zu of the %zu examples%s evaluated already", cache_->path().c_str(), cached, total,
                comm_.size() > 1 ? " of rank 0" : "");
  // Rank 0 shows its progress; the ranks advance together.
  std::unique_ptr<Progress> progress;
  if (comm_.rank() == 0) progress = std::make_unique<Progress>(Progress::Counting{}, "examples", total, "tokens");
  std::string records;
  size_t done = 0;
  for (size_t b = 0; b < blocks; ++b) {
    if (!mine(b)) continue;
    const size_t first = b * B, last = std::min(n, first + B);
    nlohmann::json rec;
    if (const nlohmann::json* c = cache_ ? cache_->find(b) : nullptr) {
      rec = *c;
    } else {
      check_stop(done, total);
      try {
        rec = compute(first, last);
      } catch (const Error&) {
        check_stop(done, total);  // a stop inside the block (the engine checks): say what is kept
        throw;
      }
      rec["block"] = b;
      if (cache_) cache_->add(rec);
    }
    records += rec.dump() + "\n";
    done += last - first;
    if (progress) progress->update(done, static_cast<uint64_t>(tokens_));
  }
  if (progress) progress->finish();
  std::vector<nlohmann::json> all;
  for (const auto& part : comm_.gather(records))
    for (size_t b = 0; b < part.size();) {
      const size_t e = part.find('\n', b);
      all.push_back(nlohmann::json::parse(part.substr(b, e - b)));
      b = e + 1;
    }
  std::sort(all.begin(), all.end(), [](const nlohmann::json& x, const nlohmann::json& y) {
    return x["block"].get<size_t>() < y["block"].get<size_t>();
  });
  return all;
}

nlohmann::json Evaluator::finish(nlohmann::json report, const std::vector<nlohmann::json>& blocks) {
  // Per-example logs, on rank 0 in example order: the rows of the blocks.
  if (!cfg_.log_samples.empty() && comm_.rank() == 0) {
    std::string text;
    for (const auto& b : blocks)
      if (b.contains("rows"))
        for (const auto& row : b["rows"]) text += row.dump() + "\n";
    auto out = OutputStream::open(cfg_.log_samples, false);
    out->write(text);
    out->commit();
  }
  double secs = std::chrono::duration<double>(Clock::now() - t0_).count();
  double tokens = comm_.allreduce_sum_double(tokens_);
  report["model"] = lm_.source;
  report["wall_seconds"] = secs;
  report["tokens_per_sec"] = tokens / std::max(secs, 1e-9);
  report["ranks"] = comm_.size();
  return comm_.rank() == 0 ? report : nlohmann::json();
}

// ---- ppl on token shards ----

nlohmann::json Evaluator::ppl_shards(const std::vector<std::string>& inputs) {
  load(false);
  Model& m = *lm_.model;
  const int T = window_length();
  const int S = cfg_.stride > 0 ? cfg_.stride : T;
  if (S > T) throw UsageError("--stride must be at most --seq-len");
  // Windows over each shard: inputs [start, start+T), targets shifted by one; with a stride
  // below T only the last S targets of a window count (the first window counts all).
  struct Window {
    size_t shard;
    uint64_t start;
    int score_from;
  };
  std::vector<std::unique_ptr<ShardReader>> shards;
  std::vector<Window> windows;
  uint64_t budget = cfg_.max_tokens > 0 ? static_cast<uint64_t>(cfg_.max_tokens) : UINT64_MAX, counted = 0;
  for (const auto& p : inputs) {
    if (cfg_.limit > 0 && static_cast<int64_t>(windows.size()) >= cfg_.limit) break;
    shards.push_back(std::make_unique<ShardReader>(p, cfg_.verify));
    const ShardReader& r = *shards.back();
    if (r.info().vocab_size > static_cast<uint64_t>(m.config().vocab_size))
      throw Error(p, "vocabulary of " + std::to_string(r.info().vocab_size) + " is larger than the model's " +
                         std::to_string(m.config().vocab_size));
    if (tok_ && r.info().tokenizer_hash && r.info().tokenizer_hash != tok_->hash())
      throw Error(p, "made with another tokenizer than " + tok_->path());
    for (uint64_t start = 0; start + static_cast<uint64_t>(T) + 1 <= r.size() && counted < budget; start += static_cast<uint64_t>(S)) {
      int from = start == 0 ? 0 : T - S;
      windows.push_back({shards.size() - 1, start, from});
      counted += static_cast<uint64_t>(T - from);
      if (cfg_.limit > 0 && static_cast<int64_t>(windows.size()) >= cfg_.limit) break;
    }
  }
  if (windows.empty()) throw Error(inputs[0], "no window of " + std::to_string(T + 1) + " tokens");
  const int B = cfg_.batch_size;
  std::vector<int32_t> in(static_cast<size_t>(B) * T), tgt(in.size());
  std::vector<uint32_t> buf(static_cast<size_t>(T) + 1);
  auto blocks = run_blocks(windows.size(), identity("ppl", inputs, {{"seq_len", T}, {"stride", S}, {"max_tokens", cfg_.max_tokens}}),
                           [&](size_t w0, size_t w1) {
    const int rows = static_cast<int>(w1 - w0);
    for (int b = 0; b < rows; ++b) {
      const Window& w = windows[w0 + static_cast<size_t>(b)];
      shards[w.shard]->read(w.start, buf.size(), buf.data());
      for (int t = 0; t < T; ++t) {
        in[static_cast<size_t>(b) * T + t] = static_cast<int32_t>(buf[static_cast<size_t>(t)]);
        tgt[static_cast<size_t>(b) * T + t] = t >= w.score_from ? static_cast<int32_t>(buf[static_cast<size_t>(t) + 1]) : -1;
      }
    }
    m.forward(in.data(), tgt.data(), rows, T);
    double sum = 0, count = 0;
    for (float lp : m.logp()) sum -= lp;  // ignored targets have logp 0
    for (int i = 0; i < rows * T; ++i) count += tgt[static_cast<size_t>(i)] >= 0;
    tokens_ += rows * T;
    return nlohmann::json{{"nll", sum}, {"tokens", count}};
  });
  // The sums of the blocks, in block order: the same figures whatever the number of ranks.
  double sum = 0, count = 0;
  for (const auto& b : blocks) {
    sum += b["nll"].get<double>();
    count += b["tokens"].get<double>();
  }
  nlohmann::json r;
  r["task"] = inputs.size() == 1 ? inputs[0] : std::to_string(inputs.size()) + " shards";
  r["type"] = "ppl";
  r["examples"] = windows.size();
  r["tokens"] = static_cast<int64_t>(count);  // a count: an integer in the report
  r["seq_len"] = T;
  r["stride"] = S;
  r["metrics"]["loss"] = metric_json({sum / count, NAN});
  r["metrics"]["ppl"] = metric_json({std::exp(sum / count), NAN});
  return finish(r, blocks);
}

// ---- ppl on text (JSONL documents) ----

nlohmann::json Evaluator::ppl_text(const std::vector<std::string>& inputs) {
  load(true);
  Model& m = *lm_.model;
  const int T = window_length();
  auto rows = read_rows(inputs, "text");
  if (cfg_.limit > 0 && static_cast<int64_t>(rows.size()) > cfg_.limit) rows.resize(static_cast<size_t>(cfg_.limit));
  std::vector<int32_t> in(static_cast<size_t>(T)), tgt(in.size());
  auto blocks = run_blocks(rows.size(), identity("ppl", inputs, {{"seq_len", T}, {"text_field", cfg_.source.jsonl.text_field}}),
                           [&](size_t i0, size_t i1) {
    nlohmann::json out = nlohmann::json::array();
    for (size_t i = i0; i < i1; ++i) {
      const std::string where = rows[i]["__where"];
      const auto it = rows[i].find(cfg_.source.jsonl.text_field);
      if (it == rows[i].end() || !it->is_string()) throw Error(where, "no \"" + cfg_.source.jsonl.text_field + "\" string");
      const std::string text = it->get<std::string>();
      // The document after a separator token, in disjoint windows of T predictions; each window
      // sees only its own tokens (lm-evaluation-harness's rolling windows give the last, partial
      // one the tokens before it as context too).
      std::vector<int32_t> seq = encode(text);
      seq.insert(seq.begin(), doc_start());
      double doc_nll = 0;
      size_t doc_tokens = 0;
      for (size_t start = 0; start + 1 < seq.size(); start += static_cast<size_t>(T)) {
        const size_t n = std::min(static_cast<size_t>(T), seq.size() - 1 - start);
        for (size_t t = 0; t < n; ++t) {
          in[t] = seq[start + t];
          tgt[t] = seq[start + t + 1];
        }
        m.forward(in.data(), tgt.data(), 1, static_cast<int>(n));
        for (float lp : m.logp()) doc_nll -= lp;
        doc_tokens += n;
        tokens_ += static_cast<double>(n);
      }
      // Words as lm-evaluation-harness counts them, len(re.split(r"\s+", text)): one more than
      // the runs of whitespace (so blanks at either end add an empty "word", as there).
      double w = 1;
      for (size_t b = 0; b < text.size();) {
        size_t e = text.find_first_of(" \t\n\r\f\v", b);
        if (e == std::string::npos) break;
        ++w;
        b = text.find_first_not_of(" \t\n\r\f\v", e);
        if (b == std::string::npos) break;
      }
      nlohmann::json s = {{"index", i}, {"nll", doc_nll}, {"tokens", doc_tokens}, {"words", w}, {"bytes", text.size()}};
      if (rows[i].contains("id")) s["id"] = rows[i]["id"];
      out.push_back(std::move(s));
    }
    return nlohmann::json{{"rows", std::move(out)}};
  });
  double nll = 0, tokens = 0, words = 0, bytes = 0;
  for (const auto& b : blocks)
    for (const auto& s : b["rows"]) {
      nll += s["nll"].get<double>();
      tokens += s["tokens"].get<double>();
      words += s["words"].get<double>();
      bytes += s["bytes"].get<double>();
    }
  nlohmann::json r;
  r["task"] = inputs.size() == 1 ? inputs[0] : std::to_string(inputs.size()) + " files";
  r["type"] = "ppl";
  r["examples"] = rows.size();
  r["tokens"] = static_cast<int64_t>(tokens);
  r["seq_len"] = T;
  r["metrics"]["loss"] = metric_json({nll / tokens, NAN});
  r["metrics"]["ppl"] = metric_json({std::exp(nll / tokens), NAN});
  r["metrics"]["word_perplexity"] = metric_json({std::exp(nll / std::max(words, 1.0)), NAN});
  r["metrics"]["byte_perplexity"] = metric_json({std::exp(nll / std::max(bytes, 1.0)), NAN});
  r["metrics"]["bits_per_byte"] = metric_json({nll / std::max(bytes, 1.0) / std::log(2.0), NAN});
  return finish(r, blocks);
}

// ---- multiple choice ----

nlohmann::json Evaluator::mc(const std::vector<std::string>& inputs) {
  load(true);
  auto rows = read_rows(inputs, "multiple-choice");
  std::vector<McExample> ex;
  for (const auto& r : rows) ex.push_back(mc_from(r, r["__where"]));
  if (cfg_.limit > 0 && static_cast<int64_t>(ex.size()) > cfg_.limit) ex.resize(static_cast<size_t>(cfg_.limit));
  Engine engine(*lm_.model, tok_.get(), cfg_.batch_size * 4, lm_.model->config().max_seq);
  auto blocks = run_blocks(ex.size(), identity("mc", inputs, {{"num_fewshot", cfg_.num_fewshot}, {"seed", cfg_.seed}}),
                           [&](size_t b0, size_t b1) {
    std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> reqs;
    std::vector<std::string> contexts;
    for (size_t i = b0; i < b1; ++i) {
      contexts.push_back(mc_context(ex[i], shots_for(ex, i, cfg_.num_fewshot, cfg_.seed)));
      for (const auto& c : ex[i].choices) reqs.push_back(encode_pair(contexts.back(), " " + c));
    }
    auto scores = engine.score(reqs);
    nlohmann::json out = nlohmann::json::array();
    size_t at = 0;
    for (size_t i = b0; i < b1; ++i) {
      const McExample& e = ex[i];
      std::vector<double> ll;
      for (size_t c = 0; c < e.choices.size(); ++c, ++at) {
        ll.push_back(scores[at].logprob);
        tokens_ += static_cast<double>(reqs[at].first.size() + reqs[at].second.size());
      }
      const auto [pred, pred_norm] = mc_predict(ll, e.choices);
      nlohmann::json s = {{"index", i}, {"context", contexts[i - b0]}, {"choices", e.choices}, {"loglikelihoods", ll},
                          {"prediction", pred}, {"prediction_norm", pred_norm}, {"gold", e.gold}, {"correct", pred == e.gold},
                          {"correct_norm", pred_norm == e.gold}};
      if (!e.id.empty()) s["id"] = e.id;
      out.push_back(std::move(s));
    }
    return nlohmann::json{{"rows", std::move(out)}};
  });
  nlohmann::json r;
  r["task"] = inputs.size() == 1 ? inputs[0] : std::to_string(inputs.size()) + " files";
  r["type"] = "mc";
  r["examples"] = ex.size();
  r["num_fewshot"] = cfg_.num_fewshot;
  r["metrics"]["acc"] = metric_json(mean_stderr(outcomes(blocks, "correct")));
  r["metrics"]["acc_norm"] = metric_json(mean_stderr(outcomes(blocks, "correct_norm")));
  return finish(r, blocks);
}

// ---- generation ----

nlohmann::json Evaluator::gen(const std::vector<std::string>& inputs) {
  load(true);
  auto rows = read_rows(inputs, "generative");
  std::vector<GenExample> ex;
  for (const auto& r : rows) ex.push_back(gen_from(r, r["__where"]));
  if (cfg_.limit > 0 && static_cast<int64_t>(ex.size()) > cfg_.limit) ex.resize(static_cast<size_t>(cfg_.limit));
  Engine engine(*lm_.model, tok_.get(), cfg_.batch_size, lm_.model->config().max_seq);
  SamplingParams p;
  p.max_tokens = cfg_.max_gen_tokens;
  p.stop = cfg_.until;
  nlohmann::json options = {{"num_fewshot", cfg_.num_fewshot}, {"seed", cfg_.seed}, {"until", cfg_.until},
                            {"max_gen_tokens", cfg_.max_gen_tokens}, {"regex", cfg_.regex}};
  auto blocks = run_blocks(ex.size(), identity("gen", inputs, options), [&](size_t b0, size_t b1) {
    std::vector<std::vector<int32_t>> prompts;
    std::vector<std::string> contexts;
    for (size_t i = b0; i < b1; ++i) {
      contexts.push_back(gen_context(ex[i], shots_for(ex, i, cfg_.num_fewshot, cfg_.seed)));
      std::vector<int32_t> pr = encode(contexts.back());
      pr.insert(pr.begin(), doc_start());
      prompts.push_back(pr);
    }
    auto gens = engine.generate(prompts, p);
    nlohmann::json out = nlohmann::json::array();
    for (size_t i = b0; i < b1; ++i) {
      const Generation& g = gens[i - b0];
      tokens_ += static_cast<double>(prompts[i - b0].size() + g.tokens.size());
      const std::string gold = normalize_answer(ex[i].answer);
      const std::string s = extract_strict(g.text), f = extract_flexible(g.text);
      nlohmann::json j = {{"index", i}, {"prompt", contexts[i - b0]}, {"generation", g.text}, {"finish", g.finish},
                          {"answer", ex[i].answer}, {"strict", s}, {"flexible", f},
                          {"correct_strict", normalize_answer(s) == gold}, {"correct_flexible", normalize_answer(f) == gold}};
      if (!cfg_.regex.empty()) {
        const std::string c = extract_regex(g.text, cfg_.regex);
        j["custom"] = c;
        j["correct_custom"] = normalize_answer(c) == gold;
      }
      if (!ex[i].id.empty()) j["id"] = ex[i].id;
      out.push_back(std::move(j));
    }
    return nlohmann::json{{"rows", std::move(out)}};
  });
  nlohmann::json r;
  r["task"] = inputs.size() == 1 ? inputs[0] : std::to_string(inputs.size()) + " files";
  r["type"] = "gen";
  r["examples"] = ex.size();
  r["num_fewshot"] = cfg_.num_fewshot;
  r["metrics"]["exact_match,strict-match"] = metric_json(mean_stderr(outcomes(blocks, "correct_strict")));
  r["metrics"]["exact_match,flexible-extract"] = metric_json(mean_stderr(outcomes(blocks, "correct_flexible")));
  if (!cfg_.regex.empty())
    r["metrics"]["exact_match,custom"] = metric_json(mean_stderr(outcomes(blocks, "correct_custom")));
  return finish(r, blocks);
}

// Whether every input is a token shard (llm-tok's, or llm.c's .bin) rather than JSONL.
bool all_shards(const std::vector<std::string>& inputs) {
  for (const auto& p : inputs) {
    char head[8] = {};
    FILE* f = std::fopen(p.c_str(), "rb");
    if (!f) throw Error(p, errno_message("cannot open", errno));
    size_t n = std::fread(head, 1, 8, f);
    std::fclose(f);
    uint32_t magic = 0;
    std::memcpy(&magic, head, 4);
    if (!((n == 8 && std::memcmp(head, "LLMKTOK", 8) == 0) || magic == 20240520 || magic == 20240801)) return false;
  }
  return true;
}

// ---- mlm: an encoder's masked tokens ----
//
// Windows of T tokens: [CLS] and T - 1 tokens of a shard (as llm-pretrain --objective mlm makes
// its rows), or [CLS], up to T - 2 tokens of a JSONL document, [SEP]. Two measures per window:
//   masked: BERT's masking (15%, 80/10/10) drawn from (--seed, window), the loss and accuracy of
//     the masked tokens (llm-pretrain's val_loss and val_accuracy when the seed and windows are
//     the same), beside the accuracy of always guessing the most frequent masked token;
//   pseudo-perplexity (Salazar et al., 2020): every ordinary token masked alone, one row each,
//     exp of the mean negative log-likelihood of the tokens so restored: T forwards per window.
nlohmann::json Evaluator::mlm(const std::vector<std::string>& inputs) {
  load(true, Wants::mlm);
  Model& m = *lm_.model;
  const int T = window_length();
  const MlmVocab vocab = MlmVocab::from_tokenizer(*tok_);
  const int32_t cls = vocab.cls_id, sep = vocab.sep_id;
  // Every window's tokens, its length (a document's last may be short).
  std::vector<std::vector<int32_t>> windows;
  auto full = [&] { return cfg_.limit > 0 && static_cast<int64_t>(windows.size()) >= cfg_.limit; };
  if (all_shards(inputs)) {
    for (const auto& p : inputs) {
      ShardReader r(p, cfg_.verify);
      if (r.info().tokenizer_hash && r.info().tokenizer_hash != tok_->hash()) throw Error(p, "made with another tokenizer than " + tok_->path());
      // llm-pretrain's windows: window k starts at token k*T (and needs T + 1 tokens there).
      std::vector<uint32_t> buf(static_cast<size_t>(T - 1));
      for (uint64_t start = 0; start + static_cast<uint64_t>(T) + 1 <= r.size() && !full(); start += static_cast<uint64_t>(T)) {
        r.read(start, buf.size(), buf.data());
        std::vector<int32_t> w = {cls};
        w.insert(w.end(), buf.begin(), buf.end());
        windows.push_back(std::move(w));
      }
    }
  } else {
    for (const auto& row : read_rows(inputs, "text")) {
      const auto it = row.find(cfg_.source.jsonl.text_field);
      if (it == row.end() || !it->is_string())
        throw Error(row["__where"].get<std::string>(), "no \"" + cfg_.source.jsonl.text_field + "\" string");
      const std::vector<int32_t> ids = encode(it->get<std::string>());
      for (size_t at = 0; at < ids.size() && !full(); at += static_cast<size_t>(T - 2)) {
        std::vector<int32_t> w = {cls};
        w.insert(w.end(), ids.begin() + static_cast<long>(at), ids.begin() + static_cast<long>(std::min(ids.size(), at + static_cast<size_t>(T - 2))));
        w.push_back(sep);
        windows.push_back(std::move(w));
      }
      if (full()) break;
    }
  }
  if (windows.empty()) throw Error(inputs[0], "no window of " + std::to_string(T) + " tokens");
  MlmConfig mc;
  const int B = cfg_.batch_size;
  auto blocks = run_blocks(windows.size(), identity("mlm", inputs, {{"seq_len", T}}), [&](size_t w0, size_t w1) {
    double nll = 0, masked = 0, correct = 0, pll = 0, pll_tokens = 0;
    std::map<int32_t, int64_t> targets;  // masked tokens' counts: the majority baseline
    std::vector<int32_t> in, tgt, best;
    for (size_t w = w0; w < w1; ++w) {
      const std::vector<int32_t>& win = windows[w];
      const int n = static_cast<int>(win.size());
      in = win;
      tgt.assign(win.size(), -1);
      mlm_mask(in.data(), tgt.data(), n, vocab, mc, cfg_.seed, 0, w);
      m.forward(in.data(), tgt.data(), 1, n);
      best.resize(win.size());
      be_->argmax(best.data(), m.logits(), n, m.config().vocab_size, m.config().padded_vocab());
      const std::vector<float> lp = m.logp();
      for (int i = 0; i < n; ++i)
        if (tgt[static_cast<size_t>(i)] >= 0) {
          nll -= lp[static_cast<size_t>(i)];
          ++masked;
          correct += best[static_cast<size_t>(i)] == tgt[static_cast<size_t>(i)];
          ++targets[tgt[static_cast<size_t>(i)]];
        }
      // Pseudo-log-likelihood: B rows at a time, row k masking the k-th ordinary position.
      std::vector<int> positions;
      for (int i = 0; i < n; ++i)
        if (!vocab.special[static_cast<size_t>(win[static_cast<size_t>(i)])]) positions.push_back(i);
      for (size_t p0 = 0; p0 < positions.size(); p0 += static_cast<size_t>(B)) {
        const int rows = static_cast<int>(std::min(positions.size() - p0, static_cast<size_t>(B)));
        in.clear();
        tgt.assign(static_cast<size_t>(rows) * n, -1);
        for (int r = 0; r < rows; ++r) {
          const int at = positions[p0 + static_cast<size_t>(r)];
          in.insert(in.end(), win.begin(), win.end());
          in[static_cast<size_t>(r) * n + at] = vocab.mask_id;
          tgt[static_cast<size_t>(r) * n + at] = win[static_cast<size_t>(at)];
        }
        m.forward(in.data(), tgt.data(), rows, n);
        for (float x : m.logp()) pll += x;  // 0 where there is no target
        pll_tokens += rows;
        tokens_ += static_cast<double>(rows) * n;
      }
      tokens_ += n;
    }
    nlohmann::json hist = nlohmann::json::array();
    for (const auto& [id, c] : targets) hist.push_back({id, c});
    return nlohmann::json{{"nll", nll}, {"masked", masked}, {"correct", correct}, {"pll", pll}, {"pll_tokens", pll_tokens},
                          {"targets", hist}};
  });
  double nll = 0, masked = 0, correct = 0, pll = 0, pll_tokens = 0;
  std::map<int32_t, double> targets;
  for (const auto& b : blocks) {
    nll += b["nll"].get<double>();
    masked += b["masked"].get<double>();
    correct += b["correct"].get<double>();
    pll += b["pll"].get<double>();
    pll_tokens += b["pll_tokens"].get<double>();
    for (const auto& e : b["targets"]) targets[e[0].get<int32_t>()] += e[1].get<double>();
  }
  double majority = 0;
  for (const auto& [id, c] : targets) majority = std::max(majority, c);
  auto share = [&](double k) { return Metric{k / std::max(masked, 1.0), std::sqrt(k / std::max(masked, 1.0) * (1 - k / std::max(masked, 1.0)) / std::max(masked - 1, 1.0))}; };
  nlohmann::json r;
  r["task"] = inputs.size() == 1 ? inputs[0] : std::to_string(inputs.size()) + " files";
  r["type"] = "mlm";
  r["examples"] = windows.size();
  r["tokens"] = static_cast<int64_t>(pll_tokens);
  r["masked_tokens"] = static_cast<int64_t>(masked);
  r["seq_len"] = T;
  r["metrics"]["masked_loss"] = metric_json({nll / std::max(masked, 1.0), NAN});
  r["metrics"]["masked_accuracy"] = metric_json(share(correct));
  r["metrics"]["majority_accuracy"] = metric_json(share(majority));
  r["metrics"]["pseudo_perplexity"] = metric_json({std::exp(-pll / std::max(pll_tokens, 1.0)), NAN});
  return finish(r, blocks);
}

// ---- classify: a sequence classifier's predictions ----
//
// Rows {"text"} or {"text_a", "text_b"}, with a "label" to score them against (rows without one
// are predicted, logged, and left out of the metrics): the tokens llm-sft --task classify trains
// on, in batches padded to their longest row.
nlohmann::json Evaluator::classify(const std::vector<std::string>& inputs) {
  load(true, Wants::classifier);
  Model& m = *lm_.model;
  const ModelConfig& c = m.config();
  const int K = c.num_labels, T = window_length();
  std::vector<std::string> names = c.labels;
  for (int k = static_cast<int>(names.size()); k < K; ++k) names.push_back("LABEL_" + std::to_string(k));
  auto rows = read_rows(inputs, "classification");
  if (cfg_.limit > 0 && static_cast<int64_t>(rows.size()) > cfg_.limit) rows.resize(static_cast<size_t>(cfg_.limit));
  const bool encoder = c.encoder();
  const int32_t sep = classify_separator(*tok_);
  auto blocks = run_blocks(rows.size(), identity("classify", inputs, {{"seq_len", T}}), [&](size_t i0, size_t i1) {
    const int B = static_cast<int>(i1 - i0);
    std::vector<std::vector<int32_t>> seqs;
    int longest = 1;
    for (size_t i = i0; i < i1; ++i) {
      const nlohmann::json& r = rows[i];
      const std::string where = r["__where"];
      auto text = [&](const char* key) {
        const auto it = r.find(key);
        if (it == r.end() || !it->is_string()) throw Error(where, std::string("no \"") + key + "\" string");
        return encode(it->get<std::string>());
      };
      const bool pair = r.contains("text_a");
      const std::vector<int32_t> a = text(pair ? "text_a" : "text");
      const std::vector<int32_t> b = pair ? text("text_b") : std::vector<int32_t>();
      seqs.push_back(classify_tokens(*tok_, encoder, a, pair ? &b : nullptr, T));
      longest = std::max(longest, static_cast<int>(seqs.back().size()));
    }
    std::vector<int32_t> tokens(static_cast<size_t>(B) * longest, sep), used(static_cast<size_t>(B));
    for (int r = 0; r < B; ++r) {
      std::copy(seqs[static_cast<size_t>(r)].begin(), seqs[static_cast<size_t>(r)].end(), tokens.begin() + static_cast<long>(r) * longest);
      used[static_cast<size_t>(r)] = static_cast<int32_t>(seqs[static_cast<size_t>(r)].size());
    }
    classify_forward(m, tokens, used, B, longest, sep);
    const std::vector<float> v = m.values();
    tokens_ += static_cast<double>(B) * longest;
    nlohmann::json out = nlohmann::json::array();
    for (int r = 0; r < B; ++r) {
      const nlohmann::json& row = rows[i0 + static_cast<size_t>(r)];
      const float* z = v.data() + classify_position(encoder, r, longest, used[static_cast<size_t>(r)]) * static_cast<size_t>(K);
      const double mx = *std::max_element(z, z + K);
      double sum = 0;
      for (int k = 0; k < K; ++k) sum += std::exp(static_cast<double>(z[k]) - mx);
      nlohmann::json probs = nlohmann::json::array();
      for (int k = 0; k < K; ++k) probs.push_back(std::exp(static_cast<double>(z[k]) - mx) / sum);
      const int predicted = static_cast<int>(std::max_element(z, z + K) - z);
      nlohmann::json j = {{"index", i0 + static_cast<size_t>(r)}, {"predicted", names[static_cast<size_t>(predicted)]},
                          {"predicted_id", predicted}, {"probabilities", probs}};
      if (row.contains("label")) {
        const auto& l = row["label"];
        const std::string label = l.is_string() ? l.get<std::string>() : l.is_number_integer() ? std::to_string(l.get<int64_t>()) : "";
        const auto it = std::find(names.begin(), names.end(), label);
        if (it == names.end())
          throw Error(row["__where"].get<std::string>(), "label " + l.dump() + " is not one of the model's (" + std::to_string(K) + ")");
        j["gold"] = label;
        j["gold_id"] = it - names.begin();
        j["correct"] = it - names.begin() == predicted;
      }
      if (row.contains("id")) j["id"] = row["id"];
      out.push_back(std::move(j));
    }
    return nlohmann::json{{"rows", std::move(out)}};
  });
  std::vector<double> confusion(static_cast<size_t>(K) * K, 0.0), correct;
  for (const auto& b : blocks)
    for (const auto& row : b["rows"])
      if (row.contains("gold_id")) {
        confusion[row["gold_id"].get<size_t>() * static_cast<size_t>(K) + row["predicted_id"].get<size_t>()] += 1;
        correct.push_back(row["correct"].get<bool>() ? 1.0 : 0.0);
      }
  nlohmann::json r;
  r["task"] = inputs.size() == 1 ? inputs[0] : std::to_string(inputs.size()) + " files";
  r["type"] = "classify";
  r["examples"] = rows.size();
  r["labelled"] = correct.size();
  r["labels"] = names;
  if (!correct.empty()) {
    r["metrics"]["accuracy"] = metric_json(mean_stderr(correct));
    r["metrics"]["macro_f1"] = metric_json({classify_scores(confusion, K).macro_f1, NAN});
    nlohmann::json m2 = nlohmann::json::array();
    for (int g = 0; g < K; ++g) {
      nlohmann::json line = nlohmann::json::array();
      for (int p = 0; p < K; ++p) line.push_back(static_cast<int64_t>(confusion[static_cast<size_t>(g * K + p)]));
      m2.push_back(line);
    }
    r["confusion"] = m2;  // rows: gold labels; columns: predictions
  } else {
    r["metrics"] = nlohmann::json::object();
  }
  return finish(r, blocks);
}

nlohmann::json Evaluator::run(const std::string& kind, const std::vector<std::string>& inputs) {
  if (inputs.empty()) throw UsageError(kind + ": give an input file");
  if (cfg_.batch_size < 1) throw UsageError("--batch-size must be at least 1");
  if (kind == "ppl") return all_shards(inputs) ? ppl_shards(inputs) : ppl_text(inputs);
  if (kind == "mc") return mc(inputs);
  if (kind == "gen") return gen(inputs);
  if (kind == "mlm") return mlm(inputs);
  if (kind == "classify") return classify(inputs);
  throw UsageError("unknown task type '" + kind + "' (ppl, mc, gen, mlm, classify)");
}

}  // namespace

void run_eval(const std::string& kind, const std::vector<std::string>& inputs, const EvalConfig& cfg,
              const std::function<void(const nlohmann::json&)>& write_report) {
  Evaluator ev(cfg);
  nlohmann::json report = ev.run(kind, inputs);
  if (Comm::world().rank() == 0) write_report(report);
  ev.done();
}

std::string report_text(const nlohmann::json& r) {
  std::string out;
  char line[256];
  snprintf(line, sizeof line, "%s: %s (%s), %lld examples\n", r.value("type", "").c_str(), r.value("task", "").c_str(),
           r.value("model", "").c_str(), static_cast<long long>(r.value("examples", 0)));
  out += line;
  if (r.contains("seq_len")) {
    snprintf(line, sizeof line, "  %lld tokens scored in windows of %lld", static_cast<long long>(r.value("tokens", int64_t{0})),
             static_cast<long long>(r.value("seq_len", 0)));
    out += line;
    if (r.contains("stride") && r["stride"] != r["seq_len"])
      out += ", stride " + std::to_string(r.value("stride", 0));
    out += "\n";
  }
  for (const auto& [name, m] : r["metrics"].items()) {
    if (m["stderr"].is_null()) snprintf(line, sizeof line, "  %-30s %10.4f\n", name.c_str(), m["value"].get<double>());
    else snprintf(line, sizeof line, "  %-30s %10.4f  ± %.4f\n", name.c_str(), m["value"].get<double>(), m["stderr"].get<double>());
    out += line;
  }
  snprintf(line, sizeof line, "  %.1f s, %.0f tokens/s\n", r.value("wall_seconds", 0.0), r.value("tokens_per_sec", 0.0));
  out += line;
  return out;
}

}  // namespace llmkit
