#include "serve/request_json.h"

#include <algorithm>
#include <cstring>

namespace tandem {

Result<std::string> text_of_parts(const chat::Json& v, const std::string& where,
                                  std::initializer_list<const char*> types, const char* sep) {
    if (v.is_string()) return v.get<std::string>();
    if (!v.is_array()) return make_error("{} must be a string or an array of text parts", where);
    std::string out;
    for (size_t i = 0; i < v.size(); ++i) {
        const chat::Json& p = v[i];
        const chat::Json* type = p.is_object() ? json_field(p, "type") : nullptr;
        if (!type || !type->is_string()) return make_error("{}[{}] must be a part with a type", where, i);
        const std::string t = type->get<std::string>();
        if (std::none_of(types.begin(), types.end(), [&](const char* ok) { return t == ok; }))
            return make_error("{}[{}]: parts of type '{}' are not supported (the models served read text)", where, i, t);
        const chat::Json* text = json_field(p, "text");
        if (!text || !text->is_string()) return make_error("{}[{}].text must be a string", where, i);
        if (i > 0) out += sep;
        out += text->get<std::string>();
    }
    return out;
}

}  // namespace tandem
