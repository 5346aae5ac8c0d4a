package httpapi

import (
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/outpost-mesh/outpost/audit"
)

// maxAuditPage is the most records one GET of an audit log returns.
const maxAuditPage = 1000

// auditHandler is an audit route's handler, given the log it serves.
type auditHandler func(s *server, w http.ResponseWriter, r *http.Request, c *call, log AuditLog)

// auditRoutes are the read routes of the region log and of the provider
// stream under base: the whole logs for region admins, and for a tenant's
// Admins (base under /tenants/{tenant}) only that tenant's records and
// proofs of them, with the checkpoints and keys to check those against.
func auditRoutes(base string, role Role) []Route {
	var rs []Route
	for _, stream := range []struct {
		path     string
		provider bool
	}{{base, false}, {base + "/provider", true}} {
		for _, h := range []struct {
			suffix string
			fn     auditHandler
		}{
			{"", (*server).auditEntries},
			{"/checkpoint", (*server).auditCheckpoint},
			{"/key", (*server).auditKey},
			{"/proof", (*server).auditProof},
			{"/consistency", (*server).auditConsistency},
		} {
			rs = append(rs, Route{"GET", stream.path + h.suffix, role, bindLog(stream.provider, h.fn)})
		}
	}
	return rs
}

// bindLog binds an audit handler to the region log or the provider stream.
func bindLog(provider bool, h auditHandler) handlerFunc {
	return func(s *server, w http.ResponseWriter, r *http.Request, c *call) {
		log := s.cfg.Audit
		if provider {
			log = s.cfg.ProviderAudit
		}
		h(s, w, r, c, log)
	}
}

// treeSize reads query parameter size: the tree size a request is served
// against, the log's current size when absent. A size beyond the log is
// served as the log's size; the answer says which it used.
func treeSize(r *http.Request, log AuditLog) (int64, error) {
	n, err := log.Size()
	if err != nil {
		return 0, err
	}
	q := r.URL.Query().Get("size")
	if q == "" {
		return n, nil
	}
	size, err := strconv.ParseInt(q, 10, 64)
	if err != nil || size < 0 {
		return 0, errBadQuery
	}
	return min(size, n), nil
}

var errBadQuery = errors.New("bad query")

// auditEntries serves a page of an audit log; on a tenant route only that
// tenant's records (the seq of each stays its place in the whole log).
func (s *server) auditEntries(w http.ResponseWriter, r *http.Request, c *call, log AuditLog) {
	tenantID := c.tenant.ID
	q := r.URL.Query()
	size, errSize := treeSize(r, log)
	from, err1 := strconv.ParseInt(cmp.Or(q.Get("from"), "0"), 10, 64)
	limit, err2 := strconv.Atoi(cmp.Or(q.Get("limit"), strconv.Itoa(maxAuditPage)))
	if errors.Is(errSize, errBadQuery) || err1 != nil || err2 != nil || from < 0 || limit < 1 {
		writeError(w, http.StatusBadRequest, "from, size and limit must be non-negative integers (limit at least 1)", "GET /api/v1/audit?from=0&size=N&limit=1000")
		return
	}
	if errSize != nil {
		writeError(w, http.StatusInternalServerError, "reading the audit log: "+errSize.Error(), "")
		return
	}
	limit = min(limit, maxAuditPage)
	var out []audit.Entry
	var err error
	if tenantID == "" {
		out, err = log.Entries(from, size, limit)
	} else {
		out, err = log.TenantEntries(tenantID, from, size, limit)
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "reading the audit log: "+err.Error(), "")
		return
	}
	if out == nil {
		out = []audit.Entry{}
	}
	writeJSON(w, http.StatusOK, audit.Page{Entries: out, Size: size})
}

func recordTenant(data []byte) string {
	var rec struct {
		Tenant string `json:"tenant"`
	}
	_ = json.Unmarshal(data, &rec)
	return rec.Tenant
}

func (s *server) auditCheckpoint(w http.ResponseWriter, r *http.Request, c *call, log AuditLog) {
	cp, err := log.Checkpoint()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "signing a checkpoint: "+err.Error(), "")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(cp)
}

func (s *server) auditKey(w http.ResponseWriter, r *http.Request, c *call, log AuditLog) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, log.VerifierKey()+"\n")
}

// auditProof serves record seq with its inclusion proof in the tree of
// size records (default: the current log). On a tenant route a record of
// another tenant (or none) is the same 404, and its bytes never leave.
func (s *server) auditProof(w http.ResponseWriter, r *http.Request, c *call, log AuditLog) {
	const example = "GET .../audit/proof?seq=N&size=S (S: the size of the checkpoint you verify against)"
	size, err := treeSize(r, log)
	seq, errSeq := strconv.ParseInt(r.URL.Query().Get("seq"), 10, 64)
	if errors.Is(err, errBadQuery) || errSeq != nil || seq < 0 {
		writeError(w, http.StatusBadRequest, "seq and size must be non-negative integers", example)
		return
	}
	var p audit.InclusionProof
	if err == nil {
		p, err = log.ProveRecord(seq, size)
	}
	if err == nil && c.tenant.ID != "" && recordTenant(p.Data) != c.tenant.ID {
		err = audit.ErrNoRecord
	}
	switch {
	case errors.Is(err, audit.ErrNoRecord):
		writeError(w, http.StatusNotFound, "no audit record "+strconv.FormatInt(seq, 10)+" that you can read in a tree of "+strconv.FormatInt(size, 10), "list your records: GET .../audit")
	case err != nil:
		writeError(w, http.StatusInternalServerError, "proving a record: "+err.Error(), "")
	default:
		writeJSON(w, http.StatusOK, p)
	}
}

// auditConsistency serves the proof that the tree of size records
// (default: the current log) extends the tree of its first old records.
// It holds hashes of subtrees only, never a record.
func (s *server) auditConsistency(w http.ResponseWriter, r *http.Request, c *call, log AuditLog) {
	const example = "GET .../audit/consistency?old=M&size=S (M: your older checkpoint's size)"
	size, err := treeSize(r, log)
	old, errOld := strconv.ParseInt(r.URL.Query().Get("old"), 10, 64)
	if errors.Is(err, errBadQuery) || errOld != nil || old < 0 {
		writeError(w, http.StatusBadRequest, "old and size must be non-negative integers", example)
		return
	}
	var p audit.ConsistencyProof
	if err == nil {
		p, err = log.ProveTree(old, size)
	}
	switch {
	case errors.Is(err, audit.ErrBeyondLog):
		writeError(w, http.StatusNotFound, err.Error(), "an older checkpoint larger than the log means the log was truncated")
	case err != nil:
		writeError(w, http.StatusInternalServerError, "proving consistency: "+err.Error(), "")
	default:
		writeJSON(w, http.StatusOK, p)
	}
}
