// Package meshid is the identity a certificate of the region CA carries
// in its URI SAN: outpost://REGION/node/ID for a node and
// outpost://REGION/tenant/TID/agent/AID for an agent. The node (node/pki)
// and the agent both read it, and the agent links no server code, so it
// lives here and imports only the standard library.
package meshid

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Errors for a certificate that does not name what the caller wanted.
var (
	ErrNotRegionNode = errors.New("peer certificate is not a node of this region")
	ErrNotAgent      = errors.New("peer certificate is not an agent of this region")
)

// ID is the form of tenant and agent ids inside a URI.
var ID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// NodeURI is the identity a node certificate carries.
func NodeURI(region, nodeID string) *url.URL {
	return &url.URL{Scheme: "outpost", Host: region, Path: "/node/" + nodeID}
}

// AgentURI is the identity an agent certificate carries.
func AgentURI(region, tenantID, agentID string) *url.URL {
	return &url.URL{Scheme: "outpost", Host: region, Path: "/tenant/" + tenantID + "/agent/" + agentID}
}

// NodeID returns the node id a node certificate of region names.
func NodeID(leaf *x509.Certificate, region string) (string, error) {
	for _, u := range leaf.URIs {
		if u.Scheme != "outpost" || u.Host != region {
			continue
		}
		if id, ok := strings.CutPrefix(u.Path, "/node/"); ok && id != "" && !strings.Contains(id, "/") {
			return id, nil
		}
	}
	return "", fmt.Errorf("%w (region %q, subject %q)", ErrNotRegionNode, region, leaf.Subject.CommonName)
}

// Agent returns the tenant and agent an agent certificate of region names.
func Agent(leaf *x509.Certificate, region string) (tenantID, agentID string, err error) {
	for _, u := range leaf.URIs {
		if u.Scheme != "outpost" || u.Host != region {
			continue
		}
		parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
		if len(parts) == 4 && parts[0] == "tenant" && parts[2] == "agent" && ID.MatchString(parts[1]) && ID.MatchString(parts[3]) {
			return parts[1], parts[3], nil
		}
	}
	return "", "", fmt.Errorf("%w (region %q, subject %q)", ErrNotAgent, region, leaf.Subject.CommonName)
}

// CAPin is the pin of a CA certificate an agent can enroll with
// (outpost-agent --ca-pin): "sha256:" and the hex SHA-256 of its
// SubjectPublicKeyInfo, like kubeadm's discovery hash.
func CAPin(ca *x509.Certificate) string {
	sum := sha256.Sum256(ca.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}
