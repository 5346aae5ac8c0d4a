package remotewrite

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"time"

	"github.com/golang/snappy"
)

// queued is a record read from the queue and the position after it.
type queued struct {
	record
	end position
}

// reader is the sender's place in the queue, ahead of the cursor by the
// window in flight.
type reader struct {
	pos  position
	f    *os.File
	fseq uint64
	held *queued // read, but did not fit the last window
}

func (r *reader) close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// run is the sender: it reads windows of records in order, delivers
// them and moves the cursor past them, until Close.
func (q *Queue) run(ctx context.Context) {
	defer q.senderWG.Done()
	r := &reader{}
	defer r.close()
	for ctx.Err() == nil {
		win := q.window(r)
		if len(win) == 0 {
			select {
			case <-q.notify:
				continue
			case <-q.stop:
				return
			}
		}
		if !q.deliver(ctx, win) {
			return
		}
		q.ack(win)
	}
}

// window reads the next records, up to batch_size samples (at least one
// record).
func (q *Queue) window(r *reader) []queued {
	var win []queued
	var samples int64
	for {
		rec := r.held
		r.held = nil
		if rec == nil {
			next, ok := q.next(r)
			if !ok {
				return win
			}
			rec = &next
		}
		if len(win) > 0 && samples+rec.samples > int64(q.cfg.BatchSize) {
			r.held = rec
			return win
		}
		win = append(win, *rec)
		samples += rec.samples
	}
}

// next reads the record at the reader's position, skipping to the cursor
// when segments were dropped under it; false when none is there yet.
func (q *Queue) next(r *reader) (queued, bool) {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return queued{}, false
		}
		if r.pos.less(q.cursor) {
			r.pos = q.cursor
		}
		i := 0
		for i < len(q.segs) && q.segs[i].seq < r.pos.seq {
			i++
		}
		if i == len(q.segs) { // past the last segment: cannot happen, the cursor is never there
			q.mu.Unlock()
			return queued{}, false
		}
		if s := q.segs[i]; s.seq != r.pos.seq {
			r.pos = position{seq: s.seq}
		}
		size, sealed := q.segs[i].size, i < len(q.segs)-1
		var nextSeq uint64
		if sealed {
			nextSeq = q.segs[i+1].seq
		}
		q.mu.Unlock()

		if r.pos.off >= size {
			if !sealed {
				return queued{}, false
			}
			r.pos = position{seq: nextSeq}
			continue
		}
		rec, n, err := q.read(r, size)
		if err != nil {
			q.mu.Lock()
			dropped := r.pos.less(q.cursor) // its segment was dropped under us: not damage
			q.mu.Unlock()
			if dropped {
				continue
			}
			if ok, skipped := q.logRead.allow(); ok {
				q.logger.Error("remote_write queue: skipping the rest of a damaged segment; its unsent samples are counted as dropped (corrupt)",
					"segment", q.segPath(r.pos.seq), "offset", r.pos.off, "err", err, "suppressed", skipped)
			}
			r.pos.off = size
			continue
		}
		r.pos.off += int64(n)
		return queued{record: rec, end: r.pos}, true
	}
}

// read reads the record at r.pos from its segment file, whose whole
// records end at size.
func (q *Queue) read(r *reader, size int64) (record, int, error) {
	if r.f == nil || r.fseq != r.pos.seq {
		r.close()
		f, err := os.Open(q.segPath(r.pos.seq))
		if err != nil {
			return record{}, 0, err
		}
		r.f, r.fseq = f, r.pos.seq
	}
	var hdr [headerLen]byte
	if _, err := r.f.ReadAt(hdr[:], r.pos.off); err != nil {
		return record{}, 0, err
	}
	n, err := frameLen(hdr[:])
	if err != nil {
		return record{}, 0, err
	}
	if r.pos.off+int64(n) > size {
		return record{}, 0, errCorrupt
	}
	b := make([]byte, n)
	if _, err := r.f.ReadAt(b, r.pos.off); err != nil {
		return record{}, 0, err
	}
	return decodeRecord(b)
}

// deliver sends a window, one request per tenant; false when stopped
// before all were sent or dropped.
func (q *Queue) deliver(ctx context.Context, win []queued) bool {
	var order []string
	groups := map[string][]queued{}
	for _, r := range win {
		if _, ok := groups[r.tenant]; !ok {
			order = append(order, r.tenant)
		}
		groups[r.tenant] = append(groups[r.tenant], r)
	}
	for _, t := range order {
		if !q.sendTenant(ctx, t, groups[t]) {
			return false
		}
	}
	return true
}

// decodeData unsnappies a record's request, within maxDecodedBytes.
func decodeData(data []byte) ([]byte, error) {
	n, err := snappy.DecodedLen(data)
	if err != nil {
		return nil, err
	}
	if n > maxDecodedBytes {
		return nil, errCorrupt
	}
	return snappy.Decode(nil, data)
}

// sendTenant sends recs of tenant as one request until it is accepted or
// refused for good; false when stopped first.
func (q *Queue) sendTenant(ctx context.Context, tenant string, recs []queued) bool {
	raws := make([][]byte, 0, len(recs))
	live := make([]queued, 0, len(recs))
	for _, r := range recs {
		raw, err := decodeData(r.data)
		if err != nil {
			q.m.drop(DropCorrupt, r.samples)
			if ok, skipped := q.logRead.allow(); ok {
				q.logger.Error("remote_write queue: a batch does not decode; dropped", "tenant_id", tenant, "err", err, "suppressed", skipped)
			}
			continue
		}
		raws = append(raws, raw)
		live = append(live, r)
	}
	backoff := q.cfg.MinBackoff
	for {
		// Batches whose segment was dropped while we retried are
		// counted (queue_full) and not sent.
		var body []byte
		var samples int64
		for i, r := range live {
			if !q.behind(r) {
				// Requests of one tenant concatenate: protobuf reads
				// repeated fields across the parts as one list.
				body = append(body, raws[i]...)
				samples += r.samples
			}
		}
		if samples == 0 {
			return true
		}
		start := time.Now()
		err := q.client.store(ctx, q.cfg.orgID(tenant), snappy.Encode(nil, body))
		q.m.duration.Observe(time.Since(start).Seconds())
		if err == nil {
			q.m.sent.Add(float64(samples))
			q.m.lastSuccess.SetToCurrentTime()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		kind, wait := FailNetwork, jitter(backoff)
		var se *statusError
		if errors.As(err, &se) {
			switch {
			case se.code == 429:
				kind = FailThrottle
			case se.code >= 500:
				kind = FailServer
			default:
				q.m.failures.WithLabelValues(FailRejected).Inc()
				q.m.drop(DropRejected, samples)
				if ok, skipped := q.logRejected.allow(); ok {
					q.logger.Error("remote_write store refused a batch; its samples are dropped (fix the store's limits or the node's config)",
						"tenant_id", tenant, "status", se.code, "body", se.body, "samples", samples, "suppressed", skipped)
				}
				return true
			}
			if se.retryAfter > 0 {
				wait = min(se.retryAfter, maxRetryAfter)
			}
		}
		q.m.failures.WithLabelValues(kind).Inc()
		if ok, skipped := q.logRetry.allow(); ok {
			q.logger.Warn("remote_write send failed; retrying", "kind", kind, "err", err, "retry_in", wait, "suppressed", skipped)
		}
		select {
		case <-time.After(wait):
		case <-q.stop:
			return false
		}
		backoff = min(backoff*2, q.cfg.MaxBackoff)
	}
}

// jitter spreads d over [d/2, d], so nodes recovering from the same
// outage do not retry in step.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}
