package presence

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the data directory's lock.
const LockFile = "LOCK"

// DirLock is a data directory held by this process (flock on
// <data>/LOCK, which holds the pid). The kernel lets it go when the
// process ends, by kill -9 too.
type DirLock struct {
	Dir string
	f   *os.File
}

// LockedError refuses a data directory another live process holds.
type LockedError struct {
	Dir string
	// PID is the holder's, as it wrote it in the lock file; 0 when not
	// (yet) readable.
	PID int
}

func (e *LockedError) Error() string {
	pid := "pid unknown"
	if e.PID > 0 {
		pid = "pid " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("data directory %s is in use by another lifeboat process (%s holds %s): stop that process, or give this one another --data",
		e.Dir, pid, filepath.Join(e.Dir, LockFile))
}

// LockDir creates dir if needed and locks it for this process's life; a
// *LockedError, naming the holder's pid, when another process holds it.
func LockDir(dir string) (*DirLock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("presence: data directory: %w", err)
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("presence: data directory lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			data, _ := os.ReadFile(path)
			pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
			return nil, &LockedError{Dir: dir, PID: pid}
		}
		return nil, fmt.Errorf("presence: lock %s: %w", path, err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt(pid, 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("presence: lock %s: %w", path, err)
	}
	return &DirLock{Dir: dir, f: f}, nil
}

// Unlock lets the directory go (the lock file stays: removing it would let
// a waiting process lock a file nobody else opens).
func (l *DirLock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the only descriptor drops the flock
	l.f = nil
	return err
}
