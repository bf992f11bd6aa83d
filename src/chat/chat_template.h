// Chat templates: renders OpenAI-style messages into prompt text exactly as a model's own
// `tokenizer.chat_template` (Jinja) does under Hugging Face transformers. The Jinja subset is
// implemented in lexer.cpp, parser.cpp, render.cpp (evaluator) and builtins.cpp (filters, tests,
// methods, globals).
//
// Values are nlohmann::ordered_json so that object keys keep their order (transformers'
// `tojson` prints keys in insertion order); a plain nlohmann::json converts implicitly but its
// keys are already sorted.
#pragma once

#include <memory>
#include <string>

#include "chat/ast.h"
#include "chat/value.h"
#include "core/status.h"

namespace tandem {

class ChatTemplate {
public:
    // Parses once; errors name the template line and the unsupported construct.
    static Result<ChatTemplate> parse(const std::string& source);
    // Renders with `context` (a JSON object) as the template's variables, plus the globals
    // namespace(), raise_exception(), range(), dict(), strftime_now().
    Result<std::string> render(const chat::Json& context) const;

private:
    std::shared_ptr<const chat::Body> body_;
};

// Renders like transformers' apply_chat_template(messages, tools=tools, tokenize=False,
// add_generation_prompt=..., **extra_kwargs) with bos_token/eos_token set; `tools` null means
// no tools. extra_kwargs (an object, or null) adds variables such as enable_thinking.
Result<std::string> render_chat(const std::string& tmpl, const chat::Json& messages, const chat::Json& tools,
                                bool add_generation_prompt, const chat::Json& extra_kwargs,
                                const std::string& bos, const std::string& eos);

}  // namespace tandem
