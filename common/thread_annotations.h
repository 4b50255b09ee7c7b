// clang's thread-safety annotations (https://clang.llvm.org/docs/ThreadSafetyAnalysis.html):
// lock rules written where the compiler checks them. They expand to nothing on other
// compilers; the `thread-safety` step of test/run-all.sh builds with clang and
// -DSLACKER_THREAD_SAFETY=ON (-Wthread-safety -Werror=thread-safety).
//
// Annotate with common::Mutex (common/mutex.h): libstdc++'s std::mutex carries no
// capability attribute, so GUARDED_BY(a std::mutex) is never checked.
#pragma once

#if defined(__clang__)
#define SLACKER_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define SLACKER_THREAD_ANNOTATION(x)
#endif

// A type that is a lock ("mutex").
#define CAPABILITY(x) SLACKER_THREAD_ANNOTATION(capability(x))
// An RAII type that holds a capability for its lifetime.
#define SCOPED_CAPABILITY SLACKER_THREAD_ANNOTATION(scoped_lockable)
// The member may be read or written only with the lock held.
#define GUARDED_BY(x) SLACKER_THREAD_ANNOTATION(guarded_by(x))
// The data the pointer points to may be accessed only with the lock held.
#define PT_GUARDED_BY(x) SLACKER_THREAD_ANNOTATION(pt_guarded_by(x))
// Lock order (checked only with -Wthread-safety-beta; written down for readers).
#define ACQUIRED_BEFORE(...) SLACKER_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) SLACKER_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
// The caller must hold the lock(s).
#define REQUIRES(...) SLACKER_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
// The caller must not hold the lock(s) (the function takes them).
#define EXCLUDES(...) SLACKER_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ACQUIRE(...) SLACKER_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) SLACKER_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) SLACKER_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
// The function returns a reference to the lock.
#define RETURN_CAPABILITY(x) SLACKER_THREAD_ANNOTATION(lock_returned(x))
// Tells the analysis the lock is held (a run-time fact it cannot see).
#define ASSERT_CAPABILITY(x) SLACKER_THREAD_ANNOTATION(assert_capability(x))
// Turns the analysis off for one function: say why beside it.
#define NO_THREAD_SAFETY_ANALYSIS SLACKER_THREAD_ANNOTATION(no_thread_safety_analysis)
