// Package command is the store kind for a store only its own tools can copy
// consistently (PostgreSQL, MySQL, an application's export): a dump command
// whose stdout is the payload, pg_dump-style, and a matching load command
// that reads it back on stdin. Both run without a shell.
package command

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/storekind/internal/proc"
)

// PayloadName is the dump's file name in a backup.
const PayloadName = "dump"

// DefaultTimeout bounds a dump or load whose Timeout is zero.
const DefaultTimeout = time.Hour

// The environment variables a load command is given.
const (
	// EnvTarget holds Load's target, for a load command that needs to know
	// where to load (its own arguments usually say so).
	EnvTarget = "LIFEBOAT_TARGET"
	// EnvPayload holds the payload file's path, which is also on stdin.
	EnvPayload = "LIFEBOAT_PAYLOAD"
)

// Options say how to dump and load a store.
type Options struct {
	// Dump is the program and arguments whose stdout is the payload, such
	// as ["pg_dump", "--format=custom", "mydb"].
	Dump []string
	// Load is the program and arguments that read the payload on stdin and
	// load it into the store, such as ["pg_restore", "--clean",
	// "--single-transaction", "-d", "mydb"]. It is recorded in each backup's
	// manifest, for restore.
	Load []string
	// Env is added to the commands' environment ("PGPASSFILE=/etc/pgpass").
	Env []string
	// Timeout bounds each run; zero means DefaultTimeout. A command still
	// running then is killed with everything it started.
	Timeout time.Duration
}

// NewOptions returns Options with the defaults filled in.
func NewOptions() Options {
	return Options{Timeout: DefaultTimeout}
}

// Kind dumps and loads a store through commands.
type Kind struct {
	opts Options
}

// New returns the kind for opts; it needs a dump command.
func New(opts Options) (*Kind, error) {
	if len(opts.Dump) == 0 || opts.Dump[0] == "" {
		return nil, errors.New("command: no dump command given")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	return &Kind{opts: opts}, nil
}

// Name returns "command".
func (k *Kind) Name() string { return "command" }

// Dump runs the dump command with its stdout going to payloadDir/dump.
// ConsistentAt is when the command started: a dump tool that works from a
// snapshot (pg_dump, mysqldump --single-transaction) holds everything
// committed before. A failure, or a timeout, gives an error with the command,
// its exit status and the end of its stderr.
func (k *Kind) Dump(ctx context.Context, payloadDir string) (backup.Info, error) {
	out, err := os.OpenFile(filepath.Join(payloadDir, PayloadName), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return backup.Info{}, fmt.Errorf("command: %w", err)
	}
	defer out.Close()
	consistentAt := time.Now()
	if err := proc.Run(ctx, k.opts.Dump, k.opts.Timeout, k.opts.Env, nil, out); err != nil {
		return backup.Info{}, fmt.Errorf("command: dump command %q: %w", k.opts.Dump, err)
	}
	if err := out.Close(); err != nil {
		return backup.Info{}, fmt.Errorf("command: %w", err)
	}
	return backup.Info{ConsistentAt: consistentAt, LoadCommand: k.opts.Load}, nil
}

// Load runs the load command with payloadDir/dump on its stdin and target in
// $LIFEBOAT_TARGET. It is as atomic as the load command makes it (give
// pg_restore --single-transaction, for instance).
func (k *Kind) Load(ctx context.Context, payloadDir, target string) error {
	if len(k.opts.Load) == 0 || k.opts.Load[0] == "" {
		return errors.New("command: no load command configured for this store: set one (the backup's MANIFEST.json records the one it was taken with)")
	}
	p := filepath.Join(payloadDir, PayloadName)
	in, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("command: payload: %w (is this a backup of a command store?)", err)
	}
	defer in.Close()
	env := append(slices.Clone(k.opts.Env), EnvTarget+"="+target, EnvPayload+"="+p)
	if err := proc.Run(ctx, k.opts.Load, k.opts.Timeout, env, in, nil); err != nil {
		return fmt.Errorf("command: load command %q: %w", k.opts.Load, err)
	}
	return nil
}
