// Package keys is the KeyProtector: it wraps the region's secrets at rest
// with AES-256-GCM under a master key that never enters the database.
//
// # Threat
//
// The state file, its Raft snapshots and its backups are copied around
// far more freely than a node's configuration; so are the CA key, gossip
// key and OIDC client secret files on each node. Sealing every secret in
// them under a master key that lives only in a node's key file or
// environment means a stolen state file, snapshot, backup or secret file
// reveals no secret. Each sealed value is bound to where it is stored
// (bucket and key, or the purpose of a secret file), so someone who can
// write those files cannot move a sealed value to a place where it would
// be used as another secret.
//
// A node configured with a previous key as well as the current one opens
// values sealed under either and seals only under the current one, which
// allows rotation without downtime. Replicated values are the same sealed
// bytes on every node, so a rotation goes: give every node the new key as
// previous (current stays old); then swap them on every node (new current,
// old previous); rewrap every value (NeedsRewrap, Rewrap, RewrapFile);
// then drop the previous key. At every step each node can open every value
// any other node may have written.
//
// # Formats
//
// A sealed value is binary: the magic "opk1", the 8-byte id of the master
// key, a 12-byte random nonce, and the GCM ciphertext with its 16-byte
// tag. The associated data is magic || key id || uvarint(len(bucket)) ||
// bucket || uvarint(len(key)) || key. A key id is the first 8 bytes of
// SHA-256("outpost master key id v1\x00" || key); errors and logs show it
// in hex, so a node started with the wrong master key says which key the
// data wants instead of failing authentication.
//
// A master key is base64 (standard encoding) of 32 random bytes, from a
// file only its owner can read or from an environment variable (see
// Source); `outpost keys generate` makes one.
//
// A wrapped secret file is one PEM block of type "OUTPOST WRAPPED SECRET"
// with headers "Purpose" and "Key-Id" (informational; the sealed bytes
// carry the id that counts), whose bytes are a sealed value with bucket
// "file" and key the purpose.
//
// # What it does not protect against
//
// Anyone who can read the master key (the key file, the node's
// environment, e.g. /proc/PID/environ, or the node's memory) can open
// every secret; so can anyone who controls a running node. Sealing hides
// neither a secret's length nor when it changed. It does not stop
// rollback: someone who can write the state file can put back an older
// sealed value of the same bucket and key, or delete one.
//
// Package node and the commands that manage keys import it; it imports
// only the standard library and internal/syncfile.
package keys
