// llm-ppo grpo: group relative policy optimisation on the shared loop; see llmkit/grpo.hpp.
#include "llmkit/grpo.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "llmkit/chat.hpp"
#include "llmkit/checkpoint.hpp"
#include "llmkit/engine.hpp"
#include "llmkit/error.hpp"
#include "llmkit/examples.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/rewards.hpp"
#include "llmkit/rm.hpp"
#include "llmkit/stats.hpp"
#include "llmkit/tok.hpp"

namespace llmkit {

std::vector<double> group_advantages(const std::vector<double>& r, int group, bool scale) {
  const size_t G = static_cast<size_t>(group);
  std::vector<double> a(r.size());
  for (size_t g0 = 0; g0 + G <= r.size(); g0 += G) {
    double mean = 0;
    for (size_t i = 0; i < G; ++i) mean += r[g0 + i];
    mean /= static_cast<double>(G);
    double var = 0;
    for (size_t i = 0; i < G; ++i) var += (r[g0 + i] - mean) * (r[g0 + i] - mean);
    const double sd = G > 1 ? std::sqrt(var / static_cast<double>(G - 1)) : 0.0;
    for (size_t i = 0; i < G; ++i) a[g0 + i] = scale ? (r[g0 + i] - mean) / (sd + 1e-4) : r[g0 + i] - mean;
  }
  return a;
}

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

struct Prompt {
  std::vector<int32_t> tokens;
  std::string text;
  nlohmann::json row;
  std::string where;
};

struct Rollout {
  size_t prompt = 0;                // in the prompt list
  std::vector<int32_t> response;    // with </s> when the model ended it
  std::vector<float> old_logp;      // the engine's, one per response token
  std::string text, finish;
  double reward = 0, advantage = 0;
};

// Sums of a step over its sequences and tokens, added up over ranks.
struct StepSums {
  enum { loss, tokens, clipped, kl, reward, group_std, length, truncated, zero_std, groups, ratio_dev, count };
  double v[count] = {};
};

class GrpoObjective final : public Objective {
 public:
  explicit GrpoObjective(const GrpoConfig& cfg) : cfg_(cfg) {}

  std::unique_ptr<Model> build(Trainer& t, const std::string& resume_dir) override {
    if (cfg_.data.empty()) throw UsageError("--data FILE is required (prompts, llmkit-chat(5))");
    if (cfg_.rewards.empty()) throw UsageError("give a reward: --reward rule:NAME, --reward-cmd COMMAND or --reward-model RM");
    if (!cfg_.reward_weights.empty() && cfg_.reward_weights.size() != cfg_.rewards.size())
      throw UsageError("--reward-weights: " + std::to_string(cfg_.reward_weights.size()) + " weights for " +
                       std::to_string(cfg_.rewards.size()) + " rewards");
    if (cfg_.group < 2) throw UsageError("--group-size must be at least 2 (advantages are relative to the group)");
    if (rows_per_step(t) % (static_cast<int64_t>(cfg_.group) * t.ranks()) != 0)
      throw UsageError("--batch-size must be a multiple of --group-size x ranks (" + std::to_string(cfg_.group * t.ranks()) +
                       "): a rank answers whole prompts");
    if (cfg_.max_new_tokens < 1 || cfg_.max_new_tokens >= cfg_.seq_len)
      throw UsageError("--max-new-tokens must be in 1.." + std::to_string(cfg_.seq_len - 1) + " (below --seq-len)");
    if (cfg_.loss_type != "grpo" && cfg_.loss_type != "bnpo" && cfg_.loss_type != "dr_grpo" && cfg_.loss_type != "dapo")
      throw UsageError("--loss-type must be grpo, bnpo, dr_grpo or dapo, not '" + cfg_.loss_type + "'");
    if (cfg_.scale_rewards != "group" && cfg_.scale_rewards != "batch" && cfg_.scale_rewards != "none")
      throw UsageError("--scale-rewards must be group, batch or none, not '" + cfg_.scale_rewards + "'");
    if (!(cfg_.epsilon > 0 && cfg_.epsilon < 1) || cfg_.epsilon_high < 0) throw UsageError("--epsilon must be in (0, 1), --epsilon-high 0 or more");
    if (cfg_.beta < 0) throw UsageError("--beta must be 0 or more");
    if (cfg_.lora.dropout > 0)
      throw UsageError("--lora-dropout: grpo trains without dropout (the answers' sampled log-probabilities must be the trainer's)");
    ModelOptions options;
    options.recompute_mlp = cfg_.recompute;
    std::unique_ptr<Model> model = build_tuned_model(cfg_, t, resume_dir, base_, options);
    if (cfg_.beta > 0 && cfg_.lora.rank == 0) {  // the reference: a frozen copy of the start
      reference_ = open_model(base_.init_dir, t.backend()).model;
      reference_->freeze([](const std::string&) { return true; });
    }
    encoder_ = std::make_unique<ChatEncoder>(*base_.tokenizer, ChatTemplate::named(cfg_.chat_template));
    for (size_t i = 0; i < cfg_.rewards.size(); ++i) {
      const std::string& r = cfg_.rewards[i];
      const double w = cfg_.reward_weights.empty() ? 1.0 : cfg_.reward_weights[i];
      if (r.rfind("rule:", 0) == 0) rewards_.add(make_rule_reward(r.substr(5)), w);
      else if (r.rfind("cmd:", 0) == 0) rewards_.add(make_command_reward(r.substr(4)), w);
      else if (r.rfind("model:", 0) == 0) rewards_.add(make_model_reward(r.substr(6), t.backend(), *encoder_, cfg_.seq_len, cfg_.micro_batch), w);
      else throw UsageError("--reward: '" + r + "' is neither rule:NAME nor a command");
    }
    prompts_ = read_prompts(cfg_.data, t.stats(), cfg_.limit);
    if (!cfg_.val.empty()) {
      Stats val_stats;
      val_prompts_ = read_prompts(cfg_.val, val_stats, 0);
    }
    // The prompts' order: an ExampleSet of them, shuffled per epoch as every trainer's data.
    std::vector<ChatExample> ex(prompts_.size());
    for (size_t i = 0; i < prompts_.size(); ++i) {
      ex[i].tokens = prompts_[i].tokens;
      ex[i].trained.assign(ex[i].tokens.size(), 1);
      ex[i].where = prompts_[i].where;
    }
    ExampleOptions eo;
    eo.seq_len = cfg_.seq_len;
    eo.whole = true;
    Stats order_stats;
    order_ = std::make_unique<ExampleSet>(std::move(ex), eo, order_stats);
    if (cfg_.epochs > 0) {
      const double per_step = static_cast<double>(rows_per_step(t)) / cfg_.group;
      t.set_steps(std::max<int64_t>(1, static_cast<int64_t>(std::ceil(cfg_.epochs * static_cast<double>(prompts_.size()) / per_step))));
    }
    const int per_rank = static_cast<int>(rows_per_step(t) / t.ranks());
    engine_ = std::make_unique<Engine>(*model, base_.tokenizer.get(), std::max(per_rank, cfg_.group), cfg_.seq_len);
    engine_backend_value_bytes_ = t.backend().activation_value_bytes();
    return model;
  }

  std::string describe(const Trainer& t) const override {
    char line[512];
    snprintf(line, sizeof line,
             "%s: %.2fM parameters%s; %zu prompts, %d samples each, up to %d new tokens (temperature %g); loss %s, rewards %s, "
             "%lld step%s of %lld prompts",
             base_.init_dir.c_str(), static_cast<double>(t.model().num_params_unpadded()) / 1e6,
             cfg_.lora.rank > 0 ? (", LoRA rank " + std::to_string(cfg_.lora.rank)).c_str() : "", prompts_.size(), cfg_.group,
             cfg_.max_new_tokens, cfg_.temperature, cfg_.loss_type.c_str(), cfg_.scale_rewards.c_str(),
             static_cast<long long>(t.options().steps), t.options().steps == 1 ? "" : "s",
             static_cast<long long>(t.state().batch_sequences / cfg_.group));
    return line;
  }

  // The step's rollouts: this rank's prompts answered G times, scored, their advantages.
  void begin_step(Trainer& t, uint64_t cursor) override {
    const auto t0 = std::chrono::steady_clock::now();
    sums_ = StepSums{};
    const uint64_t G = static_cast<uint64_t>(cfg_.group), per_rank = static_cast<uint64_t>(t.rows_per_rank());
    base_row_ = cursor + static_cast<uint64_t>(t.rank()) * per_rank;
    rows_done_ = cursor + static_cast<uint64_t>(t.state().batch_sequences);
    std::vector<std::vector<int32_t>> prompts;
    std::vector<size_t> which;
    for (uint64_t j = 0; j < per_rank / G; ++j) {
      which.push_back(order_->row_at(base_row_ / G + j, cfg_.seed));
      prompts.push_back(prompts_[which.back()].tokens);
    }
    SamplingParams sp = sampling();
    for (uint64_t i = 0; i < per_rank; ++i)  // a sequence's seed: the run's seed and its place in the run
      sp.seeds.push_back((cfg_.seed + 1) * 0x9E3779B97F4A7C15ull ^ ((base_row_ + i) * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull));
    Model& m = t.model();
    m.set_dropout_seed(0);
    const std::vector<Generation> gen = engine_->generate(prompts, sp);
    const auto t1 = std::chrono::steady_clock::now();
    rollouts_.assign(gen.size(), Rollout{});
    std::vector<RewardInput> inputs(gen.size());
    for (size_t i = 0; i < gen.size(); ++i) {
      Rollout& r = rollouts_[i];
      r.prompt = which[i / G];
      r.response = gen[i].tokens;
      if (gen[i].finish == "eos") r.response.push_back(kEosId);
      r.old_logp = gen[i].logprobs;
      r.text = gen[i].text;
      r.finish = gen[i].finish;
      inputs[i] = {prompts_[r.prompt].text, r.text, prompts_[r.prompt].row, r.finish != "length"};
    }
    std::vector<std::pair<std::string, double>> means;
    std::vector<double> reward = rewards_.score(inputs, &means);
    for (size_t i = 0; i < reward.size(); ++i)
      if (rollouts_[i].finish == "length") reward[i] -= cfg_.missing_eos_penalty;
    std::vector<double> adv = group_advantages(reward, cfg_.group, cfg_.scale_rewards == "group");
    // Statistics (summed over ranks in end_step) and the batch's scale.
    double sum = 0, sq = 0;
    for (double r : reward) sum += r, sq += r * r;
    if (cfg_.scale_rewards == "batch") {
      double s[3] = {sum, sq, static_cast<double>(reward.size())};
      if (t.ranks() > 1) t.comm().allreduce_sum(s, 3);
      const double mean = s[0] / s[2], sd = s[2] > 1 ? std::sqrt(std::max(0.0, (s[1] - s[2] * mean * mean) / (s[2] - 1))) : 0.0;
      for (double& a : adv) a /= sd + 1e-4;
    }
    for (size_t i = 0; i < rollouts_.size(); ++i) {
      rollouts_[i].reward = reward[i];
      rollouts_[i].advantage = adv[i];
      sums_.v[StepSums::length] += static_cast<double>(rollouts_[i].response.size());
      sums_.v[StepSums::truncated] += rollouts_[i].finish == "length";
    }
    for (size_t g0 = 0; g0 < reward.size(); g0 += G) {
      bool same = true;
      double mean = 0, var = 0;
      for (size_t i = 0; i < G; ++i) mean += reward[g0 + i] / static_cast<double>(G);
      for (size_t i = 0; i < G; ++i) {
        same = same && reward[g0 + i] == reward[g0];
        var += (reward[g0 + i] - mean) * (reward[g0 + i] - mean);
      }
      sums_.v[StepSums::group_std] += std::sqrt(var / static_cast<double>(G - 1));
      sums_.v[StepSums::zero_std] += same;
      sums_.v[StepSums::groups] += 1;
    }
    sums_.v[StepSums::reward] = sum;
    reward_means_ = means;
    // The loss's normaliser over the global batch: its sequences or its response tokens.
    double tokens = sums_.v[StepSums::length];
    if (t.ranks() > 1) tokens = t.comm().allreduce_sum_double(tokens);
    global_tokens_ = tokens;
    step_tokens_ = static_cast<uint64_t>(tokens);
    write_rollouts(t);
    time_rollout_ = std::chrono::duration<double>(t1 - t0).count();
    time_scoring_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    train_start_ = std::chrono::steady_clock::now();
  }

  void micro_step(Trainer& t, uint64_t first) override {
    Model& m = t.model();
    const size_t i0 = static_cast<size_t>(first - base_row_), n = static_cast<size_t>(cfg_.micro_batch);
    // Rows: prompt + response, the response's tokens the targets.
    int T = 1;
    for (size_t i = i0; i < i0 + n; ++i)
      T = std::max<int>(T, static_cast<int>(prompts_[rollouts_[i].prompt].tokens.size() + rollouts_[i].response.size()) - 1);
    const int B = static_cast<int>(n);
    std::vector<int32_t> tokens(static_cast<size_t>(B) * static_cast<size_t>(T), kEosId), targets(tokens.size(), -1);
    for (size_t b = 0; b < n; ++b) {
      const Rollout& r = rollouts_[i0 + b];
      std::vector<int32_t> all = prompts_[r.prompt].tokens;
      all.insert(all.end(), r.response.begin(), r.response.end());
      const size_t P = prompts_[r.prompt].tokens.size();
      for (size_t k = 0; k + 1 < all.size(); ++k) {
        tokens[b * static_cast<size_t>(T) + k] = all[k];
        if (k + 1 >= P) targets[b * static_cast<size_t>(T) + k] = all[k + 1];
      }
    }
    std::vector<float> ref;
    if (cfg_.beta > 0) {  // the reference's log-probabilities: the frozen start, or the base without adapters
      Model& rm = reference_ ? *reference_ : m;
      if (!reference_) m.set_lora_enabled(false);
      rm.set_dropout_seed(0);
      rm.set_logit_temperature(static_cast<float>(cfg_.temperature));
      rm.forward(tokens.data(), targets.data(), B, T);
      ref = rm.logp();
      if (!reference_) m.set_lora_enabled(true);
    }
    m.set_dropout_seed(0);  // as when sampling: the first iteration's ratio is 1
    m.set_logit_temperature(static_cast<float>(cfg_.temperature));  // the sampling's distribution, as TRL
    m.forward(tokens.data(), targets.data(), B, T);
    const std::vector<float> lp = m.logp();
    const double hi = cfg_.epsilon_high > 0 ? cfg_.epsilon_high : cfg_.epsilon;
    const double seqs = static_cast<double>(t.state().batch_sequences);
    double micro_tokens = 0;
    for (size_t b = 0; b < n; ++b) micro_tokens += static_cast<double>(rollouts_[i0 + b].response.size());
    dlogp_.assign(tokens.size(), 0.0f);
    for (size_t b = 0; b < n; ++b) {
      const Rollout& r = rollouts_[i0 + b];
      const size_t P = prompts_[r.prompt].tokens.size(), L = r.response.size();
      // Each token's weight in the loss, by --loss-type.
      double w;
      if (cfg_.loss_type == "grpo") w = 1.0 / (static_cast<double>(L) * seqs);
      else if (cfg_.loss_type == "dr_grpo") w = 1.0 / (seqs * cfg_.max_new_tokens);
      else if (cfg_.loss_type == "bnpo") w = 1.0 / (micro_tokens * static_cast<double>(t.accumulation() * t.ranks()));
      else w = 1.0 / global_tokens_;  // dapo
      for (size_t k = 0; k < L; ++k) {
        const size_t at = b * static_cast<size_t>(T) + P - 1 + k;
        const SurrogateLoss s = clipped_surrogate(lp[at], r.old_logp[k], r.advantage, cfg_.epsilon, hi);
        double loss = s.loss, d = s.dlogp;
        if (cfg_.beta > 0) {
          const auto [kl, dkl] = k3_kl(lp[at], ref[at]);
          loss += cfg_.beta * kl;
          d += cfg_.beta * dkl;
          sums_.v[StepSums::kl] += kl;
        }
        sums_.v[StepSums::loss] += w * loss;
        sums_.v[StepSums::clipped] += s.clipped;
        sums_.v[StepSums::ratio_dev] = std::max(sums_.v[StepSums::ratio_dev], std::abs(std::exp(lp[at] - r.old_logp[k]) - 1.0));
        dlogp_[at] = static_cast<float>(w * d);
      }
    }
    m.backward(dlogp_.data());
  }

  double end_step(Trainer& t) override {
    if (t.ranks() > 1) {
      const double dev = sums_.v[StepSums::ratio_dev];
      t.comm().allreduce_sum(sums_.v, StepSums::count);
      sums_.v[StepSums::ratio_dev] = t.comm().allreduce_max_double(dev);
      for (auto& [name, mean] : reward_means_) mean = t.comm().allreduce_sum_double(mean) / t.ranks();
    }
    time_training_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - train_start_).count();
    return sums_.v[StepSums::loss];
  }

  void step_metrics(Trainer& t, nlohmann::json& line) override {
    const double n = static_cast<double>(t.state().batch_sequences), tok = std::max(1.0, sums_.v[StepSums::length]);
    const double mean = sums_.v[StepSums::reward] / n;
    line["reward"] = mean;
    line["reward_std"] = sums_.v[StepSums::group_std] / std::max(1.0, sums_.v[StepSums::groups]);  // TRL's: the groups' mean std
    for (const auto& [name, m] : reward_means_) line["rewards/" + name + "/mean"] = m;
    line["completions/mean_length"] = sums_.v[StepSums::length] / n;
    line["completions/clipped_ratio"] = sums_.v[StepSums::truncated] / n;
    line["frac_reward_zero_std"] = sums_.v[StepSums::zero_std] / std::max(1.0, sums_.v[StepSums::groups]);
    line["clip_ratio"] = sums_.v[StepSums::clipped] / tok;
    line["ratio_max_deviation"] = sums_.v[StepSums::ratio_dev];
    if (cfg_.beta > 0) line["kl"] = sums_.v[StepSums::kl] / tok;
    const double all = time_rollout_ + time_scoring_ + time_training_;
    line["time/rollout"] = std::round(time_rollout_ / all * 1e4) / 1e4;
    line["time/scoring"] = std::round(time_scoring_ / all * 1e4) / 1e4;
    line["time/training"] = std::round(time_training_ / all * 1e4) / 1e4;
    line["epoch"] = std::round(static_cast<double>(rows_done_ / static_cast<uint64_t>(cfg_.group)) / static_cast<double>(prompts_.size()) * 1e4) / 1e4;
  }
  uint64_t step_tokens(const Trainer&) const override { return step_tokens_; }
  double step_flops(const Trainer& t) const override {
    return t.model().flops_per_step(cfg_.micro_batch, cfg_.seq_len) * static_cast<double>(t.accumulation());
  }

  // Greedy answers to the validation prompts, scored: the mean reward.
  nlohmann::json evaluate(Trainer& t) override {
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

  void save_extra(Trainer& t, const std::string& dir) override { save_tuned_extra(cfg_, t, base_, dir); }
  void release(Trainer&) override {
    engine_.reset();
    reference_.reset();
    rewards_.clear();
  }
  // The reference kept in memory, and the engine's KV cache: keys and values of every layer for
  // the rank's answers of --seq-len positions.
  double other_models_mib(const Trainer& t) const override {
    const ModelConfig& c = t.model().config();
    const double slots = static_cast<double>(std::max<int64_t>(t.rows_per_rank(), cfg_.group));
    double bytes = 2.0 * c.layers * slots * cfg_.seq_len * c.kv_heads * c.head_dim() * static_cast<double>(engine_backend_value_bytes_);
    if (reference_)
      bytes += static_cast<double>(reference_->num_params()) * 4 +
               static_cast<double>(reference_->activation_bytes(cfg_.micro_batch, t.options().seq_len));
    return bytes / (1 << 20);
  }

 private:
  SamplingParams sampling() const {
    SamplingParams sp;
    sp.temperature = cfg_.temperature;
    sp.top_p = cfg_.top_p;
    sp.top_k = cfg_.top_k;
    sp.min_p = cfg_.min_p;
    sp.max_tokens = cfg_.max_new_tokens;
    sp.stop = cfg_.stop;
    // A chat prompt's answer ends with the template's end of turn (trained, so the model learns
    // to stop); --stop adds others.
    if (encoder_ && !encoder_->chat_template().end_of_turn().empty()) sp.stop.push_back(encoder_->chat_template().end_of_turn());
    sp.n = cfg_.group;
    return sp;
  }

  // Prompt rows: {"prompt": "..."} (the text as it is, after the document separator) or
  // {"prompt": [messages]} (the chat template, up to where the assistant writes), with any
  // other fields for the rewards. A prompt that leaves no room for --max-new-tokens in
  // --seq-len is skipped and counted.
  std::vector<Prompt> read_prompts(const std::vector<std::string>& files, Stats& stats, int64_t limit) {
    std::vector<Prompt> out;
    const int room = cfg_.seq_len - cfg_.max_new_tokens;
    Prompt p;
    for_each_row(
        files, cfg_.strict, stats,
        [&](std::string_view line, const std::string& where) {
          p = Prompt{};
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
                                   std::to_string(cfg_.max_new_tokens) + " in --seq-len " + std::to_string(cfg_.seq_len));
          p.row = std::move(j);
        },
        [&] { out.push_back(std::move(p)); }, [&] { return limit <= 0 || static_cast<int64_t>(out.size()) < limit; });
    if (out.empty()) throw Error(files.empty() ? "" : files[0], "no prompt to train on");
    return out;
  }

  void write_rollouts(Trainer& t) {
    if (cfg_.rollouts.empty()) return;
    std::string mine;
    for (const Rollout& r : rollouts_) {
      nlohmann::json j;
      j["step"] = t.state().step + 1;
      j["prompt"] = prompts_[r.prompt].text;
      j["response"] = r.text;
      j["finish"] = r.finish;
      j["reward"] = r.reward;
      j["advantage"] = r.advantage;
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
      if (t.state().step > 0 && file_size(cfg_.rollouts) > 0) {
        const std::string old = read_file(cfg_.rollouts);
        for (size_t b = 0; b < old.size();) {
          size_t e = old.find('\n', b);
          if (e == std::string::npos) e = old.size();
          const std::string l = old.substr(b, e - b);
          const size_t k = l.find("\"step\":");
          if (k != std::string::npos && std::stoll(l.substr(k + 7)) <= t.state().step) kept += l + "\n";
          b = e + 1;
        }
      }
      rollouts_file_ = std::fopen(cfg_.rollouts.c_str(), "w");
      if (!rollouts_file_) throw Error(cfg_.rollouts, "cannot open");
      std::fwrite(kept.data(), 1, kept.size(), rollouts_file_);
    }
    std::fwrite(text.data(), 1, text.size(), rollouts_file_);
    std::fflush(rollouts_file_);
  }

  const GrpoConfig& cfg_;
  TunedBase base_;
  std::unique_ptr<ChatEncoder> encoder_;
  std::vector<Prompt> prompts_, val_prompts_;
  std::unique_ptr<ExampleSet> order_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Model> reference_;
  RewardMix rewards_;
  std::vector<Rollout> rollouts_;
  std::vector<std::pair<std::string, double>> reward_means_;
  StepSums sums_;
  uint64_t base_row_ = 0, rows_done_ = 0, step_tokens_ = 0;
  double global_tokens_ = 1;
  double time_rollout_ = 0, time_scoring_ = 0, time_training_ = 0;
  std::chrono::steady_clock::time_point train_start_;
  std::vector<float> dlogp_;
  std::FILE* rollouts_file_ = nullptr;
  size_t engine_backend_value_bytes_ = 4;

 public:
  ~GrpoObjective() override {
    if (rollouts_file_) std::fclose(rollouts_file_);
  }
};

}  // namespace

int run_grpo(const GrpoConfig& cfg, Stats& stats) { return train_objective<GrpoObjective>(cfg, stats); }

}  // namespace llmkit
