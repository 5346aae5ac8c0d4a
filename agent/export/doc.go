// Package export carries the agent's OTLP metrics to the node it is
// attached to without losing them to a failover or a node restart.
//
// Batches (each an encoded OTLP ExportMetricsServiceRequest, opaque here)
// are first written durably to a Spool, a bounded on-disk FIFO; a Sender
// drains it in order over the agent's mutual-TLS link (POST /v1/metrics,
// gzipped protobuf) and removes a batch only once the node has answered
// 2xx, or has refused it for good (a 4xx other than 429). Everything else
// (network errors, timeouts, 429, 502, 503, 504) keeps the batch at the
// head of the queue and retries it, against whichever node the agent is
// attached to by then. Delivery is therefore at least once: a batch whose
// answer was lost (the link dropped, the agent restarted) is sent again,
// which the node's TSDB takes as a duplicate of samples it already has.
//
// The spool is bounded: when a new batch would not fit, the oldest are
// dropped and counted (Stats), never silently.
//
// The agent package wires it; it imports no server code, and none of
// gRPC (the OTLP collector package's generated service would bring it
// in, so the one response field read is decoded with protowire).
//
// # Spool files
//
// A spool directory (0700) holds one file (0600) per batch, named by its
// sequence number, zero-padded to 20 digits so names sort as numbers do:
// 00000000000000000042.batch. A file is written to a temporary name
// (".00000000000000000042.batch.*.tmp"), fsynced, renamed into place and
// the directory fsynced (internal/syncfile), so a crash leaves a whole
// batch or a temporary file, which OpenSpool removes. Each file is
//
//	offset  size  field
//	0       4     magic "OPSB"
//	4       1     format version, 1
//	5       8     sequence number, big-endian; must equal the file name's
//	13      4     payload length n, big-endian; the file is 21+n bytes
//	17      4     CRC-32C (Castagnoli) of bytes 0..16 and the payload
//	21      n     payload: the encoded ExportMetricsServiceRequest
//
// A file that fails these checks is removed and counted as corrupt.
// Sequence numbers increase for as long as a Spool is open, and continue
// after the highest found when it is reopened.
package export
