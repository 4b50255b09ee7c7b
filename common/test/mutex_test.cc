#include "common/mutex.h"

#include <gtest/gtest.h>

#include <future>

namespace slacker::common {
namespace {

TEST(MutexTest, TryLockFailsWhileAnotherThreadHoldsTheLock) {
  Mutex mu;
  {
    MutexLock l(mu);
    auto other = std::async(std::launch::async, [&] {
      bool got = mu.TryLock();
      if (got) mu.Unlock();
      return got;
    });
    EXPECT_FALSE(other.get());
  }
  ASSERT_TRUE(mu.TryLock()) << "the scoped lock did not release the mutex";
  mu.Unlock();
}

}  // namespace
}  // namespace slacker::common
