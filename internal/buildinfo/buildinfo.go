// Package buildinfo says which build of Outpost is running: the module
// version, the VCS commit, when it was built and by which Go. The three
// binaries print it (`version`), and a node reports it to its region so
// `outpostctl status` shows mixed versions. It imports nothing of
// Outpost's, so any package may use it.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set by the linker, as the Makefile does:
//
//	go build -ldflags "-X github.com/outpost-mesh/outpost/internal/buildinfo.commit=$(git rev-parse HEAD) \
//	    -X github.com/outpost-mesh/outpost/internal/buildinfo.built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
//
// Empty, they fall back to what the Go toolchain stamped (vcs.revision,
// which -buildvcs=false leaves out), else "unknown".
var (
	version  string // a release's version; default the module's
	commit   string // full commit hash
	modified string // "true" when the tree had uncommitted changes
	built    string // RFC 3339 build time
)

// Unknown is what a field says when the build did not record it.
const Unknown = "unknown"

// Info is one build's identity. Fields the build did not record say
// Unknown, never empty.
type Info struct {
	// Version is the module version: a release tag, or "(devel)" for a
	// build of a checkout.
	Version string `json:"version"`
	// Commit is the VCS revision the build was made from.
	Commit string `json:"commit"`
	// Modified reports uncommitted changes in the tree that was built.
	Modified bool `json:"modified,omitempty"`
	// Built is when the binary was built (RFC 3339, UTC).
	Built string `json:"built"`
	// GoVersion and Platform are the toolchain and target.
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// Read returns this binary's build information.
func Read() Info {
	i := Info{Version: version, Commit: commit, Modified: modified == "true", Built: built,
		GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if i.Version == "" {
			i.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if i.Commit == "" {
					i.Commit = s.Value
				}
			case "vcs.modified":
				if commit == "" {
					i.Modified = s.Value == "true"
				}
			}
		}
	}
	if i.Version == "" {
		i.Version = "(devel)"
	}
	if i.Commit == "" {
		i.Commit = Unknown
	}
	if i.Built == "" {
		i.Built = Unknown
	}
	return i
}

// Short is the version in one word, for a table: "v1.2.0", or for a
// build of a checkout "devel+84b87cd" (and "-dirty" when modified);
// "devel" when nothing more is known.
func (i Info) Short() string {
	v := i.Version
	if v == "(devel)" {
		v = "devel"
	}
	if i.Commit != Unknown && i.Commit != "" && strings.HasPrefix(v, "devel") {
		v += "+" + shortCommit(i.Commit)
	}
	if i.Modified {
		v += "-dirty"
	}
	return v
}

// Text is what `NAME version` prints: the name and version, then the
// commit, the build time and the Go toolchain, one per line.
func (i Info) Text(name string) string {
	c := i.Commit
	if i.Modified {
		c += " (with uncommitted changes)"
	}
	if c == Unknown {
		c += " (built without VCS stamping; `make build` records it)"
	}
	return fmt.Sprintf("%s %s\ncommit:  %s\nbuilt:   %s\ngo:      %s %s\n", name, i.Version, c, i.Built, i.GoVersion, i.Platform)
}

func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}
