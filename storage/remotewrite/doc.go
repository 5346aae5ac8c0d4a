// Package remotewrite forwards the node's telemetry to a scale-out store
// (Mimir, Thanos Receive, VictoriaMetrics, Prometheus) with the
// Prometheus remote_write 1.0 protocol, through a bounded queue on disk.
// The node wires it as storage/telemetry's Sink; the local TSDB stays the
// store the query API reads.
//
// Guarantees, and what they cost:
//
//   - At least once. A batch leaves the queue (the cursor file moves past
//     it) only after the store answered 2xx, or refused it for good (a
//     4xx other than 429, counted as dropped, reason "rejected"). A batch
//     in flight when the node stops, or sent before a crash lost its
//     cursor update, is sent again after the restart; stores drop exact
//     duplicates.
//   - Survives a crash of the process. Enqueue writes each batch with one
//     write(2) and no fsync, so a SIGKILL loses nothing the page cache
//     holds (as the TSDB's own WAL). Sealed segments, the directory and
//     the cursor are fsynced on segment rotation and Close; a power loss
//     can cost the unsynced tail (the segment being written, at most
//     max_bytes/16) and resend batches whose cursor update was lost.
//   - Bounded. The queue holds at most max_bytes (plus one batch). When
//     full it drops its OLDEST segment and counts the samples in it that
//     were not yet sent (reason "queue_full"): operators prefer recent
//     data. Enqueue never waits for the network, so a store that is down
//     never stalls ingest. A batch already in flight when its segment is
//     dropped may still be accepted: it is then counted both dropped and
//     sent.
//   - A damaged queue never stops the node. A torn or corrupt record (a
//     crash mid-write, a bad disk) ends its segment: the rest is cut off
//     at Open, or skipped when read, and logged with the bytes lost.
//
// On disk, under <data_dir>/remote_write (mode 0700, files 0600): segment
// files NNNNNNNNNNNNNNNNNNNN.seg of records, each
//
//	uint32 length of payload (big endian)
//	uint32 CRC32C of payload
//	payload: byte version (1), uvarint samples, uvarint tenant length,
//	         tenant ID, snappy(prompb.WriteRequest)
//
// and the file "cursor": uint64 segment, uint64 offset, uint32 CRC32C of
// the 16 bytes before, the position of the first record not yet sent.
//
// One sender goroutine reads records in order, joins those of a tenant
// (up to batch_size samples; the marshalled requests of one tenant are
// concatenated, which protobuf reads as one request), and sends each with
// the tenant's X-Scope-OrgID when configured. Network errors, 5xx and 429
// are retried with capped exponential backoff, or after the server's
// Retry-After (at most 5 minutes).
package remotewrite
