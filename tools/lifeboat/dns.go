package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/client"
)

func newDNSCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "dns",
		Short: "Show, set and trace the DNS names lifeboat manages (dns-updater)",
		Long: `The DNS names declared for instances under dns.instances in lifeboat.yaml
are the only ones lifeboat changes: on a failover it points them at the new
host, verifies the zone's authoritative servers answer it, and keeps a
history of every change.`,
	}
	c.AddCommand(newDNSShowCmd(), newDNSSetCmd(), newDNSHistoryCmd())
	return c
}

func newDNSShowCmd() *cobra.Command {
	var cf clientFlags
	c := &cobra.Command{
		Use:   "show [NAME]",
		Short: "Show the zone's records, or one name's",
		Example: `  lifeboat dns show
  lifeboat dns show wr.example.com --json`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef(c, "dns show takes at most one NAME, got %q", strings.Join(args, " "))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			var req api.DNSRecordsRequest
			if len(args) == 1 {
				req.Name = args[0]
			}
			var reply api.DNSRecordsReply
			if err := dnsCall(c, &cf, api.DNSRecords, req, &reply); err != nil {
				return err
			}
			if cf.json {
				return printJSON(c.OutOrStdout(), reply)
			}
			out := c.OutOrStdout()
			fmt.Fprintf(out, "zone %s (%s", reply.Zone, reply.Provider)
			if reply.Serial != 0 {
				fmt.Fprintf(out, ", serial %d", reply.Serial)
			}
			fmt.Fprintln(out, ")")
			w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tTYPE\tTTL\tVALUE\tINSTANCE")
			for _, r := range reply.Records {
				inst := r.Instance
				if inst == "" {
					inst = "-"
				}
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", r.Name, r.Type, r.TTL, r.Value, inst)
			}
			w.Flush()
			for _, e := range reply.Errors {
				fmt.Fprintf(c.ErrOrStderr(), "could not read: %s\n", e)
			}
			if len(reply.Errors) > 0 {
				return fmt.Errorf("dns show: %d name(s) could not be read", len(reply.Errors))
			}
			return nil
		},
	}
	cf.add(c)
	return c
}

func newDNSSetCmd() *cobra.Command {
	var (
		cf     clientFlags
		ttl    uint32
		wait   time.Duration
		reason string
	)
	c := &cobra.Command{
		Use:   "set NAME ADDRESS",
		Short: "Point a name lifeboat owns at an address (the dns-updater.set command)",
		Long: `Publish the dns-updater.set command and wait for its outcome: the change is
queued like a failover's, applied, verified against the zone's
authoritative servers and recorded in the history. NAME must be declared
for an instance under dns.instances; ADDRESS is an IPv4 address for an A
name, IPv6 for an AAAA name.`,
		Example: `  lifeboat dns set wr.example.com 10.0.0.2
  lifeboat dns set wr.example.com 10.0.0.2 --ttl 30 --reason "maintenance of hot-1"`,
		Args: exactArgs(2, "NAME", "ADDRESS"),
		RunE: func(c *cobra.Command, args []string) error {
			name := canonicalName(args[0])
			if name == "" {
				return usagef(c, "NAME is empty")
			}
			addr, err := netip.ParseAddr(strings.TrimSpace(args[1]))
			if err != nil || addr.Zone() != "" {
				return usagef(c, "ADDRESS %q is not an IP address (e.g. 10.0.0.2 or 2001:db8::2)", args[1])
			}
			if ttl > 2147483647 {
				return usagef(c, "--ttl %d is larger than the largest TTL, 2147483647", ttl)
			}
			if reason == "" {
				reason = "lifeboat dns set"
			}
			nc, js, err := cf.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			// Listen for the outcome before asking, so it cannot be missed.
			outcomes, err := client.Listen(nc, events.DNSRecordUpdated{}, events.DNSUpdateFailed{})
			if err != nil {
				return fmt.Errorf("dns set: %w", err)
			}
			defer outcomes.Close()
			ctx, cancel := cf.ctx(c.Context())
			defer cancel()
			id, err := client.Command(ctx, js, &events.DNSSet{Name: name, Address: addr.String(), TTL: ttl, Reason: reason})
			if err != nil {
				return fmt.Errorf("dns set: %w", err)
			}
			if wait <= 0 {
				if cf.json {
					return printJSON(c.OutOrStdout(), map[string]string{"id": id, "subject": events.SubjectOf[events.DNSSet]()})
				}
				fmt.Fprintf(c.OutOrStdout(), "asked dns-updater to set %s to %s (command %s); see lifeboat dns history %s\n", name, addr, id, name)
				return nil
			}
			updated, failed, err := waitDNSOutcome(c.Context(), outcomes, id, name, wait)
			if err != nil {
				return err
			}
			if failed != nil {
				if cf.json {
					_ = printJSON(c.OutOrStdout(), failed)
				}
				return fmt.Errorf("dns set %s %s failed: %s", name, addr, failed.Error)
			}
			if cf.json {
				return printJSON(c.OutOrStdout(), updated)
			}
			old := updated.Old
			if old == "" {
				old = "(none)"
			}
			fmt.Fprintf(c.OutOrStdout(), "%s %s %s -> %s (ttl %d, %s), verified after %s\n", updated.Name, updated.Type, old, updated.New,
				updated.TTL, updated.Provider, updated.VerifiedAfter.Duration())
			return nil
		},
	}
	cf.add(c)
	c.Flags().Uint32Var(&ttl, "ttl", 0, "TTL in seconds (default: the instance's)")
	c.Flags().DurationVar(&wait, "wait", time.Minute, "how long to wait for the change to be verified (0: do not wait)")
	c.Flags().StringVar(&reason, "reason", "", "why, for the logs")
	return c
}

// waitDNSOutcome waits for the DNSRecordUpdated or DNSUpdateFailed that
// answers the dns-updater.set id, of name.
func waitDNSOutcome(ctx context.Context, outcomes *client.Answers, id, name string, wait time.Duration) (*events.DNSRecordUpdated, *events.DNSUpdateFailed, error) {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	ev, err := outcomes.Wait(wctx, id)
	switch {
	case err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
		return nil, nil, fmt.Errorf("dns set: no outcome within %s: the change may still be retrying (see lifeboat dns history %s, lifeboat events tail)", wait, name)
	case err != nil:
		return nil, nil, err
	}
	switch ev := ev.(type) {
	case *events.DNSRecordUpdated:
		return ev, nil, nil
	case *events.DNSUpdateFailed:
		return nil, ev, nil
	}
	return nil, nil, fmt.Errorf("dns set: answered by a %T", ev)
}

// canonicalName is name as dns-updater names records: lower case, fully
// qualified.
func canonicalName(name string) string {
	name = strings.ToLower(strings.TrimSpace(name))
	if name != "" && !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

func newDNSHistoryCmd() *cobra.Command {
	var (
		cf    clientFlags
		limit int
	)
	c := &cobra.Command{
		Use:   "history [NAME]",
		Short: "Show every change lifeboat made to its names, newest first",
		Example: `  lifeboat dns history
  lifeboat dns history wr.example.com --json`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef(c, "dns history takes at most one NAME, got %q", strings.Join(args, " "))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			if limit < 1 {
				return usagef(c, "--limit %d: give at least 1", limit)
			}
			req := api.DNSHistoryRequest{Limit: limit}
			if len(args) == 1 {
				req.Name = args[0]
			}
			var reply api.DNSHistoryReply
			if err := dnsCall(c, &cf, api.DNSHistory, req, &reply); err != nil {
				return err
			}
			if cf.json {
				return printJSON(c.OutOrStdout(), reply.Changes)
			}
			w := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "AT\tNAME\tTYPE\tOLD\tNEW\tTTL\tKIND\tINSTANCE\tEPOCH\tVERIFIED")
			for _, h := range reply.Changes {
				verified := "no"
				if h.Verified {
					verified = (time.Duration(h.VerifiedAfterMs) * time.Millisecond).String()
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\n", h.At.Local().Format(time.DateTime), h.Name, h.Type,
					orDash(h.Old), h.New, h.TTL, orDash(h.Kind), orDash(h.Instance), h.Epoch, verified)
			}
			return w.Flush()
		},
	}
	cf.add(c)
	c.Flags().IntVar(&limit, "limit", 100, "show at most this many changes")
	return c
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// dnsCall asks dns-updater's endpoint with req and decodes the reply into
// reply; an error reply comes back as an error saying what the service
// said.
func dnsCall(c *cobra.Command, cf *clientFlags, endpoint string, req, reply any) error {
	nc, _, err := cf.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := call(c.Context(), nc, cf.timeout, events.ServiceDNSUpdater, endpoint, req, reply); err != nil {
		return fmt.Errorf("dns %s: %w", endpoint, err)
	}
	return nil
}
