#include "serve/responses_api.h"

#include "serve/request_json.h"

namespace tandem {
namespace {

using json = chat::Json;

const json* field(const json& obj, const char* name) { return json_field(obj, name); }

// A message's content: a string, or parts of type input_text / output_text / text.
Result<std::string> content_text(const json& c, const std::string& where) {
    return text_of_parts(c, where, {"input_text", "output_text", "text"});
}

Status convert_input(const json& input, json& messages) {
    if (input.is_string()) {
        messages.push_back({{"role", "user"}, {"content", input}});
        return {};
    }
    if (!input.is_array()) return make_error("input must be a string or an array of items");
    for (size_t i = 0; i < input.size(); ++i) {
        const json& it = input[i];
        const std::string where = fmt::format("input[{}]", i);
        if (!it.is_object()) return make_error("{} must be an object", where);
        const json* t = field(it, "type");
        const std::string type = t && t->is_string() ? t->get<std::string>() : "message";
        if (type == "message") {
            const json* role = field(it, "role");
            if (!role || !role->is_string()) return make_error("{}.role must be a string", where);
            const json* content = field(it, "content");
            if (!content) return make_error("{}.content is required", where);
            TANDEM_ASSIGN(std::string text, content_text(*content, where + ".content"));
            messages.push_back({{"role", *role}, {"content", text}});
        } else if (type == "function_call") {
            const json* id = field(it, "call_id");
            const json* name = field(it, "name");
            const json* args = field(it, "arguments");
            if (!id || !id->is_string()) return make_error("{}.call_id must be a string", where);
            if (!name || !name->is_string()) return make_error("{}.name must be a string", where);
            if (args && !args->is_string()) return make_error("{}.arguments must be a JSON string", where);
            json call = {{"id", *id}, {"type", "function"},
                         {"function", {{"name", *name}, {"arguments", args ? *args : json("{}")}}}};
            // calls right after an assistant message (or after each other) belong to it
            if (messages.empty() || messages.back()["role"] != "assistant")
                messages.push_back({{"role", "assistant"}, {"content", ""}});
            json& last = messages.back();
            if (!last.contains("tool_calls")) last["tool_calls"] = json::array();
            last["tool_calls"].push_back(std::move(call));
        } else if (type == "function_call_output") {
            const json* id = field(it, "call_id");
            if (!id || !id->is_string()) return make_error("{}.call_id must be a string", where);
            const json* out = field(it, "output");
            std::string text;
            if (out) {
                TANDEM_ASSIGN(text, content_text(*out, where + ".output"));
            }
            messages.push_back({{"role", "tool"}, {"tool_call_id", *id}, {"content", text}});
        } else if (type == "reasoning") {
            continue;  // earlier reasoning: the chat templates leave it out as well
        } else {
            return make_error("{}: items of type '{}' are not supported", where, type);
        }
    }
    return {};
}

}  // namespace

Result<chat::Json> responses_to_openai(const chat::Json& body) {
    if (!body.is_object()) return make_error("the request body must be a JSON object");
    for (const char* k : {"previous_response_id", "conversation"})
        if (field(body, k))
            return make_error("{} is not supported: this server keeps no responses; send the whole conversation as input", k);
    json out = json::object();
    if (const json* m = field(body, "model")) out["model"] = *m;
    json messages = json::array();
    if (const json* s = field(body, "instructions")) {
        if (!s->is_string()) return make_error("instructions must be a string");
        messages.push_back({{"role", "system"}, {"content", *s}});
    }
    const json* input = field(body, "input");
    if (!input) return make_error("input is required");
    TANDEM_TRY(convert_input(*input, messages));
    if (messages.empty()) return make_error("input has no messages");
    out["messages"] = std::move(messages);

    if (const json* v = field(body, "max_output_tokens")) out["max_tokens"] = *v;
    for (const char* k : {"temperature", "top_p", "top_k", "stream", "parallel_tool_calls", "seed"})
        if (const json* v = field(body, k)) out[k] = *v;
    if (const json* v = field(body, "tools")) {
        if (!v->is_array()) return make_error("tools must be an array");
        json tools = json::array();
        for (size_t i = 0; i < v->size(); ++i) {
            const json& t = (*v)[i];
            if (!t.is_object()) return make_error("tools[{}] must be an object", i);
            const json* type = field(t, "type");
            if (!type || *type != "function") continue;  // web_search, local_shell, custom, ...: run by OpenAI only
            const json* name = field(t, "name");
            if (!name || !name->is_string()) return make_error("tools[{}].name must be a string", i);
            tools.push_back(function_tool(*name, field(t, "description"), field(t, "parameters") ? t["parameters"] : json::object()));
        }
        if (!tools.empty()) out["tools"] = std::move(tools);
    }
    if (const json* v = field(body, "tool_choice")) {
        if (v->is_string()) {
            out["tool_choice"] = *v;
        } else if (v->is_object() && field(*v, "type") && (*v)["type"] == "function") {
            const json* name = field(*v, "name");
            if (!name || !name->is_string()) return make_error("tool_choice.name must be a string");
            out["tool_choice"] = {{"type", "function"}, {"function", {{"name", *name}}}};
        } else {
            return make_error("tool_choice must be auto, none, required or {{\"type\": \"function\", \"name\": ...}}");
        }
    }
    if (const json* t = field(body, "text")) {
        if (!t->is_object()) return make_error("text must be an object");
        if (const json* f = field(*t, "format")) {
            const json* type = f->is_object() ? field(*f, "type") : nullptr;
            if (!type || !type->is_string()) return make_error("text.format must be an object with a type");
            if (*type == "json_object") {
                out["response_format"] = {{"type", "json_object"}};
            } else if (*type == "json_schema") {
                json js = {{"name", f->contains("name") && (*f)["name"].is_string() ? (*f)["name"] : json("response")}};
                if (const json* s = field(*f, "schema")) js["schema"] = *s;
                if (const json* s = field(*f, "strict")) js["strict"] = *s;
                out["response_format"] = {{"type", "json_schema"}, {"json_schema", std::move(js)}};
            } else if (*type != "text") {
                return make_error("text.format.type must be text, json_object or json_schema");
            }
        }
    }
    if (const json* r = field(body, "reasoning")) {
        if (!r->is_object()) return make_error("reasoning must be an object");
        if (const json* e = field(*r, "effort")) {
            if (!e->is_string()) return make_error("reasoning.effort must be a string");
            const std::string effort = e->get<std::string>();
            if (effort != "none" && effort != "minimal" && effort != "low" && effort != "medium" && effort != "high" &&
                effort != "xhigh")
                return make_error("reasoning.effort must be none, minimal, low, medium or high");
            out["chat_template_kwargs"] = {{"enable_thinking", effort != "none" && effort != "minimal"}};
        }
    }
    return out;
}

}  // namespace tandem
