// A member of a JSON request object, or null when it is absent or JSON null (OpenAI and
// Anthropic treat both as "not given").
#pragma once

#include "chat/value.h"

namespace tandem {

inline const chat::Json* json_field(const chat::Json& obj, const char* name) {
    auto it = obj.find(name);
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
}

}  // namespace tandem
