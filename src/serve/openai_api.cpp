#include "serve/openai_api.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>

#include "serve/request_json.h"

namespace tandem {
namespace {

using json = chat::Json;

const json* field(const json& obj, const char* name) { return json_field(obj, name); }

// An integer in [lo, hi] (floats with an integral value are accepted, as JSON has one number type).
Result<int64_t> get_int(const json& v, const char* name, int64_t lo, int64_t hi) {
    double d;
    if (v.is_number_integer()) {
        if (v.is_number_unsigned() && v.get<uint64_t>() > (uint64_t)std::numeric_limits<int64_t>::max())
            return make_error("{} is out of range ({}..{})", name, lo, hi);
        const int64_t i = v.get<int64_t>();
        if (i < lo || i > hi) return make_error("{} is out of range ({}..{})", name, lo, hi);
        return i;
    }
    if (!v.is_number_float()) return make_error("{} must be an integer", name);
    d = v.get<double>();
    if (!std::isfinite(d) || d != std::floor(d)) return make_error("{} must be an integer", name);
    if (d < (double)lo || d > (double)hi) return make_error("{} is out of range ({}..{})", name, lo, hi);
    return (int64_t)d;
}

Result<double> get_num(const json& v, const char* name, double lo, double hi) {
    if (!v.is_number()) return make_error("{} must be a number", name);
    const double d = v.get<double>();
    if (!std::isfinite(d) || d < lo || d > hi) return make_error("{} must be between {} and {}", name, lo, hi);
    return d;
}

Result<bool> get_bool(const json& v, const char* name) {
    if (!v.is_boolean()) return make_error("{} must be true or false", name);
    return v.get<bool>();
}

// Message content: a string, null, or an array of {"type": "text", "text": ...} parts.
Result<std::string> content_text(const json& c, size_t i) {
    if (c.is_null()) return std::string();
    return text_of_parts(c, fmt::format("messages[{}].content", i), {"text"});
}

Result<chat::Json> parse_messages(const json& msgs) {
    if (!msgs.is_array() || msgs.empty()) return make_error("messages must be a non-empty array");
    chat::Json out = chat::Json::array();
    for (size_t i = 0; i < msgs.size(); ++i) {
        const json& m = msgs[i];
        if (!m.is_object()) return make_error("messages[{}] must be an object", i);
        const json* role = field(m, "role");
        if (!role || !role->is_string()) return make_error("messages[{}].role must be a string", i);
        std::string r = role->get<std::string>();
        if (r == "developer") r = "system";
        if (r != "system" && r != "user" && r != "assistant" && r != "tool")
            return make_error("messages[{}].role must be system, developer, user, assistant or tool", i);
        chat::Json msg = chat::Json::object();
        msg["role"] = r;
        const json* content = field(m, "content");
        if (!content && r != "assistant") return make_error("messages[{}].content is required", i);
        TANDEM_ASSIGN(std::string text, content_text(content ? *content : json(), i));
        msg["content"] = text;
        if (const json* rc = field(m, "reasoning_content")) {
            if (!rc->is_string()) return make_error("messages[{}].reasoning_content must be a string", i);
            msg["reasoning_content"] = rc->get<std::string>();
        }
        if (const json* tc = field(m, "tool_calls")) {
            if (!tc->is_array()) return make_error("messages[{}].tool_calls must be an array", i);
            chat::Json calls = chat::Json::array();
            for (const json& c : *tc) {
                if (!c.is_object() || !c.contains("function") || !c["function"].is_object())
                    return make_error("messages[{}].tool_calls entries need a function object", i);
                chat::Json call = c;
                // templates expect arguments as an object; OpenAI sends a JSON string
                const json& fn = c["function"];
                if (fn.contains("arguments") && fn["arguments"].is_string()) {
                    const json args = parse_json_bounded(fn["arguments"].get_ref<const std::string&>());
                    if (!args.is_discarded()) call["function"]["arguments"] = args;
                }
                calls.push_back(call);
            }
            msg["tool_calls"] = calls;
        }
        for (const char* k : {"name", "tool_call_id"})
            if (const json* v = field(m, k)) {
                if (!v->is_string()) return make_error("messages[{}].{} must be a string", i, k);
                msg[k] = v->get<std::string>();
            }
        out.push_back(msg);
    }
    return out;
}

// tool_choice: "auto" (the default: calls the model opens follow the tools' schemas, unless
// the server was told not to), "none" (the tools are not offered), "required" or
// {"type": "function", "function": {"name": N}} (the answer is sampled as calls: JsonSchema::tool_calls;
// parallel_tool_calls false: one call).
Status parse_tool_choice(const json& body, ApiRequest& r, bool constrain_auto) {
    const json* v = field(body, "tool_choice");
    std::string mode = "auto", named;
    if (!v || v->is_null()) {
    } else if (v->is_string()) {
        mode = v->get<std::string>();
        if (mode != "auto" && mode != "none" && mode != "required")
            return make_error("tool_choice must be auto, none, required or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}");
    } else if (v->is_object() && v->contains("type") && (*v)["type"] == "function" && v->contains("function") && (*v)["function"].is_object() &&
               (*v)["function"].contains("name") && (*v)["function"]["name"].is_string()) {
        mode = "named";
        named = (*v)["function"]["name"].get<std::string>();
    } else {
        return make_error("tool_choice must be auto, none, required or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}");
    }
    if (mode == "none") {
        r.tools = nullptr;
        return {};
    }
    if (const json* p = field(body, "parallel_tool_calls")) {
        TANDEM_ASSIGN(const bool parallel, get_bool(*p, "parallel_tool_calls"));
        if (!parallel) r.max_tool_calls = 1;  // (whatever shapes the answer: the parse keeps one call)
    }
    // the tools as (name, parameters) for JsonSchema::tool_calls; unnamed: the first tool without a name
    std::vector<std::pair<std::string, nlohmann::ordered_json>> fns;
    size_t unnamed = r.tools.is_array() ? r.tools.size() : 0;
    if (r.tools.is_array())
        for (size_t i = 0; i < r.tools.size(); ++i) {
            const json* fn = tool_function(r.tools[i]);
            const json* name = fn ? field(*fn, "name") : nullptr;
            if (!name || !name->is_string()) {
                unnamed = std::min(unnamed, i);
                continue;
            }
            if (mode == "named" && name->get<std::string>() != named) continue;
            const json* params = field(*fn, "parameters");
            fns.emplace_back(name->get<std::string>(), params ? *params : json());
        }
    if (mode == "auto") {
        if (r.tools.is_null() || r.response_schema || !constrain_auto || fns.empty()) return {};
        // (the template renders a tool without a name as it can: the constraint leaves it out);
        // a schema this server cannot compile does not fail the request: any arguments object
        for (auto& [name, params] : fns)
            if (!params.is_null() && !JsonSchema::compile(params).ok()) params = json{{"type", "object"}};
        // (too many tools: the calls are parsed as written)
        if (auto schema = JsonSchema::tool_calls(fns, JsonSchema::ToolShape::call)) r.tool_call_schema = *schema;
        if (auto xml = XmlCallSchema::from_tools(r.tools)) r.tool_call_xml = *xml;
        return {};
    }
    if (r.tools.is_null()) return make_error("tool_choice {} needs tools", mode == "named" ? "naming a function" : "required");
    if (r.response_schema) return make_error("tool_choice {} and response_format cannot both shape the answer", mode == "named" ? "naming a function" : "required");
    if (unnamed < r.tools.size()) return make_error("tools[{}].function.name must be a string", unnamed);
    if (fns.empty()) return make_error("tool_choice names '{}', which is not one of the tools", named);
    auto schema = JsonSchema::tool_calls(fns, mode == "required" ? JsonSchema::ToolShape::calls : JsonSchema::ToolShape::arguments,
                                         r.max_tool_calls);
    if (!schema) return make_error("tool_choice: {}", schema.error().message);
    r.response_schema = *schema;
    r.forced_tools = true;
    r.forced_tool = named;
    return {};
}

}  // namespace

nlohmann::json api_error(int status, const std::string& message) {
    const char* type = status == 401   ? "authentication_error"
                       : status == 404 ? "not_found_error"
                       : status == 429 ? "rate_limit_error"
                       : status >= 500 ? "server_error"
                                       : "invalid_request_error";
    return {{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", status}}}};
}

Result<ApiRequest> parse_api_request(const chat::Json& body, bool chat, const ApiLimits& limits) {
    if (!body.is_object()) return make_error("the request body must be a JSON object");
    ApiRequest r;
    r.chat = chat;
    if (const json* m = field(body, "model")) {
        if (!m->is_string()) return make_error("model must be a string");
        r.model = m->get<std::string>();
    }
    if (chat) {
        const json* msgs = field(body, "messages");
        if (!msgs) return make_error("messages is required");
        TANDEM_ASSIGN(r.messages, parse_messages(*msgs));
        r.tools = nullptr;
        if (const json* t = field(body, "tools")) {
            if (!t->is_array()) return make_error("tools must be an array");
            if (!t->empty()) r.tools = *t;
        }
        r.template_kwargs = nullptr;
        if (const json* k = field(body, "chat_template_kwargs")) {
            if (!k->is_object()) return make_error("chat_template_kwargs must be an object");
            r.template_kwargs = *k;
            if (const json* et = field(*k, "enable_thinking")) {
                TANDEM_ASSIGN(bool b, get_bool(*et, "chat_template_kwargs.enable_thinking"));
                r.enable_thinking = b;
            }
        }
        // OpenAI's reasoning_effort: given to the template (as vLLM does: some templates read
        // it); none and minimal also answer without thinking unless enable_thinking says otherwise
        if (const json* e = field(body, "reasoning_effort")) {
            static const char* const kEfforts[] = {"none", "minimal", "low", "medium", "high", "xhigh"};
            const bool known = e->is_string() && std::any_of(std::begin(kEfforts), std::end(kEfforts),
                                                             [&](const char* k) { return e->get<std::string>() == k; });
            if (!known) return make_error("reasoning_effort must be none, minimal, low, medium, high or xhigh");
            const std::string effort = e->get<std::string>();
            if (!r.template_kwargs.is_object()) r.template_kwargs = json::object();
            if (!r.template_kwargs.contains("reasoning_effort")) r.template_kwargs["reasoning_effort"] = effort;
            if (!r.enable_thinking && (effort == "none" || effort == "minimal")) {
                r.enable_thinking = false;
                r.template_kwargs["enable_thinking"] = false;
            }
        }
    } else {
        const json* p = field(body, "prompt");
        if (!p) return make_error("prompt is required");
        // a text, an array of token ids, or an array of several of either (one choice set each)
        auto one_prompt = [&](const json& v, const std::string& where) -> Status {
            PromptInput in;
            if (v.is_string()) {
                in.text = v.get<std::string>();
                if (in.text.empty()) return make_error("{} is empty", where);
            } else if (v.is_array() && !v.empty()) {
                in.is_ids = true;
                for (const json& id : v) {
                    if (!id.is_number_integer()) return make_error("{} must be a string or an array of token ids", where);
                    TANDEM_ASSIGN(int64_t x, get_int(id, "prompt token id", 0, std::numeric_limits<int32_t>::max()));
                    in.ids.push_back((int32_t)x);
                }
            } else {
                return make_error("{} must be a non-empty string or array of token ids", where);
            }
            r.prompts.push_back(std::move(in));
            return {};
        };
        if (p->is_array() && !p->empty() && ((*p)[0].is_string() || (*p)[0].is_array())) {
            if (p->size() > (size_t)kMaxChoices)
                return make_error("prompt lists at most {} prompts, not {}", kMaxChoices, p->size());
            for (size_t i = 0; i < p->size(); ++i) {
                if (!(*p)[i].is_string() && !(*p)[i].is_array())
                    return make_error("prompt[{}] must be a string or an array of token ids", i);
                TANDEM_TRY(one_prompt((*p)[i], fmt::format("prompt[{}]", i)));
            }
        } else {
            TANDEM_TRY(one_prompt(*p, "prompt"));
        }
        if (const json* e = field(body, "echo")) {
            TANDEM_ASSIGN(r.echo, get_bool(*e, "echo"));
        }
    }

    GenParams& g = r.gen;
    g.max_new_tokens = limits.default_max_tokens;
    for (const char* name : {"max_tokens", "max_completion_tokens"})
        if (const json* v = field(body, name)) {
            // 0 only with echo: the prompt (and its logprobs) and nothing more, as OpenAI allowed
            TANDEM_ASSIGN(int64_t n, get_int(*v, name, r.echo ? 0 : 1, std::numeric_limits<int32_t>::max()));
            g.max_new_tokens = n;
        }
    g.max_new_tokens = std::min(g.max_new_tokens, limits.max_tokens_cap);
    if (const json* v = field(body, "temperature")) {
        TANDEM_ASSIGN(double t, get_num(*v, "temperature", 0.0, 2.0));
        g.sampler.temperature = (float)t;
    } else {
        g.sampler.temperature = 1.0f;  // OpenAI's default
    }
    if (const json* v = field(body, "top_p")) {
        TANDEM_ASSIGN(double t, get_num(*v, "top_p", 0.0, 1.0));
        if (t <= 0.0) return make_error("top_p must be greater than 0");
        g.sampler.top_p = (float)t;
    }
    if (const json* v = field(body, "top_k")) {
        TANDEM_ASSIGN(int64_t k, get_int(*v, "top_k", -1, std::numeric_limits<int32_t>::max()));
        g.sampler.top_k = k < 0 ? 0 : (int)k;
    }
    if (const json* v = field(body, "min_p")) {
        TANDEM_ASSIGN(double t, get_num(*v, "min_p", 0.0, 1.0));
        g.sampler.min_p = (float)t;
    }
    if (const json* v = field(body, "seed")) {
        TANDEM_ASSIGN(int64_t s, get_int(*v, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()));
        g.sampler.seed = (uint64_t)s;
    } else {
        g.sampler.seed = 0x5eed ^ (uint64_t)std::chrono::steady_clock::now().time_since_epoch().count();
    }
    if (const json* v = field(body, "presence_penalty")) {
        TANDEM_ASSIGN(double t, get_num(*v, "presence_penalty", -2.0, 2.0));
        g.presence_penalty = (float)t;
    }
    if (const json* v = field(body, "frequency_penalty")) {
        TANDEM_ASSIGN(double t, get_num(*v, "frequency_penalty", -2.0, 2.0));
        g.frequency_penalty = (float)t;
    }
    if (const json* v = field(body, "stop")) {
        if (v->is_string()) {
            g.stop.push_back(v->get<std::string>());
        } else if (v->is_array()) {
            if (v->size() > 16) return make_error("stop may hold at most 16 strings");
            for (const json& s : *v) {
                if (!s.is_string()) return make_error("stop must be a string or an array of strings");
                g.stop.push_back(s.get<std::string>());
            }
        } else {
            return make_error("stop must be a string or an array of strings");
        }
        for (const std::string& s : g.stop)
            if (s.size() > 1024) return make_error("a stop string is longer than 1024 bytes");
    }
    if (const json* v = field(body, "ignore_eos")) {
        TANDEM_ASSIGN(r.ignore_eos, get_bool(*v, "ignore_eos"));
    }
    if (const json* v = field(body, "repetition_penalty")) {  // (vLLM)
        TANDEM_ASSIGN(double t, get_num(*v, "repetition_penalty", 0.0, 2.0));
        if (t <= 0.0) return make_error("repetition_penalty must be greater than 0");
        g.repetition_penalty = (float)t;
    }
    if (const json* v = field(body, "min_tokens")) {  // (vLLM)
        TANDEM_ASSIGN(g.min_tokens, get_int(*v, "min_tokens", 0, std::numeric_limits<int32_t>::max()));
    }
    if (const json* v = field(body, "stop_token_ids")) {  // (vLLM): more end tokens, as the model's own
        if (!v->is_array() || v->size() > 64) return make_error("stop_token_ids must be an array of at most 64 token ids");
        for (const json& id : *v) {
            TANDEM_ASSIGN(int64_t t, get_int(id, "a stop_token_ids entry", 0, std::numeric_limits<int32_t>::max()));
            r.stop_token_ids.push_back((int32_t)t);
        }
    }
    if (const json* v = field(body, "logit_bias")) {
        if (!v->is_object()) return make_error("logit_bias must be an object of token ids (as strings) to numbers");
        if (v->size() > 1024) return make_error("logit_bias may hold at most 1024 tokens");
        for (auto it = v->begin(); it != v->end(); ++it) {
            const std::string& k = it.key();
            int64_t id = -1;
            if (!k.empty() && k.size() <= 10 && k.find_first_not_of("0123456789") == std::string::npos) id = std::stoll(k);
            if (id < 0 || id > std::numeric_limits<int32_t>::max())
                return make_error("logit_bias: '{}' is not a token id", k);
            TANDEM_ASSIGN(double b, get_num(it.value(), "a logit_bias value", -100.0, 100.0));
            g.logit_bias.emplace_back((int32_t)id, (float)b);
        }
    }
    if (const json* v = field(body, "response_format")) {
        if (!v->is_object()) return make_error("response_format must be an object");
        const json* type = field(*v, "type");
        if (!type || !type->is_string()) return make_error("response_format.type must be text, json_object or json_schema");
        const std::string t = type->get<std::string>();
        if (t == "json_object") {
            r.response_schema = JsonSchema::any_object();
        } else if (t == "json_schema") {
            const json* js = field(*v, "json_schema");
            if (!js || !js->is_object()) return make_error("response_format.json_schema must be an object with a schema");
            const json* sc = field(*js, "schema");
            if (!sc) return make_error("response_format.json_schema.schema is required");
            auto compiled = JsonSchema::compile(*sc);
            if (!compiled) return make_error("response_format.json_schema: {}", compiled.error().message);
            r.response_schema = *compiled;
        } else if (t != "text") {
            return make_error("response_format.type must be text, json_object or json_schema (not '{}')", t);
        }
    }
    // vLLM's guided decoding fields: guided_json (a schema), guided_choice (one of some texts)
    if (const json* v = field(body, "guided_json")) {
        if (r.response_schema) return make_error("guided_json and response_format cannot both shape the answer");
        const json sc = v->is_string() ? parse_json_bounded(v->get_ref<const std::string&>()) : *v;
        if (sc.is_discarded()) return make_error("guided_json: not valid JSON");
        auto compiled = JsonSchema::compile(sc);
        if (!compiled) return make_error("guided_json: {}", compiled.error().message);
        r.response_schema = *compiled;
    }
    if (const json* v = field(body, "guided_choice")) {
        if (r.response_schema) return make_error("guided_choice and another response format cannot both shape the answer");
        if (!v->is_array()) return make_error("guided_choice must be an array of strings");
        std::vector<std::string> texts;
        for (const json& t : *v) {
            if (!t.is_string()) return make_error("guided_choice must be an array of strings");
            texts.push_back(t.get<std::string>());
        }
        auto compiled = JsonSchema::choice(texts);
        if (!compiled) return make_error("guided_choice: {}", compiled.error().message);
        r.response_schema = *compiled;
    }
    if (chat) TANDEM_TRY(parse_tool_choice(body, r, limits.constrain_tool_calls));
    if (const json* v = field(body, "n")) {
        TANDEM_ASSIGN(r.n, get_int(*v, "n", 1, kMaxChoices));
    }
    if (r.n * (int64_t)std::max<size_t>(1, r.prompts.size()) > kMaxChoices)
        return make_error("n x prompts = {} choices, more than {}", r.n * (int64_t)r.prompts.size(), kMaxChoices);
    if (const json* v = field(body, "stream")) {
        TANDEM_ASSIGN(r.stream, get_bool(*v, "stream"));
    }
    if (const json* v = field(body, "stream_options")) {
        if (!v->is_object()) return make_error("stream_options must be an object");
        if (const json* u = field(*v, "include_usage")) {
            TANDEM_ASSIGN(r.include_usage, get_bool(*u, "stream_options.include_usage"));
        }
        if (const json* u = field(*v, "continuous_usage_stats")) {
            TANDEM_ASSIGN(r.continuous_usage, get_bool(*u, "stream_options.continuous_usage_stats"));
        }
    }
    if (chat) {
        if (const json* v = field(body, "logprobs")) {
        TANDEM_ASSIGN(r.logprobs, get_bool(*v, "logprobs"));
    }
        if (const json* v = field(body, "top_logprobs")) {
            TANDEM_ASSIGN(int64_t k, get_int(*v, "top_logprobs", 0, 20));
            if (!r.logprobs) return make_error("top_logprobs needs logprobs: true");
            g.top_logprobs = (int)k;
        } else if (r.logprobs) {
            g.top_logprobs = 0;
        }
    } else if (const json* v = field(body, "logprobs")) {  // completions: logprobs is the number of alternatives
        TANDEM_ASSIGN(int64_t k, get_int(*v, "logprobs", 0, 20));
        r.logprobs = true;
        g.top_logprobs = (int)k;
    }
    // the prompt's own logprobs: with echo and logprobs (OpenAI's legacy completions, what
    // evaluation harnesses send), or vLLM's prompt_logprobs
    if (const json* v = field(body, "prompt_logprobs")) {
        TANDEM_ASSIGN(int64_t k, get_int(*v, "prompt_logprobs", 0, 20));
        r.prompt_logprobs = (int)k;
    }
    if (r.echo && r.logprobs) g.prompt_logprobs = g.top_logprobs;
    if (r.prompt_logprobs >= 0) g.prompt_logprobs = std::max(g.prompt_logprobs, r.prompt_logprobs);
    return r;
}

}  // namespace tandem
