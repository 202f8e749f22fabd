package presence_test

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"lifeboat.dev/pkg/presence"
)

func TestASecondLockOfTheDataDirectoryIsRefusedNamingThePID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // created by LockDir
	l, err := presence.LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := os.ReadFile(filepath.Join(dir, presence.LockFile))
	if strings.TrimSpace(string(pid)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("LOCK holds %q, want this pid", pid)
	}
	// flock is per open file: a second open in this process conflicts
	// just as another process's would.
	_, err = presence.LockDir(dir)
	var le *presence.LockedError
	if !errors.As(err, &le) || le.PID != os.Getpid() {
		t.Fatalf("second lock: %v, want a *LockedError naming pid %d", err, os.Getpid())
	}
	for _, want := range []string{dir, "pid " + strconv.Itoa(os.Getpid()), "--data"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %s", want, err)
		}
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	l2, err := presence.LockDir(dir)
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	_ = l2.Unlock()
}

func TestTheNonceIsCreatedOnceAndKept(t *testing.T) {
	dir := t.TempDir()
	n1, err := presence.LoadNonce(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, presence.NonceFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("nonce file mode %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if raw, err := hex.DecodeString(strings.TrimSpace(string(data))); err != nil || len(raw) != 32 {
		t.Fatalf("nonce file %q, want 32 bytes in hex", data)
	}
	n2, err := presence.LoadNonce(dir)
	if err != nil || n2.Hash() != n1.Hash() {
		t.Fatalf("second load: %v, hash %s, want %s", err, n2.Hash(), n1.Hash())
	}
	other, _ := presence.LoadNonce(t.TempDir())
	if other.Hash() == n1.Hash() {
		t.Fatal("two directories share a nonce")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want the nonce only (no temporary left)", len(entries))
	}
	if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := presence.LoadNonce(dir); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("damaged nonce: %v, want refused", err)
	}
}
