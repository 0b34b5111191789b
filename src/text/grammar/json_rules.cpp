#include "text/grammar/json_rules.h"

#include "text/grammar/charset.h"

namespace nemotron::text::grammar {

namespace {
Expr digits(int32_t min, int32_t max) { return Expr::repeat(Expr::byteset(ByteSet::range('0', '9')), min, max); }
}  // namespace

int32_t JsonRules::get(int32_t& slot, const std::string& name) {
  if (slot >= 0) return slot;
  slot = b_.declare(name);
  if (name == "ws") {
    ByteSet indent;
    for (unsigned c : {' ', '\t'}) indent.set(c);
    const Expr line_break = Expr::seq({Expr::opt(Expr::byte('\r')), Expr::byte('\n'),
                                       Expr::repeat(Expr::byteset(indent), 0, opt_.max_indent)});
    b_.define(slot, opt_.max_indent <= 0 ? Expr::empty() : Expr::opt(Expr::alt({Expr::byte(' '), line_break})));
  } else if (name == "value") {
    b_.define(slot, Expr::alt({object(), array(), string(), number(), Expr::literal("true"), Expr::literal("false"),
                               Expr::literal("null")}));
  } else if (name == "object") {
    const int32_t tail = b_.declare("object-tail"), member = b_.declare("member");
    b_.define(member, Expr::seq({string(), ws(), Expr::byte(':'), ws(), value()}));
    b_.define(tail, Expr::seq({ws(), Expr::alt({Expr::seq({Expr::byte(','), ws(), Expr::ref(member), Expr::ref(tail)}),
                                                 Expr::byte('}')})}));
    b_.define(slot, Expr::seq({Expr::byte('{'), ws(), Expr::alt({Expr::byte('}'), Expr::seq({Expr::ref(member), Expr::ref(tail)})})}));
  } else if (name == "array") {
    const int32_t tail = b_.declare("array-tail");
    b_.define(tail, Expr::seq({ws(), Expr::alt({Expr::seq({Expr::byte(','), ws(), value(), Expr::ref(tail)}), Expr::byte(']')})}));
    b_.define(slot, Expr::seq({Expr::byte('['), ws(), Expr::alt({Expr::byte(']'), Expr::seq({value(), Expr::ref(tail)})})}));
  } else if (name == "string") {
    b_.define(slot, Expr::seq({Expr::byte('"'), Expr::star(chr()), Expr::byte('"')}));
  } else if (name == "char") {
    CharSet plain = CharSet::any();
    CharSet special;
    special.add(0, 0x1F);
    special.add('"', '"');
    special.add('\\', '\\');
    plain = plain.minus(special);
    ByteSet esc;
    for (unsigned c : {'"', '\\', '/', 'b', 'f', 'n', 'r', 't'}) esc.set(c);
    ByteSet hex;
    hex.set_range('0', '9');
    hex.set_range('a', 'f');
    hex.set_range('A', 'F');
    ByteSet hex_no_d = hex;  // first hex digit other than d/D (d800-dfff are surrogates)
    hex_no_d.w[1] &= ~((uint64_t{1} << ('d' - 64)) | (uint64_t{1} << ('D' - 64)));
    ByteSet d;
    d.set('d');
    d.set('D');
    const Expr h = Expr::byteset(hex);
    const Expr u = Expr::alt({Expr::seq({Expr::byteset(hex_no_d), h, h, h}),
                              Expr::seq({Expr::byteset(d), Expr::byteset(ByteSet::range('0', '7')), h, h})});
    b_.define(slot, Expr::alt({utf8_expr(plain),
                               Expr::seq({Expr::byte('\\'), Expr::alt({Expr::byteset(esc), Expr::seq({Expr::byte('u'), u})})})}));
  } else if (name == "number") {
    b_.define(slot, Expr::seq({Expr::opt(Expr::byte('-')),
                               Expr::alt({Expr::byte('0'), Expr::seq({Expr::byteset(ByteSet::range('1', '9')), digits(0, 15)})}),
                               Expr::opt(Expr::seq({Expr::byte('.'), digits(1, 16)})),
                               Expr::opt(Expr::seq({Expr::byteset([] {
                                                      ByteSet e;
                                                      e.set('e');
                                                      e.set('E');
                                                      return e;
                                                    }()),
                                                    Expr::opt(Expr::byteset([] {
                                                      ByteSet pm;
                                                      pm.set('+');
                                                      pm.set('-');
                                                      return pm;
                                                    }())),
                                                    digits(1, 2)}))}));
  } else if (name == "integer") {
    b_.define(slot, Expr::seq({Expr::opt(Expr::byte('-')),
                               Expr::alt({Expr::byte('0'), Expr::seq({Expr::byteset(ByteSet::range('1', '9')), digits(0, 17)})})}));
  }
  return slot;
}

Expr JsonRules::ws() { return Expr::ref(get(ws_, "ws")); }
Expr JsonRules::value() { return Expr::ref(get(value_, "value")); }
Expr JsonRules::object() { return Expr::ref(get(object_, "object")); }
Expr JsonRules::array() { return Expr::ref(get(array_, "array")); }
Expr JsonRules::string() { return Expr::ref(get(string_, "string")); }
Expr JsonRules::chr() { return Expr::ref(get(char_, "char")); }
Expr JsonRules::number() { return Expr::ref(get(number_, "number")); }
Expr JsonRules::integer() { return Expr::ref(get(integer_, "integer")); }

std::shared_ptr<const Grammar> json_object(const JsonOptions& opt) {
  GrammarBuilder b;
  JsonRules j(b, opt);
  return b.build(b.add("root", j.object()), "JSON object grammar");
}

std::shared_ptr<const Grammar> json_value(const JsonOptions& opt) {
  GrammarBuilder b;
  JsonRules j(b, opt);
  return b.build(b.add("root", j.value()), "JSON value grammar");
}

}  // namespace nemotron::text::grammar
