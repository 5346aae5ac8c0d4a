package raft

// SetWALSegmentSize sets the WAL segment size, so tests can compact the
// log below what a new node needs and force a snapshot install.
func SetWALSegmentSize(c *Config, bytes int) { c.walSegmentSize = bytes }
