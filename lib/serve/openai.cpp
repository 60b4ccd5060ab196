// OpenAI's request and answer JSON; see llmkit/openai.hpp. Field names, defaults and ranges
// follow OpenAI's API reference, with vLLM's extensions (top_k, min_p, repetition_penalty,
// ignore_eos).
#include "llmkit/openai.hpp"

#include <cmath>

#include "llmkit/chat.hpp"
#include "llmkit/error.hpp"
#include "llmkit/tok.hpp"

namespace llmkit {

using nlohmann::json;

ApiError::ApiError(int status_, const std::string& message, std::string param_, std::string code_)
    : std::runtime_error(message), status(status_), param(std::move(param_)), code(std::move(code_)) {
  type = status == 401   ? "authentication_error"
         : status == 404 ? "not_found_error"
         : status == 413 ? "invalid_request_error"
         : status == 429 ? "rate_limit_error"
         : status >= 500 ? "server_error"
                         : "invalid_request_error";
}

std::string ApiError::body() const {
  json e = {{"message", what()}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) e["param"] = param;
  if (!code.empty()) e["code"] = code;
  return json{{"error", e}}.dump();
}

namespace {

// A field, or nullptr when absent or null (clients send null for "not set").
const json* field(const json& j, const char* name) {
  const auto it = j.find(name);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

ApiError bad(const std::string& name, const std::string& what) {
  return ApiError(400, "'" + name + "' " + what, name);
}

double number(const json& j, const char* name, double lo, double hi, double dflt) {
  const json* f = field(j, name);
  if (!f) return dflt;
  if (!f->is_number()) throw bad(name, "must be a number");
  const double v = f->get<double>();
  if (!(v >= lo && v <= hi)) throw bad(name, "must be between " + json(lo).dump() + " and " + json(hi).dump());
  return v;
}

int64_t integer(const json& j, const char* name, int64_t lo, int64_t hi, int64_t dflt) {
  const json* f = field(j, name);
  if (!f) return dflt;
  const bool whole = f->is_number_integer() || (f->is_number_float() && std::floor(f->get<double>()) == f->get<double>() &&
                                                std::fabs(f->get<double>()) < 9e15);
  if (!whole) throw bad(name, "must be an integer");
  const double v = f->get<double>();
  if (v < static_cast<double>(lo) || v > static_cast<double>(hi))
    throw bad(name, "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  return f->is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(f->get<uint64_t>(), INT64_MAX)) : f->get<int64_t>();
}

bool boolean(const json& j, const char* name, bool dflt) {
  const json* f = field(j, name);
  if (!f) return dflt;
  if (!f->is_boolean()) throw bad(name, "must be a boolean");
  return f->get<bool>();
}

std::vector<int32_t> encode_text(const Tokenizer& tok, const std::string& text) {
  std::vector<uint32_t> ids;
  tok.encode(text, ids);
  // The document separator first, as llm-eval's prompts and the pretraining shards have it.
  std::vector<int32_t> out;
  const int start = tok.eos_id() >= 0 ? tok.eos_id() : tok.bos_id();
  if (start >= 0) out.push_back(start);
  out.insert(out.end(), ids.begin(), ids.end());
  return out;
}

std::vector<int32_t> token_ids(const json& a, const std::string& name, const Tokenizer& tok) {
  std::vector<int32_t> out;
  for (const json& t : a) {
    if (!t.is_number_integer()) throw bad(name, "must be a string, an array of strings, or arrays of token ids");
    const int64_t v = t.get<int64_t>();
    if (v < 0 || v >= static_cast<int64_t>(tok.vocab_size()))
      throw bad(name, "holds token id " + std::to_string(v) + ", outside the vocabulary of " + std::to_string(tok.vocab_size()));
    out.push_back(static_cast<int32_t>(v));
  }
  return out;
}

std::vector<std::vector<int32_t>> completion_prompts(const json& j, const Tokenizer& tok) {
  const json* p = field(j, "prompt");
  if (!p) throw bad("prompt", "is required");
  std::vector<std::vector<int32_t>> out;
  if (p->is_string()) {
    out.push_back(encode_text(tok, p->get<std::string>()));
  } else if (p->is_array() && !p->empty() && (*p)[0].is_number_integer()) {
    out.push_back(token_ids(*p, "prompt", tok));
  } else if (p->is_array() && !p->empty()) {
    for (const json& e : *p) {
      if (e.is_string()) out.push_back(encode_text(tok, e.get<std::string>()));
      else if (e.is_array()) out.push_back(token_ids(e, "prompt", tok));
      else throw bad("prompt", "must be a string, an array of strings, or arrays of token ids");
    }
  } else {
    throw bad("prompt", "must be a non-empty string or array");
  }
  for (const auto& pr : out)
    if (pr.empty()) throw bad("prompt", "has an empty prompt");
  return out;
}

std::vector<ChatMessage> chat_messages(const json& j) {
  const json* m = field(j, "messages");
  if (!m) throw bad("messages", "is required");
  if (!m->is_array() || m->empty()) throw bad("messages", "must be a non-empty array");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < m->size(); ++i) {
    const json& e = (*m)[i];
    const std::string at = "messages[" + std::to_string(i) + "]";
    if (!e.is_object()) throw bad(at, "must be an object");
    const json* role = field(e, "role");
    if (!role || !role->is_string()) throw bad(at + ".role", "must be a string");
    ChatMessage msg;
    msg.role = role->get<std::string>();
    if (msg.role == "developer") msg.role = "system";  // OpenAI's newer name for it
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant" && msg.role != "tool")
      throw bad(at + ".role", "must be system, developer, user, assistant or tool");
    const json* content = field(e, "content");
    if (!content) {
      msg.content = "";
    } else if (content->is_string()) {
      msg.content = content->get<std::string>();
    } else if (content->is_array()) {  // parts: text only
      for (const json& part : *content) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
          throw bad(at + ".content", "parts must be {\"type\": \"text\", \"text\": ...} (this model reads text only)");
        msg.content += part["text"].get<std::string>();
      }
    } else {
      throw bad(at + ".content", "must be a string or an array of text parts");
    }
    out.push_back(std::move(msg));
  }
  return out;
}

}  // namespace

json parse_body(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception&) {
    throw ApiError(400, "We could not parse the JSON body of your request: it is not valid JSON");
  }
  if (!j.is_object()) throw ApiError(400, "The request body must be a JSON object");
  return j;
}

ApiRequest parse_request_object(const json& j, bool chat, const Tokenizer& tok, const ChatEncoder* chat_encoder, int context,
                         int max_n) {
  ApiRequest r;
  r.chat = chat;
  if (const json* m = field(j, "model")) {
    if (!m->is_string()) throw bad("model", "must be a string");
    r.model = m->get<std::string>();
  }
  if (chat) {
    std::vector<ChatMessage> messages = chat_messages(j);
    if (!chat_encoder) throw ApiError(400, "this model has no chat template: use /v1/completions", "messages");
    try {
      r.prompts.push_back(chat_encoder->encode_prompt(messages));
    } catch (const Error& e) {
      throw ApiError(400, std::string("messages: ") + e.what(), "messages");
    }
    const std::string eot = chat_encoder->chat_template().end_of_turn();
    if (!eot.empty()) r.params.stop.push_back(eot);
  } else {
    r.prompts = completion_prompts(j, tok);
  }
  SamplingParams& p = r.params;
  p.temperature = number(j, "temperature", 0, 100, 1.0);
  p.top_p = number(j, "top_p", 0, 1, 1.0);
  if (p.top_p <= 0) throw bad("top_p", "must be above 0");
  const int64_t top_k = integer(j, "top_k", -1, INT32_MAX, 0);
  p.top_k = top_k < 0 ? 0 : static_cast<int>(top_k);
  p.min_p = number(j, "min_p", 0, 1, 0.0);
  p.repetition_penalty = number(j, "repetition_penalty", 0, 100, 1.0);
  if (p.repetition_penalty <= 0) throw bad("repetition_penalty", "must be above 0");
  p.presence_penalty = number(j, "presence_penalty", -2, 2, 0.0);
  p.frequency_penalty = number(j, "frequency_penalty", -2, 2, 0.0);
  p.stop_at_eos = !boolean(j, "ignore_eos", false);
  if (const json* s = field(j, "stop")) {
    if (s->is_string()) {
      p.stop.push_back(s->get<std::string>());
    } else if (s->is_array()) {
      if (s->size() > 16) throw bad("stop", "may hold up to 16 strings");
      for (const json& e : *s) {
        if (!e.is_string()) throw bad("stop", "must be a string or an array of strings");
        p.stop.push_back(e.get<std::string>());
      }
    } else {
      throw bad("stop", "must be a string or an array of strings");
    }
  }
  r.seeded = field(j, "seed") != nullptr;
  p.seed = static_cast<uint64_t>(integer(j, "seed", INT64_MIN, INT64_MAX, 0));
  p.n = static_cast<int>(integer(j, "n", 1, max_n, 1));
  if (chat) {
    if (boolean(j, "logprobs", false)) r.top_logprobs = static_cast<int>(integer(j, "top_logprobs", 0, 20, 0));
    else if (field(j, "top_logprobs")) throw bad("top_logprobs", "needs logprobs: true");
  } else {
    r.top_logprobs = static_cast<int>(integer(j, "logprobs", 0, 20, -1));
  }
  r.stream = boolean(j, "stream", false);
  if (const json* so = field(j, "stream_options")) {
    if (!so->is_object()) throw bad("stream_options", "must be an object");
    if (!r.stream) throw bad("stream_options", "is only allowed with stream: true");
    r.include_usage = boolean(*so, "include_usage", false);
  }
  if (boolean(j, "echo", false)) throw bad("echo", "is not supported");
  if (const json* bo = field(j, "best_of"); bo && !(bo->is_number_integer() && bo->get<int64_t>() == p.n))
    throw bad("best_of", "is not supported (other than equal to n)");
  // max_tokens: the longest prompt's room, checked against the context.
  size_t longest = 0;
  for (const auto& pr : r.prompts) longest = std::max(longest, pr.size());
  const char* limit_name = field(j, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  const bool given = field(j, limit_name) != nullptr;
  const int64_t room = static_cast<int64_t>(context) - static_cast<int64_t>(longest);
  const int64_t max_tokens = integer(j, limit_name, 1, INT32_MAX, chat ? std::max<int64_t>(room, 1) : 16);
  if (static_cast<int64_t>(longest) + max_tokens > context) {
    const std::string unit = chat ? "in the messages" : "in the prompt";
    throw ApiError(400,
                   "This model's maximum context length is " + std::to_string(context) + " tokens. However, you requested " +
                       std::to_string(static_cast<int64_t>(longest) + max_tokens) + " tokens (" + std::to_string(longest) + " " +
                       unit + ", " + std::to_string(max_tokens) + " in the completion). Please reduce the length of the " +
                       (chat ? "messages" : "prompt") + (given ? " or completion." : "."),
                   given ? limit_name : (chat ? "messages" : "prompt"), "context_length_exceeded");
  }
  p.max_tokens = static_cast<int>(max_tokens);
  return r;
}

std::string token_text(const Tokenizer& tok, int32_t id) {
  std::string s = tok.piece(static_cast<uint32_t>(id));
  if (tok.piece_type(static_cast<uint32_t>(id)) == Tokenizer::PieceType::byte && s.size() == 6)  // <0xAB>
    return std::string(1, static_cast<char>(std::stoi(s.substr(3, 2), nullptr, 16)));
  for (size_t at; (at = s.find("\xE2\x96\x81")) != std::string::npos;) s.replace(at, 3, " ");
  return s;
}

namespace {

json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

// A token's text as JSON can hold it: a lone byte of a UTF-8 character is written as \xAB (as
// OpenAI does); `bytes` keeps the truth.
std::string printable(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    bool ok = len > 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (ok) {
      out.append(s, i, len);
      i += len;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
      ++i;
    }
  }
  return out;
}

json logprobs_json(const ApiRequest& r, const std::vector<TokenLogprob>& lps, const Tokenizer& tok, size_t text_offset) {
  if (r.top_logprobs < 0) return nullptr;
  if (r.chat) {
    json content = json::array();
    for (const TokenLogprob& lp : lps) {
      const std::string t = token_text(tok, lp.token);
      json top = json::array();
      for (const auto& [id, v] : lp.top) {
        const std::string s = token_text(tok, id);
        top.push_back({{"token", printable(s)}, {"logprob", v}, {"bytes", bytes_of(s)}});
      }
      content.push_back({{"token", printable(t)}, {"logprob", lp.logprob}, {"bytes", bytes_of(t)}, {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  json tokens = json::array(), token_logprobs = json::array(), top_logprobs = json::array(), offsets = json::array();
  for (const TokenLogprob& lp : lps) {
    const std::string t = token_text(tok, lp.token);
    tokens.push_back(printable(t));
    token_logprobs.push_back(lp.logprob);
    json top = json::object();
    for (const auto& [id, v] : lp.top) top[printable(token_text(tok, id))] = v;
    top_logprobs.push_back(top);
    offsets.push_back(text_offset);
    text_offset += t.size();
  }
  return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top_logprobs}, {"text_offset", offsets}};
}

json finish_json(const std::string& f) { return f.empty() ? json(nullptr) : json(f); }

}  // namespace

json api_usage(const ApiRequest& r, const std::vector<ApiChoice>& choices) {
  int64_t prompt = 0, cached = 0, completion = 0;
  const size_t n = static_cast<size_t>(std::max(1, r.params.n));
  for (size_t i = 0; i < choices.size(); ++i) {
    if (i % n == 0) {  // the first sample of each prompt
      prompt += choices[i].prompt_tokens;
      cached += choices[i].cached_tokens;
    }
    completion += choices[i].completion_tokens;
  }
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion},
          {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

json api_response(const ApiRequest& r, const std::string& id, const std::string& model, int64_t created,
                  const std::vector<ApiChoice>& choices, const Tokenizer& tok) {
  json cs = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ApiChoice& c = choices[i];
    json choice = {{"index", i}, {"logprobs", logprobs_json(r, c.logprobs, tok, 0)}, {"finish_reason", finish_json(c.finish)}};
    if (r.chat) choice["message"] = {{"role", "assistant"}, {"content", c.text}};
    else choice["text"] = c.text;
    cs.push_back(std::move(choice));
  }
  return {{"id", id},
          {"object", r.chat ? "chat.completion" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", cs},
          {"usage", api_usage(r, choices)}};
}

json api_chunk(const ApiRequest& r, const std::string& id, const std::string& model, int64_t created, int index,
               const std::string& text, const std::vector<TokenLogprob>& logprobs, const std::string& finish, bool role,
               const Tokenizer& tok) {
  json choice = {{"index", index}, {"logprobs", logprobs_json(r, logprobs, tok, 0)}, {"finish_reason", finish_json(finish)}};
  if (r.chat) {
    json delta = json::object();
    if (role) delta["role"] = "assistant";
    if (!text.empty() || (role && finish.empty())) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  return {{"id", id},
          {"object", r.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array({choice})}};
}

}  // namespace llmkit
