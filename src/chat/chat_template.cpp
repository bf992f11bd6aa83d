#include "chat/chat_template.h"

#include "chat/builtins.h"
#include "chat/parser.h"
#include "chat/render.h"

namespace tandem {

Result<ChatTemplate> ChatTemplate::parse(const std::string& source) {
    TANDEM_ASSIGN(chat::Body body, chat::parse_template(source));
    ChatTemplate t;
    t.body_ = std::make_shared<const chat::Body>(std::move(body));
    return t;
}

Result<std::string> ChatTemplate::render(const chat::Json& context) const {
    if (!context.is_object() && !context.is_null()) return make_error("chat template context must be a JSON object");
    chat::ValueDict globals = chat::make_globals();
    if (context.is_object())
        for (const auto& [k, v] : context.items()) {
            chat::Value value = chat::Value::from_json(v);
            bool replaced = false;
            for (auto& [gk, gv] : globals)
                if (gk == k) gv = value, replaced = true;
            if (!replaced) globals.emplace_back(k, std::move(value));
        }
    return chat::render_template(*body_, std::move(globals));
}

Result<std::string> render_chat(const std::string& tmpl, const chat::Json& messages, const chat::Json& tools,
                                bool add_generation_prompt, const chat::Json& extra_kwargs,
                                const std::string& bos, const std::string& eos) {
    if (!messages.is_array()) return make_error("chat messages must be a JSON array");
    if (!extra_kwargs.is_null() && !extra_kwargs.is_object())
        return make_error("chat template kwargs must be a JSON object");
    TANDEM_ASSIGN(ChatTemplate t, ChatTemplate::parse(tmpl));
    chat::Json ctx = chat::Json::object();
    ctx["messages"] = messages;
    ctx["tools"] = tools;
    ctx["add_generation_prompt"] = add_generation_prompt;
    ctx["bos_token"] = bos;
    ctx["eos_token"] = eos;
    if (extra_kwargs.is_object())
        for (const auto& [k, v] : extra_kwargs.items()) ctx[k] = v;
    return t.render(ctx);
}

}  // namespace tandem
