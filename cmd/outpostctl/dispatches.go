package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// dispatchRetryFor is how long `dispatches create` retries while no node
// holds the lease (a failover under way).
const dispatchRetryFor = 10 * time.Second

func dispatchesPath(tenant string) string {
	if tenant == "" {
		return "/api/v1/dispatches"
	}
	return tenantPath(tenant) + "/dispatches"
}

// dispatchCreate sends the dispatch, following the lease: a node that
// does not hold it names the holder (409), and the request goes there
// once; while nobody holds it (503) it is retried for up to 10s. A named
// holder that does not answer (it died; the region has not yet seen its
// lease run out) sends the request back to the first node, within the
// same 10s. The id is always set, so a retry is applied once.
func dispatchCreate(ctx context.Context, c *client, g *globals, tenant string, req api.DispatchRequest, w, stderr io.Writer) error {
	deadline := time.Now().Add(dispatchRetryFor)
	// Retried here, with the id, and following the holder.
	target, followed, waiting := &client{c.At(c.Addr)}, false, false
	target.noRetry()
	for {
		var d api.Dispatch
		err := target.send(ctx, "POST", dispatchesPath(tenant), req, &d)
		if err == nil {
			if g.json {
				return printJSON(w, d)
			}
			fmt.Fprintf(w, "dispatch %s committed at index %d under lease token %d (issued by %s)\n", d.ID, d.Index, d.Token, d.Node)
			return nil
		}
		status, hdr := apiStatus(err)
		var na *api.NoAnswerError
		switch {
		case followed && errors.As(err, &na) && ctx.Err() == nil && time.Now().Before(deadline):
			fmt.Fprintf(stderr, "outpostctl: the lease holder does not answer (a failover under way?); asking %s again, with id %s\n", c.Addr, req.ID)
			target, followed = &client{c.At(c.Addr)}, false
			target.noRetry()
			if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
				return err
			}
			continue
		case status == http.StatusConflict && !followed && hdr.Get("X-Outpost-Lease-Holder-URL") != "":
			followed = true
			holderURL := hdr.Get("X-Outpost-Lease-Holder-URL")
			fmt.Fprintf(stderr, "outpostctl: %s holds the dispatch lease; sending to %s\n", hdr.Get("X-Outpost-Lease-Holder"), holderURL)
			target = newClient(holderURL, c.Token)
			target.noRetry()
			continue
		case status == http.StatusServiceUnavailable && time.Now().Before(deadline):
			if !waiting {
				fmt.Fprintf(stderr, "outpostctl: %s; retrying for up to %v with id %s\n", firstLine(err.Error()), dispatchRetryFor, req.ID)
				waiting = true
			}
			if err := sleepCtx(ctx, retryAfter(hdr)); err != nil {
				return err
			}
			continue
		}
		return err
	}
}

// retryAfter is the pause before retrying a 503: the server's Retry-After,
// capped at a second (a failover takes about that), default 500ms.
func retryAfter(h http.Header) time.Duration {
	if s, err := strconv.Atoi(h.Get("Retry-After")); err == nil && s >= 0 {
		return min(time.Duration(s)*time.Second, time.Second)
	}
	return 500 * time.Millisecond
}

func dispatchList(ctx context.Context, c *client, g *globals, tenant string, after uint64, consistent bool, w io.Writer) error {
	q := url.Values{"after": {strconv.FormatUint(after, 10)}}
	if consistent {
		q.Set("consistent", "true")
	}
	var ds []api.Dispatch
	if err := c.do(ctx, "GET", dispatchesPath(tenant)+"?"+q.Encode(), nil, &ds); err != nil {
		return err
	}
	if g.json {
		return printJSON(w, ds)
	}
	if len(ds) == 0 {
		fmt.Fprintf(w, "no dispatches after index %d\n", after)
		if !consistent {
			fmt.Fprintln(w, "(read from this node's copy, which may lag a moment behind; --consistent reads through the leader)")
		}
		return nil
	}
	tw := newTable(w, "INDEX\tID\tTENANT\tKIND\tSELECTOR\tTOKEN\tISSUED BY\tISSUED\tBYTES")
	for _, d := range ds {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d\n", d.Index, d.ID, dash(d.Tenant), d.Kind, dash(d.Selector), d.Token, d.Node, stamp(d.Issued), d.PayloadBytes)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(ds) >= 100 {
		fmt.Fprintf(w, "(a page of %d; the next: --after %d)\n", len(ds), ds[len(ds)-1].Index)
	}
	return nil
}

// watchEvents prints the event stream of the node at --addr until ctx
// ends (Ctrl-C). A stream that ends otherwise is an error: the node
// stopped, or the stream fell behind.
func watchEvents(ctx context.Context, c *client, g *globals, kinds string, w io.Writer) error {
	path := "/api/v1/events"
	if kinds != "" {
		path += "?kinds=" + url.QueryEscape(kinds)
	}
	body, err := c.stream(ctx, path)
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while connecting
		}
		return err
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var e api.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("unexpected event from %s: %w", c.Addr, err)
		}
		if g.json {
			fmt.Fprintf(w, "%s\n", sc.Bytes())
		} else if e.Kind != "heartbeat" {
			fmt.Fprintln(w, formatEvent(e))
		}
		if e.Kind == "lagged" {
			return errors.New("the event stream fell behind and the node ended it; read what was missed with `outpostctl dispatches list --after INDEX`, then watch again")
		}
	}
	if ctx.Err() != nil {
		return nil // interrupted: the normal end
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("the event stream from %s broke: %w; watch again, or point --addr at another node", c.Addr, err)
	}
	return fmt.Errorf("the node at %s ended the event stream (stopped?); watch again, or point --addr at another node", c.Addr)
}

// formatEvent is one line per event: time (UTC), node, kind, details.
func formatEvent(e api.Event) string {
	var what string
	switch e.Kind {
	case "leader":
		what = e.Leader
		if e.Leader == "" {
			what = "no leader (election under way)"
		}
	case "lease":
		if l := e.Lease; l != nil {
			switch {
			case l.Holder != "":
				what = fmt.Sprintf("holder %s, token %d, %dms left", l.Holder, l.Token, l.ExpiresInMs)
			case l.Released:
				what = fmt.Sprintf("released (token %d)", l.Token)
			default:
				what = fmt.Sprintf("nobody holds it (token %d)", l.Token)
			}
		}
	case "dispatch":
		if d := e.Dispatch; d != nil {
			what = fmt.Sprintf("%s kind=%s selector=%s token=%d from %s index %d", d.ID, d.Kind, dash(d.Selector), d.Token, d.Node, d.Index)
			if d.Tenant != "" {
				what += " tenant " + d.Tenant
			}
		}
	default:
		what = e.Reason
	}
	return fmt.Sprintf("%s  %-4s %-9s %s", e.At.UTC().Format("15:04:05.000"), e.Node, e.Kind, what)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
