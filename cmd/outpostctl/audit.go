package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/outpost-mesh/outpost/node/audit"
)

// auditOpts are the flags of the audit commands.
type auditOpts struct {
	since  string // older signed checkpoint file
	key    string // verifier key; default: ask the node (trust on first use)
	save   string // write the verified checkpoint here
	out    string // export directory
	region string // region name, for the checkpoint origin
}

// fetchLog reads the node's signed checkpoint, its audit key and every
// entry the checkpoint covers.
func fetchLog(ctx context.Context, c *client, o auditOpts) (cp []byte, vkey string, entries []audit.Entry, err error) {
	if err = c.do(ctx, "GET", "/api/v1/audit/checkpoint", nil, &cp); err != nil {
		return
	}
	vkey = o.key
	if vkey == "" {
		var raw []byte
		if err = c.do(ctx, "GET", "/api/v1/audit/key", nil, &raw); err != nil {
			return
		}
		vkey = strings.TrimSpace(string(raw))
	}
	origin, tree, perr := audit.ParseCheckpoint(noteText(cp))
	if perr != nil {
		return nil, "", nil, fmt.Errorf("the node's checkpoint: %w", perr)
	}
	_ = origin
	for from := int64(0); from < tree.N; {
		var page audit.Page
		if err = c.do(ctx, "GET", fmt.Sprintf("/api/v1/audit?from=%d&size=%d", from, tree.N), nil, &page); err != nil {
			return
		}
		if len(page.Entries) == 0 {
			return nil, "", nil, fmt.Errorf("the node returned no records from %d of %d", from, tree.N)
		}
		entries = append(entries, page.Entries...)
		from += int64(len(page.Entries))
	}
	return cp, vkey, entries, nil
}

// noteText returns the text of a signed note (before the blank line).
func noteText(signed []byte) []byte {
	if i := strings.Index(string(signed), "\n\n"); i >= 0 {
		return signed[:i+1]
	}
	return signed
}

func originOf(cp []byte) string {
	o, _, _ := audit.ParseCheckpoint(noteText(cp))
	return o
}

func auditVerify(ctx context.Context, c *client, g *globals, o auditOpts, w io.Writer) error {
	cp, vkey, entries, err := fetchLog(ctx, c, o)
	if err != nil {
		return err
	}
	var since []byte
	if o.since != "" {
		if since, err = os.ReadFile(o.since); err != nil {
			return fmt.Errorf("--since: %w", err)
		}
	}
	origin := originOf(cp)
	if o.region != "" {
		origin = audit.Origin(o.region)
	}
	rep, err := audit.Verify(entries, cp, vkey, origin, since)
	if err != nil {
		return fmt.Errorf("audit verify failed: %w", err)
	}
	if o.save != "" {
		if err := os.WriteFile(o.save, cp, 0o644); err != nil {
			return fmt.Errorf("--save: %w", err)
		}
	}
	if g.json {
		return printJSON(w, rep)
	}
	fmt.Fprintf(w, "audit log verified: %d records, root %s\n", rep.Size, rep.RootHash)
	if since != nil {
		fmt.Fprintf(w, "consistent with the older checkpoint of %d records: the log only grew\n", rep.SinceSize)
	}
	if o.key == "" {
		fmt.Fprintf(w, "(checked with the key the node reported; pass --key %q to pin it)\n", vkey)
	}
	return nil
}

func auditExport(ctx context.Context, c *client, g *globals, o auditOpts, w io.Writer) error {
	if o.out == "" {
		return fmt.Errorf("audit export needs --out DIR")
	}
	cp, vkey, entries, err := fetchLog(ctx, c, o)
	if err != nil {
		return err
	}
	if _, err := audit.Verify(entries, cp, vkey, originOf(cp), nil); err != nil {
		return fmt.Errorf("refusing to export a log that does not verify: %w", err)
	}
	recs, err := audit.Prove(entries)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	files := map[string][]byte{"checkpoint": cp, "key.vkey": []byte(vkey + "\n")}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(o.out, name), data, 0o644); err != nil {
			return err
		}
	}
	f, err := os.Create(filepath.Join(o.out, "records.jsonl"))
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	enc := json.NewEncoder(bw)
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			f.Close()
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, map[string]any{"dir": o.out, "records": len(recs)})
	}
	fmt.Fprintf(w, "exported %d records with inclusion proofs to %s\nverify offline: outpostctl audit verify-export %s --key '%s'\n", len(recs), o.out, o.out, vkey)
	return nil
}

// auditVerifyExport checks an export with the region's public key alone;
// it needs no node.
func auditVerifyExport(dir string, g *globals, o auditOpts, w io.Writer) error {
	if o.key == "" {
		return fmt.Errorf("verify-export needs --key (the region's audit key, from a source you trust, not from the export)")
	}
	cp, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if err != nil {
		return err
	}
	f, err := os.Open(filepath.Join(dir, "records.jsonl"))
	if err != nil {
		return err
	}
	defer f.Close()
	var recs []audit.ExportedRecord
	dec := json.NewDecoder(f)
	for dec.More() {
		var r audit.ExportedRecord
		if err := dec.Decode(&r); err != nil {
			return fmt.Errorf("records.jsonl: %w", err)
		}
		recs = append(recs, r)
	}
	origin := originOf(cp)
	if o.region != "" {
		origin = audit.Origin(o.region)
	}
	t, err := audit.CheckExported(recs, cp, o.key, origin)
	if err != nil {
		return fmt.Errorf("export does not verify: %w", err)
	}
	if g.json {
		return printJSON(w, map[string]any{"records": len(recs), "tree_size": t.N})
	}
	fmt.Fprintf(w, "export verified: %d records, each proven included in the signed tree of %d records\n", len(recs), t.N)
	return nil
}
