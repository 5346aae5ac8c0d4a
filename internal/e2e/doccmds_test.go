package e2e

// Commands in docs are tests: a guide's shell blocks are extracted from
// its Markdown and run in order with the real binaries, so a change that
// breaks the guide fails a test. deploy_test.go runs deploy/README.md this
// way; the helpers here know nothing about that guide.
//
// A document marks what a test should do with a block by an HTML comment
// on the line before its fence, invisible when rendered:
//
//	<!-- test: on each node -->
//	```sh
//	outpostctl status
//	```
//
// The words after "test:" are the block's Mark; their meaning belongs to
// the test that runs the document.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// docBlock is one fenced code block of a Markdown file.
type docBlock struct {
	Path string // the file it is in
	Line int    // line of the opening fence, from 1
	Lang string // first word of the info string: "sh", "text", or ""
	Mark string // the MARK of a `<!-- test: MARK -->` line just before the fence, or ""
	Code string // the block's lines, fence indentation removed, each ending in "\n"
}

// String names the block for messages: deploy/README.md:42 (the path
// without the ../ that leads from the test's package to the repository).
func (b docBlock) String() string {
	p := filepath.ToSlash(filepath.Clean(b.Path))
	for strings.HasPrefix(p, "../") {
		p = p[3:]
	}
	return fmt.Sprintf("%s:%d", p, b.Line)
}

var (
	fenceOpen = regexp.MustCompile("^(\\s*)(`{3,}|~{3,})\\s*([^`]*)$")
	markLine  = regexp.MustCompile(`^\s*<!--\s*test:\s*(.*?)\s*-->\s*$`)
)

// docBlocks returns every fenced code block of the Markdown file at path,
// in order. Fences may be indented (inside list items); an unclosed fence
// fails the test rather than being skipped.
func docBlocks(t *testing.T, path string) []docBlock {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		blocks []docBlock
		cur    *docBlock
		fence  string
		indent int
		prev   string // the last non-blank line outside a block
	)
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if cur == nil {
			m := fenceOpen.FindStringSubmatch(line)
			if m == nil {
				if strings.TrimSpace(line) != "" {
					prev = line
				}
				continue
			}
			cur = &docBlock{Path: path, Line: n}
			if f := strings.Fields(m[3]); len(f) > 0 {
				cur.Lang = f[0]
			}
			if mm := markLine.FindStringSubmatch(prev); mm != nil {
				cur.Mark = mm[1]
			}
			fence, indent = m[2], len(m[1])
			continue
		}
		if t := strings.TrimSpace(line); strings.HasPrefix(t, fence[:1]) && strings.Trim(t, fence[:1]) == "" && len(t) >= len(fence) {
			blocks = append(blocks, *cur)
			cur, prev = nil, ""
			continue
		}
		// Remove up to the fence's own indentation, as CommonMark does.
		for i := 0; i < indent && strings.HasPrefix(line, " "); i++ {
			line = line[1:]
		}
		cur.Code += line + "\n"
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("%s: the code block opened here is never closed", cur)
	}
	return blocks
}

// shellBlocks returns the blocks of the Markdown file at path whose
// language is sh, bash or shell: the commands a reader types.
func shellBlocks(t *testing.T, path string) []docBlock {
	t.Helper()
	var out []docBlock
	for _, b := range docBlocks(t, path) {
		switch b.Lang {
		case "sh", "bash", "shell":
			out = append(out, b)
		}
	}
	return out
}

// shellSession runs blocks with bash the way a reader types them into one
// terminal: each block sees the variables the earlier ones set (exported
// or not), and starts in Dir. Every block runs under `set -euo pipefail`,
// so a failing command or an unset variable fails the block.
type shellSession struct {
	Dir     string   // working directory of every block
	Env     []string // the whole environment: nothing is inherited
	Prelude string   // bash run before each block, e.g. stand-in functions
	state   string   // file the variables are kept in between blocks
}

// newShellSession makes a session whose state lives under t.TempDir.
func newShellSession(t *testing.T, dir string, env []string, prelude string) *shellSession {
	t.Helper()
	return &shellSession{Dir: dir, Env: env, Prelude: prelude, state: filepath.Join(t.TempDir(), "shell-state")}
}

// bashVars are bash's own variables, which a block's state must not carry
// over (some are read-only, others describe the finished shell).
const bashVars = `^(_.*|BASH.*|COMP_.*|DIRSTACK|EPOCH.*|EUID|FUNCNAME|GROUPS|HIST.*|HOSTNAME|HOSTTYPE|IFS|LINENO|MACHTYPE|OLDPWD|OPT.*|OSTYPE|PIPESTATUS|PPID|PS[0-9]|PWD|RANDOM|SECONDS|SHELLOPTS|SHLVL|SRANDOM|UID|COLUMNS|LINES)$`

// script wraps code: state in, prelude, code; with save, the variables
// are written back on exit, whatever the block's outcome.
func (s *shellSession) script(code string, save bool) string {
	var b strings.Builder
	if save {
		fmt.Fprintf(&b, `__doc_save() {
	local rc=$?
	set +eu +o pipefail
	local vars
	vars=$(compgen -v | grep -Ev '%s')
	# declare -p with no names would print every variable.
	{ if [ -n "$vars" ]; then declare -p $vars 2>/dev/null | grep -Ev '^declare -[a-zA-Z]*r'; fi; } > %q.tmp
	mv -f %q.tmp %q
	exit $rc
}
trap __doc_save EXIT
`, bashVars, s.state, s.state, s.state)
	}
	fmt.Fprintf(&b, "if [ -f %q ]; then . %q; fi\n", s.state, s.state)
	b.WriteString(s.Prelude)
	b.WriteString("\nset -euo pipefail\n")
	b.WriteString(code)
	return b.String()
}

func (s *shellSession) command(ctx context.Context, code string, save bool) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", "-c", s.script(code, save))
	cmd.Dir, cmd.Env = s.Dir, s.Env
	// Its own process group, so that what the block starts ends with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs code to completion (killing it after timeout) and returns its
// exit status and output; the variables it set carry over.
func (s *shellSession) run(t *testing.T, code string, timeout time.Duration) (exit int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := s.command(ctx, code, true)
	var out, errb syncBuf
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("block did not finish within %v:\n%s\noutput:\n%s%s", timeout, code, out.String(), errb.String())
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	case err != nil:
		t.Fatalf("running bash: %v", err)
	}
	return 0, out.String(), errb.String()
}

// start runs code in the background, as a reader leaves a command running
// in a terminal; its process group is killed when the test ends.
func (s *shellSession) start(t *testing.T, code string) *proc {
	t.Helper()
	cmd := s.command(context.Background(), code, false)
	p := &proc{cmd: cmd, out: &syncBuf{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.exitErr = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("output of the background block:\n%s\n---\n%s", code, p.out.String())
		}
	})
	return p
}

// The extraction finds fenced blocks with their language, mark and line,
// indented or not, and refuses an unclosed fence.
func TestDocBlocks(t *testing.T) {
	doc := filepath.Join(t.TempDir(), "guide.md")
	const md = "# Guide\n" +
		"<!-- test: on n1 -->\n" +
		"```sh\n" +
		"echo one\n" +
		"```\n" +
		"\n" +
		"<!-- test: not run: needs root -->\n" +
		"\n" +
		"~~~bash title=x\n" +
		"echo two\n" +
		"```\n" +
		"~~~\n" +
		"- a list item:\n" +
		"\n" +
		"  ```\n" +
		"  output\n" +
		"    indented\n" +
		"  ```\n" +
		"<!-- test: stray -->\n" +
		"text between\n" +
		"```shell\n" +
		"echo three\n" +
		"````\n"
	if err := os.WriteFile(doc, []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	got := docBlocks(t, doc)
	want := []docBlock{
		{Line: 3, Lang: "sh", Mark: "on n1", Code: "echo one\n"},
		{Line: 9, Lang: "bash", Mark: "not run: needs root", Code: "echo two\n```\n"},
		{Line: 15, Lang: "", Code: "output\n  indented\n"},
		{Line: 21, Lang: "shell", Code: "echo three\n"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d blocks, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		want[i].Path = doc
		if got[i] != want[i] {
			t.Errorf("block %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	if sh := shellBlocks(t, doc); len(sh) != 3 || sh[2].Code != "echo three\n" {
		t.Errorf("shellBlocks: %+v", sh)
	}
	if s := (docBlock{Path: "../../deploy/README.md", Line: 7}).String(); s != "deploy/README.md:7" {
		t.Errorf("String() = %q", s)
	}
}

// A session keeps variables from block to block, exported or not, and a
// failing command or an unset variable fails its block.
func TestShellSession(t *testing.T) {
	s := newShellSession(t, t.TempDir(), []string{"PATH=/usr/bin:/bin", "GIVEN=env"}, "greet() { echo \"hi $1\"; }\n")
	steps := []struct {
		code, out string
		exit      int
	}{
		{"A=1\nexport B='two words'\n", "", 0},
		{"echo \"$A $B $GIVEN\"; greet x; sh -c 'echo ${B:-unexported}'\n", "1 two words env\nhi x\ntwo words\n", 0},
		{"A=3; false; echo not reached\n", "", 1},
		{"echo $A\n", "3\n", 0}, // the state is saved even when a block fails
		{"echo $NOT_SET\n", "", 1},
		{"false | true\n", "", 1},
	}
	for i, st := range steps {
		code, out, errs := s.run(t, st.code, 30*time.Second)
		if code != st.exit || out != st.out {
			t.Fatalf("step %d %q: exit %d, output %q %s; want exit %d, %q", i, st.code, code, out, errs, st.exit, st.out)
		}
	}
}
