// Small host file helpers used by every module (not privileged: no Os seam needed).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"
#include "common/status.h"

namespace slacker {

// Crash-safe replace: write `path.tmp-<pid>`, fsync, rename over `path`, fsync the
// directory. With durable=false the fsyncs are skipped (still atomic against a process
// crash, not against power loss). The file is created with `mode` (less the umask);
// the default is root-only, as everything slacker keeps is.
Status AtomicWriteFile(const std::string& path, std::string_view content, bool durable = true,
                       unsigned mode = 0600);
Result<std::string> ReadFileToString(const std::string& path);
// The file at `path` when it holds at most `limit` bytes, else EFBIG naming it and the
// limit. `flags` are added to O_RDONLY|O_CLOEXEC (O_NOFOLLOW for files others can plant).
Result<std::string> ReadFileAtMost(const std::string& path, size_t limit, int flags = 0);
// mkdir -p with `mode` for created directories.
Status MakeDirs(const std::string& path, unsigned mode = 0755);
// Directory entry names (no "." or ".."); ENOENT if the directory does not exist.
Result<std::vector<std::string>> ListDir(const std::string& path);
// Clears the group and other bits of an existing file or directory (0755 -> 0700) if it
// has any: state and store directories are root's alone. Follows a link (for paths the
// operator configured, never for paths inside the shared store).
Status CloseToOthers(const std::string& path);
// Removes a file; a missing file is OK.
Status RemoveFileIfExists(const std::string& path);
// rm -rf without crossing mount points (fails with EBUSY on a mount point inside).
Status RemoveTree(const std::string& path);
bool PathExists(const std::string& path);
// 2*nbytes lowercase hex characters from the kernel's CSPRNG.
std::string RandomHex(size_t nbytes);
std::string JoinPath(std::string_view a, std::string_view b);
// Parses sizes like "50M", "10G", "4096", "1.5GiB" (binary units, as docker's RAMInBytes).
Result<uint64_t> ParseSize(std::string_view text);
// The pieces of `text` between `sep`s, empty ones dropped: "a,,b," gives {"a", "b"}.
std::vector<std::string> SplitNonEmpty(std::string_view text, char sep);

// --- Paths beneath a directory descriptor -------------------------------------------
// For directories that others can write (the shared store: any worker is root over NFS),
// where a string check on a path is no guard. Every path `rel` is resolved from `dir_fd`
// with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS): a symbolic
// link in any component fails with ELOOP, an absolute path or a ".." that leaves dir_fd
// with EXDEV; the message names `rel` and says it was refused. Act on the fd it yields.

// openat2 as above, with O_CLOEXEC added to `flags`; `mode` for O_CREAT.
Result<UniqueFd> OpenBeneath(int dir_fd, const std::string& rel, int flags, unsigned mode = 0);
// Opens a regular file beneath dir_fd (O_NONBLOCK while opening, so a FIFO planted there
// cannot block; cleared afterwards). EINVAL naming `rel` if it is not a regular file.
Result<UniqueFd> OpenRegularBeneath(int dir_fd, const std::string& rel, int flags);
// The directory holding `rel` opened (O_RDONLY | O_DIRECTORY) beneath dir_fd, and the
// last component, which is one plain name (not "", "." or ".."): act on it with the *at
// calls (renameat, unlinkat, openat with O_NOFOLLOW) on `dir`.
struct ParentDir {
  UniqueFd dir;
  std::string name;
};
Result<ParentDir> OpenParentBeneath(int dir_fd, const std::string& rel);
// mkdir -p of `rel` beneath dir_fd, new directories with `mode` (umask ignored); an
// existing link is refused, never followed. Returns the last directory opened O_RDONLY.
Result<UniqueFd> MakeDirsBeneath(int dir_fd, const std::string& rel, unsigned mode);
// Entry names of the open directory `dir_fd` (no "." or ".."); `what` names it in errors.
Result<std::vector<std::string>> ListDirFd(int dir_fd, const std::string& what);
// Reads all of an open file.
Result<std::string> ReadFdToString(int fd, const std::string& what);
// What is left to read from `fd` when it is at most `limit` bytes, else EFBIG.
Result<std::string> ReadFdAtMost(int fd, size_t limit, const std::string& what);
// The regular file `rel` beneath the directory `dir` (OpenRegularBeneath's rules), when it
// holds at most `limit` bytes, else EFBIG.
Result<std::string> ReadFileBeneath(const std::string& dir, const std::string& rel, size_t limit);
// AtomicWriteFile of `name` inside the open directory `dir_fd`: a temporary created
// O_EXCL beside it with exactly `mode`, fsync, renameat, fsync of the directory.
Status AtomicWriteFileAt(int dir_fd, const std::string& name, std::string_view content, unsigned mode);
// rm -rf of the entry `name` of the open directory `dir_fd` (a file, link or whole tree),
// never following a link and never crossing into another file system (EBUSY); a missing
// entry is OK.
Status RemoveTreeAt(int dir_fd, const std::string& name);
// unlinkat(dir_fd, name); a missing entry is OK. A link is removed, never followed.
Status UnlinkAtIfExists(int dir_fd, const std::string& name, const std::string& what);

}  // namespace slacker
