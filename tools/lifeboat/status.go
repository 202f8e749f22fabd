package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/micro"
	"github.com/spf13/cobra"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/service"
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
				Service string          `json:"service"`
				Status  *service.Status `json:"status,omitempty"`
				Error   string          `json:"error,omitempty"`
			}
			var rows []row
			down := 0
			for _, name := range events.Services {
				r := row{Service: name}
				msg, err := nc.Request(events.APISubject(name, "status"), nil, cf.timeout)
				switch {
				case err != nil:
					r.Error = "not answering: " + err.Error()
				case msg.Header.Get(micro.ErrorHeader) != "":
					r.Error = msg.Header.Get(micro.ErrorHeader)
				default:
					var st service.Status
					if err := json.Unmarshal(msg.Data, &st); err != nil {
						r.Error = "unreadable status: " + err.Error()
					} else {
						r.Status = &st
					}
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
