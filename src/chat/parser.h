// Jinja parser: tokens from lex_template() to a statement tree. Unsupported tags and syntax
// are errors that name the template line and the construct.
#pragma once

#include <string>

#include "chat/ast.h"
#include "core/status.h"

namespace tandem::chat {

Result<Body> parse_template(const std::string& source);

}  // namespace tandem::chat
