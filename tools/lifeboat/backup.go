package main

import (
	"context"
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
	"lifeboat.dev/pkg/client"
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
	var kind string
	var wait time.Duration
	c := &cobra.Command{
		Use:   "take PLAN [--kind manual|hash|full]",
		Short: "Take a backup of a plan now and wait for it",
		Long: `Ask backup-scheduler for a backup of PLAN now (the backup-scheduler.take
command) and wait for its answer: BackupTaken or BackupFailed. On a
terminal the time waited is shown while the backup runs.`,
		Example: `  lifeboat backup take wr
  lifeboat backup take wr --kind hash --json`,
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
			ctx, cancel := context.WithTimeout(c.Context(), wait)
			defer cancel()
			return takeBackup(ctx, c, nc, js, args[0], k, cf.json)
		},
	}
	cf.add(c)
	c.Flags().StringVar(&kind, "kind", "manual", "manual, hash (transfer sends only changed chunks) or full")
	c.Flags().DurationVar(&wait, "wait", 30*time.Minute, "how long to wait for the backup")
	return c
}

// takeBackup publishes backup-scheduler.take and waits for the event that
// answers it (the one whose request_id is the command's id).
func takeBackup(ctx context.Context, c *cobra.Command, nc *nats.Conn, js jetstream.JetStream, plan string, kind events.BackupKind, asJSON bool) error {
	// Listening before sending, so the answer cannot be missed.
	answers, err := client.Listen(nc, events.BackupTaken{}, events.BackupFailed{})
	if err != nil {
		return fmt.Errorf("backup take: %w", err)
	}
	defer answers.Close()
	id, err := client.Command(ctx, js, &events.BackupTake{Plan: plan, Kind: kind, Reason: "lifeboat backup take"})
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
	if progress {
		fmt.Fprintf(c.ErrOrStderr(), "taking a %s backup of plan %s...", kind, plan)
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
				fmt.Fprintf(c.ErrOrStderr(), "\r\033[Ktaking a %s backup of plan %s... %s%s", kind, plan, time.Since(started).Truncate(time.Second), doing)
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
				_, err := fmt.Fprintf(c.OutOrStdout(), "backup %s of plan %s taken: %s in %s, consistent at %s\n  %s\n",
					ev.Backup, ev.Plan, humanBytes(ev.Bytes), ev.Duration.Duration(), ev.ConsistentAt.Local().Format(time.RFC3339), ev.Dir+string(os.PathSeparator)+ev.Backup)
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
	var plan string
	c := &cobra.Command{
		Use:   "verify [NAME] [--plan PLAN]",
		Short: "Re-read backups and check every file against its manifest",
		Long: `Verify one backup by name, every backup of --plan, or every backup: each
file's size and SHA-256 are checked against the backup's MANIFEST.json.
A backup that does not verify is marked invalid in the catalog and is
never offered for restore. Exits non-zero when any backup is invalid.`,
		Example: `  lifeboat backup verify
  lifeboat backup verify backup-2015-12-23_12-19-17-0500
  lifeboat backup verify --plan wr --json`,
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
			nc, _, err := cf.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			var res []api.VerifyResult
			if err := backupAPI(c.Context(), nc, cf.timeout, api.BackupVerify, req, &res); err != nil {
				return fmt.Errorf("backup verify: %w", err)
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
	return c
}
