// Jinja lexer: splits a template into text and tag tokens, applying the whitespace rules that
// Hugging Face uses for chat templates (trim_blocks, lstrip_blocks, `{%-`/`-%}`, one trailing
// newline removed) so that the parser only sees final text.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"

namespace tandem::chat {

enum class TokenType {
    Text,        // literal template text (whitespace control already applied)
    VarBegin,    // {{
    VarEnd,      // }}
    BlockBegin,  // {%
    BlockEnd,    // %}
    Name,
    String,      // text holds the unescaped value
    Int,
    Float,
    Op,          // one of: + - * / // % ** ~ == != < > <= >= = ( ) [ ] { } , . : |
    Eof,
};

struct Token {
    TokenType type;
    std::string text;
    int line = 1;
};

// Errors name the template line: "chat template line 3: unterminated string".
Result<std::vector<Token>> lex_template(const std::string& source);

}  // namespace tandem::chat
