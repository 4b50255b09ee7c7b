package slackerconformance

import "testing"

// Checks of the harness itself (run with: run.sh --self-test).

func TestHarnessUnescapeMountinfo(t *testing.T) {
	cases := map[string]string{
		`/var/tmp/a`:          "/var/tmp/a",
		`/var/tmp/with\040sp`: "/var/tmp/with sp",
		`/x\134y`:             `/x\y`,
		`/trailing\04`:        `/trailing\04`,
	}
	for in, want := range cases {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHarnessMountsUnderRoot(t *testing.T) {
	// "/" is always mounted: the scan finds it, and nothing under a fresh dir.
	mounts, err := mountsUnder("/")
	if err != nil || len(mounts) == 0 {
		t.Fatalf("mountsUnder(/) = %v, %v; want at least /", mounts, err)
	}
	mounts, err = mountsUnder(t.TempDir())
	if err != nil || len(mounts) != 0 {
		t.Fatalf("mountsUnder(fresh dir) = %v, %v; want none", mounts, err)
	}
}
