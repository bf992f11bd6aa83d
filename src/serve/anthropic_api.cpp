#include "serve/anthropic_api.h"

#include "serve/request_json.h"

namespace tandem {
namespace {

using json = chat::Json;

const json* field(const json& obj, const char* name) { return json_field(obj, name); }

// system and tool_result content: a string or text blocks, joined by newlines
Result<std::string> text_of(const json& v, const std::string& where) { return text_of_parts(v, where, {"text"}, "\n"); }

// One Anthropic message as OpenAI messages (a user turn with tool results becomes the tool
// messages, then the user's text).
Status convert_message(const json& m, size_t i, json& out) {
    const std::string where = fmt::format("messages[{}]", i);
    if (!m.is_object()) return make_error("{} must be an object", where);
    const json* role = field(m, "role");
    if (!role || !role->is_string() || (*role != "user" && *role != "assistant"))
        return make_error("{}.role must be user or assistant", where);
    const bool user = *role == "user";
    const json* content = field(m, "content");
    if (!content) return make_error("{}.content is required", where);
    if (content->is_string()) {
        out.push_back({{"role", role->get<std::string>()}, {"content", content->get<std::string>()}});
        return {};
    }
    if (!content->is_array()) return make_error("{}.content must be a string or an array of blocks", where);
    std::string text, thinking;
    json calls = json::array();
    for (size_t j = 0; j < content->size(); ++j) {
        const json& b = (*content)[j];
        const std::string bw = fmt::format("{}.content[{}]", where, j);
        const json* type = b.is_object() ? field(b, "type") : nullptr;
        if (!type || !type->is_string()) return make_error("{} must be a block with a type", bw);
        const std::string t = type->get<std::string>();
        if (t == "text") {
            const json* s = field(b, "text");
            if (!s || !s->is_string()) return make_error("{}.text must be a string", bw);
            if (!text.empty()) text += "\n";
            text += s->get<std::string>();
        } else if (t == "tool_result" && user) {
            const json* id = field(b, "tool_use_id");
            if (!id || !id->is_string()) return make_error("{}.tool_use_id must be a string", bw);
            std::string result;
            if (const json* c = field(b, "content")) {
                TANDEM_ASSIGN(result, text_of(*c, bw + ".content"));
            }
            if (const json* e = field(b, "is_error"); e && e->is_boolean() && e->get<bool>()) result = "Error: " + result;
            out.push_back({{"role", "tool"}, {"tool_call_id", id->get<std::string>()}, {"content", result}});
        } else if (t == "tool_use" && !user) {
            const json* id = field(b, "id");
            const json* name = field(b, "name");
            if (!id || !id->is_string()) return make_error("{}.id must be a string", bw);
            if (!name || !name->is_string()) return make_error("{}.name must be a string", bw);
            const json* input = field(b, "input");
            if (input && !input->is_object()) return make_error("{}.input must be an object", bw);
            calls.push_back({{"id", id->get<std::string>()},
                             {"type", "function"},
                             {"function", {{"name", name->get<std::string>()},
                                           {"arguments", (input ? *input : json::object()).dump()}}}});
        } else if ((t == "thinking" || t == "redacted_thinking") && !user) {
            if (const json* s = field(b, "thinking"); s && s->is_string()) thinking += s->get<std::string>();
        } else {
            return make_error("{}: blocks of type '{}' are not supported in {} messages", bw, t, role->get<std::string>());
        }
    }
    if (user) {
        if (!text.empty() || content->empty()) out.push_back({{"role", "user"}, {"content", text}});
        return {};
    }
    json msg = {{"role", "assistant"}, {"content", text}};
    if (!thinking.empty()) msg["reasoning_content"] = thinking;
    if (!calls.empty()) msg["tool_calls"] = calls;
    out.push_back(std::move(msg));
    return {};
}

}  // namespace

Result<chat::Json> anthropic_to_openai(const chat::Json& body) {
    if (!body.is_object()) return make_error("the request body must be a JSON object");
    json out = json::object();
    if (const json* m = field(body, "model")) {
        if (!m->is_string()) return make_error("model must be a string");
        out["model"] = *m;
    }
    json messages = json::array();
    if (const json* s = field(body, "system")) {
        TANDEM_ASSIGN(std::string sys, text_of(*s, "system"));
        messages.push_back({{"role", "system"}, {"content", sys}});
    }
    const json* msgs = field(body, "messages");
    if (!msgs || !msgs->is_array() || msgs->empty()) return make_error("messages must be a non-empty array");
    for (size_t i = 0; i < msgs->size(); ++i) TANDEM_TRY(convert_message((*msgs)[i], i, messages));
    out["messages"] = std::move(messages);

    // sampling fields mean the same; parse_api_request checks them
    for (const char* k : {"max_tokens", "temperature", "top_p", "top_k", "stream"})
        if (const json* v = field(body, k)) out[k] = *v;
    if (const json* v = field(body, "stop_sequences")) {
        if (!v->is_array()) return make_error("stop_sequences must be an array of strings");
        out["stop"] = *v;
    }
    if (const json* v = field(body, "tools")) {
        if (!v->is_array()) return make_error("tools must be an array");
        json tools = json::array();
        for (size_t i = 0; i < v->size(); ++i) {
            const json& t = (*v)[i];
            if (!t.is_object()) return make_error("tools[{}] must be an object", i);
            if (const json* type = field(t, "type"); type && *type != "custom")
                return make_error("tools[{}]: tools of type {} (run by Anthropic's servers) are not supported", i,
                                  type->dump());
            const json* name = field(t, "name");
            if (!name || !name->is_string()) return make_error("tools[{}].name must be a string", i);
            const json* schema = field(t, "input_schema");
            if (!schema || !schema->is_object()) return make_error("tools[{}].input_schema must be an object", i);
            tools.push_back(function_tool(*name, field(t, "description"), *schema));
        }
        if (!tools.empty()) out["tools"] = std::move(tools);
    }
    if (const json* v = field(body, "tool_choice")) {
        const json* type = v->is_object() ? field(*v, "type") : nullptr;
        if (!type || !type->is_string()) return make_error("tool_choice must be an object with a type");
        if (*type == "auto") out["tool_choice"] = "auto";
        else if (*type == "any") out["tool_choice"] = "required";
        else if (*type == "none") out["tool_choice"] = "none";
        else if (*type == "tool") {
            const json* name = field(*v, "name");
            if (!name || !name->is_string()) return make_error("tool_choice.name must be a string");
            out["tool_choice"] = {{"type", "function"}, {"function", {{"name", *name}}}};
        } else {
            return make_error("tool_choice.type must be auto, any, tool or none");
        }
        if (const json* d = field(*v, "disable_parallel_tool_use")) {
            if (!d->is_boolean()) return make_error("tool_choice.disable_parallel_tool_use must be true or false");
            if (d->get<bool>()) out["parallel_tool_calls"] = false;
        }
    }
    // structured outputs: output_format {"type": "json_schema", "schema": ...}
    if (const json* v = field(body, "output_format")) {
        const json* type = v->is_object() ? field(*v, "type") : nullptr;
        if (!type || *type != "json_schema") return make_error("output_format.type must be json_schema");
        const json* schema = field(*v, "schema");
        if (!schema || !schema->is_object()) return make_error("output_format.schema must be an object");
        out["response_format"] = {{"type", "json_schema"}, {"json_schema", {{"name", "output"}, {"schema", *schema}}}};
    }
    if (const json* v = field(body, "thinking")) {
        const json* type = v->is_object() ? field(*v, "type") : nullptr;
        if (!type || !type->is_string()) return make_error("thinking must be an object with a type");
        if (*type == "enabled" || *type == "adaptive")
            out["chat_template_kwargs"] = {{"enable_thinking", true}};
        else if (*type == "disabled")
            out["chat_template_kwargs"] = {{"enable_thinking", false}};
        else
            return make_error("thinking.type must be enabled or disabled");
    }
    return out;
}

nlohmann::json anthropic_error(int status, const std::string& message) {
    const char* type = status == 401   ? "authentication_error"
                       : status == 403 ? "permission_error"
                       : status == 404 ? "not_found_error"
                       : status == 413 ? "request_too_large"
                       : status == 429 ? "rate_limit_error"
                       : status == 503 ? "overloaded_error"
                       : status >= 500 ? "api_error"
                                       : "invalid_request_error";
    return {{"type", "error"}, {"error", {{"type", type}, {"message", message}}}};
}

const char* anthropic_stop_reason(FinishReason finish, bool stop_sequence, bool tool_use) {
    if (tool_use) return "tool_use";
    if (finish == FinishReason::length) return "max_tokens";
    return stop_sequence ? "stop_sequence" : "end_turn";
}

}  // namespace tandem
