package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/client"
	"lifeboat.dev/pkg/instances"
	"lifeboat.dev/pkg/lease"
	"lifeboat.dev/pkg/schedule"
)

func newBackupCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "backup",
		Short: "List, take and verify backups (backup-scheduler)",
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef(c, "unknown command %q for %s; want list, take or verify", args[0], c.CommandPath())
			}
			return c.Help()
		},
	}
	c.AddCommand(newBackupListCmd(), newBackupTakeCmd(), newBackupVerifyCmd())
	return c
}

// backupAPI asks backup-scheduler's endpoint with req and decodes the
// answer into out; an error the service answered with is returned as its
// message.
func backupAPI(ctx context.Context, nc *nats.Conn, timeout time.Duration, endpoint string, req, out any) error {
	return call(ctx, nc, timeout, events.ServiceBackupScheduler, endpoint, req, out)
}

// longTimeout raises a client command's default --timeout, for calls that
// read whole backups.
func longTimeout(c *cobra.Command, d time.Duration) {
	f := c.Flags().Lookup("timeout")
	f.DefValue = d.String()
	_ = f.Value.Set(d.String())
}

func newBackupListCmd() *cobra.Command {
	var cf clientFlags
	var plan string
	var rescan bool
	c := &cobra.Command{
		Use:   "list [--plan PLAN] [--rescan]",
		Short: "List the backups in the catalog, oldest first",
		Long: `List the backups of every plan (or of --plan) as the catalog holds them.
--rescan first rebuilds the catalog from the plans' directories, which are
the truth: backups copied in by hand appear, deleted ones disappear, and a
backup whose manifest does not verify is marked invalid (never restored).`,
		Example: `  lifeboat backup list
  lifeboat backup list --plan wr --json
  lifeboat backup list --rescan`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			nc, _, err := cf.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			if rescan {
				var res []api.RebuildResult
				if err := backupAPI(c.Context(), nc, cf.timeout, api.CatalogRebuild, api.RebuildRequest{Plan: plan}, &res); err != nil {
					return fmt.Errorf("backup list: %w", err)
				}
			}
			var list []api.BackupView
			if err := backupAPI(c.Context(), nc, cf.timeout, api.BackupList, api.BackupListRequest{Plan: plan}, &list); err != nil {
				return fmt.Errorf("backup list: %w", err)
			}
			if cf.json {
				return printJSON(c.OutOrStdout(), list)
			}
			return printBackups(c.OutOrStdout(), list, time.Now())
		},
	}
	cf.add(c)
	longTimeout(c, 10*time.Minute)
	c.Flags().StringVar(&plan, "plan", "", "only this plan's backups")
	c.Flags().BoolVar(&rescan, "rescan", false, "rebuild the catalog from the directories first")
	return c
}

func printBackups(w io.Writer, list []api.BackupView, now time.Time) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "no backups")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PLAN\tBACKUP\tSTATE\tKIND\tSIZE\tAGE\tSTORE")
	for _, b := range list {
		state := b.State
		if b.Problem != "" && b.State == api.BackupInvalid {
			state += ": " + firstLine(b.Problem)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", b.Plan, b.Name, state, dash(b.Kind), humanBytes(b.Bytes),
			schedule.FormatDuration(max(now.Sub(b.Time), 0).Truncate(time.Second)), dash(b.StoreKind))
	}
	return tw.Flush()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// humanBytes writes n in B, KiB, MiB, GiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 3 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGT"[i])
}

func newBackupTakeCmd() *cobra.Command {
	var cf clientFlags
	var kind, host string
	var wait time.Duration
	c := &cobra.Command{
		Use:   "take PLAN [--kind manual|hash|full] [--host HOST]",
		Short: "Take a backup of a plan now and wait for it",
		Long: `Ask backup-scheduler for a backup of PLAN now (the backup-scheduler.take
command) and wait for its answer: BackupTaken or BackupFailed. On a
terminal the time waited is shown while the backup runs.

A plan of an instance declared in lifeboat.yaml's instances section is
backed up only by the instance's active host, the holder of its lease:
the command is sent to that host (lifeboat.cmd.backup-scheduler.<host>.take).
Any other plan backs up a store of each host that has it: --host HOST sends
the command to that host; without it any one host takes it.`,
		Example: `  lifeboat backup take wr
  lifeboat backup take wr --kind hash --json
  lifeboat backup take cycle-static --host cold`,
		Args: exactArgs(1, "PLAN"),
		RunE: func(c *cobra.Command, args []string) error {
			k := events.BackupKind(kind)
			if k != events.BackupManual && k != events.BackupHash && k != events.BackupFull {
				return usagef(c, "--kind %q: want manual, hash or full", kind)
			}
			if wait <= 0 {
				return usagef(c, "--wait %s: want a positive duration", wait)
			}
			nc, js, err := cf.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			// Fail fast when nobody would carry the command out.
			var plan api.PlanDetail
			if err := backupAPI(c.Context(), nc, cf.timeout, api.PlanShow, api.PlanRequest{Name: args[0]}, &plan); err != nil {
				return fmt.Errorf("backup take: %w", err)
			}
			to, err := takeHost(c.Context(), nc, js, cf.timeout, plan.PlanView, host)
			if err != nil {
				return fmt.Errorf("backup take: %w", err)
			}
			ctx, cancel := context.WithTimeout(c.Context(), wait)
			defer cancel()
			return takeBackup(ctx, c, nc, js, to, args[0], k, cf.json)
		},
	}
	cf.add(c)
	c.Flags().StringVar(&kind, "kind", "manual", "manual, hash (transfer sends only changed chunks) or full")
	c.Flags().StringVar(&host, "host", "", "the host whose store to back up, for a plan that is not an instance's (default: any one host)")
	c.Flags().DurationVar(&wait, "wait", 30*time.Minute, "how long to wait for the backup")
	return c
}

// takeHost is the host a take of plan is sent to ("": any one host): the
// holder of the lease of the plan's instance when the plan is an
// instance's, else asked (empty when asked is). A host it names must
// answer and have the plan: a command addressed to a host that does not
// run backup-scheduler would wait in the stream unanswered.
func takeHost(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, timeout time.Duration, plan api.PlanView, asked string) (string, error) {
	to := asked
	if plan.LeaseBound {
		holder, err := leaseHolder(ctx, js, timeout, plan.Instance)
		if err != nil {
			return "", err
		}
		if asked != "" && asked != holder {
			return "", fmt.Errorf("plan %s backs up instance %s, which only its active host backs up: %s holds its lease, not %s (leave out --host)", plan.Name, plan.Instance, holder, asked)
		}
		to = holder
	}
	if to == "" {
		return "", nil
	}
	var st struct {
		api.ServiceStatus
		Details api.BackupSchedulerStatus `json:"details"`
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := client.CallHost(cctx, nc, events.ServiceBackupScheduler, to, api.Status, nil, &st); err != nil {
		return "", fmt.Errorf("host %s's backup-scheduler does not answer (%w): is `lifeboat up --host %s` running with it?", to, err, to)
	}
	for _, p := range st.Details.Plans {
		if p.Name == plan.Name {
			return to, nil
		}
	}
	return "", fmt.Errorf("host %s has no plan named %q (lifeboat plan list shows the plans)", to, plan.Name)
}

// leaseHolder is the host holding instance's lease: its key in the lease
// bucket (pkg/instances), whose value names the holder.
func leaseHolder(ctx context.Context, js jetstream.JetStream, timeout time.Duration, instance string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	none := fmt.Errorf("instance %s has no active host (nobody holds its lease): see lifeboat status", instance)
	kv, err := js.KeyValue(ctx, instances.LeaseBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return "", none
	}
	if err != nil {
		return "", fmt.Errorf("lease bucket %s: %w", instances.LeaseBucket, err)
	}
	e, err := kv.Get(ctx, instance)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return "", none
	}
	if err != nil {
		return "", fmt.Errorf("lease of instance %s: %w", instance, err)
	}
	var r lease.Record
	if err := json.Unmarshal(e.Value(), &r); err != nil || r.Holder == "" {
		return "", fmt.Errorf("lease of instance %s: unreadable value %q", instance, e.Value())
	}
	return r.Holder, nil
}

// takeBackup publishes backup-scheduler.take, addressed to host (any one
// host when empty), and waits for the event that answers it (the one
// whose request_id is the command's id).
func takeBackup(ctx context.Context, c *cobra.Command, nc *nats.Conn, js jetstream.JetStream, host, plan string, kind events.BackupKind, asJSON bool) error {
	// Listening before sending, so the answer cannot be missed.
	answers, err := client.Listen(nc, events.BackupTaken{}, events.BackupFailed{})
	if err != nil {
		return fmt.Errorf("backup take: %w", err)
	}
	defer answers.Close()
	id, err := client.CommandTo(ctx, js, host, &events.BackupTake{Plan: plan, Kind: kind, Reason: "lifeboat backup take"})
	if err != nil {
		return fmt.Errorf("backup take: %w", err)
	}
	type answer struct {
		ev  any
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		ev, err := answers.Wait(ctx, id)
		answered <- answer{ev, err}
	}()
	started := time.Now()
	progress := isTerminal(c.ErrOrStderr()) && !asJSON
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	on := ""
	if host != "" {
		on = " on " + host
	}
	if progress {
		fmt.Fprintf(c.ErrOrStderr(), "taking a %s backup of plan %s%s...", kind, plan, on)
	}
	for {
		select {
		case <-tick.C:
			if progress {
				// What the plan is doing: this backup, or one it waits behind.
				doing := ""
				var v api.PlanDetail
				if backupAPI(ctx, nc, time.Second, api.PlanShow, api.PlanRequest{Name: plan}, &v) == nil && v.Doing != "" {
					doing = " (" + v.Doing + ")"
				}
				fmt.Fprintf(c.ErrOrStderr(), "\r\033[Ktaking a %s backup of plan %s%s... %s%s", kind, plan, on, time.Since(started).Truncate(time.Second), doing)
			}
		case a := <-answered:
			if progress {
				fmt.Fprint(c.ErrOrStderr(), "\r\033[K")
			}
			if a.err != nil && ctx.Err() != nil {
				return fmt.Errorf("backup take: no answer in %s (request %s); the backup may still be running: see `lifeboat backup list --plan %s`",
					time.Since(started).Truncate(time.Second), id, plan)
			}
			if a.err != nil {
				return fmt.Errorf("backup take: %w", a.err)
			}
			switch ev := a.ev.(type) {
			case *events.BackupFailed:
				if asJSON {
					_ = printJSON(c.OutOrStdout(), ev)
				}
				step := ""
				if ev.Step != "" {
					step = " at step " + ev.Step
				}
				return fmt.Errorf("backup of plan %s failed%s: %s", plan, step, ev.Error)
			case *events.BackupTaken:
				if asJSON {
					return printJSON(c.OutOrStdout(), ev)
				}
				where := "host " + dash(ev.Host)
				if ev.Epoch != 0 {
					where += fmt.Sprintf(", instance %s's lease epoch %d", ev.Instance, ev.Epoch)
				}
				_, err := fmt.Fprintf(c.OutOrStdout(), "backup %s of plan %s taken: %s in %s, consistent at %s\n  %s (%s)\n",
					ev.Backup, ev.Plan, humanBytes(ev.Bytes), ev.Duration.Duration(), ev.ConsistentAt.Local().Format(time.RFC3339), ev.Dir+string(os.PathSeparator)+ev.Backup, where)
				return err
			default:
				return fmt.Errorf("backup take: answered by a %T", ev)
			}
		}
	}
}

// isTerminal says whether w is a terminal (progress is only drawn there).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func newBackupVerifyCmd() *cobra.Command {
	var cf clientFlags
	var plan, dir string
	c := &cobra.Command{
		Use:   "verify [NAME] [--plan PLAN | --dir DIR]",
		Short: "Re-read backups and check every file against its manifest",
		Long: `Verify one backup by name, every backup of --plan, or every backup: each
file's size and SHA-256 are checked against the backup's MANIFEST.json.
A backup that does not verify is marked invalid in the catalog and is
never offered for restore. Exits non-zero when any backup is invalid.

With --dir, no control plane is asked: the backups in DIR are read from
this machine's disk alone (a standby's copies, a disk taken elsewhere).`,
		Example: `  lifeboat backup verify
  lifeboat backup verify backup-2015-12-23_12-19-17-0500
  lifeboat backup verify --plan wr --json
  lifeboat backup verify --dir /mnt/backup-disk/wr`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef(c, "%s takes at most one backup name, got %d arguments", c.CommandPath(), len(args))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			req := api.VerifyRequest{Plan: plan}
			if len(args) == 1 {
				req.Name = args[0]
			}
			var res []api.VerifyResult
			switch {
			case dir != "" && plan != "":
				return usagef(c, "give --plan or --dir, not both")
			case dir != "":
				var err error
				if res, err = verifyDir(c.Context(), dir, req.Name); err != nil {
					return fmt.Errorf("backup verify: %w", err)
				}
			default:
				nc, _, err := cf.connect()
				if err != nil {
					return err
				}
				defer nc.Close()
				if err := backupAPI(c.Context(), nc, cf.timeout, api.BackupVerify, req, &res); err != nil {
					return fmt.Errorf("backup verify: %w", err)
				}
			}
			bad := 0
			for _, r := range res {
				if r.State != api.BackupValid {
					bad++
				}
			}
			if cf.json {
				if err := printJSON(c.OutOrStdout(), res); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "PLAN\tBACKUP\tSIZE\tRESULT")
				for _, r := range res {
					result := "ok"
					if r.State != api.BackupValid {
						result = r.State + ": " + strings.ReplaceAll(r.Problem, "\n", "; ")
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Plan, r.Name, humanBytes(r.Bytes), result)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			if bad > 0 {
				return fmt.Errorf("%d of %d backups do not verify; they are marked invalid and will not be restored", bad, len(res))
			}
			return nil
		},
	}
	cf.add(c)
	longTimeout(c, time.Hour)
	c.Flags().StringVar(&plan, "plan", "", "only this plan's backups")
	c.Flags().StringVar(&dir, "dir", "", "verify the backups in this directory from this machine's disk, asking no control plane")
	return c
}

// verifyDir verifies backup name in dir, or every backup there, from this
// machine's disk.
func verifyDir(ctx context.Context, dir, name string) ([]api.VerifyResult, error) {
	names := []string{name}
	if name == "" {
		entries, err := backup.List(dir)
		if err != nil {
			return nil, err
		}
		names = names[:0]
		for _, e := range entries {
			names = append(names, e.Name)
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("%s holds no backups", dir)
		}
	}
	res := []api.VerifyResult{}
	for _, n := range names {
		r := api.VerifyResult{Name: n, State: api.BackupValid}
		m, err := backup.Verify(ctx, dir, n)
		if err != nil {
			r.State, r.Problem = api.BackupInvalid, err.Error()
		}
		r.Plan, r.Bytes = m.Plan, m.TotalBytes
		res = append(res, r)
	}
	return res, nil
}
