package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "lifeboat",
		Short: "Lifeboat: disaster recovery for stateful services",
		Long: `Lifeboat takes consistent backups on a rolling schedule, ships them to
standbys, detects dead hosts, restores and fails over, switches DNS and
reconciles jobs. 'lifeboat up' runs the control plane; the other commands
talk to a running one over NATS.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{cmd: c, err: err}
	})
	root.AddCommand(
		newUpCmd(),
		newInitClusterCmd(),
		newClusterCmd(),
		newStatusCmd(),
		newEventsCmd(),
		newScheduleCmd(),
		newDNSCmd(),
		newBackupCmd(),
		newPlanCmd(),
		newSyncCmd(),
	)
	return root
}

// usageError is bad command-line input: the message and the command's usage
// are printed and lifeboat exits 2.
type usageError struct {
	cmd *cobra.Command
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef reports bad arguments to c.
func usagef(c *cobra.Command, format string, args ...any) error {
	return &usageError{cmd: c, err: fmt.Errorf(format, args...)}
}

// exactArgs is cobra.ExactArgs with a usage error naming what is expected.
func exactArgs(n int, names ...string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef(c, "%s wants %d argument(s) (%s), got %d", c.CommandPath(), n, strings.Join(names, " "), len(args))
		}
		return nil
	}
}

// noArgs refuses positional arguments.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef(c, "%s takes no arguments, got %q", c.CommandPath(), strings.Join(args, " "))
	}
	return nil
}
