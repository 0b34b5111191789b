#include <gtest/gtest.h>

#include "text/grammar/grammar.h"

using namespace nemotron::text::grammar;

TEST(GrammarSmoke, Literal) {
  Matcher m(Grammar::literal("abc"));
  EXPECT_FALSE(m.can_end());
  EXPECT_TRUE(m.accept_bytes("ab"));
  EXPECT_FALSE(m.accept_bytes("x"));
  EXPECT_TRUE(m.accept_bytes("c"));
  EXPECT_TRUE(m.can_end());
  EXPECT_TRUE(m.done());
}
