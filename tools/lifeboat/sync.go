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
		Long: `Every backup of an instance is shipped by the host that took it to the
instance's other hosts (its standbys), each a target named by its host,
and verified there. A target with backups waiting that has not advanced
within sync.stall_timeout shows send_error until it advances.`,
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

func newSyncStatusCmd() *cobra.Command {
	var cf clientFlags
	c := &cobra.Command{
		Use:     "status",
		Short:   "Each target: its host, last synced backup, lag, backlog, last error, send_error",
		Example: "  lifeboat sync status\n  lifeboat sync status --json",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			nc, _, err := cf.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			hosts, err := syncHosts(c, nc, &cf)
			if err != nil {
				return fmt.Errorf("sync status: %w", err)
			}
			targets := []api.SyncTarget{}
			var problems []string
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
			if cf.json {
				if err := printJSON(c.OutOrStdout(), targets); err != nil {
					return err
				}
			} else {
				w := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "TARGET\tHOST\tFROM\tLAST BACKUP\tLAG\tBACKLOG\tSEND_ERROR\tLAST ERROR")
				for _, t := range targets {
					last := t.LastBackup
					if last == "" {
						last = "-"
					}
					lastErr := t.LastError
					if lastErr == "" {
						lastErr = "-"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d (%s)\t%v\t%s\n", t.Target, t.Host, t.From, last,
						(time.Duration(t.Lag) * time.Millisecond).Round(time.Millisecond), t.Backlog, humanBytes(t.BacklogBytes), t.SendError, lastErr)
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
