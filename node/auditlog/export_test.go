package auditlog

import "golang.org/x/mod/sumdb/tlog"

func recordHash(b []byte) tlog.Hash { return tlog.RecordHash(b) }
func storedLeafIndex(n int64) int64 { return tlog.StoredHashIndex(0, n) }
