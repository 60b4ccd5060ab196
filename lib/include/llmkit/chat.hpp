// Chat data for post-training (lib/tok/chat.cpp, llmkit-chat(5)): the row formats of Hugging
// Face TRL's datasets, chat templates, and their tokenization into examples whose loss mask
// says which tokens are trained.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace llmkit {

class Tokenizer;

struct ChatMessage {
  std::string role, content;  // system, user, assistant, tool
};

// One row of a chat data file, as TRL reads them:
//   {"messages": [{"role", "content"}, ...]}                  conversational
//   {"prompt": [messages], "completion": [messages]}          conversational prompt/completion
//   {"prompt": "...", "completion": "..."}                    prompt/completion
//   {"text": "..."}                                           language modeling
// Other fields are kept in `extra` (JSON text), for logs; training ignores them.
struct ChatRow {
  enum class Kind { conversation, prompt_completion, text } kind = Kind::text;
  std::vector<ChatMessage> messages;  // conversation: the whole, prompt then completion
  size_t completion_from = 0;         // conversation: messages from here are the completion
  std::string prompt, completion;     // prompt_completion
  std::string text;                   // text
  std::string extra;                  // the row's other fields, as a JSON object
  std::string where;                  // FILE:LINE
};

// A data file's line as a JSON object, or an Error naming `where`.
nlohmann::json parse_row_object(std::string_view line, const std::string& where);
// Parses one JSONL row; an Error naming `where` says what is wrong with it.
ChatRow parse_chat_row(std::string_view line, const std::string& where);

// A preference row, as TRL's preference data sets hold them: the same prompt answered twice,
// one answer preferred.
//   {"prompt": "...", "chosen": "...", "rejected": "..."}
//   {"prompt": [messages], "chosen": [messages], "rejected": [messages]}
//   {"chosen": [messages], "rejected": [messages]}   implicit prompt: the messages both begin
//                                                    with (or, for strings, the text, up to a
//                                                    space)
// and optionally "margin": a number (how much better chosen is: llm-rm's margin).
// The pair as two rows, prompt then completion: chosen and rejected. An Error when the answers
// are the same, or when no prompt is shared.
struct PreferenceRow {
  ChatRow chosen, rejected;
  double margin = 0;
  std::string where;
};
PreferenceRow parse_preference_row(std::string_view line, const std::string& where);

// A piece of a rendered conversation: text, or a control token by id (<s>, </s>); trained when
// its tokens are targets of the loss.
struct ChatPart {
  std::string text;
  int id = -1;  // >= 0: this token instead of text
  bool trained = false;
};

// A chat template: how messages become text, which parts are trained (the assistant's contents
// and their end-of-turn marker, never the headers), and the same as Hugging Face's Jinja
// chat_template for tokenizer_config.json.
//   chatml   <|im_start|>ROLE\nCONTENT<|im_end|>\n per message (the default)
//   llama2   <s>[INST] (<<SYS>>\nSYSTEM\n<</SYS>>\n\n)USER [/INST] ASSISTANT </s> per exchange
//   plain    prompt/completion and text rows only: PROMPT COMPLETION</s>
// Every template starts an example with the document separator the model was pretrained with
// (llmkit's shards: </s> between documents; llama2: its own <s>).
class ChatTemplate {
 public:
  static ChatTemplate named(const std::string& name);  // UsageError for an unknown name
  const std::string& name() const { return name_; }
  // Text markers that the tokenizer must hold as single tokens (ChatML's two).
  std::vector<std::string> special_tokens() const;
  // The text that ends an assistant's turn besides </s> ("<|im_end|>" for chatml; "" when </s>
  // is the end): where generation stops.
  std::string end_of_turn() const;
  // Hugging Face's chat_template (Jinja) producing the same text and tokens.
  std::string jinja() const;
  // A conversation's parts: messages[trained_from..] train their assistant turns (SIZE_MAX:
  // none, for prompts). With generation_prompt, what opens the assistant's next turn follows.
  std::vector<ChatPart> render(const std::vector<ChatMessage>& messages, size_t trained_from, bool generation_prompt,
                               const std::string& where) const;

 private:
  std::string name_;
};

// A tokenized example: tokens[i] is a target of the loss when trained[i] (the model predicts
// it from tokens[0..i-1]); tokens[0] never is.
struct ChatExample {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> trained;
  std::string where;
  size_t trained_tokens() const;
};

class ChatEncoder {
 public:
  // Checks that the tokenizer holds the template's markers as single tokens; an Error naming
  // the tokenizer and the llm-tok command that adds them otherwise.
  ChatEncoder(const Tokenizer& tok, ChatTemplate tmpl);
  // A row as tokens and mask: text rows train every token and </s>; prompt/completion rows the
  // completion and </s>; conversations their assistant turns. An Error naming the row when
  // nothing would be trained, when the prompt's tokens are not a prefix of the whole (a token
  // straddles the prompt and the completion), or when the template cannot render it.
  ChatExample encode(const ChatRow& row) const;
  // The prompt of a conversation for generation: tokens up to where the assistant writes.
  std::vector<int32_t> encode_prompt(const std::vector<ChatMessage>& messages) const;
  // The example's text with its trained tokens between [[ and ]], for a person to check.
  std::string show(const ChatExample& ex) const;
  const ChatTemplate& chat_template() const { return tmpl_; }
  const Tokenizer& tokenizer() const { return tok_; }

 private:
  void encode_parts(const std::vector<ChatPart>& parts, ChatExample& ex) const;
  const Tokenizer& tok_;
  ChatTemplate tmpl_;
};

}  // namespace llmkit
