// The SentencePiece tokenizer and its training from JSONL documents; see llmkit/tok.hpp.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#include <xxhash.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <unordered_map>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/tok.hpp"
#include "llmkit/tool.hpp"
#include "llmkit/wordpiece.hpp"

namespace sentencepiece::logging {
void SetMinLogLevel(int);  // in libsentencepiece, not in its public headers
}

namespace llmkit {

// ---- Tokenizer ---------------------------------------------------------------------------------

void Tokenizer::write_wordpiece_files(const std::string& dir, int max_length) const {
  if (!wp_) throw Error(path_, "internal: not a WordPiece vocabulary");
  write_file_atomic(dir + "/vocab.txt", read_file(path_));
  nlohmann::ordered_json j;
  j["tokenizer_class"] = "BertTokenizer";
  j["do_lower_case"] = wp_->normalizer().lowercase;
  j["unk_token"] = "[UNK]";
  j["sep_token"] = "[SEP]";
  j["pad_token"] = "[PAD]";
  j["cls_token"] = "[CLS]";
  j["mask_token"] = "[MASK]";
  j["tokenize_chinese_chars"] = true;
  j["model_max_length"] = max_length;
  write_file_atomic(dir + "/tokenizer_config.json", j.dump(2) + "\n");
}

Tokenizer::Tokenizer(const std::string& model_path) : path_(model_path) {
  std::string bytes = read_file(model_path);
  hash_ = XXH3_64bits(bytes.data(), bytes.size());
  if (WordPiece::looks_like_vocab(bytes)) {
    BertNormalizer n;
    const std::string config = (std::filesystem::path(model_path).parent_path() / "tokenizer_config.json").string();
    if (file_size(config) > 0) {
      const nlohmann::json c = nlohmann::json::parse(read_file(config), nullptr, false);
      if (c.is_object() && c.contains("do_lower_case") && c["do_lower_case"].is_boolean()) n.lowercase = c["do_lower_case"].get<bool>();
    }
    wp_ = std::make_unique<WordPiece>(WordPiece::from_bytes(bytes, model_path, n));
    bos_ = wp_->id("[CLS]"), eos_ = wp_->id("[SEP]"), pad_ = wp_->id("[PAD]");
    return;
  }
  sp_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
  auto status = sp_->LoadFromSerializedProto(bytes);
  if (!status.ok() || sp_->GetPieceSize() <= 0)
    throw Error(model_path, "neither a SentencePiece model nor a WordPiece vocab.txt (" + status.ToString() + ")");
}

Tokenizer::~Tokenizer() = default;

void Tokenizer::encode(std::string_view text, std::vector<uint32_t>& ids) const {
  if (wp_) return wp_->encode(text, ids);
  thread_local std::vector<int> raw;
  auto status = sp_->Encode(absl::string_view(text.data(), text.size()), &raw);
  if (!status.ok()) throw Error(path_, "encoding failed: " + status.ToString());
  ids.assign(raw.begin(), raw.end());
}

void Tokenizer::encode_spans(std::string_view text, std::vector<uint32_t>& ids,
                             std::vector<std::pair<uint32_t, uint32_t>>& spans) const {
  if (wp_) return wp_->encode(text, ids, &spans);
  sentencepiece::ImmutableSentencePieceText spt;
  auto status = sp_->Encode(absl::string_view(text.data(), text.size()), spt.mutable_proto());
  if (!status.ok()) throw Error(path_, "encoding failed: " + status.ToString());
  ids.clear();
  spans.clear();
  for (size_t i = 0; i < spt.pieces_size(); ++i) {
    const auto p = spt.pieces(static_cast<int>(i));
    ids.push_back(p.id());
    spans.emplace_back(p.begin(), p.end());
  }
}

int Tokenizer::piece_id(const std::string& piece) const {
  if (wp_) return wp_->id(piece);
  const int id = sp_->PieceToId(piece);
  return id == sp_->unk_id() && piece != sp_->IdToPiece(sp_->unk_id()) ? -1 : id;
}

std::string Tokenizer::decode(const uint32_t* ids, size_t n) const {
  if (wp_) return wp_->decode(ids, n);
  std::vector<int> raw(ids, ids + n);
  std::string text;
  auto status = sp_->Decode(raw, &text);
  if (!status.ok()) throw Error(path_, "decoding failed: " + status.ToString());
  return text;
}

uint64_t Tokenizer::vocab_size() const { return wp_ ? wp_->size() : static_cast<uint64_t>(sp_->GetPieceSize()); }
int Tokenizer::bos_id() const { return wp_ ? bos_ : sp_->bos_id(); }
int Tokenizer::eos_id() const { return wp_ ? eos_ : sp_->eos_id(); }
int Tokenizer::unk_id() const { return wp_ ? wp_->unk_id() : sp_->unk_id(); }
int Tokenizer::pad_id() const { return wp_ ? pad_ : sp_->pad_id(); }
std::string Tokenizer::piece(uint32_t id) const {
  if (id >= vocab_size()) throw Error(path_, "no token " + std::to_string(id));
  return wp_ ? wp_->token(id) : sp_->IdToPiece(static_cast<int>(id));
}

float Tokenizer::score(uint32_t id) const {
  if (id >= vocab_size()) throw Error(path_, "no token " + std::to_string(id));
  return wp_ ? 0.0f : sp_->GetScore(static_cast<int>(id));
}

Tokenizer::PieceType Tokenizer::piece_type(uint32_t id) const {
  if (id >= vocab_size()) throw Error(path_, "no token " + std::to_string(id));
  const int i = static_cast<int>(id);
  if (wp_) {  // BERT's bracketed tokens: [UNK], [unusedN], and the control ones
    const std::string& t = wp_->token(id);
    if (i == wp_->unk_id()) return PieceType::unknown;
    if (t.rfind("[unused", 0) == 0) return PieceType::unused;
    if (t.size() > 2 && t.front() == '[' && t.back() == ']') return PieceType::control;
    return PieceType::normal;
  }
  if (sp_->IsUnknown(i)) return PieceType::unknown;
  if (sp_->IsControl(i)) return PieceType::control;
  if (sp_->IsByte(i)) return PieceType::byte;
  if (sp_->IsUnused(i)) return PieceType::unused;
  // A user-defined symbol (llm-tok --special, <|im_start|>): the library has no query for it;
  // it is the piece that a text of exactly its spelling, "<...>", encodes to, alone.
  const std::string p = sp_->IdToPiece(i);
  if (p.size() > 2 && p.front() == '<' && p.back() == '>') {
    std::vector<int> ids;
    sp_->Encode(p, &ids);
    if (ids.size() == 2 && sp_->IdToPiece(ids[0]) == "\xe2\x96\x81") ids.erase(ids.begin());  // a dummy prefix
    if (ids.size() == 1 && ids[0] == i) return PieceType::user_defined;
  }
  return PieceType::normal;
}

// ---- Training ----------------------------------------------------------------------------------

namespace {

// The lines of the documents, one pass over the inputs: blank lines and lines longer than the
// limit are left out (counted), and with a sample only the lines whose number hashes below the
// sampling rate are given.
class LineIterator : public sentencepiece::SentenceIterator {
 public:
  LineIterator(const std::vector<InputPart>& parts, const TrainConfig& cfg, Stats& stats,
               double rate)
      : cfg_(cfg), stats_(stats), source_(parts, cfg.source, stats), rate_(rate) {
    Next();
  }
  bool done() const override { return done_; }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return {}; }
  void Next() override {
    throw_if_stopped();
    while (true) {
      while (pos_ < text_.size()) {
        size_t end = text_.find('\n', pos_);
        if (end == std::string::npos) end = text_.size();
        std::string_view line = std::string_view(text_).substr(pos_, end - pos_);
        pos_ = end + 1;
        if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
        if (static_cast<int64_t>(line.size()) > cfg_.max_sentence_bytes) {
          stats_.add("lines_too_long");
          continue;
        }
        uint64_t n = lines_++;
        if (rate_ < 1.0 && static_cast<double>(XXH3_64bits_withSeed(&n, sizeof n, cfg_.seed)) >=
                               rate_ * 18446744073709551616.0)
          continue;
        line_.assign(line);
        stats_.add("lines_trained");
        return;
      }
      if (!next_document()) {
        done_ = true;
        return;
      }
    }
  }
  uint64_t lines() const { return lines_; }

 private:
  bool next_document() {
    while (at_ >= batch_.size()) {
      batch_.clear();
      at_ = 0;
      if (!source_.next_batch(batch_, cfg_.batch.docs, cfg_.batch.bytes)) {
        source_.finish();
        return false;
      }
      for (auto& sd : batch_) sd.parse_pending(cfg_.source.jsonl);
      source_.settle(batch_);
    }
    SourceDoc& sd = batch_[at_++];
    text_.clear();
    pos_ = 0;
    if (sd.ok()) {
      text_.swap(sd.doc.text);
      stats_.add("docs_in");
    }
    return true;
  }

  const TrainConfig& cfg_;
  Stats& stats_;
  DocumentSource source_;
  double rate_;
  std::vector<SourceDoc> batch_;
  size_t at_ = 0;
  std::string text_, line_;
  size_t pos_ = 0;
  uint64_t lines_ = 0;
  bool done_ = false;
};

// Lines in the inputs (a counting pass, so that sampling knows its rate).
uint64_t count_lines(const std::vector<InputPart>& parts, const TrainConfig& cfg) {
  Stats scratch;
  TrainConfig counting = cfg;
  counting.source.report_limit = -1;
  LineIterator it(parts, counting, scratch, 1.0);
  while (!it.done()) it.Next();
  return it.lines();
}

std::string format_double(double v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

// WordPiece: the words of the lines (BERT's pre-tokenisation) counted, then Hugging Face
// tokenizers' trainer (train_wordpiece) with BERT's five specials first, --special after them;
// the vocab.txt written, one token a line.
void train_wordpiece_vocab(const std::vector<InputPart>& parts, const std::vector<std::string>& files, const TrainConfig& cfg,
                           double rate, Stats& stats) {
  BertNormalizer n;
  n.lowercase = cfg.lowercase;
  std::unordered_map<std::string, int64_t> counts;
  std::vector<std::string> words;
  LineIterator it(parts, cfg, stats, rate);
  for (; !it.done(); it.Next()) {
    bert_pre_tokenize(it.value(), n, words);
    for (const std::string& w : words) ++counts[w];
  }
  if (counts.empty())
    throw Error(files.size() == 1 ? files[0] : std::to_string(files.size()) + " inputs",
                "no words to train on (give JSONL documents with a \"" + cfg.source.jsonl.text_field + "\" string field)");
  std::vector<std::string> specials = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  for (const std::string& s : cfg.specials)
    if (std::find(specials.begin(), specials.end(), s) == specials.end()) specials.push_back(s);
  if (cfg.vocab_size <= static_cast<int64_t>(specials.size())) throw UsageError("--vocab-size must exceed the special tokens");
  const std::vector<std::string> vocab = train_wordpiece(counts, static_cast<size_t>(cfg.vocab_size), specials);
  std::string text;
  for (const std::string& t : vocab) text += t + "\n";
  write_file_atomic(cfg.output, text);
  stats.add("words", static_cast<int64_t>(counts.size()));
  if (!cfg.lowercase) {  // a cased vocabulary says so, for whoever loads it (BertTokenizer, llmkit)
    const std::string config = (std::filesystem::path(cfg.output).parent_path() / "tokenizer_config.json").string();
    nlohmann::json c = nlohmann::json::object();
    if (file_size(config) > 0) c = nlohmann::json::parse(read_file(config), nullptr, false);
    if (!c.is_object()) throw Error(config, "is not a JSON object: do_lower_case cannot be added to it");
    if (!c.contains("tokenizer_class")) c["tokenizer_class"] = "BertTokenizer";
    c["do_lower_case"] = false;
    write_file_atomic(config, c.dump(2) + "\n");
  }
  Tokenizer check(cfg.output);
  stats.add("vocab_size", static_cast<int64_t>(check.vocab_size()));
}

}  // namespace

void train_tokenizer(const std::vector<std::string>& inputs, const TrainConfig& cfg, Stats& stats) {
  Comm& comm = Comm::world();
  if (comm.size() > 1) throw UsageError("llm-tok train runs in one process (SentencePiece trains on one node)");
  if (cfg.model_type != "bpe" && cfg.model_type != "unigram" && cfg.model_type != "wordpiece")
    throw UsageError("--model-type: use bpe, unigram or wordpiece");
  std::vector<std::string> files = expand_inputs(inputs.empty() ? std::vector<std::string>{"-"} : inputs);
  if (files.empty()) throw Error(inputs.empty() ? "" : inputs[0], "no input files found");
  for (const auto& f : files)
    if (cfg.sample > 0 && (f == "-" || f.empty()))
      throw UsageError("--sample reads the input twice: give files, not stdin (or --sample 0)");
  auto parts = split_inputs(files, 0, 1, splittable_input);
  for (const auto& s : cfg.specials)
    if (s.empty() || s.find(',') != std::string::npos)
      throw UsageError("--special: token '" + s + "' is empty or has a comma");

  double rate = 1.0;
  if (cfg.sample > 0) {
    uint64_t total = count_lines(parts, cfg);
    if (total > static_cast<uint64_t>(cfg.sample))
      rate = static_cast<double>(cfg.sample) / static_cast<double>(total);
    LLMKIT_INFO("training on %s of %llu lines", rate < 1.0 ? "a sample" : "all",
                static_cast<unsigned long long>(total));
  }
  if (cfg.model_type == "wordpiece") return train_wordpiece_vocab(parts, files, cfg, rate, stats);
  std::unordered_map<std::string, std::string> args = {
      {"vocab_size", std::to_string(cfg.vocab_size)},
      {"model_type", cfg.model_type},
      {"character_coverage", format_double(cfg.character_coverage)},
      {"byte_fallback", cfg.byte_fallback ? "true" : "false"},
      {"normalization_rule_name", cfg.normalization},
      {"remove_extra_whitespaces", "false"},
      {"split_digits", cfg.split_digits ? "true" : "false"},
      {"allow_whitespace_only_pieces", "true"},
      {"max_sentence_length", std::to_string(cfg.max_sentence_bytes)},
      {"unk_id", std::to_string(kUnkId)},
      {"bos_id", std::to_string(kBosId)},
      {"eos_id", std::to_string(kEosId)},
      {"pad_id", std::to_string(kPadId)},
      {"num_threads", std::to_string(std::max(cfg.threads, 1))},
      {"input_sentence_size", "0"},
      {"train_extremely_large_corpus", "false"},
  };
  if (!cfg.specials.empty()) args["user_defined_symbols"] = join(cfg.specials);
  sentencepiece::SetRandomGeneratorSeed(static_cast<unsigned>(cfg.seed ^ (cfg.seed >> 32)));
  // SentencePiece's own log: its INFO lines with -v -v, its warnings unless -q.
  sentencepiece::logging::SetMinLogLevel(log_enabled(LogLevel::debug) ? 0 : log_enabled(LogLevel::info) ? 1 : 2);

  LineIterator it(parts, cfg, stats, rate);
  if (it.done()) {
    // SentencePiece would stop at an internal check ([!sentences_.empty()]): say what is wrong.
    const int64_t malformed = stats.dropped_total();
    throw Error(files.size() == 1 ? files[0] : std::to_string(files.size()) + " inputs",
                "no text to train on: " + std::to_string(stats.get("docs_in")) + " documents" +
                    (malformed > 0 ? ", " + std::to_string(malformed) + " malformed lines skipped" : "") +
                    " (give JSONL documents with a \"" + cfg.source.jsonl.text_field + "\" string field)");
  }
  std::string model;
  auto status = sentencepiece::SentencePieceTrainer::Train(args, &it, &model);
  throw_if_stopped();
  if (!status.ok()) throw Error(cfg.output, "SentencePiece training failed: " + status.ToString());
  write_file_atomic(cfg.output, model);
  Tokenizer check(cfg.output);  // what was written loads
  stats.add("vocab_size", static_cast<int64_t>(check.vocab_size()));
}

}  // namespace llmkit
