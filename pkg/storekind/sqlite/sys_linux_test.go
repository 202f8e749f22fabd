package sqlite

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// TestReleaseMapDropsTheMappedPages: releaseMap finds this process's map of
// a file by its device and inode and drops its pages (nothing of it stays
// resident in the map), and the map still reads the file's bytes.
func TestReleaseMapDropsTheMappedPages(t *testing.T) {
	const size = 8 << 20
	p := filepath.Join(t.TempDir(), "mapped")
	want := bytes.Repeat([]byte("lifeboat"), size/8)
	if err := os.WriteFile(p, want, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	var sum int
	for i := 0; i < size; i += 4096 {
		sum += int(m[i])
	}
	if sum != size/4096*int('l') {
		t.Fatalf("read %d from the map", sum)
	}
	start := fmt.Sprintf("%x-", uintptr(unsafe.Pointer(&m[0])))
	if kb := residentKB(t, start); kb < size>>10/2 {
		t.Fatalf("%d KiB of the map resident after reading it all", kb)
	}
	releaseMap(p)
	if kb := residentKB(t, start); kb != 0 {
		t.Errorf("%d KiB of the map still resident after releaseMap", kb)
	}
	if !bytes.Equal(m, want) {
		t.Error("the map no longer reads the file's bytes")
	}
}

// residentKB is the Rss of this process's map that starts at start
// ("7f12...-"), from /proc/self/smaps.
func residentKB(t *testing.T, start string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skip(err)
	}
	in := false
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) >= 5 && strings.Contains(f[0], "-") { // a map's first line
			in = strings.HasPrefix(line, start)
			continue
		}
		if in && strings.HasPrefix(line, "Rss:") {
			kb, err := strconv.Atoi(strings.Fields(line)[1])
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Fatalf("no map at %s in /proc/self/smaps", start)
	return 0
}
