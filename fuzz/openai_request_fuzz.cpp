// Request bodies of /v1/chat/completions, /v1/completions, /v1/messages and /v1/responses: parsing
// never crashes, whatever the JSON; the first byte picks the endpoint (bit 0: chat, bit 1:
// Anthropic's messages, bit 2: responses; both translated first). A response_format's schema
// reads the body itself, and so does the call schema of the tools (tool_choice auto).
#include <cstddef>
#include <cstdint>
#include <string>

#include "serve/anthropic_api.h"
#include "serve/json_schema.h"
#include "serve/openai_api.h"
#include "serve/responses_api.h"
#include "serve/text_stream.h"
#include "serve/tool_calls.h"
#include "serve/xml_calls.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const bool anthropic = data[0] & 2, responses = !anthropic && (data[0] & 4);
    const bool chat = anthropic || responses || (data[0] & 1);
    const std::string text((const char*)data + 1, size - 1);
    tandem::chat::Json body = tandem::chat::Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) return 0;
    if (anthropic || responses) {
        auto converted = anthropic ? tandem::anthropic_to_openai(body) : tandem::responses_to_openai(body);
        if (!converted) return 0;
        body = std::move(*converted);
    }
    auto r = tandem::parse_api_request(body, chat, tandem::ApiLimits{});
    if (r) {
        // the stop strings of a valid request go through the matcher on the request's own text
        tandem::StopMatcher m(r->gen.stop);
        for (size_t i = 0; i < text.size(); i += 3) m.push(text.substr(i, 3));
        m.flush();
        // the request's own text read as a model's answer with tool calls, in both formats
        tandem::parse_tool_calls(text, tandem::ToolCallFormat::json, &r->tools);
        tandem::parse_tool_calls(text, tandem::ToolCallFormat::xml, &r->tools);
        tandem::ThinkSplitter t(chat);
        for (size_t i = 0; i < text.size(); i += 5) t.push(text.substr(i, 5));
        t.flush();
        // a response_format's schema, and the tools' call schema, matched against the request's own bytes
        for (const auto& schema : {r->response_schema, r->tool_call_schema}) {
            if (!schema) continue;
            tandem::JsonMatcher jm(schema);
            for (char c : text)
                if (!jm.feed_byte((uint8_t)c)) break;
            jm.can_end();
        }
        if (r->tool_call_xml) {
            tandem::XmlCallMatcher xm(r->tool_call_xml);
            for (char c : text)
                if (!xm.feed_byte((uint8_t)c)) break;
            xm.can_end();
        }
    }
    return 0;
}
