package remotewrite

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
)

// DirName is the queue's directory under the node's data dir.
const DirName = "remote_write"

const (
	segSuffix  = ".seg"
	cursorName = "cursor"
	cursorLen  = 20
	// maxChunkBytes bounds one record's marshalled request, so a record
	// reads back within maxDecodedBytes whatever batch_size says.
	maxChunkBytes = 4 << 20
	// closeWait bounds how long Close waits for the sender, whose request
	// in flight is cancelled first.
	closeWait = 10 * time.Second
)

// position is a place in the queue: a segment and a byte offset in it.
type position struct {
	seq uint64
	off int64
}

func (p position) less(o position) bool {
	return p.seq < o.seq || p.seq == o.seq && p.off < o.off
}

// segment is one file of the queue.
type segment struct {
	seq     uint64
	size    int64 // bytes of whole records
	samples int64 // samples in its records
	acked   int64 // of which before the cursor
}

// Queue is the remote_write queue and its sender. Enqueue is safe for
// concurrent use; Close stops it.
type Queue struct {
	cfg      Config
	dir      string
	logger   *slog.Logger
	m        *metrics
	client   *client
	segBytes int64

	mu      sync.Mutex
	segs    []*segment // oldest first; the last is the one written to
	w       *os.File   // the last segment, opened for appending
	cursorF *os.File
	cursor  position // first record not yet sent
	bytes   int64    // of all segments
	pending int64    // samples not yet sent
	closed  bool

	notify    chan struct{} // cap 1: a record was appended
	stop      chan struct{} // closed by Close
	cancel    context.CancelFunc
	syncc     chan *os.File // sealed segments for the syncer
	senderWG  sync.WaitGroup
	syncerWG  sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	// Rate limits of warnings that can repeat for every batch.
	logDropped, logWrite, logRejected, logRetry, logRead every
}

// Open opens (or creates) the queue in dataDir/remote_write and starts
// its sender; the caller must Close it. cfg is used as if enabled. A torn
// or corrupt tail is cut off and logged, never an error; errors are a
// config the client cannot use (unreadable CA file) or a directory that
// cannot be written.
func Open(dataDir string, cfg Config, logger *slog.Logger, reg prometheus.Registerer) (_ *Queue, err error) {
	cfg = cfg.Defaults()
	cfg.Enabled = true
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "remote_write")
	hc, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	q := &Queue{cfg: cfg, dir: filepath.Join(dataDir, DirName), logger: logger, m: m, client: hc,
		segBytes: min(max(cfg.MaxBytes/16, 4<<10), 16<<20),
		notify:   make(chan struct{}, 1), stop: make(chan struct{}), syncc: make(chan *os.File, 4)}
	defer func() {
		if err != nil {
			m.unregister()
			q.closeFiles()
		}
	}()
	if err := os.MkdirAll(q.dir, 0o700); err != nil {
		return nil, fmt.Errorf("telemetry.remote_write: %w", err)
	}
	if err := os.Chmod(q.dir, 0o700); err != nil {
		return nil, fmt.Errorf("telemetry.remote_write: %w", err)
	}
	if err := q.load(); err != nil {
		return nil, fmt.Errorf("telemetry.remote_write: opening the queue in %s: %w", q.dir, err)
	}
	if cfg.BearerTokenFile != "" || cfg.BasicAuth != nil {
		if strings.HasPrefix(cfg.URL, "http:") {
			logger.Warn("remote_write credentials go over plain http; use an https url", "url", cfg.URL)
		}
	}
	logger.Info("remote_write queue open", "url", cfg.URL, "pending_samples", q.pending, "queue_bytes", q.bytes)
	ctx, cancel := context.WithCancel(context.Background())
	q.cancel = cancel
	q.senderWG.Add(1)
	go q.run(ctx)
	q.syncerWG.Add(1)
	go q.syncer()
	return q, nil
}

func segName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, segSuffix) }

func (q *Queue) segPath(seq uint64) string { return filepath.Join(q.dir, segName(seq)) }

// load reads the cursor and the segments, cuts torn tails, drops what
// the cursor says was sent, and starts a new segment to write to.
func (q *Queue) load() error {
	cur, err := q.readCursor()
	if err != nil {
		return err
	}
	ents, err := os.ReadDir(q.dir)
	if err != nil {
		return err
	}
	var seqs []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), segSuffix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		if seq, err := strconv.ParseUint(name, 10, 64); err == nil && seq > 0 {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	var last uint64
	for _, seq := range seqs {
		last = seq
		if seq < cur.seq { // sent; a crash came between the cursor and the delete
			if err := os.Remove(q.segPath(seq)); err != nil {
				return err
			}
			continue
		}
		s, err := q.scan(seq, cur)
		if err != nil {
			return err
		}
		if s.size == 0 {
			if err := os.Remove(q.segPath(seq)); err != nil {
				return err
			}
			continue
		}
		q.segs = append(q.segs, s)
		q.bytes += s.size
		q.pending += s.samples - s.acked
	}
	if err := q.createSegment(last + 1); err != nil {
		return err
	}
	switch first := q.segs[0]; {
	case first.seq != cur.seq: // no cursor, or its segment is gone
		q.cursor = position{seq: first.seq}
	default:
		q.cursor = cur // scan snapped it to a record boundary
	}
	q.cursorF, err = os.OpenFile(filepath.Join(q.dir, cursorName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := q.writeCursorLocked(); err != nil {
		return err
	}
	q.gaugesLocked()
	return syncDir(q.dir)
}

// scan reads segment seq's records; a torn or corrupt record and all
// after it are cut off and logged. In the cursor's segment it counts the
// samples before the cursor and snaps cur to the record boundary at or
// before it.
func (q *Queue) scan(seq uint64, cur position) (*segment, error) {
	p := q.segPath(seq)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	s := &segment{seq: seq}
	boundary := int64(0)
	for s.size < int64(len(b)) {
		r, n, err := decodeRecord(b[s.size:])
		if err != nil {
			q.logger.Warn("remote_write queue: cutting off a damaged tail (a crash mid-write or a bad disk); those samples are lost",
				"segment", p, "offset", s.size, "bytes_lost", int64(len(b))-s.size, "err", err)
			if err := os.Truncate(p, s.size); err != nil {
				return nil, err
			}
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				return nil, err
			}
			err = f.Sync()
			f.Close()
			if err != nil {
				return nil, err
			}
			break
		}
		s.size += int64(n)
		s.samples += r.samples
		if seq == cur.seq && s.size <= cur.off {
			s.acked += r.samples
			boundary = s.size
		}
	}
	if seq == cur.seq {
		cur.off = boundary
	}
	return s, nil
}

// readCursor returns the saved cursor; a missing or damaged one is the
// queue's start (resend everything: at least once).
func (q *Queue) readCursor() (position, error) {
	b, err := os.ReadFile(filepath.Join(q.dir, cursorName))
	if errors.Is(err, os.ErrNotExist) {
		return position{}, nil
	}
	if err != nil {
		return position{}, err
	}
	if len(b) != cursorLen || crc32.Checksum(b[:16], castagnoli) != binary.BigEndian.Uint32(b[16:]) {
		q.logger.Warn("remote_write queue: the cursor file is damaged; resending the whole queue (the store drops duplicates)")
		return position{}, nil
	}
	return position{seq: binary.BigEndian.Uint64(b), off: int64(binary.BigEndian.Uint64(b[8:]))}, nil
}

// writeCursorLocked saves the cursor in place: one 20-byte write, no
// fsync (Close and rotation sync it); a torn one fails its checksum and
// means a resend, not a loss.
func (q *Queue) writeCursorLocked() error {
	var b [cursorLen]byte
	binary.BigEndian.PutUint64(b[:], q.cursor.seq)
	binary.BigEndian.PutUint64(b[8:], uint64(q.cursor.off))
	binary.BigEndian.PutUint32(b[16:], crc32.Checksum(b[:16], castagnoli))
	_, err := q.cursorF.WriteAt(b[:], 0)
	return err
}

func (q *Queue) createSegment(seq uint64) error {
	f, err := os.OpenFile(q.segPath(seq), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	q.w = f
	q.segs = append(q.segs, &segment{seq: seq})
	return nil
}

// Enqueue adds the samples of one committed request of tenantID. It
// never waits for the network: when the queue is full the oldest segment
// is dropped (counted), and a write error drops this batch (counted).
// series is not retained.
func (q *Queue) Enqueue(tenantID string, series []prompb.TimeSeries) {
	recs := q.encode(tenantID, series)
	q.mu.Lock()
	for _, r := range recs {
		q.appendLocked(r)
	}
	q.gaugesLocked()
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// framed is an encoded record and its sample count.
type framed struct {
	b       []byte
	samples int64
}

// encode splits series into records of at most batch_size samples (a
// single series with more is one record) and maxChunkBytes.
func (q *Queue) encode(tenantID string, series []prompb.TimeSeries) []framed {
	var out []framed
	flush := func(chunk []prompb.TimeSeries, samples int64) {
		if len(chunk) == 0 {
			return
		}
		wr := prompb.WriteRequest{Timeseries: chunk}
		raw, err := wr.Marshal()
		if err != nil { // only for a type gogo cannot marshal: never for prompb's
			q.m.drop(DropWriteError, samples)
			return
		}
		r := record{tenant: tenantID, samples: samples, data: snappy.Encode(nil, raw)}
		out = append(out, framed{b: appendRecord(nil, r), samples: samples})
	}
	start, samples, size := 0, int64(0), 0
	for i := range series {
		n := int64(len(series[i].Samples) + len(series[i].Histograms))
		sz := series[i].Size()
		if i > start && (samples+n > int64(q.cfg.BatchSize) || size+sz > maxChunkBytes) {
			flush(series[start:i], samples)
			start, samples, size = i, 0, 0
		}
		samples += n
		size += sz
	}
	flush(series[start:], samples)
	return out
}

// appendLocked writes one record, rotating and dropping the oldest
// segments as needed.
func (q *Queue) appendLocked(r framed) {
	if q.closed {
		q.m.drop(DropWriteError, r.samples)
		return
	}
	n := int64(len(r.b))
	if w := q.segs[len(q.segs)-1]; w.size > 0 && (w.size+n > q.segBytes || q.bytes+n > q.cfg.MaxBytes) {
		if err := q.rotateLocked(); err != nil {
			if ok, skipped := q.logWrite.allow(); ok {
				q.logger.Error("remote_write queue: cannot start a new segment; writing on in the current one", "err", err, "suppressed", skipped)
			}
		}
	}
	for q.bytes+n > q.cfg.MaxBytes && len(q.segs) > 1 {
		q.dropOldestLocked()
	}
	if q.bytes > 0 && q.bytes+n > q.cfg.MaxBytes { // rotation failed: the only segment is full
		q.m.drop(DropQueueFull, r.samples)
		return
	}
	w := q.segs[len(q.segs)-1]
	if _, err := q.w.Write(r.b); err != nil {
		// A short write would leave a torn record under later ones.
		terr := q.w.Truncate(w.size)
		q.m.drop(DropWriteError, r.samples)
		if ok, skipped := q.logWrite.allow(); ok {
			q.logger.Error("remote_write queue: cannot write a batch; its samples are dropped", "err", err, "truncate_err", terr, "suppressed", skipped)
		}
		return
	}
	w.size += n
	w.samples += r.samples
	q.bytes += n
	q.pending += r.samples
}

// rotateLocked seals the segment being written (the syncer fsyncs it)
// and starts the next.
func (q *Queue) rotateLocked() error {
	old := q.w
	if err := q.createSegment(q.segs[len(q.segs)-1].seq + 1); err != nil {
		return err
	}
	select {
	case q.syncc <- old:
	default: // the syncer is behind: sync here rather than pile up files
		q.syncAndClose(old)
	}
	return nil
}

// dropOldestLocked deletes the oldest segment to make room, counting its
// unsent samples.
func (q *Queue) dropOldestLocked() {
	s := q.segs[0]
	q.segs = q.segs[1:]
	lost := s.samples - s.acked
	q.m.drop(DropQueueFull, lost)
	q.bytes -= s.size
	q.pending -= lost
	if err := os.Remove(q.segPath(s.seq)); err != nil {
		q.logger.Error("remote_write queue: cannot delete a dropped segment", "err", err)
	}
	if q.cursor.seq <= s.seq {
		q.cursor = position{seq: q.segs[0].seq}
	}
	if ok, skipped := q.logDropped.allow(); ok {
		q.logger.Warn("remote_write queue full (telemetry.remote_write.max_bytes): dropped its oldest segment; is the store down or too slow?",
			"samples_dropped", lost, "max_bytes", q.cfg.MaxBytes, "suppressed", skipped)
	}
}

// ack moves the cursor past recs, sent or dropped for good, and deletes
// the segments wholly behind it. Records already behind the cursor
// (their segment was dropped while they were in flight) change nothing.
func (q *Queue) ack(recs []queued) {
	if len(recs) == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	for _, r := range recs {
		if !q.cursor.less(r.end) {
			continue
		}
		for _, s := range q.segs {
			if s.seq == r.end.seq {
				s.acked += r.samples
				q.pending -= r.samples
			}
		}
		q.cursor = r.end
	}
	// Delete the segments behind the cursor; a cursor at the end of a
	// sealed segment moves on to the next. Samples a segment still holds
	// unacked were skipped as unreadable.
	for len(q.segs) > 1 && q.segs[0].seq <= q.cursor.seq {
		s := q.segs[0]
		if s.seq == q.cursor.seq {
			if q.cursor.off < s.size {
				break
			}
			q.cursor = position{seq: q.segs[1].seq}
		}
		if err := os.Remove(q.segPath(s.seq)); err != nil {
			q.logger.Error("remote_write queue: cannot delete a sent segment", "err", err)
			break
		}
		q.segs = q.segs[1:]
		q.bytes -= s.size
		q.m.drop(DropCorrupt, s.samples-s.acked)
		q.pending -= s.samples - s.acked
	}
	if err := q.writeCursorLocked(); err != nil {
		if ok, skipped := q.logWrite.allow(); ok {
			q.logger.Error("remote_write queue: cannot save the cursor; a restart resends from the last saved one", "err", err, "suppressed", skipped)
		}
	}
	q.gaugesLocked()
}

// behind says whether r is behind the cursor (dropped while queued).
func (q *Queue) behind(r queued) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return !q.cursor.less(r.end)
}

func (q *Queue) gaugesLocked() {
	q.m.queueBytes.Set(float64(q.bytes))
	q.m.queueSamples.Set(float64(q.pending))
}

func (q *Queue) syncer() {
	defer q.syncerWG.Done()
	for f := range q.syncc {
		q.syncAndClose(f)
	}
}

func (q *Queue) syncAndClose(f *os.File) {
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(q.dir)
	}
	if err != nil {
		q.logger.Error("remote_write queue: cannot sync a sealed segment; a power loss could cost it", "segment", f.Name(), "err", err)
	}
}

// Close stops the sender (cancelling its request in flight, waiting at
// most 10s), fsyncs the queue and leaves what is unsent on disk for the
// next Open.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		close(q.stop)
		q.cancel()
		done := make(chan struct{})
		go func() {
			q.senderWG.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(closeWait):
			q.logger.Error("remote_write sender did not stop in time; closing the queue under it")
		}
		q.mu.Lock()
		q.closed = true
		close(q.syncc)
		q.mu.Unlock()
		q.syncerWG.Wait()
		q.mu.Lock()
		q.closeErr = errors.Join(q.writeCursorLocked(), q.closeFiles(), syncDir(q.dir))
		q.mu.Unlock()
		q.client.close()
		q.m.unregister()
	})
	return q.closeErr
}

// closeFiles fsyncs and closes the segment being written and the cursor.
func (q *Queue) closeFiles() error {
	var errs []error
	for _, f := range []*os.File{q.w, q.cursorF} {
		if f != nil {
			errs = append(errs, f.Sync(), f.Close())
		}
	}
	q.w, q.cursorF = nil, nil
	return errors.Join(errs...)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// every rate-limits a log line to once a minute, counting what it held
// back.
type every struct {
	mu      sync.Mutex
	last    time.Time
	skipped int
}

func (e *every) allow() (bool, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if now := time.Now(); now.Sub(e.last) >= time.Minute {
		n := e.skipped
		e.last, e.skipped = now, 0
		return true, n
	}
	e.skipped++
	return false, 0
}
