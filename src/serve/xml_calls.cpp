#include "serve/xml_calls.h"

#include <fmt/format.h>

#include "serve/request_json.h"
#include "serve/tool_calls.h"

namespace tandem {

using json = nlohmann::ordered_json;

namespace {
constexpr std::string_view kOpenFn = kXmlFunction, kParam = kXmlParameter, kCloseFn = kXmlFunctionEnd, kCloseParam = kXmlParameterEnd;

bool is_ws(uint8_t c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

// The text `| string` prints for a JSON value (Python's str of the value)
std::string printed(const json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
    if (v.is_null()) return "None";
    return v.dump();
}

// The recognizer of a value written under this rule; null: free text.
std::shared_ptr<const JsonSchema> value_schema(const XmlValueRule& r) {
    switch (r.kind) {
        case XmlValueRule::Kind::text: return nullptr;
        case XmlValueRule::Kind::boolean: return *JsonSchema::choice({"true", "false", "True", "False"});
        case XmlValueRule::Kind::null: return *JsonSchema::choice({"null", "None"});
        case XmlValueRule::Kind::choice: {
            auto c = JsonSchema::choice(r.texts);
            return c ? *c : nullptr;
        }
        case XmlValueRule::Kind::json: {
            auto c = JsonSchema::compile(r.schema);
            return c ? *c : nullptr;  // (a schema we cannot follow: free text)
        }
    }
    return nullptr;
}
}  // namespace

XmlValueRule xml_value_rule(const json& p) {
    XmlValueRule r;
    if (!p.is_object()) return r;
    if (const auto e = p.find("enum"); e != p.end() && e->is_array() && !e->empty() && e->size() <= (size_t)JsonSchema::kMaxLiterals) {
        for (const json& v : *e) {
            std::string t = printed(v);
            // a text the recognizer could not tell from the whitespace or tag around it: free text
            if (t.empty() || t.size() > 4096 || t.find_first_of(" \n\r\t<") != std::string::npos) return XmlValueRule{};
            r.texts.push_back(std::move(t));
            r.values.push_back(v);
        }
        r.kind = XmlValueRule::Kind::choice;
        return r;
    }
    const auto t = p.find("type");
    if (t == p.end() || !t->is_string()) return r;  // untyped, or a list of types: free text
    const std::string type = t->get<std::string>();
    if (type == "boolean") r.kind = XmlValueRule::Kind::boolean;
    else if (type == "null") r.kind = XmlValueRule::Kind::null;
    else if (type == "integer" || type == "number" || type == "object" || type == "array") {
        r.kind = XmlValueRule::Kind::json;
        r.schema = p;
    }
    return r;
}

json xml_value(const XmlValueRule& r, const std::string& text) {
    std::string t = text;
    if (r.kind != XmlValueRule::Kind::text) {  // a typed value: its text alone
        const size_t b = t.find_first_not_of(" \n\r\t");
        t = b == std::string::npos ? std::string() : t.substr(b, t.find_last_not_of(" \n\r\t") - b + 1);
    }
    switch (r.kind) {
        case XmlValueRule::Kind::text: return t;
        case XmlValueRule::Kind::boolean:
            if (t == "true" || t == "True") return true;
            if (t == "false" || t == "False") return false;
            return t;
        case XmlValueRule::Kind::null: return t == "null" || t == "None" ? json() : json(t);
        case XmlValueRule::Kind::choice:
            for (size_t i = 0; i < r.texts.size(); ++i)
                if (r.texts[i] == t) return r.values[i];
            return t;
        case XmlValueRule::Kind::json: {
            json v = parse_json_bounded(t);
            return v.is_discarded() ? json(t) : v;
        }
    }
    return t;
}

const json* tool_function(const json& tool) {
    if (!tool.is_object()) return nullptr;
    const auto f = tool.find("function");
    return f != tool.end() && f->is_object() ? &*f : nullptr;
}

Result<std::shared_ptr<const XmlCallSchema>> XmlCallSchema::from_tools(const json& tools) {
    auto s = std::make_shared<XmlCallSchema>();
    if (!tools.is_array() || tools.empty()) return make_error("no tools");
    if (tools.size() > (size_t)kMaxTools) return make_error("at most {} tools", kMaxTools);
    for (const json& t : tools) {
        const json* fn = tool_function(t);
        const auto name = fn ? fn->find("name") : json::const_iterator();
        if (!fn || name == fn->end() || !name->is_string() || !carries(name->get<std::string>())) continue;
        Tool tool;
        tool.name = name->get<std::string>();
        std::vector<std::string> left_out;
        const auto params = fn->find("parameters");
        if (params != fn->end() && params->is_object() && params->contains("properties") && (*params)["properties"].is_object()) {
            const json& props = (*params)["properties"];
            if (props.size() > (size_t)kMaxParams) return make_error("tool '{}': at most {} parameters", tool.name, kMaxParams);
            for (auto it = props.begin(); it != props.end(); ++it) {
                if (!carries(it.key())) {
                    left_out.push_back(it.key());
                    continue;
                }
                tool.params.push_back({it.key(), value_schema(xml_value_rule(it.value()))});
            }
            if (const auto req = params->find("required"); req != params->end() && req->is_array()) {
                bool callable = true;
                for (const json& r : *req) {
                    if (!r.is_string()) continue;
                    for (size_t i = 0; i < tool.params.size(); ++i)
                        if (r.get<std::string>() == tool.params[i].name) tool.required |= 1ull << i;
                    for (const std::string& o : left_out) callable = callable && o != r.get<std::string>();
                }
                if (!callable) continue;  // a required parameter it cannot be given
            }
        }
        s->tools_.push_back(std::move(tool));
    }
    if (s->tools_.empty()) return make_error("no tool whose calls the XML format can carry");
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
            doc_close_ = 0;
            phase_ = Phase::value_doc;
            return step(c);
        case Phase::value_doc: {
            // the document never spells </parameter> (in a string): the parser ends the value there
            const int32_t close = c == (uint8_t)kCloseParam[(size_t)doc_close_] ? doc_close_ + 1 : c == '<' ? 1 : 0;
            const bool would_close = close == (int32_t)kCloseParam.size();
            // (only a document that may end here needs its state kept for the byte after it)
            if (!doc_->can_end()) {
                doc_close_ = close;
                return !would_close && doc_->feed_byte(c);
            }
            JsonMatcher trial = *doc_;
            if (!would_close && trial.feed_byte(c)) {
                *doc_ = std::move(trial);
                doc_close_ = close;
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
