package procfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ErrTooLarge means a file held more than Read reads of it. For the socket
// tables the cap is 64 MiB, roughly 400,000 sockets.
var ErrTooLarge = errors.New("file too large to read")

const (
	// maxSocketsFile caps what Read reads of /proc/net/tcp{,6}.
	maxSocketsFile = 64 << 20
	// maxCountersFile caps what Read reads of /proc/net/snmp and
	// /proc/net/netstat; each is under 10 KiB.
	maxCountersFile = 1 << 20
)

// Snapshot is what one read of procfs yields.
type Snapshot struct {
	// At is when the read began.
	At time.Time
	// Sockets holds /proc/net/tcp's sockets, then /proc/net/tcp6's.
	Sockets []Socket
	// TCP is /proc/net/snmp's "Tcp" table: ActiveOpens, PassiveOpens,
	// AttemptFails, EstabResets, CurrEstab, InSegs, OutSegs, RetransSegs,
	// InErrs, OutRsts and whatever else the kernel lists, counted since
	// boot over the whole network namespace (CurrEstab is a gauge).
	TCP map[string]int64
	// TCPExt is /proc/net/netstat's "TcpExt" table (ListenDrops,
	// TCPTimeouts, …), likewise host-wide.
	TCPExt map[string]int64
}

// Read reads root+"/net/tcp", "/net/tcp6", "/net/snmp" and "/net/netstat";
// root is normally "/proc". A missing tcp6 (IPv6 disabled) is not an
// error; anything else that cannot be read or parsed is, naming the file.
// Read refuses files that are not regular (a FIFO would block it) and
// stops with ErrTooLarge past 64 MiB of a socket table or 1 MiB of a
// counters file.
func Read(root string) (Snapshot, error) {
	snap := Snapshot{At: time.Now()}
	for _, t := range []struct {
		name string
		v6   bool
	}{{"tcp", false}, {"tcp6", true}} {
		var socks []Socket
		err := parseFile(filepath.Join(root, "net", t.name), maxSocketsFile, func(r io.Reader) (err error) {
			socks, err = ParseTCP(r, t.v6)
			return err
		})
		if t.v6 && errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Snapshot{}, err
		}
		snap.Sockets = append(snap.Sockets, socks...)
	}
	var err error
	if snap.TCP, err = readTable(filepath.Join(root, "net", "snmp"), "Tcp"); err != nil {
		return Snapshot{}, err
	}
	if snap.TCPExt, err = readTable(filepath.Join(root, "net", "netstat"), "TcpExt"); err != nil {
		return Snapshot{}, err
	}
	return snap, nil
}

// readTable returns one table of the counters file at path.
func readTable(path, table string) (map[string]int64, error) {
	var tables map[string]map[string]int64
	err := parseFile(path, maxCountersFile, func(r io.Reader) (err error) {
		tables, err = ParseCounters(r)
		return err
	})
	if err != nil {
		return nil, err
	}
	t, ok := tables[table]
	if !ok {
		return nil, fmt.Errorf("%s: no %s table", path, table)
	}
	return t, nil
}

// parseFile opens path, checks it is a regular file, and hands parse at
// most limit bytes of it; more is ErrTooLarge. Errors name path.
func parseFile(path string, limit int64, parse func(io.Reader) error) error {
	// O_NONBLOCK so that opening a FIFO put in the file's place returns
	// at once, to be refused below, instead of waiting for a writer.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err // *fs.PathError, naming path
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file (%v)", path, fi.Mode().Type())
	}
	if err := parse(&capReader{r: f, limit: limit, left: limit}); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// capReader passes through the first limit bytes of r and fails with
// ErrTooLarge if r holds more.
type capReader struct {
	r     io.Reader
	limit int64
	left  int64 // of limit
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		var one [1]byte
		n, err := c.r.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("more than %d bytes: %w", c.limit, ErrTooLarge)
		}
		return 0, err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}
