#include "serve/xml_calls.h"

#include <fmt/format.h>

namespace tandem {

using json = nlohmann::ordered_json;

namespace {
constexpr std::string_view kOpenFn = "<function=", kParam = "<parameter=", kCloseFn = "</function>",
                           kCloseParam = "</parameter>";

bool is_ws(uint8_t c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

// What the template prints for a value of this schema, as a recognizer; null: free text.
std::shared_ptr<const JsonSchema> value_schema(const json& p) {
    if (!p.is_object()) return nullptr;
    if (const auto e = p.find("enum"); e != p.end() && e->is_array() && !e->empty()) {
        std::vector<std::string> texts;  // as `| string` prints them
        for (const json& v : *e) {
            if (v.is_string()) texts.push_back(v.get<std::string>());
            else if (v.is_boolean()) texts.push_back(v.get<bool>() ? "True" : "False");
            else if (v.is_null()) texts.push_back("None");
            else texts.push_back(v.dump());
        }
        auto c = JsonSchema::choice(texts);
        return c ? *c : nullptr;
    }
    const auto t = p.find("type");
    if (t == p.end() || !t->is_string()) return nullptr;  // untyped, or a list of types: free text
    const std::string type = t->get<std::string>();
    if (type == "boolean") return *JsonSchema::choice({"true", "false", "True", "False"});
    if (type == "null") return *JsonSchema::choice({"null", "None"});
    if (type == "integer" || type == "number" || type == "object" || type == "array") {
        auto c = JsonSchema::compile(p);
        return c ? *c : nullptr;  // (a schema we cannot follow: free text)
    }
    return nullptr;  // string
}
}  // namespace

Result<std::shared_ptr<const XmlCallSchema>> XmlCallSchema::from_tools(const json& tools) {
    auto s = std::make_shared<XmlCallSchema>();
    if (!tools.is_array() || tools.empty()) return make_error("no tools");
    if (tools.size() > (size_t)kMaxTools) return make_error("at most {} tools", kMaxTools);
    for (const json& t : tools) {
        const json* fn = t.is_object() && t.contains("function") ? &t["function"] : &t;
        if (!fn->is_object() || !fn->contains("name") || !(*fn)["name"].is_string()) return make_error("a tool without a name");
        Tool tool;
        tool.name = (*fn)["name"].get<std::string>();
        if (tool.name.empty()) return make_error("a tool without a name");
        const json params = fn->value("parameters", json::object());
        if (params.is_object() && params.contains("properties") && params["properties"].is_object()) {
            const json& props = params["properties"];
            if (props.size() > (size_t)kMaxParams) return make_error("tool '{}': at most {} parameters", tool.name, kMaxParams);
            for (auto it = props.begin(); it != props.end(); ++it) {
                if (it.key().empty()) continue;
                tool.params.push_back({it.key(), value_schema(it.value())});
            }
            if (const auto req = params.find("required"); req != params.end() && req->is_array())
                for (const json& r : *req)
                    for (size_t i = 0; i < tool.params.size(); ++i)
                        if (r.is_string() && r.get<std::string>() == tool.params[i].name) tool.required |= 1ull << i;
        }
        s->tools_.push_back(std::move(tool));
    }
    return std::shared_ptr<const XmlCallSchema>(std::move(s));
}

XmlCallMatcher::XmlCallMatcher(std::shared_ptr<const XmlCallSchema> schema) : schema_(std::move(schema)) {}

bool XmlCallMatcher::take_ws() { return ++ws_ <= JsonSchema::kMaxWs; }

bool XmlCallMatcher::feed(std::string_view bytes) {
    for (char c : bytes)
        if (!feed_byte((uint8_t)c)) return false;
    return true;
}

bool XmlCallMatcher::feed_byte(uint8_t c) { return step(c); }

bool XmlCallMatcher::step(uint8_t c) {
    const auto& tools = schema_->tools();
    switch (phase_) {
        case Phase::lead_ws:
            if (is_ws(c)) return take_ws();
            phase_ = Phase::open_fn;
            pos_ = 0;
            return step(c);
        case Phase::open_fn:
            if (c != (uint8_t)kOpenFn[(size_t)pos_]) return false;
            if (++pos_ == (int32_t)kOpenFn.size()) {
                phase_ = Phase::fn_name;
                pos_ = 0;
                mask_ = tools.size() >= 64 ? ~0ull : (1ull << tools.size()) - 1;
            }
            return true;
        case Phase::fn_name:
        case Phase::param_name: {
            const bool fn = phase_ == Phase::fn_name;
            const size_t n = fn ? tools.size() : tools[(size_t)tool_].params.size();
            auto name = [&](size_t i) -> const std::string& { return fn ? tools[i].name : tools[(size_t)tool_].params[i].name; };
            if (c == '>') {
                for (size_t i = 0; i < n; ++i)
                    if ((mask_ >> i & 1) && name(i).size() == (size_t)pos_) {
                        if (fn) {
                            tool_ = (int32_t)i;
                            seen_ = 0;
                            phase_ = Phase::between;
                            ws_ = 0;
                        } else {
                            param_ = (int32_t)i;
                            seen_ |= 1ull << i;
                            const bool text = !tools[(size_t)tool_].params[i].value;
                            phase_ = text ? Phase::value_text : Phase::pre_value;
                            pos_ = 0;
                            ws_ = 0;
                        }
                        return true;
                    }
                return false;
            }
            uint64_t m = 0;
            for (size_t i = 0; i < n; ++i)
                if ((mask_ >> i & 1) && name(i).size() > (size_t)pos_ && (uint8_t)name(i)[(size_t)pos_] == c) m |= 1ull << i;
            if (!m) return false;
            mask_ = m;
            ++pos_;
            return true;
        }
        case Phase::between: {  // after the function's name or a parameter: a tag next
            if (is_ws(c)) return take_ws();
            if (c != '<') return false;
            // bit 0: <parameter= (while some parameter is left), bit 1: </function> (once every
            // required one was given): decided here, so that no tag is begun that cannot end
            const auto& t = tools[(size_t)tool_];
            const uint64_t all = t.params.size() >= 64 ? ~0ull : (1ull << t.params.size()) - 1;
            mask_ = ((all & ~seen_) ? 1 : 0) | ((t.required & ~seen_) ? 0 : 2);
            if (!mask_) return false;
            phase_ = Phase::tag;
            pos_ = 1;
            return true;
        }
        case Phase::tag: {
            uint64_t m = 0;
            if ((mask_ & 1) && (size_t)pos_ < kParam.size() && (uint8_t)kParam[(size_t)pos_] == c) m |= 1;
            if ((mask_ & 2) && (size_t)pos_ < kCloseFn.size() && (uint8_t)kCloseFn[(size_t)pos_] == c) m |= 2;
            if (!m) return false;
            mask_ = m;
            ++pos_;
            if (m == 1 && pos_ == (int32_t)kParam.size()) {
                const auto& ps = tools[(size_t)tool_].params;
                const uint64_t all = ps.size() >= 64 ? ~0ull : (1ull << ps.size()) - 1;
                mask_ = all & ~seen_;  // each parameter once
                phase_ = Phase::param_name;
                pos_ = 0;
            } else if (m == 2 && pos_ == (int32_t)kCloseFn.size()) {
                phase_ = Phase::end_ws;
                ws_ = 0;
            }
            return true;
        }
        case Phase::value_text:  // up to </parameter> (no other '<' in the tag: a plain scan)
            if (c == (uint8_t)kCloseParam[(size_t)pos_]) {
                if (++pos_ == (int32_t)kCloseParam.size()) {
                    phase_ = Phase::between;
                    ws_ = 0;
                }
            } else {
                pos_ = c == '<' ? 1 : 0;
            }
            return true;
        case Phase::pre_value:  // a typed value sits on its own line, as the template prints it
            if (c == '\n' && ws_ == 0) return ++ws_, true;
            if (is_ws(c)) return false;  // (the documents would take it)
            doc_.emplace(tools[(size_t)tool_].params[(size_t)param_].value);
            phase_ = Phase::value_doc;
            return step(c);
        case Phase::value_doc: {
            // (only a document that may end here needs its state kept for the byte after it)
            if (!doc_->can_end()) return doc_->feed_byte(c);
            JsonMatcher trial = *doc_;
            if (trial.feed_byte(c)) {
                *doc_ = std::move(trial);
                return true;
            }
            doc_.reset();
            phase_ = Phase::post_value;
            ws_ = 0;
            return step(c);
        }
        case Phase::post_value:
            if (c == '\n' && ws_ == 0) return ++ws_, true;
            if (c != '<') return false;
            phase_ = Phase::close_param;
            pos_ = 1;
            return true;
        case Phase::close_param:
            if (c != (uint8_t)kCloseParam[(size_t)pos_]) return false;
            if (++pos_ == (int32_t)kCloseParam.size()) {
                phase_ = Phase::between;
                ws_ = 0;
            }
            return true;
        case Phase::end_ws:
            return is_ws(c) && take_ws();
    }
    return false;
}

}  // namespace tandem
