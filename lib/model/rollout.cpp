// What llm-ppo grpo and ppo share: see rollout.hpp.
#include "rollout.hpp"

#include <algorithm>
#include <cmath>

#include "llmkit/checkpoint.hpp"
#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/rm.hpp"
#include "llmkit/stats.hpp"
#include "llmkit/tok.hpp"

namespace llmkit {

SurrogateLoss clipped_surrogate(double logp, double old_logp, double advantage, double lo, double hi) {
  const double ratio = std::exp(logp - old_logp);
  const double clipped_ratio = std::clamp(ratio, 1.0 - lo, 1.0 + hi);
  SurrogateLoss s;
  const double unclipped = ratio * advantage, clipped = clipped_ratio * advantage;
  // min(ratio A, clip(ratio) A): the gradient flows through the first unless the second is smaller
  if (unclipped <= clipped) {
    s.loss = -unclipped;
    s.dlogp = -advantage * ratio;
  } else {
    s.loss = -clipped;
    s.dlogp = 0;
    s.clipped = true;
  }
  return s;
}

std::pair<double, double> k3_kl(double logp, double ref_logp) {
  const double d = ref_logp - logp, e = std::exp(d);
  return {e - d - 1.0, 1.0 - e};
}

namespace {
constexpr const char* kStateFile = "rollouts_state.json";

std::vector<float> floats(const nlohmann::json& j, const char* key) {
  return j.contains(key) ? j[key].get<std::vector<float>>() : std::vector<float>{};
}
}  // namespace

nlohmann::json Rollout::to_json() const {
  nlohmann::json j = {{"prompt", prompt}, {"response", response}, {"old_logp", old_logp}, {"text", text},
                      {"finish", finish}, {"reward", reward},     {"advantage", advantage}};
  if (!ref_logp.empty()) j["ref_logp"] = ref_logp;
  if (!values.empty()) j["values"] = values, j["returns"] = returns;
  if (!advantages.empty()) j["advantages"] = advantages;
  return j;
}

Rollout Rollout::from_json(const nlohmann::json& j) {
  Rollout r;
  r.prompt = j.at("prompt").get<size_t>();
  r.response = j.at("response").get<std::vector<int32_t>>();
  r.old_logp = floats(j, "old_logp");
  r.ref_logp = floats(j, "ref_logp");
  r.values = floats(j, "values");
  r.returns = floats(j, "returns");
  r.advantages = floats(j, "advantages");
  r.text = j.at("text").get<std::string>();
  r.finish = j.at("finish").get<std::string>();
  r.reward = j.at("reward").get<double>();
  r.advantage = j.at("advantage").get<double>();
  return r;
}

RolloutObjective::~RolloutObjective() {
  if (rollouts_file_) std::fclose(rollouts_file_);
}

std::unique_ptr<Model> RolloutObjective::build(Trainer& t, const std::string& resume_dir) {
  const RolloutConfig& c = rcfg_;
  if (c.data.empty()) throw UsageError("--data FILE is required (prompts, llmkit-chat(5))");
  if (c.rewards.empty()) throw UsageError("give a reward: --reward rule:NAME, --reward-cmd COMMAND or --reward-model RM");
  if (!c.reward_weights.empty() && c.reward_weights.size() != c.rewards.size())
    throw UsageError("--reward-weights: " + std::to_string(c.reward_weights.size()) + " weights for " + std::to_string(c.rewards.size()) +
                     " rewards");
  if (rows_per_step(t) % (static_cast<int64_t>(samples_) * t.ranks()) != 0)
    throw UsageError("--batch-size must be a multiple of " + std::string(samples_ > 1 ? "--group-size x ranks (" : "ranks (") +
                     std::to_string(samples_ * t.ranks()) + "): a rank answers whole prompts");
  if (c.max_new_tokens < 1 || c.max_new_tokens >= c.seq_len)
    throw UsageError("--max-new-tokens must be in 1.." + std::to_string(c.seq_len - 1) + " (below --seq-len)");
  if (c.reward_clip < 0) throw UsageError("--reward-clip must be 0 (none) or more");
  if (c.iterations < 1 || c.mini_batches < 1) throw UsageError("passes and --mini-batches must be 1 or more");
  if (c.lora.dropout > 0)
    throw UsageError("--lora-dropout: reinforcement learning trains without dropout (the answers' sampled log-probabilities must be the trainer's)");
  check(t);
  if (t.options().zero == 3)
    throw UsageError("--zero 3: PPO and GRPO generate answers of different lengths on the ranks, which sharded parameters "
                     "(gathered by all ranks together, block by block) do not allow: give --zero 2");
  if (t.tensor_parallel() > 1)
    throw UsageError("--tp " + std::to_string(t.tensor_parallel()) + ": PPO and GRPO generate their answers with the KV-cached engine, "
                     "which is not tensor-parallel: give --tp 1 (data parallel over the ranks)");
  resume_dir_ = resume_dir;
  ModelOptions options = t.model_options();
  options.recompute_mlp = c.recompute;
  options.scalar_head = value_head();
  std::unique_ptr<Model> model = build_tuned_model(c, t, resume_dir, base_, options);
  if (value_head() && resume_dir.empty()) init_score_head(*model, c.seed);  // a new value head
  if (needs_reference() && c.lora.rank == 0) {  // the reference: a frozen copy of the start
    reference_ = open_model(base_.init_dir, t.backend()).model;
    reference_->freeze([](const std::string&) { return true; });
  }
  encoder_ = std::make_unique<ChatEncoder>(*base_.tokenizer, ChatTemplate::named(c.chat_template));
  for (size_t i = 0; i < c.rewards.size(); ++i) {
    const std::string& r = c.rewards[i];
    const double w = c.reward_weights.empty() ? 1.0 : c.reward_weights[i];
    if (r.rfind("rule:", 0) == 0) rewards_.add(make_rule_reward(r.substr(5)), w);
    else if (r.rfind("cmd:", 0) == 0) rewards_.add(make_command_reward(r.substr(4)), w);
    else if (r.rfind("model:", 0) == 0) rewards_.add(make_model_reward(r.substr(6), t.backend(), *encoder_, c.seq_len, c.micro_batch), w);
    else throw UsageError("--reward: '" + r + "' is neither rule:NAME nor a command");
  }
  prompts_ = read_prompts(c.data, t.stats(), c.limit);
  if (!c.val.empty()) {
    Stats val_stats;
    val_prompts_ = read_prompts(c.val, val_stats, 0);
  }
  // The prompts' order: an ExampleSet of them, shuffled per epoch as every trainer's data.
  std::vector<ChatExample> ex(prompts_.size());
  for (size_t i = 0; i < prompts_.size(); ++i) {
    ex[i].tokens = prompts_[i].tokens;
    ex[i].trained.assign(ex[i].tokens.size(), 1);
    ex[i].where = prompts_[i].where;
  }
  ExampleOptions eo;
  eo.seq_len = c.seq_len;
  eo.whole = true;
  Stats order_stats;
  order_ = std::make_unique<ExampleSet>(std::move(ex), eo, order_stats);
  if (c.epochs > 0) {  // whole rollout batches, each trained on for all its steps
    const double per_batch = static_cast<double>(rows_per_step(t) * c.mini_batches) / samples_;
    const auto batches = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(c.epochs * static_cast<double>(prompts_.size()) / per_batch)));
    t.set_steps(batches * steps_per_cycle());
  }
  const int per_rank = static_cast<int>(rows_per_step(t) / t.ranks());
  engine_ = std::make_unique<Engine>(*model, base_.tokenizer.get(), std::max(per_rank, samples_), c.seq_len);
  engine_->set_prefill_rows(c.micro_batch * c.seq_len);  // within the training's activations
  engine_value_bytes_ = t.backend().activation_value_bytes();
  return model;
}

std::string RolloutObjective::describe(const Trainer& t) const {
  char line[640];
  const int64_t K = steps_per_cycle();
  std::string passes;
  if (K > 1)
    passes = "; " + std::to_string(rcfg_.iterations) + " pass" + (rcfg_.iterations == 1 ? "" : "es") + " of " +
             std::to_string(rcfg_.mini_batches) + " step" + (rcfg_.mini_batches == 1 ? "" : "s") + " over each rollout batch of " +
             std::to_string(t.state().batch_sequences * rcfg_.mini_batches / samples_) + " prompts";
  snprintf(line, sizeof line, "%s: %.2fM parameters%s%s; %zu prompts, %d sample%s each, up to %d new tokens (temperature %g); %s%s; %lld step%s of %lld prompts",
           base_.init_dir.c_str(), static_cast<double>(t.model().num_params_unpadded()) / 1e6,
           rcfg_.lora.rank > 0 ? (", LoRA rank " + std::to_string(rcfg_.lora.rank)).c_str() : "", value_head() ? " and a value head" : "",
           prompts_.size(), samples_, samples_ == 1 ? "" : "s", rcfg_.max_new_tokens, rcfg_.temperature, summary().c_str(), passes.c_str(),
           static_cast<long long>(t.options().steps), t.options().steps == 1 ? "" : "s",
           static_cast<long long>(t.state().batch_sequences / samples_));
  return line;
}

SamplingParams RolloutObjective::sampling() const {
  SamplingParams sp;
  sp.temperature = rcfg_.temperature;
  sp.top_p = rcfg_.top_p;
  sp.top_k = rcfg_.top_k;
  sp.min_p = rcfg_.min_p;
  sp.max_tokens = rcfg_.max_new_tokens;
  sp.stop = rcfg_.stop;
  // A chat prompt's answer ends with the template's end of turn (trained, so the model learns
  // to stop); --stop adds others.
  if (encoder_ && !encoder_->chat_template().end_of_turn().empty()) sp.stop.push_back(encoder_->chat_template().end_of_turn());
  sp.n = samples_;
  return sp;
}

RolloutObjective::Rows RolloutObjective::make_rows(const std::vector<size_t>& which) const {
  Rows r;
  r.B = static_cast<int>(which.size());
  r.T = 1;
  for (size_t i : which)
    r.T = std::max<int>(r.T, static_cast<int>(prompts_[rollouts_[i].prompt].tokens.size() + rollouts_[i].response.size()) - 1);
  const size_t T = static_cast<size_t>(r.T);
  r.tokens.assign(which.size() * T, kEosId);
  r.targets.assign(r.tokens.size(), -1);
  for (size_t b = 0; b < which.size(); ++b) {
    const Rollout& ro = rollouts_[which[b]];
    std::vector<int32_t> all = prompts_[ro.prompt].tokens;
    all.insert(all.end(), ro.response.begin(), ro.response.end());
    const size_t P = prompts_[ro.prompt].tokens.size();
    for (size_t k = 0; k + 1 < all.size(); ++k) {
      r.tokens[b * T + k] = all[k];
      if (k + 1 >= P) r.targets[b * T + k] = all[k + 1];
    }
    r.at.push_back(b * T + P - 1);
  }
  return r;
}

void RolloutObjective::forward_rollouts(Model& m, const std::function<void(Rollout&, const float*, const float*)>& fn) {
  const size_t n = static_cast<size_t>(rcfg_.micro_batch);
  for (size_t i0 = 0; i0 < rollouts_.size(); i0 += n) {
    std::vector<size_t> which;
    for (size_t i = i0; i < std::min(rollouts_.size(), i0 + n); ++i) which.push_back(i);
    const Rows rows = make_rows(which);
    m.set_dropout_seed(0);
    m.set_logit_temperature(static_cast<float>(rcfg_.temperature));
    m.forward(rows.tokens.data(), rows.targets.data(), rows.B, rows.T);
    const std::vector<float> lp = m.logp();
    const std::vector<float> v = m.options().scalar_head ? m.values() : std::vector<float>{};
    for (size_t b = 0; b < which.size(); ++b) fn(rollouts_[which[b]], lp.data() + rows.at[b], v.empty() ? nullptr : v.data() + rows.at[b]);
  }
}

// The rollout batch `cycle`: this rank's prompts answered, scored, their advantages.
void RolloutObjective::generate(Trainer& t, uint64_t cycle) {
  const auto t0 = std::chrono::steady_clock::now();
  const uint64_t G = static_cast<uint64_t>(samples_), M = static_cast<uint64_t>(rcfg_.mini_batches);
  const uint64_t per_rank = static_cast<uint64_t>(t.rows_per_rank()) * M;
  const uint64_t global = static_cast<uint64_t>(t.state().batch_sequences) * M;
  const uint64_t row0 = cycle * global + static_cast<uint64_t>(t.rank()) * per_rank;  // in the run's stream of answers
  rows_done_ = (cycle + 1) * global;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<size_t> which;
  for (uint64_t j = 0; j < per_rank / G; ++j) {
    which.push_back(order_->row_at(row0 / G + j, rcfg_.seed));
    prompts.push_back(prompts_[which.back()].tokens);
  }
  SamplingParams sp = sampling();
  sp.entropy = true;
  for (uint64_t i = 0; i < per_rank; ++i)  // a sequence's seed: the run's seed and its place in the run
    sp.seeds.push_back((rcfg_.seed + 1) * 0x9E3779B97F4A7C15ull ^ ((row0 + i) * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull));
  Model& m = t.model();
  m.set_dropout_seed(0);
  const std::vector<Generation> gen = engine_->generate(prompts, sp);
  const auto t1 = std::chrono::steady_clock::now();
  rollouts_.assign(gen.size(), Rollout{});
  std::vector<RewardInput> inputs(gen.size());
  double entropy = 0;
  for (size_t i = 0; i < gen.size(); ++i) {
    for (float h : gen[i].entropies) entropy += h;
    Rollout& r = rollouts_[i];
    r.prompt = which[i / G];
    r.response = gen[i].tokens;
    if (gen[i].finish == "eos") r.response.push_back(kEosId);
    r.old_logp = gen[i].logprobs;
    r.text = gen[i].text;
    r.finish = gen[i].finish;
    inputs[i] = {prompts_[r.prompt].text, r.text, prompts_[r.prompt].row, r.finish != "length"};
  }
  std::vector<double> reward = rewards_.score(inputs, &reward_means_);
  for (auto& [name, mean] : reward_means_)
    if (t.ranks() > 1) mean = t.comm().allreduce_sum_double(mean) / t.ranks();
  for (size_t i = 0; i < reward.size(); ++i) {
    if (rollouts_[i].finish == "length") reward[i] -= rcfg_.missing_eos_penalty;
    if (rcfg_.reward_clip > 0) reward[i] = std::clamp(reward[i], -rcfg_.reward_clip, rcfg_.reward_clip);
    rollouts_[i].reward = reward[i];
  }
  std::fill(std::begin(batch_), std::end(batch_), 0.0);
  for (const Rollout& r : rollouts_) {
    batch_[0] += 1;
    batch_[1] += r.reward;
    batch_[2] += r.reward * r.reward;
    batch_[3] += static_cast<double>(r.response.size());
    batch_[4] += r.finish == "length";
    batch_[5] += r.finish == "eos";
  }
  batch_[6] = entropy;
  double shortest = 1e300, longest = 0;
  for (const Rollout& r : rollouts_) {
    const double L = static_cast<double>(r.response.size());
    shortest = std::min(shortest, L), longest = std::max(longest, L);
    if (r.finish != "length") batch_[7] += L, batch_[8] += 1;
  }
  if (t.ranks() > 1) {
    t.comm().allreduce_sum(batch_, kBatchSums);
    shortest = -t.comm().allreduce_max_double(-shortest);
    longest = t.comm().allreduce_max_double(longest);
  }
  length_range_[0] = shortest, length_range_[1] = longest;
  if (needs_reference()) {  // the reference's log-probabilities: the frozen start, or the base without adapters
    Model& ref = reference_ ? *reference_ : m;
    if (!reference_) m.set_lora_enabled(false);
    forward_rollouts(ref, [](Rollout& r, const float* lp, const float*) { r.ref_logp.assign(lp, lp + r.response.size()); });
    if (!reference_) m.set_lora_enabled(true);
  }
  rollout_sums_.assign(rollout_sums_.size(), 0.0);
  compute_advantages(t);
  write_rollouts(t);
  time_rollout_ = std::chrono::duration<double>(t1 - t0).count();
  time_scoring_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
}

void RolloutObjective::begin_step(Trainer& t, uint64_t cursor) {
  const int64_t K = steps_per_cycle(), step = t.state().step;
  const uint64_t cycle = static_cast<uint64_t>(step / K);
  pass_step_ = step % K;
  time_rollout_ = time_scoring_ = 0;
  if (pass_step_ == 0) generate(t, cycle);
  else if (rollouts_.empty()) restore(t, cycle);
  // The step's rows: mini-batch j of pass e over the rollout batch, in the pass's order (a
  // shuffle of the rank's rollouts per pass when there are several mini-batches).
  const size_t per_rank = static_cast<size_t>(t.rows_per_rank());
  const int64_t pass = pass_step_ / rcfg_.mini_batches, j = pass_step_ % rcfg_.mini_batches;
  // (Computed at a pass's first step, and again when a run resumes in the middle of a pass.)
  if (j == 0 || perm_.size() != rollouts_.size() || perm_pass_ != static_cast<int64_t>(cycle) * rcfg_.iterations + pass) {
    perm_pass_ = static_cast<int64_t>(cycle) * rcfg_.iterations + pass;
    perm_.resize(rollouts_.size());
    for (size_t i = 0; i < perm_.size(); ++i) perm_[i] = i;
    if (rcfg_.mini_batches > 1) {  // Fisher-Yates on splitmix64: the same order on every machine
      uint64_t s = (rcfg_.seed + 0x51ED) * 0x9E3779B97F4A7C15ull ^ (cycle * 0xBF58476D1CE4E5B9ull + static_cast<uint64_t>(pass) + 1);
      for (size_t i = perm_.size(); i > 1; --i) {
        s += 0x9E3779B97F4A7C15ull;
        uint64_t z = s;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        std::swap(perm_[i - 1], perm_[z % i]);
      }
    }
  }
  step_row0_ = cursor + static_cast<uint64_t>(t.rank()) * per_rank;
  double tokens = 0;
  for (size_t q = 0; q < per_rank; ++q) tokens += static_cast<double>(rollouts_[perm_[static_cast<size_t>(j) * per_rank + q]].response.size());
  if (t.ranks() > 1) tokens = t.comm().allreduce_sum_double(tokens);
  step_global_tokens_ = std::max(1.0, tokens);
  step_tokens_ = static_cast<uint64_t>(tokens);
  train_sums_.assign(train_sums_.size(), 0.0);
  ratio_max_dev_ = 0;
  step_flops_ = 0;
  train_start_ = std::chrono::steady_clock::now();
}

void RolloutObjective::micro_step(Trainer& t, uint64_t first) {
  Model& m = t.model();
  const size_t per_rank = static_cast<size_t>(t.rows_per_rank());
  const size_t j = static_cast<size_t>(pass_step_ % rcfg_.mini_batches), q0 = static_cast<size_t>(first - step_row0_);
  std::vector<size_t> which;
  for (size_t b = 0; b < static_cast<size_t>(rcfg_.micro_batch); ++b) which.push_back(perm_[j * per_rank + q0 + b]);
  const Rows rows = make_rows(which);
  m.set_dropout_seed(0);  // as when sampling: the first pass's ratio is 1
  m.set_logit_temperature(static_cast<float>(rcfg_.temperature));  // the sampling's distribution, as TRL
  m.forward(rows.tokens.data(), rows.targets.data(), rows.B, rows.T);
  const std::vector<float> lp = m.logp();
  const std::vector<float> v = value_head() ? m.values() : std::vector<float>{};
  dlogp_.assign(rows.tokens.size(), 0.0f);
  dvalue_.assign(value_head() ? rows.tokens.size() : 0, 0.0f);
  token_losses(t, which, rows, lp, v, dlogp_, dvalue_);
  step_flops_ += m.flops_per_step(rows.B, rows.T);
  m.backward(dlogp_.data(), value_head() ? dvalue_.data() : nullptr);
}

double RolloutObjective::end_step(Trainer& t) {
  if (t.ranks() > 1) {
    t.comm().allreduce_sum(train_sums_.data(), train_sums_.size());
    ratio_max_dev_ = t.comm().allreduce_max_double(ratio_max_dev_);
  }
  time_training_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - train_start_).count();
  return train_sums_[0];
}

void RolloutObjective::step_metrics(Trainer& t, nlohmann::json& line) {
  if (pass_step_ == 0) {
    const double n = std::max(1.0, batch_[0]), mean = batch_[1] / n;
    line["reward"] = mean;
    for (const auto& [name, m] : reward_means_) line["rewards/" + name + "/mean"] = m;
    line["completions/mean_length"] = batch_[3] / n;
    line["completions/min_length"] = length_range_[0];
    line["completions/max_length"] = length_range_[1];
    line["completions/mean_terminated_length"] = batch_[7] / std::max(1.0, batch_[8]);
    line["completions/clipped_ratio"] = batch_[4] / n;
    line["val/num_eos_tokens"] = batch_[5];
    line[entropy_metric()] = batch_[6] / std::max(1.0, batch_[3]);
    // Answer tokens the ranks generated per second of the rollout (rank 0's time).
    if (time_rollout_ > 0) line["rollout_tokens_per_s"] = std::round(batch_[3] / time_rollout_ * 10) / 10;
    rollout_metrics(t, line);
  }
  train_metrics(t, line);
  line["ratio_max_deviation"] = ratio_max_dev_;
  const double all = time_rollout_ + time_scoring_ + time_training_;
  line["time/rollout"] = std::round(time_rollout_ / all * 1e4) / 1e4;
  line["time/scoring"] = std::round(time_scoring_ / all * 1e4) / 1e4;
  line["time/training"] = std::round(time_training_ / all * 1e4) / 1e4;
  line["epoch"] = std::round(static_cast<double>(rows_done_ / static_cast<uint64_t>(samples_)) / static_cast<double>(prompts_.size()) * 1e4) / 1e4;
}

// The training's FLOPs: the step's micro-batches as they were (rows as long as their longest
// prompt and answer, not --seq-len).
double RolloutObjective::step_flops(const Trainer&) const { return step_flops_; }

// Greedy answers to the validation prompts, scored: the mean reward.
nlohmann::json RolloutObjective::evaluate(Trainer& t) {
  if (val_prompts_.empty()) return nullptr;
  t.model().set_dropout_seed(0);
  std::vector<std::vector<int32_t>> mine;
  std::vector<size_t> which;
  for (size_t i = static_cast<size_t>(t.rank()); i < val_prompts_.size(); i += static_cast<size_t>(t.ranks())) {
    mine.push_back(val_prompts_[i].tokens);
    which.push_back(i);
  }
  SamplingParams sp = sampling();
  sp.temperature = 0;
  sp.n = 1;
  double sums[2] = {0, static_cast<double>(mine.size())};
  if (!mine.empty()) {
    const std::vector<Generation> gen = engine_->generate(mine, sp);
    std::vector<RewardInput> inputs;
    for (size_t i = 0; i < gen.size(); ++i)
      inputs.push_back({val_prompts_[which[i]].text, gen[i].text, val_prompts_[which[i]].row, gen[i].finish != "length"});
    for (double r : rewards_.score(inputs)) sums[0] += r;
  }
  if (t.ranks() > 1) t.comm().allreduce_sum(sums, 2);
  return {{"val_reward", sums[0] / sums[1]}};
}

// A checkpoint in the middle of a rollout batch's passes keeps the batch (every rank's), so that
// --resume trains on the same answers, advantages and old log-probabilities.
void RolloutObjective::before_save(Trainer& t) {
  saved_state_.clear();
  if (t.state().step % steps_per_cycle() == 0 || rollouts_.empty()) return;
  nlohmann::json mine = nlohmann::json::array();
  for (const Rollout& r : rollouts_) mine.push_back(r.to_json());
  const std::vector<std::string> all = t.comm().gather(mine.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  if (t.rank() != 0) return;
  nlohmann::json j;
  j["cycle"] = t.state().step / steps_per_cycle();
  j["ranks"] = nlohmann::json::array();
  for (const std::string& s : all) j["ranks"].push_back(nlohmann::json::parse(s));
  j["batch"] = std::vector<double>(std::begin(batch_), std::end(batch_));
  saved_state_ = j.dump();
}

void RolloutObjective::save_extra(Trainer& t, const std::string& dir) {
  save_tuned_extra(rcfg_, t, base_, dir);
  if (!saved_state_.empty()) write_file_atomic(dir + "/" + kStateFile, saved_state_ + "\n");
}

void RolloutObjective::restore(Trainer& t, uint64_t cycle) {
  const std::string path = resume_dir_.empty() ? "" : resume_dir_ + "/" + kStateFile;
  if (path.empty() || file_size(path) == 0)
    throw Error(resume_dir_, "stopped in the middle of a rollout batch's steps but holds no " + std::string(kStateFile));
  const nlohmann::json j = nlohmann::json::parse(read_file(path));
  if (j.at("cycle").get<uint64_t>() != cycle) throw Error(path, "is of another rollout batch than the checkpoint's step");
  if (j.at("ranks").size() != static_cast<size_t>(t.ranks()))
    throw Error(resume_dir_, "stopped in the middle of a rollout batch on " + std::to_string(j.at("ranks").size()) +
                                 " ranks: resume it on as many (or from a checkpoint at the start of a batch)");
  rollouts_.clear();
  for (const auto& r : j.at("ranks")[static_cast<size_t>(t.rank())]) rollouts_.push_back(Rollout::from_json(r));
  const std::vector<double> b = j.at("batch").get<std::vector<double>>();
  std::copy_n(b.begin(), std::min<size_t>(b.size(), kBatchSums), batch_);
  rows_done_ = (cycle + 1) * static_cast<uint64_t>(t.state().batch_sequences) * static_cast<uint64_t>(rcfg_.mini_batches);
}

void RolloutObjective::release(Trainer&) {
  engine_.reset();
  reference_.reset();
  rewards_.clear();
}

// The reference kept in memory, reward models, and the engine's KV cache: keys and values of
// every layer for the rank's answers of --seq-len positions.
double RolloutObjective::other_models_mib(const Trainer& t) const {
  const ModelConfig& c = t.model().config();
  const double slots = static_cast<double>(std::max<int64_t>(t.rows_per_rank(), samples_));
  double bytes = 2.0 * c.layers * slots * rcfg_.seq_len * c.kv_heads * c.head_dim() * static_cast<double>(engine_value_bytes_);
  if (reference_)
    bytes += static_cast<double>(reference_->num_params()) * 4 + static_cast<double>(reference_->activation_bytes(rcfg_.micro_batch, t.options().seq_len));
  bytes += rewards_.memory_bytes();  // reward models
  return bytes / (1 << 20);
}

// Prompt rows: {"prompt": "..."} (the text as it is, after the document separator) or
// {"prompt": [messages]} (the chat template, up to where the assistant writes), with any other
// fields for the rewards. A prompt that leaves no room for --max-new-tokens in --seq-len is an
// error naming its row.
std::vector<RolloutPrompt> RolloutObjective::read_prompts(const std::vector<std::string>& files, Stats& stats, int64_t limit) {
  std::vector<RolloutPrompt> out;
  const int room = rcfg_.seq_len - rcfg_.max_new_tokens;
  RolloutPrompt p;
  for_each_row(
      files, rcfg_.strict, stats,
      [&](std::string_view line, const std::string& where) {
        p = RolloutPrompt{};
        p.where = where;
        nlohmann::json j = parse_row_object(line, where);
        if (!j.contains("prompt")) throw Error(where, "a prompt row has a \"prompt\" (llmkit-chat(5))");
        if (j["prompt"].is_string()) {
          p.text = j["prompt"].get<std::string>();
          std::vector<uint32_t> ids;
          base_.tokenizer->encode(p.text, ids);
          p.tokens.push_back(kEosId);
          p.tokens.insert(p.tokens.end(), ids.begin(), ids.end());
        } else if (j["prompt"].is_array()) {
          const ChatRow row = parse_chat_row(nlohmann::json{{"messages", j["prompt"]}}.dump(), where);
          p.tokens = encoder_->encode_prompt(row.messages);
          std::vector<uint32_t> ids(p.tokens.begin(), p.tokens.end());
          p.text = base_.tokenizer->decode(ids.data(), ids.size());
        } else {
          throw Error(where, "\"prompt\" is a text or a list of messages");
        }
        if (static_cast<int>(p.tokens.size()) > room)
          throw Error(where, std::to_string(p.tokens.size()) + " tokens leave no room for --max-new-tokens " +
                                 std::to_string(rcfg_.max_new_tokens) + " in --seq-len " + std::to_string(rcfg_.seq_len));
        p.row = std::move(j);
      },
      [&] { out.push_back(std::move(p)); }, [&] { return limit <= 0 || static_cast<int64_t>(out.size()) < limit; });
  if (out.empty()) throw Error(files.empty() ? "" : files[0], "no prompt to train on");
  return out;
}

void RolloutObjective::write_rollouts(Trainer& t) {
  if (rcfg_.rollouts.empty()) return;
  std::string mine;
  for (const Rollout& r : rollouts_) {
    nlohmann::json j;
    j["step"] = t.state().step + 1;
    j["prompt"] = prompts_[r.prompt].text;
    j["response"] = r.text;
    j["finish"] = r.finish;
    j["reward"] = r.reward;
    j["advantage"] = r.advantage;
    rollout_fields(r, j);
    j["row"] = prompts_[r.prompt].row;
    mine += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  const std::vector<std::string> all = t.comm().gather(mine);
  if (t.rank() != 0) return;
  std::string text;
  for (const std::string& s : all) text += s;
  if (!rollouts_file_) {
    // A resumed run keeps the rows of the steps its checkpoint holds, as metrics.jsonl does.
    std::string kept;
    if (t.state().step > 0 && file_size(rcfg_.rollouts) > 0) {
      const std::string old = read_file(rcfg_.rollouts);
      for (size_t b = 0; b < old.size();) {
        size_t e = old.find('\n', b);
        if (e == std::string::npos) e = old.size();
        const std::string l = old.substr(b, e - b);
        const size_t k = l.find("\"step\":");
        if (k != std::string::npos && std::stoll(l.substr(k + 7)) <= t.state().step) kept += l + "\n";
        b = e + 1;
      }
    }
    rollouts_file_ = std::fopen(rcfg_.rollouts.c_str(), "w");
    if (!rollouts_file_) throw Error(rcfg_.rollouts, "cannot open");
    std::fwrite(kept.data(), 1, kept.size(), rollouts_file_);
  }
  std::fwrite(text.data(), 1, text.size(), rollouts_file_);
  std::fflush(rollouts_file_);
}

}  // namespace llmkit
