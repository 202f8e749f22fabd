package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/client"
)

func newStatusCmd() *cobra.Command {
	var cf clientFlags
	c := &cobra.Command{
		Use:   "status",
		Short: "Show every service's status (asks lifeboat.api.<service>.status)",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			nc, _, err := cf.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			type row struct {
				Service string             `json:"service"`
				Status  *api.ServiceStatus `json:"status,omitempty"`
				Error   string             `json:"error,omitempty"`
			}
			var rows []row
			down := 0
			for _, name := range events.Services {
				r := row{Service: name}
				var st api.ServiceStatus
				err := call(c.Context(), nc, cf.timeout, name, api.Status, nil, &st)
				var ae *client.Error
				var ne *client.NoAnswerError
				switch {
				case errors.As(err, &ae):
					r.Error = ae.Message
				case errors.As(err, &ne):
					r.Error = "not answering: " + ne.Err.Error()
				case err != nil:
					r.Error = err.Error()
				default:
					r.Status = &st
				}
				if r.Error != "" {
					down++
				}
				rows = append(rows, r)
			}
			if cf.json {
				if err := printJSON(c.OutOrStdout(), rows); err != nil {
					return err
				}
			} else {
				w := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "SERVICE\tHOST\tUPTIME\tHANDLED\tOUTBOX\tDEAD-LETTERED\tPENDING")
				for _, r := range rows {
					if r.Status == nil {
						fmt.Fprintf(w, "%s\t-\t-\t-\t-\t-\t%s\n", r.Service, r.Error)
						continue
					}
					var pending uint64
					for _, cs := range r.Status.Consumers {
						pending += cs.Pending
					}
					st := r.Status
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%d\n", r.Service, st.Host,
						(time.Duration(st.UptimeSeconds) * time.Second).String(), st.Handled, st.OutboxPending, st.DeadLettered, pending)
				}
				w.Flush()
			}
			if down > 0 {
				return fmt.Errorf("%d service(s) not answering", down)
			}
			return nil
		},
	}
	cf.add(c)
	return c
}
