package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/outpost-mesh/outpost/api"
	"github.com/outpost-mesh/outpost/audit"
	"github.com/outpost-mesh/outpost/internal/cli"
)

// auditOpts are the flags of the audit commands.
type auditOpts struct {
	since    string // older signed checkpoint file
	key      string // verifier key; default: ask the node (trust on first use)
	save     string // write the verified checkpoint here
	out      string // export directory
	region   string // region name, for the checkpoint origin
	partial  bool   // verify-export: the export may hold fewer records than its checkpoint
	provider bool   // the provider stream instead of the region log
	tenant   string // verify-record: through the tenant's routes
}

// logPath is the API path of the log the command reads.
func (o auditOpts) logPath() string {
	p := "/api/v1/audit"
	if o.tenant != "" {
		p = tenantPath(o.tenant) + "/audit"
	}
	if o.provider {
		p += "/provider"
	}
	return p
}

func (o auditOpts) logName() string {
	if o.provider {
		return "provider stream"
	}
	return "region log"
}

// expectedOrigin is the origin of the log the command checks. It is never
// taken from the checkpoint being checked (a node could hand over another
// log's): --region names it; else the pinned key's name, which is its
// log's origin; else the region of the node asked (c; nil offline).
func expectedOrigin(ctx context.Context, c *client, o auditOpts) (string, error) {
	origin := audit.Origin
	if o.provider {
		origin = audit.ProviderOrigin
	}
	switch {
	case o.region != "":
		return origin(o.region), nil
	case o.key != "":
		ko, err := audit.KeyOrigin(o.key)
		if err != nil {
			return "", fmt.Errorf("--key: %w", err)
		}
		region, provider, err := audit.ParseOrigin(ko)
		if err != nil {
			return "", fmt.Errorf("--key: %w", err)
		}
		if provider != o.provider {
			return "", fmt.Errorf("--key is the key of %q, not of region %s's %s (%w); pass that log's key, or --provider for the provider stream", ko, region, o.logName(), audit.ErrWrongLog)
		}
		return ko, nil
	case c == nil:
		return "", errors.New("name the log: --key VKEY (the region's audit key, from a source you trust) or --region NAME")
	}
	var who api.WhoAmI
	if err := c.do(ctx, "GET", "/api/v1/whoami", nil, &who); err != nil {
		return "", err
	}
	if who.Region == "" {
		return "", errors.New("the node did not say its region; pass --region NAME")
	}
	return origin(who.Region), nil
}

// openLog reads the node's signed checkpoint and verifies it with the
// pinned key (or the one the node reports) under the expected origin.
func openLog(ctx context.Context, c *client, o auditOpts) (cp []byte, vkey string, t tlog.Tree, err error) {
	origin, err := expectedOrigin(ctx, c, o)
	if err != nil {
		return nil, "", t, err
	}
	if err = c.do(ctx, "GET", o.logPath()+"/checkpoint", nil, &cp); err != nil {
		return nil, "", t, err
	}
	vkey = o.key
	if vkey == "" {
		var raw []byte
		if err = c.do(ctx, "GET", o.logPath()+"/key", nil, &raw); err != nil {
			return nil, "", t, err
		}
		vkey = strings.TrimSpace(string(raw))
	}
	if t, err = audit.OpenCheckpoint(cp, vkey, origin); err != nil {
		return nil, "", t, fmt.Errorf("the node's checkpoint: %w", err)
	}
	return cp, vkey, t, nil
}

// fetchLog reads a verified checkpoint and every entry it covers.
func fetchLog(ctx context.Context, c *client, o auditOpts) (cp []byte, vkey string, entries []audit.Entry, err error) {
	if o.tenant != "" {
		return nil, "", nil, errors.New("a tenant reads its own records only: check one with `outpostctl audit verify-record SEQ --tenant T`")
	}
	cp, vkey, tree, err := openLog(ctx, c, o)
	if err != nil {
		return nil, "", nil, err
	}
	for from := int64(0); from < tree.N; {
		var page audit.Page
		if err = c.do(ctx, "GET", fmt.Sprintf("%s?from=%d&size=%d", o.logPath(), from, tree.N), nil, &page); err != nil {
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

func readSince(o auditOpts) ([]byte, error) {
	if o.since == "" {
		return nil, nil
	}
	b, err := os.ReadFile(o.since)
	if err != nil {
		return nil, fmt.Errorf("--since: %w", err)
	}
	return b, nil
}

func saveCheckpoint(o auditOpts, cp []byte) error {
	if o.save == "" {
		return nil
	}
	if err := os.WriteFile(o.save, cp, 0o644); err != nil {
		return fmt.Errorf("--save: %w", err)
	}
	return nil
}

func auditVerify(ctx context.Context, c *client, g *globals, o auditOpts, w io.Writer) error {
	since, err := readSince(o)
	if err != nil {
		return err
	}
	cp, vkey, entries, err := fetchLog(ctx, c, o)
	if err != nil {
		return err
	}
	origin, _ := audit.KeyOrigin(vkey) // OpenCheckpoint checked it is the expected one
	rep, err := audit.Verify(entries, cp, vkey, origin, since)
	if err != nil {
		return fmt.Errorf("audit verify failed: %w", err)
	}
	if err := saveCheckpoint(o, cp); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, rep)
	}
	fmt.Fprintf(w, "audit log %s verified: %d records, root %s\n", origin, rep.Size, rep.RootHash)
	if since != nil {
		fmt.Fprintf(w, "consistent with the older checkpoint of %d records: the log only grew\n", rep.SinceSize)
	}
	if o.key == "" {
		fmt.Fprintf(w, "(checked with the key the node reported; pass --key %q to pin it)\n", vkey)
	}
	return nil
}

// auditVerifyRecord checks one record against the signed checkpoint by
// its inclusion proof, without downloading the log; with --since, also
// that the log only grew since an older checkpoint (a consistency proof).
func auditVerifyRecord(ctx context.Context, c *client, g *globals, arg string, o auditOpts, w io.Writer) error {
	seq, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || seq < 0 {
		return fmt.Errorf("SEQ must be a record's sequence number (`outpostctl tenants audit T` lists them), not %q", arg)
	}
	since, err := readSince(o)
	if err != nil {
		return err
	}
	cp, vkey, t, err := openLog(ctx, c, o)
	if err != nil {
		return err
	}
	var p audit.InclusionProof
	if err := c.do(ctx, "GET", fmt.Sprintf("%s/proof?seq=%d&size=%d", o.logPath(), seq, t.N), nil, &p); err != nil {
		return err
	}
	if err := audit.CheckInclusion(p, t); err != nil {
		return fmt.Errorf("audit verify-record failed: %w", err)
	}
	out := map[string]any{"seq": seq, "tree_size": t.N, "root_hash": t.Hash.String()}
	if since != nil {
		origin, _ := audit.KeyOrigin(vkey)
		old, err := audit.OpenCheckpoint(since, vkey, origin)
		if err != nil {
			return fmt.Errorf("--since: %w", err)
		}
		if old.N > t.N {
			return fmt.Errorf("audit verify-record failed: %w", audit.CheckConsistency(audit.ConsistencyProof{}, old, t))
		}
		var cpf audit.ConsistencyProof
		if err := c.do(ctx, "GET", fmt.Sprintf("%s/consistency?old=%d&size=%d", o.logPath(), old.N, t.N), nil, &cpf); err != nil {
			return err
		}
		if err := audit.CheckConsistency(cpf, old, t); err != nil {
			return fmt.Errorf("audit verify-record failed: %w", err)
		}
		out["since_size"] = old.N
	}
	if err := saveCheckpoint(o, cp); err != nil {
		return err
	}
	var rec audit.Record
	_ = json.Unmarshal(p.Data, &rec) // CheckInclusion parsed it
	if g.json {
		out["record"] = rec
		return printJSON(w, out)
	}
	fmt.Fprintf(w, "record %d (%s %s by %s at %s) is in the signed %s tree of %d records, root %s\n",
		seq, rec.Action, rec.Entity, rec.Actor, stamp(rec.Time), o.logName(), t.N, t.Hash)
	if since != nil {
		fmt.Fprintf(w, "consistent with the older checkpoint of %d records: the log only grew\n", out["since_size"])
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
	origin, _ := audit.KeyOrigin(vkey)
	if _, err := audit.Verify(entries, cp, vkey, origin, nil); err != nil {
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
	provider := ""
	if o.provider {
		provider = " --provider"
	}
	fmt.Fprintf(w, "exported %d records with inclusion proofs to %s\nverify offline: outpostctl audit verify-export %s%s --key '%s'\n", len(recs), o.out, o.out, provider, vkey)
	return nil
}

// auditVerifyExport checks an export with the log's public key alone; it
// needs no node. An export must hold every record its checkpoint covers,
// in order, unless --partial says it was cut.
func auditVerifyExport(dir string, g *globals, o auditOpts, w io.Writer) error {
	if o.key == "" {
		return fmt.Errorf("verify-export needs --key (the region's audit key, from a source you trust, not from the export)")
	}
	origin, err := expectedOrigin(context.Background(), nil, o)
	if err != nil {
		return err
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
	t, err := audit.CheckExported(recs, cp, o.key, origin)
	if err != nil {
		return fmt.Errorf("export does not verify: %w", err)
	}
	if !o.partial {
		if int64(len(recs)) != t.N {
			return fmt.Errorf("export does not verify: %w: its checkpoint covers %d records, the export holds %d (pass --partial if it was cut on purpose)", audit.ErrTampered, t.N, len(recs))
		}
		for i, r := range recs {
			if r.Seq != int64(i) {
				return fmt.Errorf("export does not verify: %w: line %d holds record %d, not %d (pass --partial if it was cut on purpose)", audit.ErrTampered, i+1, r.Seq, i)
			}
		}
	}
	if g.json {
		return printJSON(w, map[string]any{"records": len(recs), "tree_size": t.N, "partial": o.partial, "origin": origin})
	}
	if o.partial {
		fmt.Fprintf(w, "partial export of %s verified: %d records, each proven included in the signed tree of %d records\n", origin, len(recs), t.N)
		return nil
	}
	fmt.Fprintf(w, "export of %s verified: all %d records of the signed tree, each proven included\n", origin, len(recs))
	return nil
}

func auditCommand(a *app) *cobra.Command {
	grp := cli.Group("audit <command>", "Verify the signed audit log, prove records, export it",
		"  outpostctl audit verify --save audit.checkpoint\n  outpostctl audit verify --since audit.checkpoint --key \"$(cat audit.vkey)\"")
	grp.Long = `The audit log is a Merkle tree whose checkpoints the region signs. These
commands check it: all of it (verify), one record (verify-record), or an
export offline (verify-export).

Every command checks the checkpoint's origin and the key's name against
the log it expects, never against what the checkpoint says: --region R
expects outpost.audit/R (with --provider, outpost.audit/R/provider);
without it, the pinned --key's name; without either, the node's region.`
	var o auditOpts
	since := func(c *cobra.Command) {
		c.Flags().StringVar(&o.since, "since", "", "an older signed checkpoint `FILE` (from --save): prove the log only grew since")
		c.Flags().StringVar(&o.save, "save", "", "write the verified checkpoint to this `FILE`, for a later --since")
	}
	key := func(c *cobra.Command, what string) {
		c.Flags().StringVar(&o.key, "key", "", what)
		c.Flags().StringVar(&o.region, "region", "", "the region whose log to expect (default: the pinned key's, else the node's)")
	}
	provider := func(c *cobra.Command) {
		c.Flags().BoolVar(&o.provider, "provider", false, "the provider stream (break-glass requests and access) instead of the region log")
	}
	pinKey := "the log's verifier key `VKEY`, from a source you trust (default: the key the node reports, which the output says)"

	verify := &cobra.Command{
		Use:   "verify [--provider] [--since OLD_CHECKPOINT] [--save FILE] [--key VKEY] [--region NAME]",
		Short: "Download the log and check it against its signed checkpoint",
		Long: `Download the signed checkpoint and every record it covers, name the first
record whose bytes do not match its stored hash, recompute the Merkle tree
and check it against the signed checkpoint. With --since, also prove the log
is an extension of an older checkpoint you kept (--save), so a truncated or
rewritten history is caught. Exit 1 when verification fails.`,
		Example: "  outpostctl audit verify --save audit.checkpoint\n  outpostctl audit verify --since audit.checkpoint --key \"$(cat audit.vkey)\" --region eu-west",
		RunE: func(c *cobra.Command, _ []string) error {
			return auditVerify(c.Context(), a.client(), &a.g, o, a.stdout)
		},
	}
	provider(verify)
	since(verify)
	key(verify, pinKey)

	record := &cobra.Command{
		Use:   "verify-record SEQ [--tenant T] [--provider] [--since OLD_CHECKPOINT] [--save FILE] [--key VKEY] [--region NAME]",
		Short: "Prove one record is in the signed log, without downloading the log",
		Long: `Fetch the signed checkpoint, record SEQ and its inclusion proof, and with
--since a consistency proof from an older checkpoint. With --tenant T it
goes through the tenant's routes, so a tenant Admin checks its own records
(` + "`outpostctl tenants audit T`" + ` lists their numbers).`,
		Example: "  outpostctl audit verify-record 42\n  outpostctl audit verify-record 42 --tenant acme --since acme.checkpoint",
		Args:    cli.Args("SEQ"),
		RunE: func(c *cobra.Command, args []string) error {
			return auditVerifyRecord(c.Context(), a.client(), &a.g, args[0], o, a.stdout)
		},
	}
	record.Flags().StringVar(&o.tenant, "tenant", "", "check a record of tenant `T`, through its routes (a tenant Admin)")
	provider(record)
	since(record)
	key(record, pinKey)

	export := &cobra.Command{
		Use:   "export --out DIR [--provider] [--key VKEY] [--region NAME]",
		Short: "Write the records, their inclusion proofs and the checkpoint to a directory",
		Long: `Verify the log, then write DIR/checkpoint (as the node served it),
DIR/key.vkey (for reference only) and DIR/records.jsonl: one
{"seq","data","proof"} per line, the record's bytes and its inclusion proof.
` + "`outpostctl audit verify-export`" + ` checks it offline.`,
		Example: "  outpostctl audit export --out audit-2026-12\n  outpostctl audit export --out provider-export --provider",
		RunE: func(c *cobra.Command, _ []string) error {
			if o.out == "" {
				return cli.Usagef("--out is required: the directory to write the export to")
			}
			return auditExport(c.Context(), a.client(), &a.g, o, a.stdout)
		},
	}
	export.Flags().StringVar(&o.out, "out", "", "the export `DIR` (created if missing)")
	provider(export)
	key(export, pinKey)

	verifyExport := &cobra.Command{
		Use:   "verify-export DIR --key VKEY [--provider] [--region NAME] [--partial]",
		Short: "Check an export offline, with the log's key alone",
		Long: `Check an export with the log's public key alone; no node is asked. An
export must hold every record its checkpoint covers, in order; one with
fewer is refused unless --partial says it was cut on purpose, and then each
record it holds is still proven included. Exit 1 when it does not verify.`,
		Example: "  outpostctl audit verify-export audit-2026-12 --key \"$(cat audit.vkey)\"\n  outpostctl audit verify-export cut-export --key \"$(cat audit.vkey)\" --partial",
		Args:    cli.Args("DIR"),
		RunE: func(_ *cobra.Command, args []string) error {
			if o.key == "" {
				return cli.Usagef("--key is required: the region's audit key, from a source you trust, not from the export")
			}
			return auditVerifyExport(args[0], &a.g, o, a.stdout)
		},
	}
	key(verifyExport, "the log's verifier key `VKEY`, from a source you trust (required)")
	provider(verifyExport)
	verifyExport.Flags().BoolVar(&o.partial, "partial", false, "accept an export holding fewer records than its checkpoint")
	cli.Ignores(verifyExport, "addr", "token")

	grp.AddCommand(verify, record, export, verifyExport)
	return grp
}
