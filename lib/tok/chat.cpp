// Chat data: TRL's row formats, chat templates, tokenization with loss masks; see
// llmkit/chat.hpp and llmkit-chat(5).
#include "llmkit/chat.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <climits>
#include <cmath>

#include "llmkit/error.hpp"
#include "llmkit/tok.hpp"

namespace llmkit {

// ---- Rows -------------------------------------------------------------------------------------------

namespace {

std::vector<ChatMessage> messages_of(const nlohmann::json& j, const std::string& field, const std::string& where) {
  if (!j.is_array()) throw Error(where, "\"" + field + "\" is not a list of messages");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const auto& m = j[i];
    const std::string at = "\"" + field + "\"[" + std::to_string(i) + "]";
    if (!m.is_object()) throw Error(where, at + " is not a {\"role\", \"content\"} object");
    auto role = m.find("role"), content = m.find("content");
    if (role == m.end() || !role->is_string()) throw Error(where, at + " has no \"role\" string");
    if (content == m.end() || !content->is_string()) throw Error(where, at + " has no \"content\" string");
    ChatMessage msg{role->get<std::string>(), content->get<std::string>()};
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant" && msg.role != "tool")
      throw Error(where, at + ": role '" + msg.role + "' (system, user, assistant, tool)");
    out.push_back(std::move(msg));
  }
  return out;
}

}  // namespace

nlohmann::json parse_row_object(std::string_view line, const std::string& where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    std::string what = e.what();
    throw Error(where, "invalid JSON (" + what.substr(what.find(']') + 2) + ")");
  }
  if (!j.is_object()) throw Error(where, "a row is a JSON object");
  return j;
}


ChatRow parse_chat_row(std::string_view line, const std::string& where) {
  const nlohmann::json j = parse_row_object(line, where);
  ChatRow row;
  row.where = where;
  nlohmann::json extra = nlohmann::json::object();
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "messages" && it.key() != "prompt" && it.key() != "completion" && it.key() != "text") extra[it.key()] = it.value();
  row.extra = extra.dump();
  if (j.contains("messages")) {
    row.kind = ChatRow::Kind::conversation;
    row.messages = messages_of(j["messages"], "messages", where);
    if (row.messages.empty()) throw Error(where, "\"messages\" is empty");
  } else if (j.contains("prompt") || j.contains("completion")) {
    if (!j.contains("prompt") || !j.contains("completion"))
      throw Error(where, std::string("a \"") + (j.contains("prompt") ? "prompt" : "completion") + "\" without a \"" +
                             (j.contains("prompt") ? "completion" : "prompt") + "\"");
    const auto &p = j["prompt"], &c = j["completion"];
    if (p.is_string() && c.is_string()) {
      row.kind = ChatRow::Kind::prompt_completion;
      row.prompt = p.get<std::string>();
      row.completion = c.get<std::string>();
    } else if (p.is_array() && c.is_array()) {
      row.kind = ChatRow::Kind::conversation;
      row.messages = messages_of(p, "prompt", where);
      row.completion_from = row.messages.size();
      for (auto& m : messages_of(c, "completion", where)) row.messages.push_back(std::move(m));
    } else {
      throw Error(where, "\"prompt\" and \"completion\" are both strings or both lists of messages");
    }
  } else if (j.contains("text")) {
    if (!j["text"].is_string()) throw Error(where, "\"text\" is not a string");
    row.kind = ChatRow::Kind::text;
    row.text = j["text"].get<std::string>();
  } else {
    throw Error(where, "no \"messages\", \"prompt\"/\"completion\" or \"text\" (llmkit-chat(5))");
  }
  return row;
}

PreferenceRow parse_preference_row(std::string_view line, const std::string& where) {
  const nlohmann::json j = parse_row_object(line, where);
  if (!j.contains("chosen") || !j.contains("rejected"))
    throw Error(where, "a preference row has \"chosen\" and \"rejected\" (llmkit-chat(5))");
  PreferenceRow pr;
  pr.where = where;
  if (j.contains("margin")) {
    if (!j["margin"].is_number()) throw Error(where, "\"margin\" is not a number");
    pr.margin = j["margin"].get<double>();
    if (!std::isfinite(pr.margin)) throw Error(where, "\"margin\" is not finite");
  }
  nlohmann::json extra = nlohmann::json::object();
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "prompt" && it.key() != "chosen" && it.key() != "rejected") extra[it.key()] = it.value();
  const auto &c = j["chosen"], &r = j["rejected"];
  ChatRow* both[] = {&pr.chosen, &pr.rejected};
  for (ChatRow* row : both) {
    row->where = where;
    row->extra = extra.dump();
  }
  if (c.is_string() != r.is_string() || (!c.is_string() && !(c.is_array() && r.is_array())))
    throw Error(where, "\"chosen\" and \"rejected\" are both strings or both lists of messages");
  if (c.is_string()) {
    std::string prompt;
    std::string chosen = c.get<std::string>(), rejected = r.get<std::string>();
    if (j.contains("prompt")) {
      if (!j["prompt"].is_string()) throw Error(where, "\"prompt\" is not a string, as \"chosen\" and \"rejected\" are");
      prompt = j["prompt"].get<std::string>();
    } else {
      // The text both begin with, cut back to a space so that a word is not split (TRL's
      // extract_prompt does the same).
      size_t n = 0;
      while (n < chosen.size() && n < rejected.size() && chosen[n] == rejected[n]) ++n;
      if (n < chosen.size() || n < rejected.size()) {
        const size_t space = chosen.substr(0, n).find_last_of(' ');
        n = space == std::string::npos ? 0 : space;
      }
      prompt = chosen.substr(0, n);
      chosen.erase(0, n);
      rejected.erase(0, n);
      if (prompt.empty()) throw Error(where, "\"chosen\" and \"rejected\" share no prompt: give \"prompt\"");
    }
    if (chosen == rejected) throw Error(where, "\"chosen\" and \"rejected\" are the same");
    for (ChatRow* row : both) {
      row->kind = ChatRow::Kind::prompt_completion;
      row->prompt = prompt;
    }
    pr.chosen.completion = chosen;
    pr.rejected.completion = rejected;
    return pr;
  }
  std::vector<ChatMessage> prompt, chosen = messages_of(c, "chosen", where), rejected = messages_of(r, "rejected", where);
  if (j.contains("prompt")) {
    prompt = messages_of(j["prompt"], "prompt", where);
  } else {
    size_t n = 0;
    while (n < chosen.size() && n < rejected.size() && chosen[n].role == rejected[n].role && chosen[n].content == rejected[n].content)
      ++n;
    if (n == 0) throw Error(where, "\"chosen\" and \"rejected\" share no prompt (their first messages differ): give \"prompt\"");
    prompt.assign(chosen.begin(), chosen.begin() + static_cast<long>(n));
    chosen.erase(chosen.begin(), chosen.begin() + static_cast<long>(n));
    rejected.erase(rejected.begin(), rejected.begin() + static_cast<long>(n));
  }
  auto same = [](const std::vector<ChatMessage>& a, const std::vector<ChatMessage>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (a[i].role != b[i].role || a[i].content != b[i].content) return false;
    return true;
  };
  if (same(chosen, rejected)) throw Error(where, "\"chosen\" and \"rejected\" are the same");
  const std::vector<ChatMessage>* answers[] = {&chosen, &rejected};
  for (int i = 0; i < 2; ++i) {
    if (answers[i]->empty()) throw Error(where, std::string("\"") + (i ? "rejected" : "chosen") + "\" adds nothing to the prompt");
    ChatRow& row = *both[i];
    row.kind = ChatRow::Kind::conversation;
    row.messages = prompt;
    row.completion_from = prompt.size();
    row.messages.insert(row.messages.end(), answers[i]->begin(), answers[i]->end());
  }
  return pr;
}

// ---- Templates ------------------------------------------------------------------------------------

namespace {

std::string strip(const std::string& s) {  // Python's str.strip() on ASCII whitespace
  const char* ws = " \t\n\r\v\f";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

}  // namespace

ChatTemplate ChatTemplate::named(const std::string& name) {
  if (name != "chatml" && name != "llama2" && name != "plain")
    throw UsageError("--template must be chatml, llama2 or plain, not '" + name + "'");
  ChatTemplate t;
  t.name_ = name;
  return t;
}

std::string ChatTemplate::end_of_turn() const { return name_ == "chatml" ? "<|im_end|>" : ""; }

std::vector<std::string> ChatTemplate::special_tokens() const {
  if (name_ == "chatml") return {"<|im_start|>", "<|im_end|>"};
  return {};
}

std::string ChatTemplate::jinja() const {
  if (name_ == "chatml")
    return "{{ eos_token }}{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
           "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  if (name_ == "llama2")
    return "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
           "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
           "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
           "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
           "loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
           "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
           "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == "
           "'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
  return "{{ eos_token }}{% for message in messages %}{{ message['content'] }}{% endfor %}";
}

std::vector<ChatPart> ChatTemplate::render(const std::vector<ChatMessage>& messages, size_t trained_from, bool generation_prompt,
                                           const std::string& where) const {
  std::vector<ChatPart> parts;
  auto text = [&](std::string s, bool trained) {
    if (!s.empty()) parts.push_back({std::move(s), -1, trained});
  };
  auto token = [&](int id, bool trained) { parts.push_back({"", id, trained}); };
  if (name_ == "chatml") {
    token(kEosId, false);
    for (size_t i = 0; i < messages.size(); ++i) {
      const ChatMessage& m = messages[i];
      const bool train = i >= trained_from && m.role == "assistant";
      text("<|im_start|>" + m.role + "\n", false);
      text(m.content + "<|im_end|>", train);
      text("\n", false);
    }
    if (generation_prompt) text("<|im_start|>assistant\n", false);
  } else if (name_ == "llama2") {
    size_t first = 0;
    std::string system;
    if (!messages.empty() && messages[0].role == "system") {
      system = messages[0].content;
      first = 1;
    }
    for (size_t i = first; i < messages.size(); ++i) {
      const ChatMessage& m = messages[i];
      const bool user_turn = (i - first) % 2 == 0;
      if ((m.role == "user") != user_turn || (m.role != "user" && m.role != "assistant"))
        throw Error(where, "the llama2 template takes an optional system message, then user and assistant messages in turn; "
                           "message " + std::to_string(i) + " is '" + m.role + "'");
      if (m.role == "user") {
        const std::string content = i == first && first == 1 ? "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + m.content : m.content;
        token(kBosId, false);
        text("[INST] " + strip(content) + " [/INST]", false);
      } else {
        const bool train = i >= trained_from;
        text(" " + strip(m.content) + " ", train);
        token(kEosId, train);
      }
    }
  } else {
    throw Error(where, "the plain template takes prompt/completion and text rows; conversations need --template chatml or llama2");
  }
  return parts;
}

// ---- Tokenization -----------------------------------------------------------------------------------

size_t ChatExample::trained_tokens() const {
  size_t n = 0;
  for (uint8_t t : trained) n += t;
  return n;
}

ChatEncoder::ChatEncoder(const Tokenizer& tok, ChatTemplate tmpl) : tok_(tok), tmpl_(std::move(tmpl)) {
  std::string missing;
  for (const std::string& s : tmpl_.special_tokens()) {
    std::vector<uint32_t> ids;
    tok_.encode(s, ids);
    // A marker is one token, apart from SentencePiece's word-boundary piece in front of it.
    const bool single = tok_.piece_id(s) >= 0 && std::count(ids.begin(), ids.end(), static_cast<uint32_t>(tok_.piece_id(s))) == 1 &&
                        ids.size() <= 2;
    if (!single) missing += (missing.empty() ? "" : ",") + s;
  }
  if (!missing.empty())
    throw Error(tok_.path(), "does not hold the " + tmpl_.name() + " template's markers " + missing +
                                 " as single tokens: train the tokenizer with llm-tok train --special '" + missing +
                                 "' (and the model on it), or give another --template");
}

// Text parts are tokenized a run at a time (adjacent texts joined, as Hugging Face tokenizes the
// rendered string), control tokens inserted by id; a token is trained when its bytes lie in a
// trained part. A token with bytes on both sides of a trained part's edge is an error.
void ChatEncoder::encode_parts(const std::vector<ChatPart>& parts, ChatExample& ex) const {
  std::string run;
  std::vector<std::pair<size_t, size_t>> trained_bytes;  // [begin, end) in run
  auto flush = [&] {
    if (run.empty()) return;
    std::vector<uint32_t> ids;
    std::vector<std::pair<uint32_t, uint32_t>> spans;
    tok_.encode_spans(run, ids, spans);
    for (size_t i = 0; i < ids.size(); ++i) {
      const size_t b = spans[i].first, e = spans[i].second;
      bool inside = false, partly = false;
      for (const auto& [tb, te] : trained_bytes) {
        if (b >= tb && e <= te) inside = true;
        else if (b < te && e > tb) partly = true;
      }
      if (partly && !inside) {
        std::vector<uint32_t> one{ids[i]};
        throw Error(ex.where, "the token '" + tok_.decode(one.data(), 1) + "' holds both the end of the prompt and the start of "
                              "what is trained: the prompt's tokens are not a prefix of the whole (end the prompt on a "
                              "word boundary, or start the completion with its space)");
      }
      ex.tokens.push_back(static_cast<int32_t>(ids[i]));
      ex.trained.push_back(inside ? 1 : 0);
    }
    run.clear();
    trained_bytes.clear();
  };
  for (const ChatPart& p : parts) {
    if (p.id >= 0) {
      flush();
      ex.tokens.push_back(p.id);
      ex.trained.push_back(p.trained ? 1 : 0);
      continue;
    }
    if (p.trained) {
      if (!trained_bytes.empty() && trained_bytes.back().second == run.size()) trained_bytes.back().second += p.text.size();
      else trained_bytes.emplace_back(run.size(), run.size() + p.text.size());
    }
    run += p.text;
  }
  flush();
}

ChatExample ChatEncoder::encode(const ChatRow& row) const {
  ChatExample ex;
  ex.where = row.where;
  std::vector<ChatPart> parts;
  switch (row.kind) {
    case ChatRow::Kind::conversation:
      parts = tmpl_.render(row.messages, row.completion_from, false, row.where);
      break;
    case ChatRow::Kind::prompt_completion: {
      // The prompt's trailing spaces belong to the completion's first word, as a tokenizer sees
      // them (lm-evaluation-harness does the same).
      std::string prompt = row.prompt, completion = row.completion;
      const size_t keep = prompt.find_last_not_of(' ');
      const size_t cut = keep == std::string::npos ? 0 : keep + 1;
      completion = prompt.substr(cut) + completion;
      prompt.resize(cut);
      parts = {{"", kEosId, false}, {prompt, -1, false}, {completion, -1, true}, {"", kEosId, true}};
      break;
    }
    case ChatRow::Kind::text:
      parts = {{"", kEosId, false}, {row.text, -1, true}, {"", kEosId, true}};
      break;
  }
  encode_parts(parts, ex);
  if (!ex.trained.empty()) ex.trained[0] = 0;  // the first token has nothing before it
  if (ex.trained_tokens() == 0)
    throw Error(row.where, row.kind == ChatRow::Kind::conversation
                               ? "nothing to train: no assistant message" +
                                     std::string(row.completion_from ? " in the completion" : "")
                               : "nothing to train: empty");
  return ex;
}

std::vector<int32_t> ChatEncoder::encode_prompt(const std::vector<ChatMessage>& messages) const {
  ChatExample ex;
  encode_parts(tmpl_.render(messages, SIZE_MAX, true, "prompt"), ex);
  return ex.tokens;
}

std::string ChatEncoder::show(const ChatExample& ex) const {
  // Runs of tokens with the same mark, control tokens (<s>, </s>) by name; a run's first word
  // keeps the space SentencePiece decodes away at the start of a text, unless that text began
  // there.
  auto control = [&](int32_t id) { return id == tok_.bos_id() || id == tok_.eos_id(); };
  std::string out;
  size_t i = 0;
  while (i < ex.tokens.size()) {
    size_t j = i;
    if (control(ex.tokens[i])) ++j;
    else
      while (j < ex.tokens.size() && ex.trained[j] == ex.trained[i] && !control(ex.tokens[j])) ++j;
    std::string text;
    if (control(ex.tokens[i])) {
      text = tok_.piece(static_cast<uint32_t>(ex.tokens[i]));
    } else {
      std::vector<uint32_t> ids(ex.tokens.begin() + static_cast<long>(i), ex.tokens.begin() + static_cast<long>(j));
      text = tok_.decode(ids.data(), ids.size());
      // After a control token a new text began: its first piece's space is SentencePiece's
      // dummy prefix, not text.
      if (i > 0 && !control(ex.tokens[i - 1]) && tok_.piece(ids[0]).rfind("\xe2\x96\x81", 0) == 0) text = " " + text;
    }
    out += ex.trained[i] ? "[[" + text + "]]" : text;
    i = j;
  }
  return out;
}

}  // namespace llmkit
