//go:build linux

package sqlite

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// copyRange copies up to n bytes of in at off to the same offset of out
// with copy_file_range, which leaves both descriptors' offsets alone (in
// is shared: heldFile), and returns how many it copied: fewer than n only
// at the end of in. Where copy_file_range cannot copy between the two
// files, it reads and writes at the offsets instead.
func copyRange(out, in *os.File, off, n int64) (int64, error) {
	var done int64
	for done < n {
		c, err := copyFileRange(out, in, off+done, n-done)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.ENOSYS || err == unix.EXDEV || err == unix.EOPNOTSUPP || err == unix.EINVAL:
			c, err := io.Copy(io.NewOffsetWriter(out, off+done), io.NewSectionReader(in, off+done, n-done))
			return done + c, err
		case err != nil:
			return done, fmt.Errorf("copy_file_range: %w", err)
		case c == 0:
			return done, nil // the end of in
		}
		done += c
	}
	return done, nil
}

// copyFileRange is one copy_file_range(2) of up to n bytes from in to out,
// both at off.
func copyFileRange(out, in *os.File, off, n int64) (int64, error) {
	rc, err := in.SyscallConn()
	if err != nil {
		return 0, err
	}
	wc, err := out.SyscallConn()
	if err != nil {
		return 0, err
	}
	var c int
	var cerr error
	err = rc.Control(func(rfd uintptr) {
		err := wc.Control(func(wfd uintptr) {
			roff, woff := off, off
			c, cerr = unix.CopyFileRange(int(rfd), &roff, int(wfd), &woff, int(n), 0)
		})
		if cerr == nil {
			cerr = err
		}
	})
	if err != nil {
		return 0, err
	}
	return int64(c), cerr
}

// sharedInProcess says whether a descriptor of this process other than f
// is open on the file fi describes, by the process's descriptor table
// (/proc/self/fd); true when it cannot tell.
func sharedInProcess(f *os.File, fi os.FileInfo) bool {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return true
	}
	own := ""
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { own = strconv.FormatUint(uint64(fd), 10) })
	}
	if own == "" {
		return true
	}
	for _, e := range ents {
		if e.Name() == own {
			continue
		}
		if st, err := os.Stat("/proc/self/fd/" + e.Name()); err == nil && os.SameFile(st, fi) {
			return true
		}
	}
	return false
}

// unlinked says whether f's file has been deleted (it has no name left).
func unlinked(f *os.File) bool {
	var st syscall.Stat_t
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = syscall.Fstat(int(fd), &st) }); err != nil || ferr != nil {
		return false
	}
	return st.Nlink == 0
}

// unmapStep is how much of a map releaseMap drops at once: about a
// millisecond of the kernel's work with the process's memory-map lock held.
const unmapStep = 16 << 20

// releaseMap drops, unmapStep at a time, the pages this process has mapped
// of the file at p (the integrity check's memory map of the copy), so that
// closing the connection that mapped it unmaps next to nothing.
//
// Unmapping a GiB of mapped pages in one munmap holds the process's
// memory-map lock for 50 to 80 ms, and every other thread of the process
// that maps or unmaps memory meanwhile (SQLite's allocator, Go's heap)
// waits for it: a writer on another database in this process (a service
// of lifeboat-self, the benchmark's writer) stalled that long. Dropping
// the pages first with MADV_DONTNEED, a slice at a time, leaves that lock
// free between slices. The map is of a file opened read-only, so nothing
// is lost: a later access would read the pages again from the page cache.
// Best effort: anything it cannot read or parse leaves the map to Close.
func releaseMap(p string) {
	fi, err := os.Stat(p)
	if err != nil {
		return
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return
	}
	// Each line: start-end perms offset major:minor inode path.
	dev := strconv.FormatUint(uint64(devMajor(st.Dev)), 16) + ":" + strconv.FormatUint(uint64(devMinor(st.Dev)), 16)
	ino := strconv.FormatUint(st.Ino, 10)
	for line := range strings.Lines(string(maps)) {
		f := strings.Fields(line)
		if len(f) < 5 || f[4] != ino || trimDev(f[3]) != dev {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		for a := start; a < end; a += unmapStep {
			_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, uintptr(a), uintptr(min(unmapStep, end-a)), syscall.MADV_DONTNEED)
		}
	}
}

// trimDev drops the leading zeros /proc/self/maps pads a device's major
// and minor numbers with (fe:00, 08:01).
func trimDev(s string) string {
	major, minor, _ := strings.Cut(s, ":")
	trim := func(x string) string {
		if x = strings.TrimLeft(x, "0"); x == "" {
			return "0"
		}
		return x
	}
	return trim(major) + ":" + trim(minor)
}

// devMajor and devMinor split a Linux device number (glibc's encoding).
func devMajor(dev uint64) uint32 {
	return uint32((dev>>8)&0xfff) | uint32((dev>>32)&^uint64(0xfff))
}

func devMinor(dev uint64) uint32 {
	return uint32(dev&0xff) | uint32((dev>>12)&^uint64(0xff))
}
