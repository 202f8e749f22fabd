// Package benchmark measures backup-scheduler against DESIGN §5's bars, with
// its peers in the same run: a backup of a SQLite database under about 1000
// small write transactions a second, against `sqlite3 .backup` and `cp` of
// the same file, with the writer's longest stall during each; and a
// retention pass over a catalog of 100k backups. bench/main.go (make
// bench) calls BenchBackup and writes the result as JSON.
package benchmark

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver

	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/schedule"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/pkg/storekind/sqlite"
	backupscheduler "lifeboat.dev/services/backup-scheduler"
	"lifeboat.dev/services/backup-scheduler/internal/db"
	lbsql "lifeboat.dev/sql"
)

// WriterRate is the writer's target: small transactions per second.
const WriterRate = 1000

// CatalogSize is the number of backups in the retention benchmark's catalog.
const CatalogSize = 100_000

// rowBytes is the size of one row of the generated database.
const rowBytes = 4000

// BenchBackup builds (or reuses) a SQLite database of about sizeBytes in
// dir and, while a writer commits about WriterRate small transactions a
// second, times `cp`, `sqlite3 .backup` and lifeboat's backup of it
// (backup.Write with the sqlite kind: online copy, integrity_check,
// SHA-256 and fsync of every file), recording the writer's longest commit
// during each. Then it times a retention pass over a catalog of
// CatalogSize backups. The sqlite3 CLI must be installed. Results are in
// seconds, milliseconds and ratios, keyed by name.
func BenchBackup(ctx context.Context, dir string, sizeBytes int64) (map[string]any, error) {
	sqlite3, err := exec.LookPath("sqlite3")
	if err != nil {
		return nil, errors.New("benchmark: the sqlite3 CLI is needed for the peer measurement (apt-get install sqlite3)")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("benchmark: %w", err)
	}
	res := map[string]any{"size_bytes_requested": sizeBytes, "writer_target_tx_per_s": WriterRate}
	src := filepath.Join(dir, "bench.db")
	genStart := time.Now()
	if err := generate(ctx, src, sizeBytes); err != nil {
		return nil, err
	}
	res["generate_seconds"] = time.Since(genStart).Seconds()
	fi, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("benchmark: %w", err)
	}
	res["size_bytes"] = fi.Size()
	// Every measurement reads a warm file: read it once now.
	if err := readAll(src); err != nil {
		return nil, err
	}

	w, err := startWriter(ctx, src)
	if err != nil {
		return nil, err
	}
	defer w.close()

	// measure times fn with the writer running; after, if set, runs before
	// the output is removed.
	measure := func(name string, fn, after func() error) (float64, error) {
		out := filepath.Join(dir, "out-"+name)
		removeOut(out)
		defer removeOut(out)
		w.window()
		start := time.Now()
		err := fn()
		took := time.Since(start)
		stall, gap, commits := w.window()
		if err == nil && after != nil {
			err = after()
		}
		if err != nil {
			return 0, fmt.Errorf("benchmark: %s: %w", name, err)
		}
		res[name+"_seconds"] = took.Seconds()
		res[name+"_writer_max_commit_ms"] = ms(stall)
		res[name+"_writer_max_gap_ms"] = ms(gap)
		res[name+"_writer_tx_per_s"] = float64(commits) / took.Seconds()
		return took.Seconds(), nil
	}
	outOf := func(name string) string { return filepath.Join(dir, "out-"+name) }

	cp, err := measure("cp", func() error {
		return run(ctx, "cp", src, outOf("cp"))
	}, nil)
	if err != nil {
		return nil, err
	}
	// `.backup` copies 100 pages per step and starts over whenever another
	// connection commits (the writer does, 1000 times a second), so it may
	// never finish under writes; it is bounded, and measured as well with
	// the writer paused, which is the figure the bar compares against.
	peerCtx, cancel := context.WithTimeout(ctx, time.Duration(max(20*cp, 60))*time.Second)
	_, err = measure("sqlite3_backup_under_writes", func() error {
		return run(peerCtx, sqlite3, src, ".backup '"+outOf("sqlite3_backup_under_writes")+"'")
	}, nil)
	cancel()
	if err != nil {
		res["sqlite3_backup_under_writes"] = "did not finish: " + err.Error()
	}
	w.pause()
	dotBackup, err := measure("sqlite3_backup", func() error {
		return run(ctx, sqlite3, src, ".backup '"+outOf("sqlite3_backup")+"'")
	}, nil)
	w.resume()
	if err != nil {
		return nil, err
	}
	for _, k := range []string{"_writer_max_commit_ms", "_writer_max_gap_ms", "_writer_tx_per_s"} {
		delete(res, "sqlite3_backup"+k) // the writer was paused
	}
	vacuum, err := measure("sqlite3_vacuum_into", func() error {
		return run(ctx, sqlite3, src, "VACUUM INTO '"+outOf("sqlite3_vacuum_into")+"'")
	}, nil)
	if err != nil {
		return nil, err
	}
	var name string
	lifeboat, err := measure("lifeboat", func() error {
		var err error
		name, _, err = backup.Write(ctx, outOf("lifeboat"), backup.Manifest{
			Instance: "bench", Plan: "bench", StoreKind: "sqlite", Kind: backup.KindManual,
		}, sqlite.New(src).Dump)
		return err
	}, func() error {
		// How much of it reading and hashing the payload costs, for the
		// record, and that the copy is good.
		v := time.Now()
		if _, err := backup.Verify(ctx, outOf("lifeboat"), name); err != nil {
			return err
		}
		res["lifeboat_verify_seconds"] = time.Since(v).Seconds()
		return run(ctx, sqlite3, "-readonly", filepath.Join(outOf("lifeboat"), name, sqlite.PayloadName), "PRAGMA quick_check")
	})
	if err != nil {
		return nil, err
	}
	// Where lifeboat's time goes (the writer still running): the sqlite
	// kind's dump alone (online copy, then integrity_check of the copy),
	// and integrity_check alone on a copy.
	tmp := outOf("dump")
	removeOut(tmp)
	defer removeOut(tmp)
	if err := os.MkdirAll(tmp, 0o750); err != nil {
		return nil, fmt.Errorf("benchmark: %w", err)
	}
	start := time.Now()
	if _, err := sqlite.New(src).Dump(ctx, tmp); err != nil {
		return nil, fmt.Errorf("benchmark: dump: %w", err)
	}
	res["lifeboat_dump_seconds"] = time.Since(start).Seconds()
	start = time.Now()
	if err := run(ctx, sqlite3, "-readonly", filepath.Join(tmp, sqlite.PayloadName), "PRAGMA integrity_check"); err != nil {
		return nil, fmt.Errorf("benchmark: %w", err)
	}
	res["sqlite3_integrity_check_seconds"] = time.Since(start).Seconds()

	res["lifeboat_vs_sqlite3_backup"] = lifeboat / dotBackup
	res["lifeboat_vs_vacuum_into"] = lifeboat / vacuum
	res["lifeboat_vs_cp"] = lifeboat / cp
	res["writer_max_stall_ms"] = res["lifeboat_writer_max_commit_ms"]
	w.pause()
	res["writer_total_commits"] = w.total()

	pure, pass, err := benchRetention(ctx, dir)
	if err != nil {
		return nil, err
	}
	res["retention_100k_rule_ms"] = ms(pure)
	res["retention_100k_pass_ms"] = ms(pass)
	return res, nil
}

// removeOut removes an output file or directory and what SQLite left
// beside it (a -journal of a copy cut short).
func removeOut(p string) {
	matches, _ := filepath.Glob(p + "*")
	for _, m := range matches {
		_ = os.RemoveAll(m)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, out)
	}
	return nil
}

func readAll(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("benchmark: %w", err)
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

// generate makes a WAL database of about size bytes at p: rows of random
// blobs in a table with an index, as an application's store would have. A
// database already there and at least that large is reused.
func generate(ctx context.Context, p string, size int64) error {
	if fi, err := os.Stat(p); err == nil && fi.Size() >= size {
		return nil
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		_ = os.Remove(p + suffix)
	}
	d, err := sql.Open("sqlite", "file:"+p+"?_pragma=journal_mode(OFF)&_pragma=synchronous(OFF)")
	if err != nil {
		return fmt.Errorf("benchmark: generate: %w", err)
	}
	defer d.Close()
	d.SetMaxOpenConns(1)
	if _, err := d.ExecContext(ctx, `CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, body BLOB NOT NULL);
		CREATE TABLE writes (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, body BLOB NOT NULL);`); err != nil {
		return fmt.Errorf("benchmark: generate: %w", err)
	}
	rows := size / (rowBytes + 100)
	const chunk = 20_000
	for done := int64(0); done < rows; done += chunk {
		n := min(chunk, rows-done)
		if _, err := d.ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < ?)
			INSERT INTO items(name, body) SELECT printf('item-%012d', abs(random()) % 1000000000000), randomblob(?) FROM n`, n, rowBytes); err != nil {
			return fmt.Errorf("benchmark: generate: %w", err)
		}
	}
	if _, err := d.ExecContext(ctx, `CREATE INDEX items_name ON items(name); PRAGMA journal_mode=WAL`); err != nil {
		return fmt.Errorf("benchmark: generate: %w", err)
	}
	return nil
}

// writer commits one small transaction per 1/WriterRate s on its own
// connection, as an application does, and records the longest commit.
type writer struct {
	mu      sync.Mutex
	stall   time.Duration // longest commit in the current window
	gap     time.Duration // longest time between two commits in the window
	last    time.Time     // when the last commit ended
	commits int64         // commits in the current window
	all     int64
	paused  bool
	err     error
	stop    chan struct{}
	done    chan struct{}
	db      *sql.DB
}

func startWriter(ctx context.Context, p string) (*writer, error) {
	d, err := sql.Open("sqlite", "file:"+p+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, fmt.Errorf("benchmark: writer: %w", err)
	}
	d.SetMaxOpenConns(1)
	if err := d.PingContext(ctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("benchmark: writer: %w", err)
	}
	w := &writer{stop: make(chan struct{}), done: make(chan struct{}), db: d}
	go w.loop()
	return w, nil
}

func (w *writer) loop() {
	defer close(w.done)
	tick := time.NewTicker(time.Second / WriterRate)
	defer tick.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
		w.mu.Lock()
		paused := w.paused
		w.mu.Unlock()
		if paused {
			continue
		}
		start := time.Now()
		_, err := w.db.Exec(`INSERT INTO writes(at, body) VALUES (?, randomblob(100))`, start.UnixNano())
		took := time.Since(start)
		w.mu.Lock()
		if err != nil && w.err == nil {
			w.err = err
		}
		w.commits++
		w.all++
		w.stall = max(w.stall, took)
		end := start.Add(took)
		if !w.last.IsZero() {
			w.gap = max(w.gap, end.Sub(w.last))
		}
		w.last = end
		w.mu.Unlock()
	}
}

// window returns the longest commit, the longest time between two commits
// (which also counts the writer waiting for a CPU) and the number of
// commits since the last call, and starts a new window.
func (w *writer) window() (stall, gap time.Duration, commits int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	stall, gap, commits = w.stall, w.gap, w.commits
	w.stall, w.gap, w.commits = 0, 0, 0
	return stall, gap, commits
}

func (w *writer) pause() { w.mu.Lock(); w.paused = true; w.mu.Unlock() }
func (w *writer) resume() {
	w.mu.Lock()
	w.paused, w.last = false, time.Time{}
	w.mu.Unlock()
}
func (w *writer) total() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all
}

func (w *writer) close() error {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	err := w.err
	w.mu.Unlock()
	return errors.Join(err, w.db.Close())
}

// benchRetention times the retention rule alone over CatalogSize backups,
// and a whole deciding pass (the catalog read from the service database,
// then the rule), each the best of five.
func benchRetention(ctx context.Context, dir string) (rule, pass time.Duration, err error) {
	c, err := newRetentionCatalog(ctx, filepath.Join(dir, "catalog", "state.db"))
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	best := func(fn func() error) (time.Duration, error) {
		var times []time.Duration
		for range 5 {
			start := time.Now()
			if err := fn(); err != nil {
				return 0, err
			}
			times = append(times, time.Since(start))
		}
		return slices.Min(times), nil
	}
	if rule, err = best(c.Rule); err != nil {
		return 0, 0, err
	}
	pass, err = best(func() error { return c.Pass(ctx) })
	return rule, pass, err
}

// RetentionCatalog is the retention benchmark's catalog: CatalogSize valid
// backups of one plan, one every 6s back from now (so the catalog spans a
// week and every band of the schedule is crowded), in a service database.
type RetentionCatalog struct {
	DB      *store.DB
	Spec    schedule.Spec
	Now     time.Time
	Backups []schedule.Backup
}

// newRetentionCatalog creates the catalog in a new database at path.
func newRetentionCatalog(ctx context.Context, path string) (*RetentionCatalog, error) {
	c := &RetentionCatalog{Spec: schedule.MustParse("5m,15m,1h,2h,4h,8h,1d/7d"), Now: time.Now().Truncate(time.Second)}
	for i := range CatalogSize {
		t := c.Now.Add(-time.Duration(i) * 6 * time.Second)
		c.Backups = append(c.Backups, schedule.Backup{Name: backup.FormatName(t), Time: t, Verified: true})
	}
	_ = os.RemoveAll(filepath.Dir(path))
	migrations, err := lbsql.Migrations(backupscheduler.Name)
	if err != nil {
		return nil, err
	}
	sdb, err := store.Open(ctx, path, store.NewOptions("bench", migrations))
	if err != nil {
		return nil, err
	}
	c.DB = sdb
	err = sdb.Update(ctx, func(tx *store.Tx) error {
		q := db.New(tx)
		for _, b := range c.Backups {
			if err := q.BackupPut(ctx, db.BackupPutParams{
				Plan: "bench", Name: b.Name, Dir: "/backups", NameTime: b.Time.Unix(), Kind: "scheduled",
				State: "valid", CheckedAt: c.Now.UnixMilli(),
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		sdb.Close()
		return nil, fmt.Errorf("benchmark: catalog: %w", err)
	}
	return c, nil
}

// Close closes the catalog's database.
func (c *RetentionCatalog) Close() error { return c.DB.Close() }

// Rule runs the retention rule alone over the catalog's backups.
func (c *RetentionCatalog) Rule() error {
	if len(c.Spec.Retain(c.Now, c.Backups, 1)) != CatalogSize {
		return errors.New("retain lost backups")
	}
	return nil
}

// Pass runs a whole deciding pass: the catalog read from the database, then
// the rule.
func (c *RetentionCatalog) Pass(ctx context.Context) error {
	_, kept, err := backupscheduler.RetentionPass(ctx, c.DB.R, "bench", c.Spec, 1, c.Now)
	if err == nil && kept > c.Spec.SteadyState()+1 {
		err = fmt.Errorf("kept %d of a steady state of %d", kept, c.Spec.SteadyState())
	}
	return err
}
