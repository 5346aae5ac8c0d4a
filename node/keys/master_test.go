package keys

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Environment variable names only these tests use.
const (
	testEnv     = "OUTPOST_TEST_KEYS_MASTER_KEY"
	testPrevEnv = "OUTPOST_TEST_KEYS_PREVIOUS_MASTER_KEY"
)

func b64(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

// writeKeyFile writes content to a file named name in dir with mode.
func writeKeyFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is filtered by the umask; set it exactly.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestGenerateKey(t *testing.T) {
	a, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := GenerateKey()
	if a == b {
		t.Fatal("two generated keys are equal")
	}
	t.Setenv(testEnv, a)
	k, err := ReadKey(Source{Env: testEnv})
	if err != nil || len(k) != KeySize {
		t.Fatalf("generated key does not read back: %d bytes, %v", len(k), err)
	}
}

func TestReadKey(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs Unix permission bits")
	}
	dir := t.TempDir()
	fileKey, envKey := testKey("file"), testKey("env")
	good := writeKeyFile(t, dir, "good.key", "\n  "+b64(fileKey)+"\n\n", 0o600)
	readOnly := writeKeyFile(t, dir, "ro.key", b64(fileKey), 0o400)
	groupReadable := writeKeyFile(t, dir, "group.key", b64(fileKey), 0o640)
	worldReadable := writeKeyFile(t, dir, "world.key", b64(fileKey), 0o604)
	notBase64 := writeKeyFile(t, dir, "bad.key", "not*base64!", 0o600)
	short := writeKeyFile(t, dir, "short.key", b64(fileKey[:16]), 0o600)
	missing := filepath.Join(dir, "missing.key")

	for _, tc := range []struct {
		name    string
		src     Source
		env     *string // value of testEnv; nil leaves it unset
		want    []byte
		wantErr []string // substrings of the error
		noKey   bool     // the error must wrap ErrNoKey
	}{
		{name: "file", src: Source{File: good}, want: fileKey},
		{name: "read-only file", src: Source{File: readOnly}, want: fileKey},
		{name: "env wins over file", src: Source{File: good, Env: testEnv}, env: ptr(" " + b64(envKey) + "\n"), want: envKey},
		{name: "env wins over a missing file", src: Source{File: missing, Env: testEnv}, env: ptr(b64(envKey)), want: envKey},
		{name: "unset env falls back to file", src: Source{File: good, Env: testEnv}, want: fileKey},
		{name: "empty env falls back to file", src: Source{File: good, Env: testEnv}, env: ptr("  "), want: fileKey},
		{name: "nothing configured", src: Source{}, noKey: true},
		{name: "unset env, no file", src: Source{Env: testEnv}, noKey: true},
		{name: "missing file", src: Source{File: missing}, wantErr: []string{missing, "does not exist", "outpost keys generate > " + missing}},
		{name: "group-readable file", src: Source{File: groupReadable}, wantErr: []string{groupReadable, "0640", "chmod 600 " + groupReadable}},
		{name: "world-readable file", src: Source{File: worldReadable}, wantErr: []string{worldReadable, "chmod 600"}},
		{name: "directory", src: Source{File: dir}, wantErr: []string{dir, "not a regular file"}},
		{name: "file not base64", src: Source{File: notBase64}, wantErr: []string{"master key file " + notBase64, "not base64", "outpost keys generate"}},
		{name: "file wrong length", src: Source{File: short}, wantErr: []string{"master key file " + short, "16 bytes, want 32"}},
		{name: "env not base64", src: Source{Env: testEnv}, env: ptr("%%%"), wantErr: []string{"environment variable " + testEnv, "not base64"}},
		{name: "env wrong length", src: Source{Env: testEnv}, env: ptr(b64(make([]byte, 48))), wantErr: []string{"environment variable " + testEnv, "48 bytes, want 32"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != nil {
				t.Setenv(testEnv, *tc.env)
			} else {
				unsetenv(t, testEnv)
			}
			got, err := ReadKey(tc.src)
			switch {
			case tc.noKey:
				if !errors.Is(err, ErrNoKey) {
					t.Fatalf("err = %v, want ErrNoKey", err)
				}
			case tc.wantErr != nil:
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				if errors.Is(err, ErrNoKey) {
					t.Errorf("a configured but unusable source must not be ErrNoKey: %v", err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != string(tc.want) {
					t.Fatal("wrong key returned")
				}
			}
		})
	}
}

func TestReadKeyErrorsHideKey(t *testing.T) {
	// A key of the wrong length must not be echoed back.
	secret := b64(testKey("leak")[:24])
	t.Setenv(testEnv, secret)
	_, err := ReadKey(Source{Env: testEnv})
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("err = %v", err)
	}
}

func TestLoadMaster(t *testing.T) {
	dir := t.TempDir()
	curFile := writeKeyFile(t, dir, "master.key", b64(testKey("cur")), 0o600)
	prevFile := writeKeyFile(t, dir, "previous.key", b64(testKey("prev")), 0o600)
	badPrev := writeKeyFile(t, dir, "bad-previous.key", b64(testKey("prev")), 0o644)

	t.Run("current only", func(t *testing.T) {
		p, err := LoadMaster(Source{File: curFile}, Source{})
		if err != nil {
			t.Fatal(err)
		}
		if p.KeyID() != idOf(testKey("cur")).String() || p.PreviousKeyID() != "" {
			t.Fatalf("ids %s, %q", p.KeyID(), p.PreviousKeyID())
		}
	})
	t.Run("current and previous", func(t *testing.T) {
		unsetenv(t, testEnv)
		p, err := LoadMaster(Source{File: curFile, Env: testEnv}, Source{File: prevFile, Env: testPrevEnv})
		if err != nil {
			t.Fatal(err)
		}
		if p.PreviousKeyID() != idOf(testKey("prev")).String() {
			t.Fatalf("previous id %q", p.PreviousKeyID())
		}
	})
	t.Run("env over file", func(t *testing.T) {
		t.Setenv(testEnv, b64(testKey("env")))
		p, err := LoadMaster(Source{File: curFile, Env: testEnv}, Source{})
		if err != nil {
			t.Fatal(err)
		}
		if p.KeyID() != idOf(testKey("env")).String() {
			t.Fatal("the environment variable did not win over the file")
		}
	})
	t.Run("missing current says how to make one", func(t *testing.T) {
		unsetenv(t, testEnv)
		_, err := LoadMaster(Source{Env: testEnv}, Source{File: prevFile})
		if !errors.Is(err, ErrNoKey) {
			t.Fatalf("err = %v, want ErrNoKey", err)
		}
		for _, w := range []string{"outpost keys generate > master.key", "chmod 600", "keys.master_key_file", testEnv} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not mention %q", err, w)
			}
		}
	})
	t.Run("bad previous is an error", func(t *testing.T) {
		_, err := LoadMaster(Source{File: curFile}, Source{File: badPrev})
		if err == nil || !strings.Contains(err.Error(), "previous master key: ") || !strings.Contains(err.Error(), "chmod 600 "+badPrev) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("previous equal to current", func(t *testing.T) {
		_, err := LoadMaster(Source{File: curFile}, Source{File: curFile})
		if err == nil || !strings.Contains(err.Error(), "previous master key is the current one") {
			t.Fatalf("err = %v", err)
		}
	})
}

func ptr(s string) *string { return &s }

// unsetenv unsets name for the test and restores it after.
func unsetenv(t *testing.T, name string) {
	t.Helper()
	t.Setenv(name, "") // registers the restore
	os.Unsetenv(name)
}
