// Test helper: renders every case of a reference file written by
// tests/integration/js/chat_reference.mjs and prints one JSON line per case:
//   {"index": i, "ok": true, "text": "..."}  or  {"index": i, "ok": false, "error": "..."}
// Usage: render_chat CASES.json
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "chat/chat_template.h"

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: render_chat CASES.json\n");
        return 2;
    }
    std::ifstream in(argv[1], std::ios::binary);
    if (!in) {
        std::fprintf(stderr, "render_chat: error: %s: cannot open\n", argv[1]);
        return 1;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    tandem::chat::Json doc = tandem::chat::Json::parse(ss.str(), nullptr, false);
    if (doc.is_discarded() || !doc.is_object() || !doc.contains("template") || !doc.contains("cases")) {
        std::fprintf(stderr, "render_chat: error: %s: not a cases file\n", argv[1]);
        return 1;
    }
    const std::string tmpl = doc["template"].get<std::string>();
    const std::string bos = doc.value("bos_token", "");
    const std::string eos = doc.value("eos_token", "");
    size_t index = 0;
    for (const auto& c : doc["cases"]) {
        tandem::chat::Json tools = c.contains("tools") ? c["tools"] : tandem::chat::Json();
        tandem::chat::Json kwargs = c.contains("kwargs") ? c["kwargs"] : tandem::chat::Json::object();
        auto r = tandem::render_chat(tmpl, c["messages"], tools, c.value("add_generation_prompt", false), kwargs,
                                     bos, eos);
        tandem::chat::Json line = {{"index", index++}, {"ok", r.ok()}};
        if (r.ok()) line["text"] = *r;
        else line["error"] = r.error().message;
        std::cout << line.dump(-1, ' ', false, tandem::chat::Json::error_handler_t::replace) << "\n";
    }
    return 0;
}
