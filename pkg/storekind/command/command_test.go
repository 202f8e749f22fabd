package command_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/storekind"
	"lifeboat.dev/pkg/storekind/command"
	"lifeboat.dev/pkg/storekind/storekindtest"
	"lifeboat.dev/pkg/testtool"
)

// atomicLoad writes stdin to $LIFEBOAT_TARGET through a temporary file, as
// a careful load command would.
var atomicLoad = []string{"sh", "-c", `cat > "$LIFEBOAT_TARGET.tmp" && mv "$LIFEBOAT_TARGET.tmp" "$LIFEBOAT_TARGET"`}

const seeded = "line one\nline two\n\x00binary\xff\n"

func TestConformance(t *testing.T) {
	storekindtest.Run(t, func(t *testing.T) storekindtest.Store {
		p := filepath.Join(t.TempDir(), "store.txt")
		if err := os.WriteFile(p, []byte(seeded), 0o644); err != nil {
			t.Fatal(err)
		}
		k, err := command.New(command.Options{Dump: []string{"cat", p}, Load: atomicLoad})
		if err != nil {
			t.Fatal(err)
		}
		return storekindtest.Store{
			Kind: k,
			Path: p,
			Change: func(t *testing.T) {
				if err := os.WriteFile(p, []byte("changed"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			Check: func(t *testing.T, target string) {
				t.Helper()
				b, err := os.ReadFile(target)
				if err != nil || string(b) != seeded {
					t.Fatalf("%s holds %q (%v), want %q", target, b, err, seeded)
				}
			},
		}
	})
}

func TestManifestRecordsLoadCommand(t *testing.T) {
	k, err := command.New(command.Options{Dump: []string{"echo", "hi"}, Load: atomicLoad})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	name, _, err := storekind.Backup(context.Background(), k, dir, manifest())
	if err != nil {
		t.Fatal(err)
	}
	m, err := backup.Verify(context.Background(), dir, name)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m.LoadCommand, atomicLoad) || m.StoreKind != "command" {
		t.Fatalf("manifest records store kind %q and load command %q, want command and %q", m.StoreKind, m.LoadCommand, atomicLoad)
	}
}

// TestNoShell: arguments reach the program as they are, never through a
// shell.
func TestNoShell(t *testing.T) {
	arg := `$HOME; echo pwned > /tmp/lifeboat-shell-probe`
	k, err := command.New(command.Options{Dump: []string{"echo", arg}})
	if err != nil {
		t.Fatal(err)
	}
	payload := t.TempDir()
	if _, err := k.Dump(context.Background(), payload); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(payload, command.PayloadName))
	if err != nil || string(b) != arg+"\n" {
		t.Fatalf("payload %q (%v), want the argument verbatim %q", b, err, arg+"\n")
	}
	if _, err := os.Stat("/tmp/lifeboat-shell-probe"); err == nil {
		t.Fatal("the argument went through a shell")
	}
}

func TestDumpFailuresSayWhy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dump    []string
		timeout time.Duration
		want    []string
	}{
		{"exit status and stderr", []string{"sh", "-c", "echo 'pg_dump: error: connection to server failed' >&2; exit 2"}, 0,
			[]string{"dump command", "exit status 2", "connection to server failed"}},
		{"missing program", []string{"lifeboat-no-such-dump-program"}, 0,
			[]string{"lifeboat-no-such-dump-program", "not found"}},
		{"hang", []string{"sh", "-c", "echo dumping >&2; sleep 600"}, 300 * time.Millisecond,
			[]string{"dump command", "timed out after 300ms", "dumping"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := command.New(command.Options{Dump: tc.dump, Timeout: tc.timeout})
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			_, _, err = storekind.Backup(context.Background(), k, dir, manifest())
			if err == nil {
				t.Fatal("a failing dump gave a backup")
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if des, _ := os.ReadDir(dir); len(des) != 0 {
				t.Errorf("a failed dump left %d entries in the backup directory", len(des))
			}
		})
	}
}

// TestTimeoutKillsTheWholeGroup: a dump that started children of its own
// is killed with them.
func TestTimeoutKillsTheWholeGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	k, err := command.New(command.Options{
		Dump:    []string{"sh", "-c", `sleep 600 & echo $! > "$PIDFILE"; wait`},
		Env:     []string{"PIDFILE=" + pidFile},
		Timeout: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Dump(context.Background(), t.TempDir()); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("dump: %v, want a timeout", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	testtool.WaitFor(t, 10*time.Second, func() error {
		if alive(pid) {
			return fmt.Errorf("the dump's child %d outlived the timeout", pid)
		}
		return nil
	})
}

func TestLoadFailuresSayWhy(t *testing.T) {
	payload := t.TempDir()
	if err := os.WriteFile(filepath.Join(payload, command.PayloadName), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, _ := command.New(command.Options{Dump: []string{"true"}})
	if err := k.Load(context.Background(), payload, "t"); err == nil || !strings.Contains(err.Error(), "no load command") {
		t.Errorf("Load with no load command: %v", err)
	}
	k, _ = command.New(command.Options{Dump: []string{"true"}, Load: []string{"sh", "-c", "echo 'psql: FATAL: role does not exist' >&2; exit 3"}})
	err := k.Load(context.Background(), payload, "t")
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "role does not exist") {
		t.Errorf("Load with a failing command: %v, want its exit status and stderr", err)
	}
	if _, err := command.New(command.Options{}); err == nil {
		t.Error("New accepted no dump command")
	}
}

func manifest() backup.Manifest {
	return backup.Manifest{Instance: "pg", Plan: "pg-hourly", Kind: backup.KindScheduled}
}

// alive reports whether pid is a live process (a zombie is dead).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
