#include "common/status.h"

#include <gtest/gtest.h>

namespace slacker {
namespace {

Result<int> Half(int x) {
  if (x % 2) return Errorf(EINVAL, "{} is odd", x);
  return x / 2;
}

Status UseHalf(int x, int* out) {
  SLACKER_ASSIGN_OR_RETURN(*out, Half(x));
  return Status::Ok();
}

TEST(Status, ContextPrefixesTheMessageAndKeepsTheCode) {
  Status s = Status::Error(ENOSPC, "no room").Context("clone snapshot ab");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), ENOSPC);
  EXPECT_EQ(s.message(), "clone snapshot ab: no room");
}

TEST(Status, FromErrnoNamesTheSyscallError) {
  Status s = Status::FromErrno(ENOENT, "open /x");
  EXPECT_EQ(s.message(), "open /x: No such file or directory");
}

TEST(Result, AssignOrReturnPropagatesTheError) {
  int v = 0;
  EXPECT_TRUE(UseHalf(8, &v).ok());
  EXPECT_EQ(v, 4);
  Status s = UseHalf(3, &v);
  EXPECT_EQ(s.code(), EINVAL);
  EXPECT_EQ(s.message(), "3 is odd");
}

}  // namespace
}  // namespace slacker
