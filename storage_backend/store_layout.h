// The shared store's on-disk layout (DESIGN.md §3, STORE.md): the one place that spells
// a path of the store, in the manner of leveldb's filename.h. Every function returns a
// path relative to the store root, for resolving beneath the root's descriptor
// (OpenBeneath and friends in common/files.h); join it to root() only for messages or
// for code that reaches the store by name.
//
// Layout under the store root:
//   store.json                      {"format":1,"uuid":"<32 hex>","created":"<RFC3339>"}
//   cluster.key, cluster.key.prev   signing keys (cluster_key.h)
//   snapshots/<snap>.img            immutable ext4 image, mode 0400 (all else 0600, dirs 0700)
//   snapshots/<snap>.json           metadata (parent, source, bytes, ...)
//   snapshots/<snap>.<suffix>       companions, e.g. .skel (tar skeleton), .trace (start-up reads)
//   snapshots/<snap>.gc             tombstone: a running gc means to delete <snap> (STORE.md)
//   volumes/<host>/<layer>.img      writable ext4, owned by one host
//   refs/<host>/<snap>              empty marker: this host's layers use <snap>
//   leases/<host>.json              which process holds the host id (lease.h, STORE.md)
//   locks/gc.json                   the store's gc lock (a lease, lease.h)
//   templates/ext4-<bytes>.img      empty formatted ext4, cloned for new base layers
//   chains/<key>                    chain index (Backend::LookupChain): "<snap>\n"
//   containerd/names/<k>.json       name index (Backend::LookupName): JSON, see NameEntry
//   .storaged/requests/<key>.json   slacker-storaged's idempotency records
// Publishing is crash-ordered: the image is cloned to "<snap>.img.tmp", its metadata is
// written, then the image is renamed into place. A crash leaves only "*.tmp" files or a
// "<snap>.json" without its image: debris that ListSnapshots() ignores and gc removes.
// Other writers also leave "*.tmp*" names while in flight: a clone "<layer>.img.tmp-XXXX",
// a hand-over "<layer>.img.handover", an index write "<key>.tmp-XXXX" (IsTempName).
//
// Ids: a snapshot id is 32 lowercase hex characters; a layer (and host) name is 1-255 of
// [A-Za-z0-9_.-], not starting with '.'; a chain key is 64 lowercase hex characters. The
// path functions do not validate (they only build strings): operations check ids first.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace slacker::storage_backend {

inline constexpr const char* kStoreInfoFile = "store.json";
inline constexpr const char* kClusterKeyFile = "cluster.key";
inline constexpr const char* kPreviousClusterKeysFile = "cluster.key.prev";
inline constexpr const char* kSnapshotsDir = "snapshots";
inline constexpr const char* kTemplatesDir = "templates";
inline constexpr const char* kVolumesDir = "volumes";  // volumes/<host>/
inline constexpr const char* kRefsDir = "refs";        // refs/<host>/
inline constexpr const char* kLeasesDir = "leases";    // a lease directory (lease.h)
inline constexpr const char* kLocksDir = "locks";      // a lease directory too
inline constexpr const char* kGcLockName = "gc";       // the gc lock: locks/gc.json
inline constexpr const char* kChainsDir = "chains";
inline constexpr const char* kNamesDir = "containerd/names";
inline constexpr const char* kStoragedRequestsDir = ".storaged/requests";

// Snapshot file suffixes.
inline constexpr const char* kImageSuffix = ".img";
inline constexpr const char* kMetaSuffix = ".json";
inline constexpr const char* kSkeletonSuffix = ".skel";
// snapshots/<snap>.trace: what a container of the snapshot read at its first start
// (driver/prefetch_trace.h); written by any host after the snapshot is published, replayed
// by cold starts, removed with the snapshot.
inline constexpr const char* kTraceSuffix = ".trace";
// snapshots/<snap><kGcTombstoneSuffix>: a gc means to delete <snap> (STORE.md). Layers
// that already use <snap> keep using it; a new claim treats it as gone.
inline constexpr const char* kGcTombstoneSuffix = ".gc";

// 32 lowercase hex characters.
bool IsValidSnapshotId(std::string_view snap);
// 1-255 of [A-Za-z0-9_.-], not starting with '.'.
bool IsValidLayerName(std::string_view layer);
// 64 lowercase hex characters (a sha256).
bool IsValidChainKey(std::string_view key);

// "store.json.new-<nonce>": a candidate store.json, linked into place (never replacing).
std::string StoreInfoTempName(const std::string& nonce);
// "<name>.tmp-<nonce>": a clone in flight to `name`, renamed over it when complete.
std::string CloneTempName(const std::string& name, const std::string& nonce);
// snapshots/<snap><suffix>
std::string SnapshotFile(const std::string& snap, std::string_view suffix);
// The name (in snapshots/) an image is published from: "<snap>.img.tmp".
std::string SnapshotImageTempName(const std::string& snap);
// volumes/<host>
std::string HostVolumesDir(const std::string& host);
// "<layer>.img", the name of a volume in HostVolumesDir.
std::string VolumeName(const std::string& layer);
// volumes/<host>/<layer>.img
std::string VolumeFile(const std::string& host, const std::string& layer);
// "<layer>.img.handover": a hand-over's clone (Backend::HandOverVolume).
std::string VolumeHandOverName(const std::string& layer);
// A spare volume's layer name, "_spare-<16 hex>" (driver/spares.cc: a clone of an image's
// snapshot slackerd keeps mounted for the next init layer; no record claims it, so
// start-up removes one a crash left). New: a random one.
std::string NewSpareVolumeName();
bool IsSpareVolumeName(std::string_view layer);
// A fold volume's layer name, "_fold-<16 hex>" (driver/overlay.cc: the private clone of
// an overlay-form layer's volume that is folded into its snapshot). No record claims it.
std::string NewFoldVolumeName();
// A spare or a fold volume: slackerd makes and deletes them at any moment; start-up
// removes one a crash left.
bool IsTransientVolumeName(std::string_view layer);
// refs/<host>
std::string HostRefsDir(const std::string& host);
// refs/<host>/<snap>
std::string RefFile(const std::string& host, const std::string& snap);
// leases/<host>.json, and the name of a lease in a lease directory: "<name>.json".
std::string LeaseFile(const std::string& host);
std::string LeaseName(const std::string& name);
// templates/ext4-<bytes>.img
std::string TemplateFile(uint64_t size_bytes);
// chains/<key>
std::string ChainFile(const std::string& key);
// The key the name index files an entry under: a chain id ("sha256:…", content
// addressed: the same tree in any namespace) alone, any other name as "<ns>/<name>".
std::string NameIndexKey(const std::string& ns, const std::string& name);
// "<sha256 of NameIndexKey(ns, name)>.json", the file name in kNamesDir.
std::string NameFileName(const std::string& ns, const std::string& name);
// containerd/names/<NameFileName(ns, name)>
std::string NameFile(const std::string& ns, const std::string& name);

// --- Parsers of names found in the store's directories ------------------------------
// A file some writer has in flight, or a crash left: the name contains ".tmp" (snapshot
// publish "<snap>.img.tmp", clone "<x>.tmp-XXXX", atomic writes "<x>.tmp-XXXX").
bool IsTempName(std::string_view name);
// A volume clone in flight ("<layer>.img.tmp-XXXX"): the layer, else nullopt.
std::optional<std::string> LayerOfVolumeCloneTemp(std::string_view name);
// "<layer>.img.handover": the layer (a valid layer name), else nullopt.
std::optional<std::string> LayerOfHandOverName(std::string_view name);
// "<id><suffix>" with a valid id: the id, else nullopt. For ListSnapshots ("<snap>.img"),
// ListVolumes ("<layer>.img"), tombstones ("<snap>.gc").
std::optional<std::string> SnapshotIdOf(std::string_view name, std::string_view suffix);
std::optional<std::string> LayerNameOf(std::string_view name, std::string_view suffix);
// A file of snapshots/: its snapshot id (the part before the first '.'), whether or not
// that is valid; "" when the name has no '.'.
std::string SnapshotPrefixOf(std::string_view name);

}  // namespace slacker::storage_backend
