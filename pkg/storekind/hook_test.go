package storekind_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/storekind"
	"lifeboat.dev/pkg/storekind/command"
	"lifeboat.dev/pkg/testtool"
)

// logStep returns a command that appends step to the file at log.
func logStep(log, step string) []string {
	return []string{"sh", "-c", `echo "$1" >> "$0"`, log, step}
}

func readLog(t *testing.T, log string) string {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

func TestHooks(t *testing.T) {
	fail := func(msg string) []string { return []string{"sh", "-c", `echo "$0" >&2; exit 4`, msg} }
	for _, tc := range []struct {
		name      string
		pre, post []string
		preTime   time.Duration
		dumpFails bool
		wantLog   string
		wantErr   []string // empty: the backup succeeds
	}{
		{name: "freeze dump thaw", pre: []string{"freeze"}, post: []string{"thaw"}, wantLog: "freeze dump thaw"},
		{name: "only post", post: []string{"thaw"}, wantLog: "dump thaw"},
		{name: "pre fails", pre: fail("fsfreeze: /data: device busy"), post: []string{"thaw"}, wantLog: "",
			wantErr: []string{"pre hook", "exit status 4", "fsfreeze: /data: device busy", "not started"}},
		{name: "pre hangs", pre: []string{"sh", "-c", "echo freezing >&2; sleep 600"}, preTime: 300 * time.Millisecond, post: []string{"thaw"}, wantLog: "",
			wantErr: []string{"pre hook", "sleep 600", "timed out after 300ms", "freezing"}},
		{name: "dump fails, post still runs", pre: []string{"freeze"}, post: []string{"thaw"}, dumpFails: true, wantLog: "freeze dump thaw",
			wantErr: []string{"dump command", "exit status 1"}},
		{name: "post fails", pre: []string{"freeze"}, post: fail("thaw: not frozen"), wantLog: "freeze dump",
			wantErr: []string{"post hook", "exit status 4", "thaw: not frozen", "may still be frozen"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "log")
			steps := func(argv []string) []string {
				if len(argv) == 1 {
					return logStep(log, argv[0])
				}
				return argv
			}
			dump := []string{"sh", "-c", `echo dump >> "$0"; echo payload`, log}
			if tc.dumpFails {
				dump = []string{"sh", "-c", `echo dump >> "$0"; exit 1`, log}
			}
			k, err := command.New(command.Options{Dump: dump})
			if err != nil {
				t.Fatal(err)
			}
			var pre, post *storekind.Hook
			if tc.pre != nil {
				pre = &storekind.Hook{Command: steps(tc.pre), Timeout: tc.preTime}
			}
			if tc.post != nil {
				post = &storekind.Hook{Command: steps(tc.post)}
			}
			dir := t.TempDir()
			_, _, err = storekind.Backup(context.Background(), storekind.WithHooks(k, pre, post), dir,
				backup.Manifest{Instance: "i", Plan: "p", Kind: backup.KindScheduled})
			if got := readLog(t, log); got != tc.wantLog {
				t.Errorf("steps run: %q, want %q", got, tc.wantLog)
			}
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("the backup succeeded")
			}
			t.Log(err)
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if des, _ := os.ReadDir(dir); len(des) != 0 {
				t.Errorf("a failed backup left %d entries in the backup directory", len(des))
			}
		})
	}
}

// TestPostHookRunsAfterCancel: a dump cancelled after the freeze still
// thaws.
func TestPostHookRunsAfterCancel(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log")
	k, err := command.New(command.Options{Dump: []string{"sh", "-c", `echo dump >> "$0"; sleep 600`, log}})
	if err != nil {
		t.Fatal(err)
	}
	hk := storekind.WithHooks(k, &storekind.Hook{Command: logStep(log, "freeze")}, &storekind.Hook{Command: logStep(log, "thaw")})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	payload := t.TempDir()
	go func() {
		_, err := hk.Dump(ctx, payload)
		done <- err
	}()
	// Cancel once the dump is running.
	testtool.WaitFor(t, 20*time.Second, func() error {
		if b, _ := os.ReadFile(log); strings.Join(strings.Fields(string(b)), " ") != "freeze dump" {
			return fmt.Errorf("steps run: %q, want the freeze and the dump", b)
		}
		return nil
	})
	cancel()
	err = <-done
	if err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("cancelled dump: %v", err)
	}
	if got := readLog(t, log); got != "freeze dump thaw" {
		t.Fatalf("steps run: %q, want the thaw after the cancelled dump", got)
	}
}

func TestHookNeedsACommand(t *testing.T) {
	err := storekind.Hook{Name: "pre"}.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "pre hook") {
		t.Fatalf("a hook with no command: %v", err)
	}
}
