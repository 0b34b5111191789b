// Unit tests of the Jinja interpreter: lexer whitespace rules, parser, statements,
// expressions, filters, tests, Python-style printing, errors and limits. Expected strings
// are what jinja2 3.1 (configured as transformers does) renders for the same input.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "text/jinja/jinja_interpreter.h"
#include "text/jinja/jinja_lexer.h"
#include "text/jinja/jinja_value.h"
#include "time_scale.h"
#include "util/error.h"
#include "util/json.h"

namespace nemotron::text::jinja {
namespace {

std::string render(const std::string& src, const char* ctx_json = "{}", RenderLimits limits = {}) {
  Json ctx = Json::parse(ctx_json);
  std::vector<std::pair<std::string, Value>> context;
  for (auto it = ctx.begin(); it != ctx.end(); ++it) context.emplace_back(it.key(), Value::from_json(it.value()));
  return Template(src).render(context, limits);
}

// Renders and returns the error message ("" when rendering succeeded).
std::string error_of(const std::string& src, const char* ctx_json = "{}", RenderLimits limits = {}) {
  try {
    render(src, ctx_json, limits);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(JinjaLexer, TokensAndLines) {
  auto toks = tokenize("a{{ x.y|f(1, 'two') }}\n{% if z %}b{% endif %}");
  ASSERT_GE(toks.size(), 10u);
  EXPECT_EQ(toks[0].type, Token::Type::Data);
  EXPECT_EQ(toks[1].type, Token::Type::VarBegin);
  EXPECT_EQ(toks[2].value, "x");
  EXPECT_EQ(toks.back().type, Token::Type::Eof);
  bool saw_string = false;
  for (const auto& t : toks)
    if (t.type == Token::Type::String) saw_string = t.value == "two";
  EXPECT_TRUE(saw_string);
  EXPECT_EQ(toks.back().line, 2);
}

TEST(JinjaLexer, StringEscapes) {
  EXPECT_EQ(render(R"({{ 'a\nb\t\'\\' }})"), "a\nb\t'\\");
  EXPECT_EQ(render(R"({{ "\u00e9\x41\d" }})"), "\xC3\xA9" "A\\d");
  EXPECT_EQ(render("{{ 'ab' 'cd' }}"), "abcd");
}

TEST(JinjaWhitespace, TrimAndLstripBlocks) {
  EXPECT_EQ(render("  {% if true %}\n    x\n  {% endif %}\ny"), "    x\ny");
  EXPECT_EQ(render("a  {%- if true -%}  \n b {%- endif %}"), "ab");
  EXPECT_EQ(render("a {{- ' b ' -}} c"), "a b c");
  EXPECT_EQ(render("  {{ 'v' }}\n"), "  v");  // lstrip does not apply to {{, trailing newline dropped
  EXPECT_EQ(render("x\n  {# comment #}\ny"), "x\ny");
  EXPECT_EQ(render("  {%+ if true %}k{% endif +%}\nz"), "  k\nz");
  EXPECT_EQ(render("a\r\nb\rc\n\n"), "a\nb\nc\n");
}

TEST(JinjaWhitespace, RawBlock) {
  EXPECT_EQ(render("{% raw %}{{ x }}{% if %}{% endraw %}"), "{{ x }}{% if %}");
  EXPECT_EQ(render("{%- raw -%}  {{ y }}  {%- endraw %}"), "{{ y }}");
}

TEST(JinjaPrint, PythonStyleValues) {
  EXPECT_EQ(render("{{ none }} {{ true }} {{ False }} {{ 3 }} {{ -2 }}"), "None True False 3 -2");
  EXPECT_EQ(render("{{ 1.0 }} {{ 0.1 }} {{ 1e-05 }} {{ 1e16 }} {{ 1.5e16 }} {{ 1/3 }} {{ 2.5e-7 }}"),
            "1.0 0.1 1e-05 1e+16 1.5e+16 0.3333333333333333 2.5e-07");
  EXPECT_EQ(render("{{ [1, 'a', none, true, 1.5] }}"), "[1, 'a', None, True, 1.5]");
  EXPECT_EQ(render("{{ {'k': 'v', 'n': [1, {'x': none}]} }}"), "{'k': 'v', 'n': [1, {'x': None}]}");
  EXPECT_EQ(render("{{ (1,) }} {{ (1, 'b') }} {{ [\"it's\"] }} {{ ['a\\nb'] }}"), "(1,) (1, 'b') [\"it's\"] ['a\\nb']");
  EXPECT_EQ(render("[{{ missing }}]"), "[]");
  EXPECT_EQ(render("{{ x }}", R"({"x": {"a": [1.5, null, false]}})"), "{'a': [1.5, None, False]}");
}

TEST(JinjaExpr, Arithmetic) {
  EXPECT_EQ(render("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }}"), "3 -4 1 2 3.5 1024");
  EXPECT_EQ(render("{{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ 10 - 3 - 2 }} {{ 1 + 2.0 }}"), "64 4 5 3.0");
  EXPECT_EQ(render("{{ 'ab' * 3 }} {{ [1] + [2] }} {{ 'a' ~ 1 ~ none ~ missing }} {{ 'x' + 'y' }}"),
            "ababab [1, 2] a1None xy");
  EXPECT_EQ(render("{{ 7.5 // 2 }} {{ -7.5 % 2 }}"), "3.0 0.5");
}

TEST(JinjaExpr, LogicAndComparison) {
  EXPECT_EQ(render("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ 'a' != 'b' }}"), "True False True True");
  EXPECT_EQ(render("{{ 'a' in 'cat' }} {{ 2 not in [1, 3] }} {{ 'k' in {'k': 1} }} {{ 'x' in missing }}"),
            "True True True False");
  EXPECT_EQ(render("{{ 0 or 'd' }} {{ 1 and 'e' }} {{ not '' }} {{ none or [] }}"), "d e True []");
  EXPECT_EQ(render("[{{ 'x' if false }}] {{ 'y' if 0 else 'z' }}"), "[] z");
}

TEST(JinjaExpr, AttributesItemsSlices) {
  const char* ctx = R"({"l": [1, 2, 3, 4, 5], "s": "日本語テキスト", "d": {"a": 1, "items": 7}})";
  EXPECT_EQ(render("{{ l[1:] }}|{{ l[:-1] }}|{{ l[::-1] }}|{{ l[::2] }}|{{ l[-1] }}|{{ l[10] }}", ctx),
            "[2, 3, 4, 5]|[1, 2, 3, 4]|[5, 4, 3, 2, 1]|[1, 3, 5]|5|");
  EXPECT_EQ(render("{{ s[1:4] }}|{{ s[-2:] }}|{{ s[0] }}|{{ s|length }}", ctx), "本語テ|スト|日|7");
  EXPECT_EQ(render("{{ d.a }} {{ d['a'] }} {{ d.items is defined }} {{ d['items'] }} {{ d.nope is defined }}", ctx),
            "1 1 True 7 False");
}

TEST(JinjaStatements, ForLoopVariables) {
  EXPECT_EQ(render("{% for i in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}"
                   "{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }};{% endfor %}"),
            "1032TrueFalse3b;2121FalseFalse3ac;3210FalseTrue3b;");
  EXPECT_EQ(render("{% for i in [1,2,3,4,5] if i is odd %}{{ i }}{{ loop.length }}{% endfor %}"), "133353");
  EXPECT_EQ(render("{% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}={{ v }},{% endfor %}"), "b=1,a=2,");
  EXPECT_EQ(render("{% for x in [] %}x{% else %}empty{% endfor %}{% for x in missing %}y{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i > 5 %}{% break %}{% endif %}"
                   "{{ i }}{% endfor %}"),
            "01345");
  EXPECT_EQ(render("{% for i in [1,2] %}{{ loop.cycle('a', 'b') }}{% endfor %}"), "ab");
}

TEST(JinjaStatements, ScopingSetNamespace) {
  EXPECT_EQ(render("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}"), "1");
  EXPECT_EQ(render("{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}"), "2");
  EXPECT_EQ(render("{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}"), "6");
  EXPECT_EQ(render("{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set blk %}in {{ a }}{% endset %}[{{ blk }}]"), "12[in 1]");
  EXPECT_EQ(render("{% with y = 5 %}{{ y }}{% endwith %}[{{ y }}]"), "5[]");
}

TEST(JinjaStatements, MacrosCallFilterDo) {
  EXPECT_EQ(render("{% macro g(n, p='!') %}Hi {{ n }}{{ p }}{% endmacro %}{{ g('Bob') }} {{ g('Al', p='?') }} [{{ g() }}]"),
            "Hi Bob! Hi Al? [Hi !]");
  EXPECT_EQ(render("{% macro w() %}<{{ caller() }}>{% endmacro %}{% call w() %}body{% endcall %}"), "<body>");
  EXPECT_EQ(render("{% filter upper %}shout {{ 'it' }}{% endfilter %}"), "SHOUT IT");
  EXPECT_EQ(render("{% do [1].count(1) %}ok"), "ok");
  EXPECT_EQ(render("{% macro r(n) %}{% if n > 0 %}{{ n }}{{ r(n - 1) }}{% endif %}{% endmacro %}{{ r(3) }}"), "321");
}

TEST(JinjaFilters, Strings) {
  const char* ctx = R"({"s": "  héllo wOrld-foo (bar)  "})";
  EXPECT_EQ(render("{{ s|trim }}|{{ s|upper }}|{{ s|title }}|{{ s|capitalize }}|{{ s|length }}", ctx),
            "héllo wOrld-foo (bar)|  HÉLLO WORLD-FOO (BAR)  |  Héllo World-Foo (Bar)  |  héllo world-foo (bar)  |25");
  EXPECT_EQ(render("{{ 'a-b'|replace('-', '+') }} {{ 'abc'|reverse }} {{ 'xax'|trim('x') }} {{ 'one two'|wordcount }}"),
            "a+b cba a 2");
  EXPECT_EQ(render("{{ '<a>&\"\\''|e }}"), "&lt;a&gt;&amp;&#34;&#39;");
  EXPECT_EQ(render("{{ 'a\n\nb'|indent(2) }}|{{ 'a\nb'|indent(2, true) }}"), "a\n\n  b|  a\n  b");
}

TEST(JinjaFilters, TojsonMatchesPythonJsonDumps) {
  const char* ctx = R"({"d": {"z": [1, 2.5, null, true, "ü😀\"\\\n\u0001"], "a": {}, "e": []}})";
  EXPECT_EQ(render("{{ d|tojson }}", ctx),
            "{\"z\": [1, 2.5, null, true, \"ü😀\\\"\\\\\\n\\u0001\"], \"a\": {}, \"e\": []}");
  EXPECT_EQ(render("{{ {'b': 1, 'a': [1]}|tojson(indent=2, sort_keys=true) }}"), "{\n  \"a\": [\n    1\n  ],\n  \"b\": 1\n}");
  EXPECT_EQ(render("{{ {'a': 'é'}|tojson(separators=(',', ':'), ensure_ascii=true) }}"), "{\"a\":\"\\u00e9\"}");
  EXPECT_NE(error_of("{{ missing|tojson }}").find("not JSON serializable"), std::string::npos);
}

TEST(JinjaFilters, Sequences) {
  const char* ctx = R"({"l": ["b", "a", "C", "b"], "u": [{"n": "x", "ok": true, "v": 1}, {"n": "a", "ok": false, "v": 2.5}]})";
  EXPECT_EQ(render("{{ l|join(',') }}|{{ l|sort }}|{{ l|sort(reverse=true) }}|{{ l|unique|list }}|{{ l|first }}{{ l|last }}", ctx),
            "b,a,C,b|['a', 'b', 'b', 'C']|['C', 'b', 'b', 'a']|['b', 'a', 'C']|bb");
  EXPECT_EQ(render("{{ l|map('upper')|list }}|{{ l|select('equalto', 'b')|list }}|{{ l|reject('in', ['a'])|list }}", ctx),
            "['B', 'A', 'C', 'B']|['b', 'b']|['b', 'C', 'b']");
  EXPECT_EQ(render("{{ u|map(attribute='n')|join }}|{{ u|selectattr('ok')|map(attribute='n')|list }}|{{ u|sum(attribute='v') }}", ctx),
            "xa|['x']|3.5");
  EXPECT_EQ(render("{{ {'b': 2, 'A': 1}|dictsort }}|{{ {'k': 1}|items|list }}|{{ [3, 1]|min }}{{ [3, 1]|max }}"),
            "[('A', 1), ('b', 2)]|[('k', 1)]|13");
  EXPECT_EQ(render("{{ [1,2,3,4,5]|batch(2)|list }}|{{ [1,2,3]|slice(2)|list }}"), "[[1, 2], [3, 4], [5]]|[[1, 2], [3]]");
}

TEST(JinjaFilters, ConversionsAndDefault) {
  EXPECT_EQ(render("{{ 'x'|default('d') }} {{ missing|default('d') }} {{ ''|default('d', true) }} {{ none|default('d') }} {{ missing|d }}|"),
            "x d d None |");
  EXPECT_EQ(render("{{ '42'|int }} {{ '4.7'|int }} {{ 'abc'|int(7) }} {{ 3.9|int }} {{ '2.5'|float }} {{ 'x'|float }} {{ -3|abs }}"),
            "42 4 7 3 2.5 0.0 3");
  EXPECT_EQ(render("{{ 2.675|round(2) }} {{ 2.5|round }} {{ 3|round }} {{ 2.1|round(0, 'ceil') }} {{ [1,2]|string }} {{ 12|string|length }}"),
            "2.67 2.0 3 3.0 [1, 2] 2");
}

TEST(JinjaTests, Builtins) {
  EXPECT_EQ(render("{{ 5 is odd }}{{ 6 is even }}{{ 9 is divisibleby 3 }}{{ 'a' is string }}{{ true is number }}{{ 1 is integer }}"
                   "{{ 1.0 is float }}{{ {} is mapping }}{{ [] is sequence }}{{ missing is iterable }}{{ none is iterable }}"),
            "TrueTrueTrueTrueTrueTrueTrueTrueTrueTrueFalse");
  EXPECT_EQ(render("{{ x is undefined }}{{ x is not defined }}{{ true is boolean }}{{ false is false }}{{ 3 is gt 2 }}"
                   "{{ 3 is ne 3 }}{{ none is none }}{{ 'ab' is lower }}{{ 2 is in [1, 2] }}"),
            "TrueTrueTrueTrueTrueFalseTrueTrueTrue");
}

TEST(JinjaMethods, StrListDict) {
  const char* ctx = R"({"s": " xyx zx z ", "d": {"a": 1}})";
  EXPECT_EQ(render("{{ s.strip() }}|{{ s.strip(' x') }}|{{ s.split() }}|{{ s.split('x', 1) }}|{{ s.rsplit('x', 1) }}", ctx),
            "xyx zx z|yx zx z|['xyx', 'zx', 'z']|[' ', 'yx zx z ']|[' xyx z', ' z ']");
  EXPECT_EQ(render("{{ s.startswith(' x') }}{{ s.endswith(('q', 'z ')) }}|{{ s.replace('x', 'Y', 1) }}|{{ s.find('y') }}"
                   "|{{ s.count('x') }}|{{ '-'.join(['a', 'b']) }}|{{ 'a{}b{}'.format(1, 'c') }}", ctx),
            "TrueTrue| Yyx zx z |2|3|a-b|a1bc");
  EXPECT_EQ(render("{{ d.get('a') }} {{ d.get('z', 'dflt') }} {{ d.get('z') }} {{ d.keys()|list }} {{ d.values()|list }}", ctx),
            "1 dflt None ['a'] [1]");
  EXPECT_EQ(render("{{ 'A-b c'.title() }} {{ 'héllo'.upper() }} {{ 'a\\nb'.splitlines() }}"), "A-B C HÉLLO ['a', 'b']");
}

TEST(JinjaErrors, SyntaxErrorsCarryLineNumbers) {
  EXPECT_EQ(error_of("line1\n{% for %}"), "template syntax error (line 2): expected name, got end of statement block");
  EXPECT_EQ(error_of("{% if x %}never closed"),
            "template syntax error (line 1): unexpected end of template; expected 'elif' or 'else' or 'endif' to close 'if'");
  EXPECT_EQ(error_of("{{ x|nosuch }}"), "template syntax error (line 1): No filter named 'nosuch'.");
  EXPECT_EQ(error_of("{{ x is nosuch }}"), "template syntax error (line 1): No test named 'nosuch'.");
  EXPECT_EQ(error_of("{% include 'x' %}"), "template syntax error (line 1): encountered unknown tag 'include'");
  EXPECT_EQ(error_of("{% break %}"), "template syntax error (line 1): 'break' outside of a loop");
  EXPECT_EQ(error_of("{{ 'abc }}"), "template syntax error (line 1): unexpected char '''");
  EXPECT_EQ(error_of("{# open"), "template syntax error (line 1): Missing end of comment tag");
  EXPECT_EQ(error_of("{{ (1 }}"), "template syntax error (line 1): unexpected '}', expected ')'");
  EXPECT_EQ(error_of("{% if true %}{{ 1|nosuch }}{% endif %}"),
            "template render error (line 1): No filter named 'nosuch'.");
}

TEST(JinjaErrors, RuntimeErrors) {
  EXPECT_EQ(error_of("a\n{{ raise_exception('Conversation roles must alternate') }}"),
            "template render error (line 2): raise_exception: Conversation roles must alternate");
  EXPECT_EQ(error_of("{{ missing.attr }}"), "template render error (line 1): 'missing' is undefined");
  EXPECT_EQ(error_of("{{ missing + 1 }}"), "template render error (line 1): 'missing' is undefined");
  EXPECT_EQ(error_of("{{ missing() }}"), "template render error (line 1): 'missing' is undefined");
  EXPECT_EQ(error_of("{{ 'a' + 1 }}"), "template render error (line 1): unsupported operand type(s) for +: 'str' and 'int'");
  EXPECT_EQ(error_of("{{ 1 / 0 }}"), "template render error (line 1): division by zero");
  EXPECT_EQ(error_of("{{ [1]|items|list }}"), "template render error (line 1): Can only get item pairs from a mapping.");
  EXPECT_EQ(error_of("{{ {'a': 1}.pop('a') }}"), "template render error (line 1): access to attribute 'pop' of 'dict' object is unsafe.");
  EXPECT_EQ(error_of("{% do [].append(1) %}"), "template render error (line 1): access to attribute 'append' of 'list' object is unsafe.");
  EXPECT_EQ(error_of("{{ 1 < 'a' }}"), "template render error (line 1): '<' not supported between instances of 'int' and 'str'");
  EXPECT_EQ(error_of("{% set x = 1 %}{% set x.a = 2 %}"), "template render error (line 1): cannot assign attribute on non-namespace object");
  EXPECT_EQ(error_of("{% for a, b in [[1]] %}{% endfor %}"), "template render error (line 1): not enough values to unpack (expected 2, got 1)");
  EXPECT_EQ(error_of("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}"), "template render error (line 1): macro 'm' takes not more than 1 argument(s)");
  EXPECT_EQ(error_of("{{ 'x'|int(1, 2, 3) }}"), "template render error (line 1): int() takes at most 2 argument(s) (3 given)");
  EXPECT_EQ(error_of("{{ 5|length }}"), "template render error (line 1): object of type 'int' has no len()");
  EXPECT_EQ(error_of("{% for x in 5 %}{% endfor %}"), "template render error (line 1): 'int' object is not iterable");
  EXPECT_EQ(error_of("{{ 9223372036854775807 + 1 }}"),
            "template render error (line 1): integer overflow (values beyond 64 bits are not supported)");
}

TEST(JinjaLimits, HostileTemplatesTerminate) {
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(error_of("{{ range(200000)|length }}"),
            "template render error (line 1): Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  EXPECT_EQ(error_of("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"),
            "template render error (line 1): template exceeded 2000000 evaluation steps");
  RenderLimits small;
  small.max_output_bytes = 1000;
  EXPECT_EQ(error_of("{% for i in range(100) %}0123456789abcdef{% endfor %}", "{}", small),
            "template render error (line 1): template output exceeds the limit of 1000 bytes");
  EXPECT_EQ(error_of("{{ 'x' * 100000000000 }}"),
            "template render error (line 1): template output exceeds the limit of 16777216 bytes");
  // Found by fuzz_jinja: an empty sequence times 31,184,467,440,737 looped that many times.
  // Empty at once, as in Python (jinja2 prints the same).
  EXPECT_EQ(render("{{ [ ]* 31184467440737 }}|{{ '' * 9223372036854775807 }}|{{ (() * 10**15)|length }}"), "[]||0");
  EXPECT_EQ(error_of("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"),
            "template render error (line 1): template output exceeds the limit of 16777216 bytes");
  EXPECT_EQ(error_of("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"),
            "template render error (line 1): macro calls nested deeper than 64");
  std::string deep(5000, '(');
  EXPECT_NE(error_of("{{ " + deep + "1" + std::string(5000, ')') + " }}").find("brackets nested too deeply"), std::string::npos);
  std::string chain = "{{ x";
  for (int i = 0; i < 5000; ++i) chain += ".a";
  EXPECT_EQ(error_of(chain + " }}"), "template syntax error (line 1): expression nested too deeply (limit 256)");
  std::string plus = "{{ 1";
  for (int i = 0; i < 5000; ++i) plus += " + 1";
  EXPECT_EQ(error_of(plus + " }}"), "template syntax error (line 1): expression nested too deeply (limit 256)");
  std::string ifs;
  for (int i = 0; i < 1000; ++i) ifs += "{% if true %}";
  EXPECT_NE(error_of(ifs).find("template nested too deeply"), std::string::npos);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 20.0 * nemotron::testing::time_scale());
}

// Found by fuzz_jinja: a tuple holding the namespace it is stored in printed itself forever
// (a stack overflow). Containers that hold themselves print as Python prints them; nesting
// past 512 is an error when printed or compared, never a crash.
TEST(JinjaLimits, SelfReferentialValuesPrintAndCompare) {
  EXPECT_EQ(render("{% set ns = namespace(n=0) %}{% set ns.n = (ns, 1) %}{{ ns.n }}"), "(<Namespace {'n': (...)}>, 1)");
  EXPECT_EQ(render("{% set ns = namespace(nupdate=0) %}{% for i in range(3) %}{% set ns.n = ns,n ,+ i %}{% endfor %}"
                   "{{ ns.n|length }}"),
            "3");
  // (The sandbox has no list.append or dict.update: a cycle always goes through a namespace.)
  EXPECT_EQ(render("{% set ns = namespace() %}{% set ns.l = [1, ns] %}{{ ns.l }} {{ ns.l == ns.l }}"),
            "[1, <Namespace {'l': [...]}>] True");
  EXPECT_EQ(render("{% set ns = namespace() %}{% set ns.d = {'me': ns} %}{{ ns.d }}"), "{'me': <Namespace {'d': {...}}>}");
  const std::string deep = "{% set ns = namespace(x=[], y=[]) %}{% for i in range(600) %}{% set ns.x = [ns.x] %}"
                           "{% set ns.y = [ns.y] %}{% endfor %}";
  EXPECT_EQ(error_of(deep + "{{ ns.x }}"), "template render error (line 1): value nested too deeply to print");
  EXPECT_EQ(error_of(deep + "{{ ns.x == ns.y }}"), "template render error (line 1): comparison nested too deeply");
  EXPECT_EQ(render(deep + "{{ ns.x == ns.x }}"), "True");
}

// Renders `src` with `probe` (a dict only this test holds) in the context and reports whether
// the render let go of it. A macro keeps the frames it was defined in, so a macro stored in
// such a frame (every top-level macro) or in a namespace was a reference cycle that kept the
// whole render context alive: the server leaked every request's messages (found by
// fuzz_chat_template under LeakSanitizer).
bool render_frees_context(const std::string& src) {
  auto probe = std::make_shared<DictObj>();
  probe->set(Value("k"), Value("v"));
  std::weak_ptr<DictObj> watch = probe;
  {
    std::vector<std::pair<std::string, Value>> context = {{"x", Value::dict(std::move(probe))}};
    try {
      Template(src).render(context);
    } catch (const Error&) {
    }
  }
  return watch.expired();
}

TEST(JinjaLeaks, RenderFreesMacroAndNamespaceCycles) {
  EXPECT_TRUE(render_frees_context("{{ x.k }}"));
  EXPECT_TRUE(render_frees_context("{% macro m() %}{{ x.k }}{% endmacro %}{{ m() }}"));
  EXPECT_TRUE(render_frees_context("{% set ns = namespace(a=x) %}{% set ns.self = ns %}{{ ns.a.k }}"));
  EXPECT_TRUE(render_frees_context("{% for i in [1] %}{% macro m() %}{{ x.k }}{% endmacro %}{% set y = m %}{% endfor %}"));
  EXPECT_TRUE(render_frees_context("{% set ns = namespace() %}{% macro m() %}{{ x.k }}{% endmacro %}{% set ns.m = m %}"
                                   "{{ ns.m() }}{{ raise_exception('stop') }}"));
  EXPECT_TRUE(render_frees_context("{% macro m(c) %}{{ caller() }}{% endmacro %}{% call m(1) %}{{ x.k }}{% endcall %}"));
  // A macro defined in a loop and called after it still sees the loop's frame.
  EXPECT_EQ(render("{% set ns = namespace() %}{% for i in [7] %}{% macro m() %}{{ i }}{% endmacro %}"
                   "{% set ns.m = m %}{% endfor %}{{ ns.m() }}"),
            "7");
  // The real templates define a top-level macro.
  const std::string nano = read_file(std::string(NEMOTRON_SOURCE_DIR) + "/data/chat_templates/nemotron3-nano-30b-a3b.chat_template.jinja");
  EXPECT_TRUE(render_frees_context(nano));
}

TEST(JinjaValue, FloatRepr) {
  EXPECT_EQ(py_float_repr(0.0), "0.0");
  EXPECT_EQ(py_float_repr(-0.0), "-0.0");
  EXPECT_EQ(py_float_repr(100.0), "100.0");
  EXPECT_EQ(py_float_repr(1e22), "1e+22");
  EXPECT_EQ(py_float_repr(123456789012345.6), "123456789012345.6");
  EXPECT_EQ(py_float_repr(0.0001), "0.0001");
  EXPECT_EQ(py_float_repr(0.00001234), "1.234e-05");
  EXPECT_EQ(py_float_repr(1.0 / 0.0), "inf");
}

}  // namespace
}  // namespace nemotron::text::jinja
