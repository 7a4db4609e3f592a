// The Jinja interpreter's semantics where the golden tests do not reach: errors naming
// the template line, undefined values, scoping, macros, and the depth limit.
#include "worker/model/jinja/template.h"

#include <gtest/gtest.h>

namespace moeserve::jinja {
namespace {

StatusOr<std::string> render(const std::string& source, Dict variables = {}) {
  MOESERVE_ASSIGN_OR_RETURN(const Template t, Template::parse(source));
  return t.render(variables);
}

std::string error_of(const std::string& source, Dict variables = {}) {
  const StatusOr<std::string> out = render(source, std::move(variables));
  EXPECT_FALSE(out.ok()) << source << " rendered " << out.value_or("");
  return out.status().message();
}

TEST(JinjaTest, ParseErrorsNameTheLine) {
  EXPECT_EQ(error_of("a\nb\n{% if x %}\n"), "line 3: missing 'endif'");
  EXPECT_EQ(error_of("{{ 1 +  }}"), "line 1: unexpected '}}'");
  EXPECT_EQ(error_of("\n{% call foo() %}{% endcall %}"), "line 2: unknown statement 'call'");
  EXPECT_EQ(error_of("{{ 'open }}"), "line 1: unterminated string literal");
  EXPECT_EQ(error_of("x\n{# never closed"), "line 2: unclosed comment");
}

TEST(JinjaTest, RuntimeErrorsNameTheLine) {
  EXPECT_TRUE(
      error_of("\n\n{{ x | frobnicate }}").starts_with("line 3: unknown filter 'frobnicate'"));
  EXPECT_EQ(error_of("{{ missing.attr }}"), "line 1: cannot read 'attr' of an undefined value");
  EXPECT_EQ(error_of("{{ 'a' + 1 }}"),
            "line 1: unsupported operand type(s) for +: 'str' and 'int'");
  EXPECT_EQ(error_of("\n{{ raise_exception('bad roles') }}"), "line 2: raise_exception: bad roles");
  EXPECT_EQ(error_of("{% for x in 5 %}{% endfor %}"), "line 1: 'int' object is not iterable");
  EXPECT_TRUE(
      error_of("{% set n = 1 %}{% set n.x = 2 %}").starts_with("line 1: cannot set 'x' on 'n'"));
}

TEST(JinjaTest, UndefinedIsEmptyAndFalsyButNotIndexable) {
  EXPECT_EQ(*render("[{{ nothing }}]{{ nothing is defined }}{{ not nothing }}"), "[]FalseTrue");
  Dict vars;
  vars.set("m", Value::from_json({{"role", "user"}}));
  EXPECT_EQ(*render("{{ m.content is defined }}{{ m['content'] is none }}{{ m.role }}", vars),
            "FalseFalseuser");
  EXPECT_EQ(*render("{% for x in nothing %}x{% else %}empty{% endfor %}"), "empty");
}

TEST(JinjaTest, LoopsScopeTheirSetsNamespacesDoNot) {
  EXPECT_EQ(*render("{% set x = 1 %}{% for i in [1, 2] %}{% set x = i %}{% endfor %}{{ x }}"), "1");
  EXPECT_EQ(*render("{% set ns = namespace(x=1) %}{% for i in [1, 2] %}{% set ns.x = i %}"
                    "{% endfor %}{{ ns.x }}"),
            "2");
  EXPECT_EQ(*render("{% if true %}{% set y = 'kept' %}{% endif %}{{ y }}"), "kept");
}

TEST(JinjaTest, MacrosTakeDefaultsAndKeywordsAndSeeTopLevelNames) {
  EXPECT_EQ(*render("{% set greeting = 'hi' %}{% macro m(a, b='B') %}{{ greeting }} {{ a }}{{ b }}"
                    "{% endmacro %}{{ m(1) }}|{{ m(1, 2) }}|{{ m(b=3, a=4) }}"),
            "hi 1B|hi 12|hi 43");
  EXPECT_NE(error_of("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}").find("takes 1 arguments"),
            std::string::npos);
  EXPECT_NE(error_of("{% macro m(a) %}{% endmacro %}{{ m(c=1) }}").find("no parameter 'c'"),
            std::string::npos);
  // Runaway recursion stops with an error instead of exhausting the stack.
  EXPECT_NE(error_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").find("too deeply"),
            std::string::npos);
}

TEST(JinjaTest, WhitespaceControl) {
  EXPECT_EQ(*render("a  {%- if true -%}  b  {%- endif -%}  c"), "abc");
  // trim_blocks and lstrip_blocks: block tags on their own lines leave no blank lines.
  EXPECT_EQ(*render("x\n  {% if true %}\n  y\n  {% endif %}\nz\n"), "x\n  y\nz");
  EXPECT_EQ(*render("{{ 'v' }}\n{{ 'w' }}"), "v\nw");
}

}  // namespace
}  // namespace moeserve::jinja
