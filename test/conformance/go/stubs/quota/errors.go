// Package quota takes the place of github.com/docker/docker/quota, which
// Debian's moby sources do not ship. graphtest only compares a Create error
// with ErrQuotaNotSupported to decide to skip SetQuota; an error from a
// plugin arrives as a string over HTTP and never equals it, and the suite
// requires quota anyway (suite_test.go).
package quota

// ErrQuotaNotSupported has moby's message and NotImplemented marker.
var ErrQuotaNotSupported = notSupported{}

type notSupported struct{}

func (notSupported) NotImplemented() {}
func (notSupported) Error() string {
	return "Filesystem does not support, or has not enabled quotas"
}
