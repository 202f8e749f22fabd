package config

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseBytes reads a size such as 512KiB, 20MiB, 1GiB, 10MB or 4096
// (bytes): binary units (KiB, MiB, GiB, TiB) are powers of 1024, decimal
// ones (KB, MB, GB, TB) powers of 1000.
func ParseBytes(s string) (int64, error) {
	num := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{
		{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1},
	} {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n <= 0 || n*float64(mult) >= 1<<62 {
		return 0, fmt.Errorf("%q is not a size: want a positive number with a unit such as 512KiB, 20MiB or 1GiB", s)
	}
	return int64(n * float64(mult)), nil
}

// ParseRate reads a rate in bytes a second such as 20MiB/s (the /s may be
// left out).
func ParseRate(s string) (int64, error) {
	n, err := ParseBytes(strings.TrimSuffix(strings.TrimSpace(s), "/s"))
	if err != nil {
		return 0, fmt.Errorf("%q is not a rate: want bytes a second such as 20MiB/s or 500KiB/s", s)
	}
	return n, nil
}
