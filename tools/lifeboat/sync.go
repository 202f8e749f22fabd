package main

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/client"
)

func newSyncCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "sync",
		Short: "Show and kick the shipping of backups to their targets (sync)",
		Long: `Every backup of a plan is shipped by the host that took it to each of the
plan's targets and verified there: its instance's other hosts (standby,
each a target named by its host) and the named targets of lifeboat.yaml's
sync.targets. A target with backups waiting that has not advanced within
sync.stall_timeout shows send_error until it advances.`,
	}
	c.AddCommand(newSyncStatusCmd(), newSyncKickCmd())
	return c
}

// syncHosts are the hosts whose sync service answers a ping.
func syncHosts(c *cobra.Command, nc *nats.Conn, cf *clientFlags) ([]string, error) {
	ctx, cancel := cf.ctx(c.Context())
	defer cancel()
	hosts, err := client.Hosts(ctx, nc, events.ServiceSync, nil, 300*time.Millisecond, cf.timeout)
	if err != nil {
		return nil, err
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("no host's sync service answers (is `lifeboat up` running?)")
	}
	slices.Sort(hosts)
	return hosts, nil
}

// syncTargets asks every sync service for its targets; problems name the
// hosts that did not answer.
func syncTargets(c *cobra.Command, nc *nats.Conn, cf *clientFlags) (targets []api.SyncTarget, problems []string, err error) {
	hosts, err := syncHosts(c, nc, cf)
	if err != nil {
		return nil, nil, err
	}
	targets = []api.SyncTarget{}
	for _, h := range hosts {
		var st struct {
			Details api.SyncStatus `json:"details"`
		}
		ctx, cancel := cf.ctx(c.Context())
		err := client.CallHost(ctx, nc, events.ServiceSync, h, api.Status, nil, &st)
		cancel()
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", h, err))
			continue
		}
		targets = append(targets, st.Details.Targets...)
	}
	return targets, problems, nil
}

// watchSync prints, every interval, the progress of each transfer in
// progress, until every target has nothing waiting.
func watchSync(c *cobra.Command, nc *nats.Conn, cf *clientFlags, every time.Duration) error {
	out := c.OutOrStdout()
	last := map[string]int64{} // bytes sent, by target, at the last look
	for {
		targets, problems, err := syncTargets(c, nc, cf)
		if err != nil {
			return fmt.Errorf("sync status: %w", err)
		}
		waiting := 0
		for _, t := range targets {
			if t.Backlog == 0 {
				continue
			}
			waiting++
			line := fmt.Sprintf("%s %s -> %s: %d backups (%s) waiting", time.Now().Format("15:04:05"), t.From, t.Target, t.Backlog, humanBytes(t.BacklogBytes))
			if t.Sending != "" && t.BytesTotal > 0 {
				line += fmt.Sprintf("; %s %s of %s (%.0f%%)", t.Sending, humanBytes(t.BytesSent), humanBytes(t.BytesTotal), 100*float64(t.BytesSent)/float64(t.BytesTotal))
				key := t.From + ">" + t.Target
				if prev, ok := last[key]; ok && t.BytesSent >= prev {
					rate := float64(t.BytesSent-prev) / every.Seconds()
					line += fmt.Sprintf(", %s/s", humanBytes(int64(rate)))
					if rate > 0 {
						eta := time.Duration(float64(t.BytesTotal-t.BytesSent) / rate * float64(time.Second))
						line += fmt.Sprintf(", about %s left", eta.Round(time.Second))
					}
				}
				last[key] = t.BytesSent
			}
			if t.SendError {
				line += "; SEND_ERROR: " + t.LastError
			}
			fmt.Fprintln(out, line)
		}
		for _, p := range problems {
			fmt.Fprintln(out, "not answering:", p)
		}
		if waiting == 0 && len(problems) == 0 {
			fmt.Fprintln(out, "every target holds every backup")
			return nil
		}
		select {
		case <-c.Context().Done():
			return c.Context().Err()
		case <-time.After(every):
		}
	}
}

func newSyncStatusCmd() *cobra.Command {
	var (
		cf    clientFlags
		watch time.Duration
	)
	c := &cobra.Command{
		Use:   "status [--json | --watch INTERVAL]",
		Short: "Each target: its host, last synced backup, lag, backlog, transfer in progress, last error, send_error",
		Long: `Each target a host ships to: its host, the sending host, the last backup
synced there and its lag, the backlog (backups and bytes waiting), the
transfer in progress (bytes sent of its total), the last error, and
send_error (no progress within sync.stall_timeout).

--watch prints, every INTERVAL, the progress of every transfer (bytes,
percent, rate, time left) until every target holds every backup.`,
		Example: "  lifeboat sync status\n  lifeboat sync status --json\n  lifeboat sync status --watch 2s",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if watch < 0 || (watch > 0 && cf.json) {
				return usagef(c, "--watch takes a positive interval (e.g. 2s), without --json")
			}
			nc, _, err := cf.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			if watch > 0 {
				return watchSync(c, nc, &cf, watch)
			}
			targets, problems, err := syncTargets(c, nc, &cf)
			if err != nil {
				return fmt.Errorf("sync status: %w", err)
			}
			if cf.json {
				if err := printJSON(c.OutOrStdout(), targets); err != nil {
					return err
				}
			} else {
				w := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "TARGET\tHOST\tFROM\tLAST BACKUP\tLAG\tBACKLOG\tSENDING\tSEND_ERROR\tLAST ERROR")
				for _, t := range targets {
					last := t.LastBackup
					if last == "" {
						last = "-"
					}
					lastErr := t.LastError
					if lastErr == "" {
						lastErr = "-"
					}
					sending := "-"
					if t.Sending != "" && t.Backlog > 0 && t.BytesTotal > 0 {
						sending = fmt.Sprintf("%s %.0f%% of %s", t.Sending, 100*float64(t.BytesSent)/float64(t.BytesTotal), humanBytes(t.BytesTotal))
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d (%s)\t%s\t%v\t%s\n", t.Target, t.Host, t.From, last,
						(time.Duration(t.Lag) * time.Millisecond).Round(time.Millisecond), t.Backlog, humanBytes(t.BacklogBytes), sending, t.SendError, lastErr)
				}
				w.Flush()
				if len(targets) == 0 {
					fmt.Fprintln(c.OutOrStdout(), "no targets yet: a backup of an instance with a standby makes one")
				}
			}
			if len(problems) > 0 {
				return fmt.Errorf("sync status: not every host answered: %s", strings.Join(problems, "; "))
			}
			return nil
		},
	}
	cf.add(c)
	c.Flags().DurationVar(&watch, "watch", 0, "print every transfer's progress every INTERVAL until every target holds every backup")
	return c
}

func newSyncKickCmd() *cobra.Command {
	var (
		cf           clientFlags
		target, host string
	)
	c := &cobra.Command{
		Use:   "kick",
		Short: "Retry waiting transfers now instead of after their backoff (the sync.kick command)",
		Long: `Sends sync.kick to every host that ships backups: each retries at once the
transfers waiting for the target (--target), for the targets on a host
(--host), or for every target.`,
		Example: "  lifeboat sync kick\n  lifeboat sync kick --host cold",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if target != "" && host != "" {
				return usagef(c, "give --target or --host, not both")
			}
			nc, js, err := cf.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			hosts, err := syncHosts(c, nc, &cf)
			if err != nil {
				return fmt.Errorf("sync kick: %w", err)
			}
			ctx, cancel := cf.ctx(c.Context())
			defer cancel()
			for _, h := range hosts {
				if _, err := client.CommandTo(ctx, js, h, &events.SyncKick{Target: target, Host: host}); err != nil {
					return fmt.Errorf("sync kick: %w", err)
				}
			}
			fmt.Fprintf(c.OutOrStdout(), "kicked the transfers of %s on %s\n", orAll(target, host), strings.Join(hosts, ", "))
			return nil
		},
	}
	cf.add(c)
	c.Flags().StringVar(&target, "target", "", "the target whose transfers to retry")
	c.Flags().StringVar(&host, "host", "", "retry the transfers to every target on this host")
	return c
}

func orAll(target, host string) string {
	switch {
	case target != "":
		return "target " + target
	case host != "":
		return "the targets on " + host
	}
	return "every target"
}
