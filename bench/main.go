// Command bench measures Lifeboat against the bars of DESIGN §5 and writes a
// JSON report per area to -out (bench/out/ from `make bench`), with peers
// measured in the same run on the same machine, and a summary on stdout.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"lifeboat.dev/pkg/config"
)

// Report is one area's results.
type Report struct {
	Area      string          `json:"area"`
	Host      string          `json:"host"`
	CPUs      int             `json:"cpus"`
	GoVersion string          `json:"go_version"`
	Started   time.Time       `json:"started"`
	Results   map[string]any  `json:"results"`
	Targets   map[string]any  `json:"targets"`
	Verdicts  map[string]bool `json:"verdicts"`
}

func newReport(area string) *Report {
	host, _ := os.Hostname()
	return &Report{Area: area, Host: host, CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Started: time.Now().UTC(),
		Results: map[string]any{}, Targets: map[string]any{}, Verdicts: map[string]bool{}}
}

func main() {
	out := flag.String("out", "bench/out", "directory for the JSON reports")
	bin := flag.String("lifeboat", "bin/lifeboat", "the lifeboat binary (for start-up time and the cluster)")
	events := flag.Int("events", 100000, "events in the consume benchmark's backlog")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	clusterEvents := flag.Int("cluster-events", 20000, "HostDown events the three-host cluster benchmark publishes")
	only := flag.String("areas", "", "comma-separated areas to run (events, dns, backup, cluster, sync); default all")
	backupBytes := flag.String("backup-bytes", "1GiB", "size of the SQLite database the backup benchmark backs up")
	syncBytes := flag.String("sync-bytes", "1GiB", "size of the SQLite database the sync benchmark ships")
	backupDir := flag.String("backup-dir", filepath.Join(os.TempDir(), "lifeboat-bench-backup"), "where the backup benchmark keeps its generated database between runs")
	flag.Parse()
	backupSize, err := config.ParseBytes(*backupBytes)
	if err != nil {
		fail(fmt.Errorf("-backup-bytes: %w", err))
	}
	syncSize, err := config.ParseBytes(*syncBytes)
	if err != nil {
		fail(fmt.Errorf("-sync-bytes: %w", err))
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fail(err)
	}
	areas := []struct {
		name string
		run  func() (*Report, error)
	}{
		{"events", func() (*Report, error) {
			r, err := benchEvents(*events)
			if err == nil {
				err = benchStartup(r, *bin)
			}
			return r, err
		}},
		{"dns", benchDNS},
		{"backup", func() (*Report, error) { return benchBackup(backupSize, *backupDir) }},
		{"cluster", func() (*Report, error) { return benchCluster(*bin, *clusterEvents) }},
		{"sync", func() (*Report, error) { return benchSync(syncSize, *backupDir) }},
	}
	failed := false
	for _, a := range areas {
		if *only != "" && !slices.Contains(strings.Split(*only, ","), a.name) {
			continue
		}
		r, err := a.run()
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench %s: %v\n", a.name, err)
			failed = true
			continue
		}
		path := filepath.Join(*out, r.Area+".json")
		b, _ := json.MarshalIndent(r, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			fail(err)
		}
		summarize(r, path)
	}
	if failed {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func summarize(r *Report, path string) {
	fmt.Printf("== %s (%s)\n", r.Area, path)
	for _, k := range slices.Sorted(maps.Keys(r.Results)) {
		fmt.Printf("  %-40s %v\n", k, r.Results[k])
	}
	for _, k := range slices.Sorted(maps.Keys(r.Verdicts)) {
		mark := "MEETS"
		if !r.Verdicts[k] {
			mark = "MISSES"
		}
		fmt.Printf("  %-6s %s (target %v)\n", mark, k, r.Targets[k])
	}
}

func fail(err error) {
	pprof.StopCPUProfile()
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}
