package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// goBench runs `go test -bench pattern` in the package directory pkg (from
// the repository root) and returns each benchmark's metrics by name, e.g.
// results["BenchmarkQueries/embedded"]["queries/s"].
func goBench(pkg, pattern, benchtime string) (map[string]map[string]float64, error) {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", pattern, "-benchtime", benchtime, "-count", "1", ".")
	cmd.Dir = pkg
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go test -bench %s in %s: %w\n%s", pattern, pkg, err, out)
	}
	results := map[string]map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndex(name, "-"); i > 0 {
			name = name[:i] // drop the GOMAXPROCS suffix
		}
		m := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				m[f[i+1]] = v
			}
		}
		results[name] = m
	}
	if len(results) == 0 {
		return nil, fmt.Errorf("go test -bench %s in %s printed no benchmark:\n%s", pattern, pkg, out)
	}
	return results, nil
}

// benchDNS measures the dns-updater: InstanceActivated to a verified answer
// for the embedded server and a real BIND, and queries per second of the
// embedded server against BIND serving the same zone.
func benchDNS() (*Report, error) {
	r := newReport("dns")
	flow, err := goBench("services/dns-updater", "BenchmarkActivationToVerified", "100x")
	if err != nil {
		return nil, err
	}
	for name, m := range flow {
		r.Results[strings.TrimPrefix(name, "Benchmark")+"_ms"] = round2(m["ns/op"] / 1e6)
	}
	qps, err := goBench("services/dns-updater/provider/embedded", "BenchmarkQueries", "2s")
	if err != nil {
		return nil, err
	}
	for name, m := range qps {
		r.Results[strings.TrimPrefix(name, "Benchmark")+"_queries_per_s"] = round(m["queries/s"])
	}
	return r, nil
}
