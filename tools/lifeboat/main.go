// Command lifeboat is Lifeboat's one binary: `lifeboat up` runs the control
// plane (every service, or a subset with --target), and the other commands
// are the operator's CLI against a running control plane.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the CLI and returns the exit code: 0 on success, 2 for bad
// usage, 1 for any other failure.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		fmt.Fprintf(stderr, "lifeboat: %v\n", err)
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "\n%s", ue.cmd.UsageString())
			return 2
		}
		return 1
	}
	return 0
}
