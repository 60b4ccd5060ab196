// llm-sft --task classify: sequence classification on the shared loop; see llmkit/classify.hpp.
#include "llmkit/classify.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <set>

#include "llmkit/checkpoint.hpp"
#include "llmkit/error.hpp"
#include "llmkit/examples.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/stats.hpp"
#include "llmkit/tok.hpp"
#include "llmkit/trainer.hpp"

namespace llmkit {

namespace {

nlohmann::json parse_row(std::string_view line, const std::string& where) {
  try {
    nlohmann::json j = nlohmann::json::parse(line);
    if (!j.is_object()) throw Error(where, "not a JSON object");
    return j;
  } catch (const nlohmann::json::exception& e) {
    throw Error(where, std::string("invalid JSON: ") + e.what());
  }
}

bool integer_text(const std::string& s) {
  const size_t d = !s.empty() && s[0] == '-' ? 1 : 0;
  return s.size() > d && s.size() < 19 && s.find_first_not_of("0123456789", d) == std::string::npos;
}

}  // namespace

std::string label_text(std::string_view line, const std::string& where) {
  const nlohmann::json j = parse_row(line, where);
  const auto it = j.find("label");
  if (it == j.end()) throw Error(where, "no \"label\"");
  if (it->is_string() && !it->get<std::string>().empty()) return it->get<std::string>();
  if (it->is_number_integer()) return std::to_string(it->get<int64_t>());
  throw Error(where, "\"label\" is neither a non-empty string nor an integer");
}

int LabelSet::id(const std::string& label, const std::string& where) const {
  const auto it = std::find(names.begin(), names.end(), label);
  if (it == names.end()) throw Error(where, "label '" + label + "' is not one of the training data's");
  return static_cast<int>(it - names.begin());
}

LabelSet LabelSet::read(const std::vector<std::string>& files, int64_t limit) {
  std::set<std::string> seen;
  int64_t rows = 0;
  Stats ignored;
  for_each_row(
      files, false, ignored, [&](std::string_view line, const std::string& where) { seen.insert(label_text(line, where)); },
      [&] { ++rows; }, [&] { return limit <= 0 || rows < limit; });
  LabelSet s;
  s.names.assign(seen.begin(), seen.end());
  if (std::all_of(s.names.begin(), s.names.end(), integer_text))
    std::sort(s.names.begin(), s.names.end(), [](const std::string& a, const std::string& b) { return std::stoll(a) < std::stoll(b); });
  if (s.names.size() < 2)
    throw Error(files.empty() ? "--data" : files[0], "has " + std::to_string(s.names.size()) + " distinct label(s): a classifier needs two or more");
  return s;
}

int32_t classify_separator(const Tokenizer& tok) {
  // A WordPiece Tokenizer's eos is [SEP].
  if (tok.eos_id() < 0) throw Error(tok.path(), "has no end-of-sequence ([SEP]) piece to close the texts with");
  return tok.eos_id();
}

std::vector<int32_t> classify_tokens(const Tokenizer& tok, bool encoder, const std::vector<int32_t>& a0,
                                     const std::vector<int32_t>* b0, int seq_len) {
  const int32_t cls = tok.bos_id();  // a WordPiece Tokenizer's [CLS]
  if (encoder && cls < 0) throw Error(tok.path(), "has no [CLS] piece for BERT's inputs");
  const int32_t end = classify_separator(tok);
  const int specials = (encoder ? 2 : 1) + (b0 ? 1 : 0);
  std::vector<int32_t> a = a0, b = b0 ? *b0 : std::vector<int32_t>();
  while (static_cast<int>(a.size() + b.size()) + specials > seq_len && !(a.empty() && b.empty())) {
    if (a.size() >= b.size()) a.pop_back();  // longest first
    else b.pop_back();
  }
  std::vector<int32_t> out;
  if (encoder) out.push_back(cls);
  out.insert(out.end(), a.begin(), a.end());
  if (b0) {
    out.push_back(end);
    out.insert(out.end(), b.begin(), b.end());
  }
  out.push_back(end);
  return out;
}

double label_cross_entropy(const float* z, int K, int gold, int& predicted, float* dz, double scale) {
  predicted = static_cast<int>(std::max_element(z, z + K) - z);
  const double mx = z[predicted];
  double sum = 0;
  for (int k = 0; k < K; ++k) sum += std::exp(static_cast<double>(z[k]) - mx);
  const double lse = mx + std::log(sum);
  if (dz)
    for (int k = 0; k < K; ++k) dz[k] = static_cast<float>((std::exp(static_cast<double>(z[k]) - lse) - (k == gold ? 1.0 : 0.0)) * scale);
  return lse - z[gold];
}

ClassifyScores classify_scores(const std::vector<double>& confusion, int K) {
  ClassifyScores s;
  double rows = 0, right = 0, f1 = 0;
  for (int g = 0; g < K; ++g) {
    double tp = confusion[static_cast<size_t>(g * K + g)], gold = 0, predicted = 0;
    for (int p = 0; p < K; ++p) {
      gold += confusion[static_cast<size_t>(g * K + p)];
      predicted += confusion[static_cast<size_t>(p * K + g)];
    }
    rows += gold;
    right += tp;
    // A label without predictions or gold rows scores 0, as scikit-learn's.
    f1 += gold + predicted > 0 ? 2 * tp / (gold + predicted) : 0.0;
  }
  if (rows > 0) {
    s.accuracy = right / rows;
    s.macro_f1 = f1 / K;
  }
  return s;
}

void classify_forward(Model& m, const std::vector<int32_t>& tokens, const std::vector<int32_t>& used, int B, int T, int32_t sep) {
  if (!m.config().encoder()) return m.forward(tokens.data(), nullptr, B, T);
  std::vector<int32_t> starts(tokens.size(), 0), types(tokens.size(), 0);
  for (int r = 0; r < B; ++r) {
    const size_t row = static_cast<size_t>(r) * static_cast<size_t>(T);
    const int n = used[static_cast<size_t>(r)];
    int type = 0;
    for (int p = 0; p < T; ++p) {
      starts[row + static_cast<size_t>(p)] = p < n ? 0 : p;  // the padding alone
      types[row + static_cast<size_t>(p)] = p < n ? type : 0;
      if (p < n && tokens[row + static_cast<size_t>(p)] == sep) type = 1;
    }
  }
  m.set_token_types(std::move(types));
  m.forward(tokens.data(), nullptr, B, T, starts.data());
}

namespace {

// A step's or an evaluation's sums: the loss, the rows, and the confusion matrix [K, K].
struct ClassifySums {
  explicit ClassifySums(size_t K = 0) : confusion(K * K, 0.0) {}
  double loss = 0, rows = 0;
  std::vector<double> confusion;
};

class ClassifyObjective final : public Objective {
 public:
  explicit ClassifyObjective(const SftConfig& cfg) : cfg_(cfg) {}

  std::unique_ptr<Model> build(Trainer& t, const std::string& resume_dir) override {
    if (cfg_.data.empty()) throw UsageError("--data FILE is required (rows {\"text\", \"label\"} or {\"text_a\", \"text_b\", \"label\"})");
    labels_ = LabelSet::read(cfg_.data, cfg_.limit);
    base_.labels = static_cast<int>(labels_.names.size());
    base_.label_names = labels_.names;
    ModelOptions options = t.model_options();  // this rank's tensor-parallel slice
    options.recompute_mlp = cfg_.recompute;
    std::unique_ptr<Model> model = build_tuned_model(cfg_, t, resume_dir, base_, options);
    encoder_ = model->config().encoder();
    const Tokenizer& tok = *base_.tokenizer;
    const RowEncoder rows = [this, &tok](std::string_view line, const std::string& where) {
      const nlohmann::json j = parse_row(line, where);
      auto text = [&](const char* key) -> std::vector<int32_t> {
        const auto it = j.find(key);
        if (it == j.end() || !it->is_string()) throw Error(where, std::string("no \"") + key + "\" string");
        std::vector<uint32_t> ids;
        tok.encode(it->get<std::string>(), ids);
        return std::vector<int32_t>(ids.begin(), ids.end());
      };
      const bool pair = j.contains("text_a");
      const std::vector<int32_t> a = text(pair ? "text_a" : "text");
      const std::vector<int32_t> b = pair ? text("text_b") : std::vector<int32_t>();
      ExampleGroup g;
      ChatExample e;
      e.tokens = classify_tokens(tok, encoder_, a, pair ? &b : nullptr, cfg_.seq_len);
      e.trained.assign(e.tokens.size(), 1);  // the whole text is read: nothing of it is left out
      e.where = where;
      g.examples.push_back(std::move(e));
      g.value = static_cast<float>(labels_.id(label_text(line, where), where));
      return g;
    };
    read_tuning_data(t, cfg_, rows, 1, true, "texts", train_, val_);
    return model;
  }

  std::string describe(const Trainer& t) const override {
    std::string names;
    for (size_t i = 0; i < labels_.names.size() && i < 8; ++i) names += (i ? ", " : "") + labels_.names[i];
    if (labels_.names.size() > 8) names += ", ...";
    char line[512];
    snprintf(line, sizeof line, "%s: %.2fM parameters, %s %s head; %zu rows of %zu labels (%s); %lld steps of %lld rows (%.2f epochs)",
             base_.init_dir.c_str(), static_cast<double>(t.model().num_params_unpadded()) / 1e6, base_.new_score ? "a new" : "its",
             encoder_ ? "[CLS] (pooler, classifier)" : "last-token score", train_->groups(), labels_.names.size(), names.c_str(),
             static_cast<long long>(t.options().steps), static_cast<long long>(t.state().batch_sequences),
             static_cast<double>(t.options().steps) * static_cast<double>(t.state().batch_sequences) / static_cast<double>(train_->rows()));
    return line;
  }

  void begin_step(Trainer& t, uint64_t cursor) override {
    sums_ = ClassifySums(labels_.names.size());
    step_tokens_ = 0;
    rows_done_ = cursor + static_cast<uint64_t>(t.state().batch_sequences);
  }

  void micro_step(Trainer& t, uint64_t first) override {
    Model& m = t.model();
    const RowBatch b = train_->batch(first, cfg_.micro_batch, cfg_.seed);
    forward(m, b);
    dvalue_.assign(static_cast<size_t>(b.B) * static_cast<size_t>(b.T) * labels_.names.size(), 0.0f);
    score(m, b, sums_, static_cast<double>(t.state().batch_sequences), &dvalue_);
    for (int u : b.used) step_tokens_ += static_cast<uint64_t>(u);
    m.backward(nullptr, dvalue_.data());
  }

  double end_step(Trainer& t) override {
    if (t.ranks() > 1) {
      allreduce(t, sums_);
      step_tokens_ = static_cast<uint64_t>(t.comm().allreduce_sum(static_cast<int64_t>(step_tokens_)));
    }
    return sums_.rows > 0 ? sums_.loss / sums_.rows : 0.0;
  }

  void step_metrics(Trainer&, nlohmann::json& line) override {
    line["accuracy"] = classify_scores(sums_.confusion, static_cast<int>(labels_.names.size())).accuracy;
    line["epoch"] = std::round(static_cast<double>(rows_done_) / static_cast<double>(train_->rows()) * 1e4) / 1e4;
  }
  uint64_t step_tokens(const Trainer&) const override { return step_tokens_; }

  nlohmann::json evaluate(Trainer& t) override {
    if (!val_) return nullptr;
    Model& m = t.model();
    ClassifySums sums(labels_.names.size());
    for_rank_batches(t, cfg_, *val_, static_cast<uint64_t>(cfg_.eval_batches) * static_cast<uint64_t>(cfg_.micro_batch),
                     [&](const RowBatch& b) {
                       forward(m, b);
                       score(m, b, sums, 0, nullptr);
                     });
    if (t.ranks() > 1) allreduce(t, sums);
    if (sums.rows == 0) return nullptr;
    const ClassifyScores s = classify_scores(sums.confusion, static_cast<int>(labels_.names.size()));
    return {{"val_loss", sums.loss / sums.rows}, {"val_accuracy", s.accuracy}, {"val_macro_f1", s.macro_f1}};
  }

  void save_extra(Trainer& t, const std::string& dir) override { save_tuned_extra(cfg_, t, base_, dir); }

 private:
  void forward(Model& m, const RowBatch& b) const {
    classify_forward(m, b.tokens, b.used, b.B, b.T, classify_separator(*base_.tokenizer));
  }

  // Each row's logits at its sequence's position ([CLS] for BERT, the last token for a decoder):
  // the cross-entropy of its label and the prediction into `sums`; with dvalue, the gradient of
  // the global batch's mean loss (rows: the global batch's row count).
  void score(const Model& m, const RowBatch& b, ClassifySums& sums, double rows, std::vector<float>* dvalue) const {
    const std::vector<float> v = m.values();
    const size_t K = labels_.names.size();
    for (int r = 0; r < b.B; ++r) {
      const size_t pos = classify_position(encoder_, r, b.T, b.used[static_cast<size_t>(r)]);
      const int gold = static_cast<int>(b.values[static_cast<size_t>(r)]);
      int predicted = 0;
      sums.loss += label_cross_entropy(v.data() + pos * K, static_cast<int>(K), gold, predicted, dvalue ? dvalue->data() + pos * K : nullptr,
                                       1.0 / rows);
      sums.rows += 1;
      sums.confusion[static_cast<size_t>(gold) * K + static_cast<size_t>(predicted)] += 1;
    }
  }

  void allreduce(Trainer& t, ClassifySums& s) const {
    s.loss = t.comm().allreduce_sum_double(s.loss);
    s.rows = t.comm().allreduce_sum_double(s.rows);
    t.comm().allreduce_sum(s.confusion.data(), s.confusion.size());
  }

  const SftConfig& cfg_;
  TunedBase base_;
  LabelSet labels_;
  bool encoder_ = false;
  std::unique_ptr<ExampleSet> train_, val_;
  ClassifySums sums_;
  std::vector<float> dvalue_;
  uint64_t step_tokens_ = 0, rows_done_ = 0;
};

}  // namespace

int run_classify(const SftConfig& cfg, Stats& stats) { return train_objective<ClassifyObjective>(cfg, stats); }

}  // namespace llmkit
