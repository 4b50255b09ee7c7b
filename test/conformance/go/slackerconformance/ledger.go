package slackerconformance

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/docker/docker/daemon/graphdriver"
	"github.com/docker/docker/pkg/containerfs"
)

// ledger wraps the plugin's proxy with the bookkeeping a daemon does around
// its driver, so that a run leaves nothing behind:
//
//   - graphtest leaves layers behind (128LayerRead, DiffApply, Changes and
//     SetQuota do not remove theirs; SetQuota keeps a Get without its Put).
//     slacker's store outlives Init's Home, so before Cleanup the ledger Puts
//     every Get still held and removes every layer still present, newest
//     first (children before their parents). A failed removal is reported on
//     stderr and does not fail the run: the suite's own checks decide that.
//   - after Cleanup graphtest deletes ROOT recursively. If anything is still
//     mounted under ROOT that deletion would reach into a layer, so Cleanup
//     then fails instead and the harness keeps ROOT.
//
// graphtest calls the driver from one goroutine at a time: no lock.
type ledger struct {
	graphdriver.Driver
	root   string
	layers []string       // created and not yet removed, oldest first
	held   map[string]int // Gets not yet matched by a Put
}

func newLedger(proxy graphdriver.Driver, root string) *ledger {
	return &ledger{Driver: proxy, root: root, held: map[string]int{}}
}

func (l *ledger) Create(id, parent string, opts *graphdriver.CreateOpts) error {
	err := l.Driver.Create(id, parent, opts)
	l.noteCreated(id, err)
	return err
}

func (l *ledger) CreateReadWrite(id, parent string, opts *graphdriver.CreateOpts) error {
	err := l.Driver.CreateReadWrite(id, parent, opts)
	l.noteCreated(id, err)
	return err
}

func (l *ledger) noteCreated(id string, err error) {
	if err == nil {
		l.layers = append(l.layers, id)
	}
}

func (l *ledger) Get(id, mountLabel string) (containerfs.ContainerFS, error) {
	fs, err := l.Driver.Get(id, mountLabel)
	if err == nil {
		l.held[id]++
	}
	return fs, err
}

func (l *ledger) Put(id string) error {
	err := l.Driver.Put(id)
	if err == nil && l.held[id] > 0 {
		l.held[id]--
	}
	return err
}

func (l *ledger) Remove(id string) error {
	err := l.Driver.Remove(id)
	if err == nil {
		l.forget(id)
	}
	return err
}

func (l *ledger) forget(id string) {
	for i, layer := range l.layers {
		if layer == id {
			l.layers = append(l.layers[:i], l.layers[i+1:]...)
			break
		}
	}
	delete(l.held, id)
}

func (l *ledger) Cleanup() error {
	l.removeLeftovers()
	if err := l.Driver.Cleanup(); err != nil {
		return err
	}
	mounts, err := mountsUnder(l.root)
	if err != nil {
		return fmt.Errorf("checking for mounts under %s before it is deleted: %v", l.root, err)
	}
	if len(mounts) > 0 {
		return fmt.Errorf("%d mount(s) left under %s after Cleanup (first: %s); not deleting it",
			len(mounts), l.root, mounts[0])
	}
	return nil
}

func (l *ledger) removeLeftovers() {
	for i := len(l.layers) - 1; i >= 0; i-- {
		id := l.layers[i]
		for ; l.held[id] > 0; l.held[id]-- {
			if err := l.Driver.Put(id); err != nil {
				fmt.Fprintf(os.Stderr, "slackerconformance: Put of leftover layer %s: %v\n", id, err)
			}
		}
		if err := l.Driver.Remove(id); err != nil {
			fmt.Fprintf(os.Stderr, "slackerconformance: Remove of leftover layer %s: %v\n", id, err)
		}
	}
	l.layers, l.held = nil, map[string]int{}
}

// mountsUnder lists the mount points at or below dir, from this process's
// mountinfo (the plugin shares the host's mount namespace; see README.md).
func mountsUnder(dir string) ([]string, error) {
	dir = filepath.Clean(dir)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var found []string
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		// Field 5 is the mount point, with space, tab, newline and backslash
		// written as octal escapes.
		fields := strings.Fields(scanner.Text())
		if len(fields) < 5 {
			return nil, fmt.Errorf("malformed mountinfo line %q", scanner.Text())
		}
		point := unescapeMountinfo(fields[4])
		if point == dir || strings.HasPrefix(point, dir+"/") {
			found = append(found, point)
		}
	}
	return found, scanner.Err()
}

func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if c, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
