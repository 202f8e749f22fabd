package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"lifeboat.dev/pkg/schedule"
)

func newScheduleCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "schedule",
		Short: "Explain or simulate a backup schedule (d1,d2,...,dn/T) before using it",
		Long: `A backup schedule is d1,d2,...,dn/T, e.g. '1h,1d/7d': a backup every d1,
kept one per d1 for d2, then one per d2 until d3, ... and deleted at T.
Durations are a whole number and a unit: s, m, h, d or w.`,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef(c, "unknown command %q for %s; want explain or simulate", args[0], c.CommandPath())
			}
			return c.Help()
		},
	}
	c.AddCommand(newScheduleExplainCmd(), newScheduleSimulateCmd())
	return c
}

// parseSpecArg parses the SPEC argument, as a usage error naming it.
func parseSpecArg(c *cobra.Command, arg string) (schedule.Spec, error) {
	s, err := schedule.Parse(arg)
	if err != nil {
		return schedule.Spec{}, usagef(c, "SPEC: %w", err)
	}
	return s, nil
}

// jsonBand is a band in `schedule explain --json`.
type jsonBand struct {
	Band           int    `json:"band"`
	From           string `json:"from"`
	To             string `json:"to"`
	Spacing        string `json:"spacing"`
	Keeps          int    `json:"keeps"`
	FromSeconds    int64  `json:"from_seconds"`
	ToSeconds      int64  `json:"to_seconds"`
	SpacingSeconds int64  `json:"spacing_seconds"`
}

// jsonExplain is the output of `schedule explain --json`.
type jsonExplain struct {
	Spec        string     `json:"spec"`
	Every       string     `json:"every"`
	Total       string     `json:"total"`
	Bands       []jsonBand `json:"bands"`
	SteadyState int        `json:"steady_state"`
}

func newScheduleExplainCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "explain SPEC",
		Short: "Show a schedule's bands, their spacing, and how many backups it keeps",
		Example: `  lifeboat schedule explain '1h,1d/7d'
  lifeboat schedule explain '5m,15m,1h,2h,4h,8h,1d/7d' --json`,
		Args: exactArgs(1, "SPEC"),
		RunE: func(c *cobra.Command, args []string) error {
			s, err := parseSpecArg(c, args[0])
			if err != nil {
				return err
			}
			e := schedule.Explain(s)
			if asJSON {
				out := jsonExplain{
					Spec:        s.String(),
					Every:       schedule.FormatDuration(s.Every()),
					Total:       schedule.FormatDuration(s.Total()),
					Bands:       []jsonBand{},
					SteadyState: e.SteadyState,
				}
				for i, b := range e.Bands {
					out.Bands = append(out.Bands, jsonBand{
						Band: i + 1, Keeps: b.Keeps,
						From: schedule.FormatDuration(b.From), To: schedule.FormatDuration(b.To),
						Spacing:     schedule.FormatDuration(b.Spacing),
						FromSeconds: seconds(b.From), ToSeconds: seconds(b.To), SpacingSeconds: seconds(b.Spacing),
					})
				}
				return printJSON(c.OutOrStdout(), out)
			}
			w := c.OutOrStdout()
			fmt.Fprintf(w, "schedule %s: a backup every %s, none kept past %s\n\n",
				s, schedule.FormatDuration(s.Every()), schedule.FormatDuration(s.Total()))
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "BAND\tAGES\tSPACING\tKEEPS")
			for i, b := range e.Bands {
				fmt.Fprintf(tw, "%d\t%s to %s\tone per %s\t%d\n", i+1,
					schedule.FormatDuration(b.From), schedule.FormatDuration(b.To), schedule.FormatDuration(b.Spacing), b.Keeps)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			_, err = fmt.Fprintf(w, "\nsteady state: %d backups\n", e.SteadyState)
			return err
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// jsonSimulate is the output of `schedule simulate --json`.
type jsonSimulate struct {
	Spec        string   `json:"spec"`
	Every       string   `json:"every"`
	For         string   `json:"for"`
	MinKeep     int      `json:"min_keep"`
	SteadyState int      `json:"steady_state"`
	Kept        int      `json:"kept"`
	Ages        []string `json:"ages"`        // newest first
	AgeSeconds  []int64  `json:"age_seconds"` // the same ages, in seconds
}

func newScheduleSimulateCmd() *cobra.Command {
	var (
		every, span string
		minKeep     int
		asJSON      bool
	)
	c := &cobra.Command{
		Use:   "simulate SPEC --for D [--every D] [--min-keep N]",
		Short: "Take a backup every D for a while, pruning after each, and show the ages of those kept",
		Example: `  lifeboat schedule simulate '1h,1d/7d' --every 1h --for 2w
  lifeboat schedule simulate '5m,15m,1h,2h,4h,8h,1d/7d' --for 7d --json`,
		Args: exactArgs(1, "SPEC"),
		RunE: func(c *cobra.Command, args []string) error {
			s, err := parseSpecArg(c, args[0])
			if err != nil {
				return err
			}
			ev := s.Every()
			if every != "" {
				if ev, err = schedule.ParseDuration(every); err != nil {
					return usagef(c, "--every: %w", err)
				}
			}
			if span == "" {
				return usagef(c, "--for is required: how long to simulate, e.g. --for 2w")
			}
			sp, err := schedule.ParseDuration(span)
			if err != nil {
				return usagef(c, "--for: %w", err)
			}
			if minKeep < 0 {
				return usagef(c, "--min-keep is %d; want 0 or more", minKeep)
			}
			if steps := (sp-1)/ev + 1; steps > schedule.MaxSimulated {
				return usagef(c, "--every %s --for %s is %d backups; at most %d can be simulated (use a longer --every or a shorter --for)",
					schedule.FormatDuration(ev), schedule.FormatDuration(sp), steps, schedule.MaxSimulated)
			}
			ages, err := schedule.Simulate(s, ev, sp, minKeep)
			if err != nil {
				return err
			}
			if asJSON {
				out := jsonSimulate{
					Spec: s.String(), Every: schedule.FormatDuration(ev), For: schedule.FormatDuration(sp),
					MinKeep: minKeep, SteadyState: s.SteadyState(), Kept: len(ages),
					Ages: []string{}, AgeSeconds: []int64{},
				}
				for _, a := range ages {
					out.Ages = append(out.Ages, schedule.FormatDuration(a))
					out.AgeSeconds = append(out.AgeSeconds, seconds(a))
				}
				return printJSON(c.OutOrStdout(), out)
			}
			w := c.OutOrStdout()
			fmt.Fprintf(w, "schedule %s: a backup every %s for %s, pruning after each (min_keep %d)\n",
				s, schedule.FormatDuration(ev), schedule.FormatDuration(sp), minKeep)
			fmt.Fprintf(w, "kept %d backups (steady state %d); ages, newest first:\n", len(ages), s.SteadyState())
			for i, a := range ages {
				fmt.Fprintf(w, "%4d  %s\n", i+1, schedule.FormatDuration(a))
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&every, "every", "", "how often a backup is taken, e.g. 1h (default: the schedule's first interval)")
	f.StringVar(&span, "for", "", "how long to simulate, e.g. 2w (required)")
	f.IntVar(&minKeep, "min-keep", 1, "never delete the newest N verified backups")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func seconds(d time.Duration) int64 { return int64(d / time.Second) }
