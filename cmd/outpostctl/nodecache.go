package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// The nodes of the regions outpostctl has seen, so that when the node at
// --addr does not answer, the error can name the region's other nodes
// (a kubeconfig names one server; a region has several). It is what the
// last successful `outpostctl status` answered, per region: each node's
// API URL, and when. It lives in one small JSON file in the user's cache
// directory (os.UserCacheDir: $XDG_CACHE_HOME/outpost/regions.json, or
// ~/.cache/outpost/regions.json on Linux), holds no secrets, and is only
// ever a hint: outpostctl never sends a request to a node from it by
// itself. Failing to read or write it changes nothing else.

// regionsFile is the cache's path ("" when there is no cache directory).
func regionsFile() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "outpost", "regions.json")
}

// maxRegions bounds the cache; the region seen longest ago goes first.
const maxRegions = 32

type cachedNode struct {
	ID  string `json:"id"`
	URL string `json:"api_url"`
}

type cachedRegion struct {
	Nodes []cachedNode `json:"nodes"`
	Seen  time.Time    `json:"seen"`
}

func readRegions() map[string]cachedRegion {
	regions := map[string]cachedRegion{}
	if f := regionsFile(); f != "" {
		if b, err := os.ReadFile(f); err == nil {
			_ = json.Unmarshal(b, &regions) // a damaged cache is an empty one
		}
	}
	return regions
}

// rememberRegion records the nodes of region r, as the node at addr
// answered. Best effort: a cache that cannot be written is no cache.
func rememberRegion(addr string, r api.Region) {
	f := regionsFile()
	if f == "" || r.Region == "" {
		return
	}
	var nodes []cachedNode
	for _, n := range r.Nodes {
		if n.APIURL != "" {
			nodes = append(nodes, cachedNode{ID: n.ID, URL: normalURL(n.APIURL)})
		}
	}
	if len(nodes) == 0 {
		return
	}
	regions := readRegions()
	regions[r.Region] = cachedRegion{Nodes: nodes, Seen: time.Now().UTC()}
	for len(regions) > maxRegions {
		oldest := ""
		for name, cr := range regions {
			if oldest == "" || cr.Seen.Before(regions[oldest].Seen) {
				oldest = name
			}
		}
		delete(regions, oldest)
	}
	b, err := json.MarshalIndent(regions, "", "  ")
	if err != nil || os.MkdirAll(filepath.Dir(f), 0o700) != nil {
		return
	}
	tmp := f + ".tmp"
	if os.WriteFile(tmp, b, 0o600) == nil {
		_ = os.Rename(tmp, f)
	}
}

// knownNodes is what the cache says of the region a node belongs to.
type knownNodes struct {
	region string
	others []cachedNode // the region's other nodes
	seen   time.Time
}

// knownRegion looks up the region whose node's API is at addr.
func knownRegion(addr string) (knownNodes, bool) {
	addr = normalURL(addr)
	for name, cr := range readRegions() {
		i := slices.IndexFunc(cr.Nodes, func(n cachedNode) bool { return n.URL == addr })
		if i < 0 || len(cr.Nodes) < 2 {
			continue
		}
		others := slices.Delete(slices.Clone(cr.Nodes), i, i+1)
		return knownNodes{region: name, others: others, seen: cr.Seen}, true
	}
	return knownNodes{}, false
}

// normalURL writes a node address the way the API client does.
func normalURL(addr string) string { return api.NewClient(addr, "").Addr }
