#include "common/flags.h"

#include <gtest/gtest.h>

namespace slacker {
namespace {

struct Cli {
  std::string socket = "default", level;
  bool unsigned_ok = false;
  long long n = 0;
  FlagSet flags;
  Cli() {
    flags.String("--socket", &socket);
    flags.String("--log-level", &level);
    flags.Switch("--allow-unsigned", &unsigned_ok);
    flags.Custom("--count", [this](const std::string& v) {
      SLACKER_ASSIGN_OR_RETURN(n, ParseIntFlag("--count", v, 1, 64));
      return Status::Ok();
    });
  }
};

TEST(FlagSetTest, ValuesSwitchesAndPositionals) {
  Cli c;
  auto p = c.flags.Parse({"status", "--socket", "/s", "--log-level=debug", "--allow-unsigned", "x", "--count", "3"});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_FALSE(p->help);
  EXPECT_EQ((std::vector<std::string>{"status", "x"}), p->positional);
  EXPECT_EQ("/s", c.socket);
  EXPECT_EQ("debug", c.level);
  EXPECT_TRUE(c.unsigned_ok);
  EXPECT_EQ(3, c.n);
}

TEST(FlagSetTest, UnsetFlagsKeepTheirDefaults) {
  Cli c;
  auto p = c.flags.Parse(std::vector<std::string>{});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ("default", c.socket);
  EXPECT_FALSE(c.unsigned_ok);
}

TEST(FlagSetTest, AnEmptyInlineValueIsAValue) {
  Cli c;
  ASSERT_TRUE(c.flags.Parse({"--socket="}).ok());
  EXPECT_EQ("", c.socket);
}

TEST(FlagSetTest, HelpStopsParsing) {
  Cli c;
  for (const char* h : {"--help", "-h"}) {
    auto p = c.flags.Parse({h, "--bogus"});
    ASSERT_TRUE(p.ok()) << h;
    EXPECT_TRUE(p->help) << h;
  }
}

TEST(FlagSetTest, DoubleDashEndsTheFlags) {
  Cli c;
  auto p = c.flags.Parse({"--", "--socket", "-x"});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ((std::vector<std::string>{"--socket", "-x"}), p->positional);
  EXPECT_EQ("default", c.socket);
}

// Each mistake is EINVAL with a message that names the flag and what is wrong.
TEST(FlagSetTest, MistakesAreErrorsThatSayWhy) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const Case cases[] = {
      {{"--bogus"}, "unknown option --bogus"},
      {{"-x"}, "unknown option -x"},
      {{"--socket"}, "--socket needs a value"},
      {{"--allow-unsigned=yes"}, "--allow-unsigned takes no value"},
      {{"--count", "0"}, "--count wants a whole number from 1 to 64, not \"0\""},
      {{"--count=2x"}, "--count wants a whole number from 1 to 64, not \"2x\""},
  };
  for (const Case& k : cases) {
    Cli c;
    auto p = c.flags.Parse(k.args);
    ASSERT_FALSE(p.ok()) << k.message;
    EXPECT_EQ(EINVAL, p.status().code());
    EXPECT_EQ(k.message, p.status().message());
  }
}

TEST(FlagSetTest, ParsesArgvWithoutTheProgramName) {
  Cli c;
  char prog[] = "prog", flag[] = "--socket", value[] = "/x";
  char* argv[] = {prog, flag, value};
  auto p = c.flags.Parse(3, argv);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->positional.empty());
  EXPECT_EQ("/x", c.socket);
}

TEST(ParseCommandLineOrExitTest, ReturnsPositionalsOrExits) {
  Cli c;
  EXPECT_EQ((std::vector<std::string>{"a"}),
            ParseCommandLineOrExit(c.flags, {"a", "--socket", "/s"}, "prog", "USAGE\n", true));
  EXPECT_EQ("/s", c.socket);
  EXPECT_EXIT(ParseCommandLineOrExit(c.flags, {"--help"}, "prog", "USAGE\n", false), ::testing::ExitedWithCode(0),
              "");
  EXPECT_EXIT(ParseCommandLineOrExit(c.flags, {"--bogus"}, "prog", "USAGE\n", true), ::testing::ExitedWithCode(2),
              "prog: unknown option --bogus\nUSAGE");
  EXPECT_EXIT(ParseCommandLineOrExit(c.flags, {"stray"}, "prog", "USAGE\n", false), ::testing::ExitedWithCode(2),
              "prog: unexpected argument stray");
}

TEST(ParseIntFlagTest, Bounds) {
  EXPECT_EQ(5, *ParseIntFlag("--n", "5", 0, 10));
  EXPECT_FALSE(ParseIntFlag("--n", "11", 0, 10).ok());
  EXPECT_FALSE(ParseIntFlag("--n", "-1", 0, 10).ok());
  EXPECT_FALSE(ParseIntFlag("--n", "", 0, 10).ok());
  EXPECT_FALSE(ParseIntFlag("--n", " 5", 0, 10).ok());
}

}  // namespace
}  // namespace slacker
