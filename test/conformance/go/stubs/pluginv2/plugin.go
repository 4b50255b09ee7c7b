// Package v2 takes the place of github.com/docker/docker/plugin/v2, which
// Debian's moby sources (golang-github-docker-docker-dev) do not ship.
// graphdriver imports it only to read PluginObj.Config.PropagatedMount of a
// managed plugin; the conformance suite drives a legacy plugin, so none of
// this is reached at run time. It exists so graphdriver compiles.
package v2

import (
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/pkg/plugins"
)

// Plugin has the one field graphdriver reads, and the methods of a
// plugingetter.CompatPlugin.
type Plugin struct {
	PluginObj types.Plugin
}

func (p *Plugin) Name() string               { return p.PluginObj.Name }
func (p *Plugin) ScopedPath(s string) string { return s }
func (p *Plugin) IsV1() bool                 { return false }
func (p *Plugin) Client() *plugins.Client    { return nil }
