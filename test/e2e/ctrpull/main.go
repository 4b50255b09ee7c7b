// ctrpull: pull an image the way CRI, nerdctl and Docker's containerd image store do
// (containerd's client.Pull with unpack: the unpacker labels each extraction snapshot
// with containerd.io/snapshot.ref=<chain id>), over plain HTTP. Built offline by
// containerd_e2e.sh against Debian's containerd Go sources (GOPATH mode).
//
//	ctrpull -address SOCK -namespace NS -snapshotter NAME REF
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/remotes/docker"
)

func main() {
	address := flag.String("address", "", "containerd socket")
	ns := flag.String("namespace", "default", "containerd namespace")
	snapshotter := flag.String("snapshotter", "slacker", "snapshotter")
	flag.Parse()
	if *address == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: ctrpull -address SOCK [-namespace NS] [-snapshotter NAME] REF")
		os.Exit(2)
	}
	client, err := containerd.New(*address)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ctrpull:", err)
		os.Exit(1)
	}
	defer client.Close()
	ctx := namespaces.WithNamespace(context.Background(), *ns)
	resolver := docker.NewResolver(docker.ResolverOptions{PlainHTTP: true})
	img, err := client.Pull(ctx, flag.Arg(0), containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(*snapshotter), containerd.WithResolver(resolver))
	if err != nil {
		fmt.Fprintln(os.Stderr, "ctrpull:", err)
		os.Exit(1)
	}
	fmt.Println(img.Name(), img.Target().Digest)
}
