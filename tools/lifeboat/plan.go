package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/schedule"
)

func newPlanCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "plan",
		Short: "List, show and change backup plans at run time",
		Long: `Backup plans are declared in the config file (backup.plans) and can be
changed at run time; a change survives restarts until the config file's
declaration of the plan changes. A run-time change is an event every host
applies. A changed schedule takes effect at once and never wipes backups.`,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef(c, "unknown command %q for %s; want list, show, set, disable or enable", args[0], c.CommandPath())
			}
			return c.Help()
		},
	}
	c.AddCommand(newPlanListCmd(), newPlanShowCmd(), newPlanSetCmd(), newPlanToggleCmd("disable"), newPlanToggleCmd("enable"))
	return c
}

// when writes a time for a table: "-" when unset, else local time and how
// far from now.
func when(t *time.Time, now time.Time) string {
	if t == nil {
		return "-"
	}
	d := t.Sub(now).Truncate(time.Second)
	if d == 0 {
		return "now" // within a second, either side (clocks, rounding)
	}
	if d > 0 {
		return "in " + schedule.FormatDuration(d)
	}
	return schedule.FormatDuration(-d) + " ago"
}

func newPlanListCmd() *cobra.Command {
	var cf clientFlags
	c := &cobra.Command{
		Use:     "list",
		Short:   "List the backup plans and their state",
		Example: "  lifeboat plan list\n  lifeboat plan list --json",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			nc, _, err := cf.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			var plans []api.PlanView
			if err := backupAPI(c.Context(), nc, cf.timeout, api.PlanList, nil, &plans); err != nil {
				return fmt.Errorf("plan list: %w", err)
			}
			if cf.json {
				return printJSON(c.OutOrStdout(), plans)
			}
			now := time.Now()
			tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PLAN\tINSTANCE\tSCHEDULE\tSTORE\tSTATE\tNEXT\tLAST BACKUP\tBACKUPS\tDIRECTORY")
			for _, p := range plans {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n", p.Name, p.Instance, p.Schedule, p.Store.Kind, planState(p),
					when(p.NextDueAt, now), when(p.LastSuccessAt, now), p.Backups, p.SteadyState, p.Directory)
			}
			return tw.Flush()
		},
	}
	cf.add(c)
	return c
}

// planState is a plan's state in a word or a few.
func planState(p api.PlanView) string {
	switch {
	case p.Disabled:
		return "disabled"
	case p.Doing != "":
		return p.Doing
	case p.LastError != "":
		return "failing"
	}
	return "ok"
}

func newPlanShowCmd() *cobra.Command {
	var cf clientFlags
	c := &cobra.Command{
		Use:     "show PLAN",
		Short:   "Show a plan, its schedule's bands and its retention timeline",
		Example: "  lifeboat plan show wr\n  lifeboat plan show wr --json",
		Args:    exactArgs(1, "PLAN"),
		RunE: func(c *cobra.Command, args []string) error {
			nc, _, err := cf.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			var p api.PlanDetail
			if err := backupAPI(c.Context(), nc, cf.timeout, api.PlanShow, api.PlanRequest{Name: args[0]}, &p); err != nil {
				return fmt.Errorf("plan show: %w", err)
			}
			if cf.json {
				return printJSON(c.OutOrStdout(), p)
			}
			return printPlan(c.OutOrStdout(), p, time.Now())
		},
	}
	cf.add(c)
	return c
}

func printPlan(w io.Writer, p api.PlanDetail, now time.Time) error {
	store := p.Store.Kind
	switch p.Store.Kind {
	case api.StoreCommand:
		store += " " + strings.Join(p.Store.Dump, " ") + " (load: " + strings.Join(p.Store.Load, " ") + ")"
	default:
		store += " " + p.Store.Path
		if len(p.Store.Include) > 0 {
			store += " include " + strings.Join(p.Store.Include, ",")
		}
		if len(p.Store.Exclude) > 0 {
			store += " exclude " + strings.Join(p.Store.Exclude, ",")
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("plan", p.Name+" ("+p.Origin+")")
	row("instance", p.Instance)
	if p.Description != "" {
		row("description", p.Description)
	}
	spec, _ := schedule.Parse(p.Schedule) // the service's plans parse
	row("schedule", fmt.Sprintf("%s (a backup every %s, at most %d kept)", p.Schedule, schedule.FormatDuration(spec.Every()), p.SteadyState))
	row("directory", p.Directory)
	row("store", store)
	if h := p.Hooks.Pre; h != nil {
		row("pre hook", strings.Join(h.Command, " "))
	}
	if h := p.Hooks.Post; h != nil {
		row("post hook", strings.Join(h.Command, " "))
	}
	if len(p.Targets) > 0 {
		row("targets", strings.Join(p.Targets, ", "))
	}
	row("state", planState(p.PlanView))
	row("next backup", when(p.NextDueAt, now))
	row("last backup", dash(p.LastBackup)+" "+when(p.LastSuccessAt, now))
	if p.LastError != "" {
		row("last error", when(p.LastErrorAt, now)+": "+p.LastError)
	}
	row("backups", fmt.Sprintf("%d valid, %d invalid, min_keep %d", p.Backups, p.Invalid, derefInt(p.MinKeep)))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nBAND  AGES  SPACING  KEEPS")
	for i, b := range p.Bands {
		fmt.Fprintf(w, "%d     %s to %s  one per %s  %d\n", i+1, schedule.FormatDuration(b.From), schedule.FormatDuration(b.To), schedule.FormatDuration(b.Spacing), b.Keeps)
	}
	if len(p.Retention) == 0 {
		_, err := fmt.Fprintln(w, "\nno backups yet")
		return err
	}
	fmt.Fprintln(w, "\nretention now (newest first):")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKUP\tAGE\tSTATE\tNEXT PASS\tRULE")
	for _, r := range p.Retention {
		verdict := "keep"
		if !r.Keep {
			verdict = "prune"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Backup, r.Age, r.State, verdict, r.Rule)
	}
	return tw.Flush()
}

func derefInt(p *int) int {
	if p == nil {
		return api.DefaultMinKeep
	}
	return *p
}

// argv reads a command from a flag: a JSON array (["pg_dump", "-Fc", "db"])
// or words separated by spaces ("pg_dump -Fc db"); no shell is involved.
func argv(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") {
		var out []string
		if err := json.Unmarshal([]byte(s), &out); err != nil {
			return nil, fmt.Errorf("%q is not a JSON array of strings: %w", s, err)
		}
		return out, nil
	}
	return strings.Fields(s), nil
}

func newPlanSetCmd() *cobra.Command {
	var cf clientFlags
	var (
		instance, description, sched, dir           string
		storeKind, storePath, dump, load, pre, post string
		include, exclude, targets                   []string
		hookTimeout                                 time.Duration
		minKeep                                     int
	)
	c := &cobra.Command{
		Use:   "set PLAN [flags]",
		Short: "Create a plan or change what the flags say",
		Long: `Change the plan's fields given as flags, or create the plan (it then needs
--schedule, --dir and a store). The change is validated like the config
file, takes effect at once, and survives restarts until the config file's
declaration of the plan changes. It is a PlanChanged event that every host
applies: the answer shows the plan once the answering host has applied it,
and the other hosts apply it as they read the event. Changing --store-*
replaces the whole store; changing --dir leaves the old directory's backups
on disk. A dump command's environment (secrets) is not set here: declare it
in the config file.`,
		Example: `  lifeboat plan set wr --schedule '1h,1d/7d'
  lifeboat plan set wr --dir /mnt/other-disk/wr-backups
  lifeboat plan set cycle --schedule '5m,15m,1h,2h,4h,8h,1d/7d' --dir /backups/cycle \
      --store-kind files --store-path /opt/cycle_server --exclude data/ --exclude logs/
  lifeboat plan set pg --schedule 1h,1d/7d --dir /backups/pg --store-kind command \
      --dump 'pg_dump --format=custom app' --load 'pg_restore --clean -d app'`,
		Args: exactArgs(1, "PLAN"),
		RunE: func(c *cobra.Command, args []string) error {
			req := api.PlanSetRequest{Name: args[0]}
			fl := c.Flags()
			str := func(name string, v string) *string {
				if fl.Changed(name) {
					return &v
				}
				return nil
			}
			req.Instance, req.Description, req.Schedule, req.Directory = str("instance", instance), str("description", description), str("schedule", sched), str("dir", dir)
			if req.Schedule != nil {
				if _, err := schedule.Parse(sched); err != nil {
					return usagef(c, "--schedule: %v", err)
				}
			}
			if fl.Changed("store-kind") || fl.Changed("store-path") || fl.Changed("include") || fl.Changed("exclude") || fl.Changed("dump") || fl.Changed("load") {
				st := api.Store{Kind: storeKind, Path: storePath, Include: include, Exclude: exclude}
				var err error
				if st.Dump, err = argv(dump); err != nil {
					return usagef(c, "--dump: %v", err)
				}
				if st.Load, err = argv(load); err != nil {
					return usagef(c, "--load: %v", err)
				}
				req.Store = &st
			}
			if fl.Changed("pre") || fl.Changed("post") || fl.Changed("hook-timeout") {
				var h api.Hooks
				for _, x := range []struct {
					flag, v string
					dst     **api.Hook
				}{{"pre", pre, &h.Pre}, {"post", post, &h.Post}} {
					cmd, err := argv(x.v)
					if err != nil {
						return usagef(c, "--%s: %v", x.flag, err)
					}
					if len(cmd) > 0 {
						*x.dst = &api.Hook{Command: cmd, Timeout: api.Duration(hookTimeout)}
					}
				}
				req.Hooks = &h
			}
			if fl.Changed("targets") {
				req.Targets = &targets
			}
			if fl.Changed("min-keep") {
				if minKeep < 0 {
					return usagef(c, "--min-keep %d: want 0 or more", minKeep)
				}
				req.MinKeep = &minKeep
			}
			nc, _, err := cf.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			var v api.PlanView
			if err := backupAPI(c.Context(), nc, cf.timeout, api.PlanSet, req, &v); err != nil {
				return fmt.Errorf("plan set: %w", err)
			}
			if cf.json {
				return printJSON(c.OutOrStdout(), v)
			}
			_, err = fmt.Fprintf(c.OutOrStdout(), "plan %s: %s into %s, %s; next backup %s\n", v.Name, v.Schedule, v.Directory, planState(v), when(v.NextDueAt, time.Now()))
			return err
		},
	}
	cf.add(c)
	f := c.Flags()
	f.StringVar(&instance, "instance", "", "the protected instance (default the plan's name)")
	f.StringVar(&description, "description", "", "what the plan is for")
	f.StringVar(&sched, "schedule", "", "d1,d2,...,dn/T, e.g. 1h,1d/7d (see lifeboat schedule explain)")
	f.StringVar(&dir, "dir", "", "the backup directory (no two plans share one)")
	f.StringVar(&storeKind, "store-kind", "", "sqlite, files or command (replaces the whole store)")
	f.StringVar(&storePath, "store-path", "", "the database file (sqlite) or the tree's root (files)")
	f.StringArrayVar(&include, "include", nil, "files store: keep only what matches (repeatable)")
	f.StringArrayVar(&exclude, "exclude", nil, "files store: leave out what matches, e.g. data/ (repeatable)")
	f.StringVar(&dump, "dump", "", "command store: the dump command, e.g. 'pg_dump -Fc app' or a JSON array")
	f.StringVar(&load, "load", "", "command store: the command that loads a dump from stdin")
	f.StringVar(&pre, "pre", "", "hook run before each dump (freeze)")
	f.StringVar(&post, "post", "", "hook run after each dump (thaw)")
	f.DurationVar(&hookTimeout, "hook-timeout", 0, "how long a hook may run (default 30s)")
	f.StringSliceVar(&targets, "targets", nil, "sync targets, comma-separated")
	f.IntVar(&minKeep, "min-keep", 1, "newest verified backups never pruned")
	return c
}

// newPlanToggleCmd is `plan disable` or `plan enable`.
func newPlanToggleCmd(verb string) *cobra.Command {
	var cf clientFlags
	short := "Stop a plan: it takes no backups and deletes none"
	endpoint := api.PlanDisable
	if verb == "enable" {
		short = "Start a disabled plan again (an overdue backup is taken at once)"
		endpoint = api.PlanEnable
	}
	c := &cobra.Command{
		Use:     verb + " PLAN",
		Short:   short,
		Example: "  lifeboat plan " + verb + " wr",
		Args:    exactArgs(1, "PLAN"),
		RunE: func(c *cobra.Command, args []string) error {
			nc, _, err := cf.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			var v api.PlanView
			if err := backupAPI(c.Context(), nc, cf.timeout, endpoint, api.PlanRequest{Name: args[0]}, &v); err != nil {
				return fmt.Errorf("plan %s: %w", verb, err)
			}
			if cf.json {
				return printJSON(c.OutOrStdout(), v)
			}
			_, err = fmt.Fprintf(c.OutOrStdout(), "plan %s %sd; next backup %s\n", v.Name, verb, when(v.NextDueAt, time.Now()))
			return err
		},
	}
	cf.add(c)
	return c
}
