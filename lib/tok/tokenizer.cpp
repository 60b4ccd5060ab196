// The SentencePiece tokenizer and its training from JSONL documents; see llmkit/tok.hpp.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <unordered_map>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/tok.hpp"
#include "llmkit/tool.hpp"

namespace sentencepiece::logging {
void SetMinLogLevel(int);  // in libsentencepiece, not in its public headers
}

namespace llmkit {

// ---- Tokenizer ---------------------------------------------------------------------------------

Tokenizer::Tokenizer(const std::string& model_path)
    : path_(model_path), sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  std::string bytes = read_file(model_path);
  hash_ = XXH3_64bits(bytes.data(), bytes.size());
  auto status = sp_->LoadFromSerializedProto(bytes);
  if (!status.ok() || sp_->GetPieceSize() <= 0)
    throw Error(model_path, "not a SentencePiece model (" + status.ToString() + ")");
}

Tokenizer::~Tokenizer() = default;

void Tokenizer::encode(std::string_view text, std::vector<uint32_t>& ids) const {
  thread_local std::vector<int> raw;
  auto status = sp_->Encode(absl::string_view(text.data(), text.size()), &raw);
  if (!status.ok()) throw Error(path_, "encoding failed: " + status.ToString());
  ids.assign(raw.begin(), raw.end());
}

void Tokenizer::encode_spans(std::string_view text, std::vector<uint32_t>& ids,
                             std::vector<std::pair<uint32_t, uint32_t>>& spans) const {
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
  const int id = sp_->PieceToId(piece);
  return id == sp_->unk_id() && piece != sp_->IdToPiece(sp_->unk_id()) ? -1 : id;
}

std::string Tokenizer::decode(const uint32_t* ids, size_t n) const {
  std::vector<int> raw(ids, ids + n);
  std::string text;
  auto status = sp_->Decode(raw, &text);
  if (!status.ok()) throw Error(path_, "decoding failed: " + status.ToString());
  return text;
}

uint64_t Tokenizer::vocab_size() const { return static_cast<uint64_t>(sp_->GetPieceSize()); }
int Tokenizer::bos_id() const { return sp_->bos_id(); }
int Tokenizer::eos_id() const { return sp_->eos_id(); }
int Tokenizer::unk_id() const { return sp_->unk_id(); }
int Tokenizer::pad_id() const { return sp_->pad_id(); }
std::string Tokenizer::piece(uint32_t id) const {
  if (id >= vocab_size()) throw Error(path_, "no token " + std::to_string(id));
  return sp_->IdToPiece(static_cast<int>(id));
}

float Tokenizer::score(uint32_t id) const {
  if (id >= vocab_size()) throw Error(path_, "no token " + std::to_string(id));
  return sp_->GetScore(static_cast<int>(id));
}

Tokenizer::PieceType Tokenizer::piece_type(uint32_t id) const {
  if (id >= vocab_size()) throw Error(path_, "no token " + std::to_string(id));
  const int i = static_cast<int>(id);
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

}  // namespace

void train_tokenizer(const std::vector<std::string>& inputs, const TrainConfig& cfg, Stats& stats) {
  Comm& comm = Comm::world();
  if (comm.size() > 1) throw UsageError("llm-tok train runs in one process (SentencePiece trains on one node)");
  if (cfg.model_type != "bpe" && cfg.model_type != "unigram")
    throw UsageError("--model-type: use bpe or unigram");
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
