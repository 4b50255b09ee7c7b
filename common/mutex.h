// A mutex the thread-safety analysis knows about (common/thread_annotations.h), and its
// scoped lock. Same behaviour as std::mutex / std::lock_guard.
#pragma once

#include <mutex>

#include "common/thread_annotations.h"

namespace slacker::common {

class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  // True if the lock was taken (then Unlock it).
  bool TryLock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // BasicLockable, for std::condition_variable_any::wait (which unlocks and relocks).
  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

// Holds `mu` from construction to destruction.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.Lock(); }
  ~MutexLock() RELEASE() { mu_.Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

}  // namespace slacker::common
