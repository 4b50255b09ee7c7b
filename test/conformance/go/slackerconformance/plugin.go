// Package slackerconformance runs moby's graphdriver conformance suite
// (daemon/graphdriver/graphtest) against a graphdriver plugin on a unix
// socket, normally slackerd. Every request goes through graphdriver's own
// plugin proxy (daemon/graphdriver/proxy.go): the suite sends exactly what
// dockerd would.
//
// Environment (set by ../../run.sh):
//
//	SLACKER_CONFORMANCE_SOCKET  the plugin's socket (required)
//	GRAPHTEST_NAME              plugin name; default: the socket's base name
//	                            without ".sock" (dockerd's /run/docker/plugins/NAME.sock)
//	GRAPHTEST_OPTS              driver options for Init, space separated, as
//	                            dockerd's --storage-opt
package slackerconformance

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/docker/docker/daemon/graphdriver"
	"github.com/docker/docker/pkg/idtools"
	"github.com/docker/docker/pkg/plugingetter"
	"github.com/docker/docker/pkg/plugins"
)

// driverName is what the tests ask graphdriver for. graphtest only finds
// registered drivers, so the plugin is reached through a registered init
// function that loads it the way dockerd loads a legacy plugin.
const driverName = "slacker-under-test"

func init() {
	if err := graphdriver.Register(driverName, openPlugin); err != nil {
		panic(err)
	}
}

// openPlugin is called by graphtest with home = ROOT/slacker-under-test, ROOT
// being a fresh temporary directory per driver. As under a dockerd whose data
// root is ROOT, the plugin's Init gets Home = ROOT/NAME; nobody creates it.
func openPlugin(home string, options []string, uidMaps, gidMaps []idtools.IDMap) (graphdriver.Driver, error) {
	socket := os.Getenv("SLACKER_CONFORMANCE_SOCKET")
	if socket == "" {
		return nil, fmt.Errorf("SLACKER_CONFORMANCE_SOCKET is not set (run the suite through run.sh)")
	}
	name := os.Getenv("GRAPHTEST_NAME")
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(socket), ".sock")
	}
	plugin, err := handshake(name, socket)
	if err != nil {
		return nil, err
	}
	root := filepath.Dir(home)
	fmt.Fprintf(os.Stderr, "slackerconformance: plugin %q on %s, Init Home=%s\n",
		name, socket, filepath.Join(root, name))
	proxy, err := graphdriver.GetDriver(name, singlePlugin{plugin}, graphdriver.Options{
		Root:          root,
		DriverOptions: append(options, strings.Fields(os.Getenv("GRAPHTEST_OPTS"))...),
		UIDMaps:       uidMaps,
		GIDMaps:       gidMaps,
		// dockerd loads graphdriver plugins only in experimental mode.
		ExperimentalEnabled: true,
	})
	if err != nil {
		// graphdriver logs the plugin's own error and returns ErrNotSupported,
		// which graphtest turns into a skip. A plugin that cannot Init fails.
		return nil, fmt.Errorf("plugin %q: Init failed (graphdriver's log line above carries the plugin's error)", name)
	}
	return newLedger(proxy, root), nil
}

// handshake is dockerd's discovery of a legacy plugin: POST /Plugin.Activate,
// whose manifest must list GraphDriver.
func handshake(name, socket string) (legacyPlugin, error) {
	client, err := plugins.NewClient("unix://"+socket, nil)
	if err != nil {
		return legacyPlugin{}, fmt.Errorf("plugin %q: %v", name, err)
	}
	var manifest plugins.Manifest
	if err := client.Call("Plugin.Activate", nil, &manifest); err != nil {
		return legacyPlugin{}, fmt.Errorf("plugin %q: Plugin.Activate: %v", name, err)
	}
	for _, capability := range manifest.Implements {
		if capability == "GraphDriver" {
			return legacyPlugin{name: name, client: client}, nil
		}
	}
	return legacyPlugin{}, fmt.Errorf("plugin %q implements %v, not GraphDriver", name, manifest.Implements)
}

// legacyPlugin is a socket (v1) plugin in the shape plugingetter hands to
// graphdriver; graphdriver then builds its proxy on the plugin's client.
type legacyPlugin struct {
	name   string
	client *plugins.Client
}

func (p legacyPlugin) Name() string                  { return p.name }
func (p legacyPlugin) ScopedPath(path string) string { return path }
func (p legacyPlugin) IsV1() bool                    { return true }
func (p legacyPlugin) Client() *plugins.Client       { return p.client }

// singlePlugin is a plugingetter.PluginGetter holding one plugin.
type singlePlugin struct{ plugin legacyPlugin }

func (g singlePlugin) Get(string, string, int) (plugingetter.CompatPlugin, error) {
	return g.plugin, nil
}
func (singlePlugin) GetAllByCap(string) ([]plugingetter.CompatPlugin, error)      { return nil, nil }
func (singlePlugin) GetAllManagedPluginsByCap(string) []plugingetter.CompatPlugin { return nil }
func (singlePlugin) Handle(string, func(string, *plugins.Client))                 {}
