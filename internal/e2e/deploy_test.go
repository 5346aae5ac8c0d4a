package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-mesh/outpost/api"
)

// deployGuide is the guide TestDeployGuide follows.
const deployGuide = "../../deploy/README.md"

// The marks deploy/README.md puts before its sh blocks (`<!-- test: MARK
// -->`, see doccmds_test.go), saying where each block runs. A block with
// another mark, or none, fails the test: every command in the guide is
// either run or excused in writing ("not run: why").
const (
	markEachNode   = "on each node"
	markN1         = "on n1"
	markFindAdmin  = "on each node, until one of them prints it"
	markAdminNode  = "on the node that printed it"
	markAgentHost  = "on the agent host"
	markAgentStart = "on the agent host, keeps running"
	markEnrolled   = "on the node that printed it, once the agent has enrolled"
	markNotRun     = "not run:"
)

var guideMarks = []string{markEachNode, markN1, markFindAdmin, markAdminNode, markAgentHost, markAgentStart, markEnrolled}

func knownMark(m string) bool {
	return strings.HasPrefix(m, markNotRun) && strings.TrimSpace(strings.TrimPrefix(m, markNotRun)) != "" || slices.Contains(guideMarks, m)
}

// guideAddrs maps the guide's node addresses to this machine's: Linux
// routes all of 127/8 to lo, so three nodes can each have an address of
// their own without root.
var guideAddrs = []struct{ doc, test string }{
	{"10.0.1.11", "127.0.0.2"},
	{"10.0.1.12", "127.0.0.3"},
	{"10.0.1.13", "127.0.0.4"},
}

// guidePorts are the ports the guide's configuration binds on each node's
// address.
var guidePorts = []int{7070, 7301, 7302, 7443}

// TestDeployGuide follows deploy/README.md as written: it runs the
// guide's sh blocks in order, with the real binaries, on three `outpost
// serve` nodes at 127.0.0.2, 127.0.0.3 and 127.0.0.4 and one agent host,
// and checks that the region forms (three voters, a leader, a lease
// holder, each node's agent port on its own address), that the guide's
// write is readable, and that the agent enrolls and is listed by
// `outpostctl agents list --json`. A change to the guide that breaks a
// reader's run breaks this test.
//
// What the test changes, and nothing else:
//   - addresses: 10.0.1.11–13 become 127.0.0.2–4; on a node, 127.0.0.1
//     (its loopback API) becomes that node's own address, and
//     OUTPOST_ADDR points there, standing for outpostctl's default;
//   - absolute paths: each host has a directory standing for its "/" and
//     its home, and /etc, /var, /usr, … in commands and in the copied
//     deploy/ files are moved under it;
//   - what needs root, systemd or another machine is a stand-in (guidePrelude):
//     file owners are dropped, useradd does nothing, sudo runs the command,
//     systemctl asks the test to start the unit it finds in
//     /etc/systemd/system (its ExecStart, output to the "journal" that
//     journalctl reads), and scp copies into the home of the host named
//     by its address;
//   - the prose steps: the test puts bin/ and deploy/ in each host's home
//     (section 2), sets NODE_ID and NODE_ADDR on each node (section 5) and
//     the agent's token and CA pin from what `tokens create` printed
//     (section 9).
func TestDeployGuide(t *testing.T) {
	blocks := shellBlocks(t, deployGuide)
	if len(blocks) < 10 {
		t.Fatalf("%s has %d sh blocks; expected the whole guide", deployGuide, len(blocks))
	}
	for _, b := range blocks { // before anything runs: fail fast
		if !knownMark(b.Mark) {
			t.Fatalf("%s: sh block with mark %q; mark it `<!-- test: WHERE -->` with one of %q, or %q and the reason",
				b, b.Mark, guideMarks, markNotRun)
		}
	}
	holdLock(t, "outpost-e2e-deploy-guide.lock", 5*time.Minute)
	for _, a := range guideAddrs {
		for _, p := range guidePorts {
			l, err := net.Listen("tcp", net.JoinHostPort(a.test, fmt.Sprint(p)))
			if err != nil {
				t.Fatalf("the guide's nodes need %s:%d: %v", a.test, p, err)
			}
			l.Close()
		}
	}
	g := newGuideRun(t, binaries(t))
	for _, b := range blocks {
		g.follow(t, b)
	}
	if g.admin == nil || g.agent.bg == nil {
		t.Fatalf("the guide never found the admin node or never started the agent")
	}
	g.checkRegion(t)
}

// guideHost is one machine of the guide.
type guideHost struct {
	name string // n1, n2, n3, agent
	addr string // 127.0.0.x of a node; "" on the agent host
	root string // stands for "/" and for the home directory
	sh   *shellSession
	unit *proc  // the node, once systemctl started it
	bg   *proc  // a block left running
	last string // standard output of the last block run here
}

type guideRun struct {
	bin   string
	nodes []*guideHost
	agent *guideHost
	admin *guideHost // the node that wrote the admin token
}

// guidePrelude stands in for what the test cannot do as an ordinary user
// on one machine. Each stand-in refuses what it does not know, so a new
// use in the guide fails loudly instead of doing nothing.
const guidePrelude = `
install() { # owners need root: -o and -g are dropped, modes are kept
	local a=()
	while [ $# -gt 0 ]; do
		case $1 in
		-o|-g) shift 2 ;;
		*) a+=("$1"); shift ;;
		esac
	done
	command install "${a[@]}"
}
useradd() { :; } # the service runs as the test's user
sudo() { "$@"; }
systemctl() {
	case "$*" in
	daemon-reload) ;;
	"enable --now outpost"|"start outpost") echo start >> "$DOC_ROOT/systemctl.requests" ;;
	*) echo "systemctl stand-in: the test does not do '$*'" >&2; return 1 ;;
	esac
}
journalctl() {
	case "$*" in
	"-u outpost") cat "$DOC_ROOT/journal" ;;
	*) echo "journalctl stand-in: the test does not do '$*'" >&2; return 1 ;;
	esac
}
scp() {
	local args=() a
	for a in "$@"; do
		case $a in
		-r) ;;
		-*) echo "scp stand-in: unknown option $a" >&2; return 1 ;;
		*) args+=("$a") ;;
		esac
	done
	local dest=${args[-1]} root
	unset 'args[-1]'
	root=$(printf '%s\n' $DOC_HOSTS | sed -n "s|^${dest%%:*}=||p")
	if [ -z "$root" ] || [ "${dest#*:}" != "" ]; then
		echo "scp stand-in: copy to ADDRESS: (a node's home), not $dest" >&2
		return 1
	fi
	cp -R -- "${args[@]}" "$root/"
}
`

func newGuideRun(t *testing.T, bin string) *guideRun {
	t.Helper()
	g := &guideRun{bin: bin}
	base := t.TempDir()
	var hosts []string
	for i, a := range guideAddrs {
		h := &guideHost{name: fmt.Sprintf("n%d", i+1), addr: a.test, root: filepath.Join(base, fmt.Sprintf("n%d", i+1))}
		g.nodes = append(g.nodes, h)
		hosts = append(hosts, h.addr+"="+h.root)
	}
	g.agent = &guideHost{name: "agent", root: filepath.Join(base, "agent")}
	for _, h := range append(g.nodes[:len(g.nodes):len(g.nodes)], g.agent) {
		for _, d := range []string{"etc/systemd/system", "usr/local/bin", "usr/sbin", "var/lib", "tmp"} {
			if err := os.MkdirAll(filepath.Join(h.root, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		g.copyBuild(t, h)
		env := []string{
			"PATH=" + h.root + "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"HOME=" + h.root, "TMPDIR=" + h.root + "/tmp", "LANG=C.UTF-8",
			"DOC_ROOT=" + h.root, "DOC_HOSTS=" + strings.Join(hosts, " "),
		}
		if h.addr != "" {
			for i, n := range g.nodes {
				if n == h {
					env = append(env, "NODE_ID="+h.name, "NODE_ADDR="+guideAddrs[i].test)
				}
			}
			env = append(env, "OUTPOST_ADDR=http://"+h.addr+":7070")
		}
		h.sh = newShellSession(t, h.root, env, guidePrelude)
	}
	return g
}

// copyBuild does section 2's prose: bin/ (the binaries the test built)
// and deploy/ (with this host's addresses and paths) into the home.
func (g *guideRun) copyBuild(t *testing.T, h *guideHost) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(h.root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"outpost", "outpostctl", "outpost-agent"} {
		if err := os.Symlink(filepath.Join(g.bin, b), filepath.Join(h.root, "bin", b)); err != nil {
			t.Fatal(err)
		}
	}
	src := filepath.Dir(deployGuide)
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		dst := filepath.Join(h.root, "deploy", rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, []byte(g.rewrite(h, string(b))), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

var (
	// systemPath is an absolute path under a directory the test moves
	// into a host's root.
	systemPath = regexp.MustCompile(`(^|[\s"'=:(<>])/(etc|var|usr|run|opt|srv|tmp|home|root)(/|\b)`)
	// anyPath finds the absolute paths left after the move.
	anyPath = regexp.MustCompile(`(?:^|[\s"'=:(<>])(/[A-Za-z0-9_.-][^\s"'` + "`" + `;|&()<>]*)`)
)

// rewrite maps the guide's addresses and absolute paths to host h's.
func (g *guideRun) rewrite(h *guideHost, s string) string {
	if h.addr != "" {
		s = strings.ReplaceAll(s, "127.0.0.1", h.addr)
	}
	for _, a := range guideAddrs {
		s = strings.ReplaceAll(s, a.doc, a.test)
	}
	return systemPath.ReplaceAllString(s, "${1}"+h.root+"/${2}${3}")
}

// command is block b as it runs on h, refusing an absolute path the test
// does not map: the test must never touch the machine's own /etc.
func (g *guideRun) command(t *testing.T, h *guideHost, b docBlock) string {
	t.Helper()
	code := g.rewrite(h, b.Code)
	for _, m := range anyPath.FindAllStringSubmatch(code, -1) {
		if p := m[1]; !strings.HasPrefix(p, h.root) && !strings.HasPrefix(p, "/dev/") {
			t.Fatalf("%s names %s, which the test does not map into a host's directory; use a path under /etc, /var or /usr, or teach deploy_test.go", b, p)
		}
	}
	return code
}

// run runs b on h and fails the test unless it succeeds.
func (g *guideRun) run(t *testing.T, h *guideHost, b docBlock) {
	t.Helper()
	code, out, errs := h.sh.run(t, g.command(t, h, b), 2*time.Minute)
	t.Logf("%s on %s: exit %d\n%s%s", b, h.name, code, out, errs)
	if code != 0 {
		g.logJournals(t)
		t.Fatalf("%s on %s: exit %d\n%s\nstdout:\n%s\nstderr:\n%s", b, h.name, code, b.Code, out, errs)
	}
	h.last = out
	g.startRequested(t, h)
}

// follow does what block b's mark says.
func (g *guideRun) follow(t *testing.T, b docBlock) {
	t.Helper()
	switch {
	case strings.HasPrefix(b.Mark, markNotRun):
		t.Logf("%s not run (%s)", b, strings.TrimSpace(strings.TrimPrefix(b.Mark, markNotRun)))
	case b.Mark == markEachNode:
		for _, h := range g.nodes {
			g.run(t, h, b)
		}
	case b.Mark == markN1:
		g.run(t, g.nodes[0], b)
	case b.Mark == markFindAdmin:
		g.findAdmin(t, b)
	case b.Mark == markAdminNode:
		g.run(t, g.adminNode(t, b), b)
	case b.Mark == markAgentHost:
		g.run(t, g.agent, b)
	case b.Mark == markAgentStart:
		g.startAgent(t, b)
	case b.Mark == markEnrolled:
		h := g.adminNode(t, b)
		g.waitEnrolled(t, h)
		g.run(t, h, b)
		if !strings.Contains(h.last, "healthy") {
			t.Fatalf("%s printed no healthy agent:\n%s", b, h.last)
		}
	default:
		t.Fatalf("%s: no rule for mark %q", b, b.Mark) // knownMark and this switch disagree
	}
}

func (g *guideRun) adminNode(t *testing.T, b docBlock) *guideHost {
	t.Helper()
	if g.admin == nil {
		t.Fatalf("%s runs on the node that printed the admin token line, but no block before it (%q) found that node", b, markFindAdmin)
	}
	return g.admin
}

// findAdmin runs b on every node until exactly one succeeds (grep found
// the line): that node wrote the admin token. A reader would look again
// after a moment too, while the region forms.
func (g *guideRun) findAdmin(t *testing.T, b docBlock) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var found []*guideHost
		for _, h := range g.nodes {
			g.checkUnit(t, h)
			code, out, errs := h.sh.run(t, g.command(t, h, b), time.Minute)
			switch code {
			case 0:
				found = append(found, h)
				h.last = out
			case 1: // grep found nothing (yet)
			default:
				t.Fatalf("%s on %s: exit %d\n%s%s", b, h.name, code, out, errs)
			}
		}
		switch {
		case len(found) == 1:
			g.admin = found[0]
			t.Logf("%s: the admin token is on %s:\n%s", b, g.admin.name, g.admin.last)
			return
		case len(found) > 1:
			t.Fatalf("%s printed on %s and %s: only one node may create the first admin", b, found[0].name, found[1].name)
		case time.Now().After(deadline):
			g.logJournals(t)
			t.Fatalf("%s printed nothing on any node within 90s: the region did not form, or the node does not log what the block looks for (journals above)", b)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// startRequested starts the unit if a block asked systemctl to.
func (g *guideRun) startRequested(t *testing.T, h *guideHost) {
	t.Helper()
	req := filepath.Join(h.root, "systemctl.requests")
	if _, err := os.Stat(req); err != nil {
		return
	}
	if err := os.Remove(req); err != nil {
		t.Fatal(err)
	}
	if h.unit != nil {
		return // systemctl start on a running unit does nothing
	}
	h.unit = startUnit(t, h.root, filepath.Join(h.root, "etc/systemd/system/outpost.service"))
}

// startUnit runs a systemd unit's ExecStart as systemd would, with its
// Environment and EnvironmentFile, in dir (its "/"), output appended to
// dir/journal. The process is killed when the test ends.
func startUnit(t *testing.T, dir, unit string) *proc {
	t.Helper()
	data, err := os.ReadFile(unit)
	if err != nil {
		t.Fatalf("systemctl was asked to start outpost, but: %v", err)
	}
	var argv, env []string
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		switch k {
		case "ExecStart":
			argv = strings.Fields(strings.TrimLeft(v, "-@:+!"))
		case "Environment":
			env = append(env, strings.Fields(v)...)
		case "EnvironmentFile":
			b, err := os.ReadFile(strings.TrimPrefix(v, "-"))
			if err != nil && !strings.HasPrefix(v, "-") {
				t.Fatalf("%s: EnvironmentFile: %v", unit, err)
			}
			for _, l := range strings.Split(string(b), "\n") {
				if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
					env = append(env, l)
				}
			}
		}
	}
	if len(argv) == 0 {
		t.Fatalf("%s has no ExecStart", unit)
	}
	journal, err := os.OpenFile(filepath.Join(dir, "journal"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { journal.Close() })
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir // systemd's default WorkingDirectory is /
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}, env...)
	cmd.Stdout, cmd.Stderr = journal, journal
	p := &proc{cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: ExecStart: %v", unit, err)
	}
	go func() {
		p.exitErr = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	return p
}

// checkUnit fails the test if h's node has exited.
func (g *guideRun) checkUnit(t *testing.T, h *guideHost) {
	t.Helper()
	if h.unit == nil {
		return
	}
	select {
	case <-h.unit.done:
		g.logJournals(t)
		t.Fatalf("outpost on %s exited: %v", h.name, h.unit.exitErr)
	default:
	}
}

func (g *guideRun) logJournals(t *testing.T) {
	t.Helper()
	for _, h := range g.nodes {
		if b, err := os.ReadFile(filepath.Join(h.root, "journal")); err == nil {
			t.Logf("journal of %s:\n%s", h.name, b)
		}
	}
}

var (
	printedToken = regexp.MustCompile(`(?m)^token: (\S+)$`)
	printedPin   = regexp.MustCompile(`--ca-pin (sha256:\S+)`)
)

// startAgent does section 9's prose (the token and pin that `tokens
// create` printed, into the agent host's shell) and leaves b running.
func (g *guideRun) startAgent(t *testing.T, b docBlock) {
	t.Helper()
	admin := g.adminNode(t, b)
	tok, pin := printedToken.FindStringSubmatch(admin.last), printedPin.FindStringSubmatch(admin.last)
	if tok == nil || pin == nil {
		t.Fatalf("%s needs the token and CA pin that `outpostctl tokens create` printed in the block before, which printed:\n%s", b, admin.last)
	}
	if code, out, errs := g.agent.sh.run(t, fmt.Sprintf("export OUTPOST_AGENT_TOKEN=%q\nCA_PIN=%q\n", tok[1], pin[1]), time.Minute); code != 0 {
		t.Fatalf("setting the token on the agent host: exit %d %s%s", code, out, errs)
	}
	g.agent.bg = g.agent.sh.start(t, g.command(t, g.agent, b))
}

// waitEnrolled waits, as the reader of the next block would, until the
// agent is listed as attached and healthy, asking with the same
// credentials the guide left in the node's shell.
func (g *guideRun) waitEnrolled(t *testing.T, h *guideHost) {
	t.Helper()
	if g.agent.bg == nil {
		t.Fatalf("no agent was started before waiting for it to enroll")
	}
	var last string
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-g.agent.bg.done:
			t.Fatalf("the agent exited: %v\n%s", g.agent.bg.exitErr, g.agent.bg.out.String())
		default:
		}
		code, out, errs := h.sh.run(t, "outpostctl agents list --tenant acme --json", time.Minute)
		var as []api.Agent
		if code == 0 && json.Unmarshal([]byte(out), &as) == nil && len(as) == 1 && as[0].Node != "" && as[0].Health == "healthy" {
			if as[0].Tenant != "acme" {
				t.Fatalf("the agent enrolled in tenant %q, not acme: %+v", as[0].Tenant, as[0])
			}
			return
		}
		last = fmt.Sprintf("exit %d\n%s%s", code, out, errs)
		if time.Now().After(deadline) {
			t.Fatalf("the agent was not listed healthy within 90s; last `outpostctl agents list --tenant acme --json`: %s\nagent output:\n%s", last, g.agent.bg.out.String())
		}
		time.Sleep(time.Second)
	}
}

// checkRegion checks the region the guide built, through the admin
// node's API with the admin token the guide found.
func (g *guideRun) checkRegion(t *testing.T) {
	t.Helper()
	token := readToken(t, filepath.Join(g.admin.root, "var/lib/outpost/admin.token"))
	addr := "http://" + g.admin.addr + ":7070"
	var r api.Region
	var last string
	waitFor(t, 60*time.Second, "status: three voters, a leader and a lease holder", func() bool {
		code, out, errs := outpostctl(t, g.bin, addr, token, "", "status", "--json")
		last = out + errs
		r = api.Region{}
		if code != 0 || json.Unmarshal([]byte(out), &r) != nil || len(r.Nodes) != 3 || r.Leader == "" || r.Lease == nil || r.Lease.Holder == "" {
			return false
		}
		leaders := 0
		for _, n := range r.Nodes {
			if n.Suffrage != "voter" || n.Gossip != "alive" {
				return false
			}
			if n.RaftState == "leader" {
				leaders++
			}
		}
		return leaders == 1
	})
	t.Logf("final status: %s", last)
	if r.Region != "eu-west" {
		t.Fatalf("region %q, want eu-west", r.Region)
	}
	var ids []string
	for i, n := range r.Nodes {
		ids = append(ids, n.ID)
		want := map[string]string{"n1": "127.0.0.2", "n2": "127.0.0.3", "n3": "127.0.0.4"}[n.ID]
		if n.AgentURL != "https://"+want+":7443" || n.Address != want+":7301" {
			t.Fatalf("node %d: %+v; want its Raft and agent ports on %s", i, n, want)
		}
	}
	sort.Strings(ids)
	if strings.Join(ids, ",") != "n1,n2,n3" {
		t.Fatalf("nodes %v, want n1,n2,n3", ids)
	}
	if code, out, errs := outpostctl(t, g.bin, addr, token, "", "kv", "get", "hello", "--consistent"); code != 0 || strings.TrimSpace(out) != "world" {
		t.Fatalf("the guide's kv put is not readable: exit %d %q %s", code, out, errs)
	}
}

// holdLock takes an exclusive lock on a file in the temp dir for the rest
// of the test, waiting up to wait for another process (another `go test`
// run on this machine) to release it.
func holdLock(t *testing.T, name string, wait time.Duration) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), name), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			t.Fatalf("lock %s (held by another test run on this machine?): %v", f.Name(), err)
		}
		time.Sleep(time.Second)
	}
	t.Cleanup(func() { f.Close() })
}
