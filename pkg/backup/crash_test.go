package backup_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/storekind"
	"lifeboat.dev/pkg/storekind/sqlite"
	"lifeboat.dev/pkg/testtool"
)

var long = flag.Bool("long", false, "run the crash tests hundreds of times instead of 50")

// The crash-test subprocess's environment.
const (
	envHelperSrc = "LIFEBOAT_BACKUP_HELPER_SRC" // the SQLite store to back up
	envHelperDir = "LIFEBOAT_BACKUP_HELPER_DIR" // the backup directory
)

// TestCrashHelper is the subprocess of the crash tests: it backs up a SQLite
// database that a writer keeps changing, over and over, until it is killed.
func TestCrashHelper(t *testing.T) {
	src, dir := os.Getenv(envHelperSrc), os.Getenv(envHelperDir)
	if src == "" {
		t.Skip("crash-test subprocess only")
	}
	db, err := sql.Open("sqlite", "file:"+src+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	go func() {
		for {
			if _, err := db.Exec("INSERT INTO items(body) VALUES (randomblob(500))"); err != nil {
				fmt.Fprintln(os.Stderr, "writer:", err)
				os.Exit(3)
			}
		}
	}()
	k := sqlite.New(src)
	fmt.Println("ready")
	for {
		m := backup.Manifest{Instance: "crash", Plan: "crash", Kind: backup.KindScheduled}
		if _, _, err := storekind.Backup(context.Background(), k, dir, m); err != nil {
			fmt.Fprintln(os.Stderr, "backup:", err)
			os.Exit(2)
		}
	}
}

// startHelper starts the subprocess with extra environment and waits until
// it is about to take its first backup.
func startHelper(t *testing.T, src, dir string, env ...string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.timeout=10m")
	cmd.Env = append(os.Environ(), append([]string{envHelperSrc + "=" + src, envHelperDir + "=" + dir}, env...)...)
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- true
				break
			}
		}
		// Keep draining so the helper never blocks on a full pipe.
		for sc.Scan() {
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			cmd.Wait()
			t.Fatalf("the helper ended before it was ready: %s", stderr)
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the helper did not get ready: %s", stderr)
	}
	return cmd, stderr
}

// assertKilled fails t unless cmd ended by SIGKILL.
func assertKilled(t *testing.T, err error, stderr fmt.Stringer) {
	t.Helper()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("helper: %v, want death by SIGKILL", err)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v, want death by SIGKILL; stderr: %s", err, stderr)
	}
}

// seedStore creates the SQLite store the helper backs up.
func seedStore(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "store.db")
	db, err := sql.Open("sqlite", "file:"+src+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		"CREATE TABLE items (id INTEGER PRIMARY KEY, body BLOB)",
		`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000)
		 INSERT INTO items(body) SELECT randomblob(500) FROM n`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	return src
}

// checkDir verifies every backup in dir not verified before, cleans the
// temporary directories and checks nothing else is left but others. It
// returns how many temporary directories it removed.
func checkDir(t *testing.T, dir string, verified map[string]bool, others ...string) int {
	t.Helper()
	entries, err := backup.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if verified[e.Name] {
			continue
		}
		if _, err := backup.Verify(context.Background(), dir, e.Name); err != nil {
			t.Fatalf("after a crash, a backup under a final name does not verify: %v", err)
		}
		verified[e.Name] = true
	}
	removed, err := backup.CleanTemp(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	keep := map[string]bool{}
	for _, o := range others {
		keep[o] = true
	}
	for _, de := range des {
		if !verified[de.Name()] && !keep[de.Name()] {
			t.Fatalf("after a crash and CleanTemp, %s is in the backup directory", de.Name())
		}
	}
	for _, o := range others {
		if _, err := os.Stat(filepath.Join(dir, o)); err != nil {
			t.Fatalf("the operator's %s was touched: %v", o, err)
		}
	}
	return len(removed)
}

// underway is a condition: a backup is being written in dir, and when
// payload is set its payload file is there (copied, being checked or
// hashed). The temporary directory's name is Write's.
func underway(dir string, payload bool) func() error {
	return func() error {
		des, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, de := range des {
			if !strings.HasPrefix(de.Name(), ".tmp-backup-") {
				continue
			}
			if !payload {
				return nil
			}
			if _, err := os.Stat(filepath.Join(dir, de.Name(), sqlite.PayloadName)); err == nil {
				return nil
			}
		}
		if payload {
			return fmt.Errorf("no backup in %s has its payload written yet", dir)
		}
		return fmt.Errorf("no backup is being written in %s", dir)
	}
}

// TestCrashDuringBackup kills a process that keeps backing up a live SQLite
// database with SIGKILL in the middle of a backup (50 times, 500 with
// -long), at moments it waits to see rather than sleeps for: in turn,
// while the backup's temporary directory is there, and once its payload is
// written too (being checked or hashed). Every directory with a final name
// verifies afterwards, CleanTemp removes what is left, and nothing else in
// the directory is touched. (TestCrashAtEachStep kills at Write's later
// steps.)
func TestCrashDuringBackup(t *testing.T) {
	runs := 50
	if *long {
		runs = 500
	}
	src := seedStore(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "notes.txt"), "the operator's")
	if err := os.Mkdir(filepath.Join(dir, "backup-manual-copy"), 0o755); err != nil {
		t.Fatal(err)
	}

	verified := map[string]bool{}
	temps := 0
	for i := range runs {
		cmd, stderr := startHelper(t, src, dir)
		testtool.WaitFor(t, 60*time.Second, underway(dir, i%2 == 1))
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		assertKilled(t, cmd.Wait(), stderr)
		temps += checkDir(t, dir, verified, "notes.txt", "backup-manual-copy")
	}
	t.Logf("%d kills: %d complete backups verified, %d interrupted ones cleaned", runs, len(verified), temps)
	if temps == 0 {
		t.Error("no kill landed during a backup: the test proves nothing")
	}
	// Finally, all of them still verify.
	for name := range verified {
		if _, err := backup.Verify(context.Background(), dir, name); err != nil {
			t.Error(err)
		}
	}
}

// TestCrashAtEachStep kills the writer of the third backup at each step of
// Write: before the rename the backup is only a temporary directory; after
// it, it is complete and verifies.
func TestCrashAtEachStep(t *testing.T) {
	for _, tc := range []struct {
		point           string
		finals, cleaned int
	}{
		{"backup.write.after-fill", 2, 1},
		{"backup.write.before-rename", 2, 1},
		{"backup.write.after-rename", 3, 0},
	} {
		t.Run(tc.point, func(t *testing.T) {
			src := seedStore(t)
			dir := t.TempDir()
			cmd, stderr := startHelper(t, src, dir, "LIFEBOAT_FAULT="+tc.point, "LIFEBOAT_FAULT_AFTER=3")
			assertKilled(t, cmd.Wait(), stderr)
			verified := map[string]bool{}
			if cleaned := checkDir(t, dir, verified); cleaned != tc.cleaned || len(verified) != tc.finals {
				t.Fatalf("killed at %s: %d complete backups and %d temporary directories, want %d and %d",
					tc.point, len(verified), cleaned, tc.finals, tc.cleaned)
			}
		})
	}
}
