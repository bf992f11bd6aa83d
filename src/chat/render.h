// Evaluator: renders a parsed template against a set of global variables.
#pragma once

#include <string>

#include "chat/ast.h"
#include "core/status.h"

namespace tandem::chat {

// Errors name the template line and the construct: "chat template line 12: ...".
Result<std::string> render_template(const Body& body, ValueDict globals);

}  // namespace tandem::chat
