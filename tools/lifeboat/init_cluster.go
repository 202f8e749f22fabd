package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"lifeboat.dev/pkg/auth"
)

func newInitClusterCmd() *cobra.Command {
	var hosts, out, clusterName string
	var force, asJSON bool
	c := &cobra.Command{
		Use:   "init-cluster",
		Short: "Write the credentials of a secured cluster: routes, hosts, the operator and runners",
		Long: `Write what a site needs so that nobody joins its cluster uninvited, each
file 0600 in a 0700 directory:

  cluster.json       the public keys of every host, operator and runner, and
                     the route credential: every host needs it
  host-<host>.nk     each host's NKey seed: its lifeboat up --auth DIR reads
                     this and cluster.json, nothing else
  operator.nk        the operator's seed: give it to the CLI with --nats-nkey;
                     it also signs every command, so the audit trail
                     (lifeboat events tail --type CommandAudited) names who
                     sent it
  runner-<host>.nk   the seed of the job runner on each host: it may use only
                     lifeboat.runner.<host>.> and publish job reports

Copy to each host only cluster.json and its own host-<host>.nk.`,
		Example: `  lifeboat init-cluster --hosts hot,cold,witness --out /etc/lifeboat/secrets
  lifeboat up --host hot --auth /etc/lifeboat/secrets --nats-listen 0.0.0.0:4222 \
    --cluster-listen 0.0.0.0:6222 --peers hot:6222,cold:6222,witness:6222
  lifeboat status --nats nats://hot:4222 --nats-nkey /etc/lifeboat/secrets/operator.nk`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			hs := splitList(hosts)
			if len(hs) == 0 {
				return usagef(c, "--hosts is required: every host of the cluster, e.g. --hosts hot,cold,witness")
			}
			written, err := auth.Init(out, hs, clusterName, force)
			if err != nil {
				return fmt.Errorf("init-cluster: %w", err)
			}
			if asJSON {
				files := make([]string, len(written))
				for i, w := range written {
					files[i] = filepath.Join(out, w)
				}
				return printJSON(c.OutOrStdout(), map[string]any{"dir": out, "files": files})
			}
			w := c.OutOrStdout()
			fmt.Fprintf(w, "wrote %d files to %s (0600):\n", len(written), out)
			for _, f := range written {
				fmt.Fprintf(w, "  %s\n", f)
			}
			fmt.Fprintf(w, "copy cluster.json and host-<host>.nk to each host and start it with --auth DIR; operators use --nats-nkey %s\n", filepath.Join(out, auth.OperatorSeedFile))
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&hosts, "hosts", "", "every host of the cluster, comma-separated (required)")
	f.StringVar(&out, "out", "lifeboat-secrets", "directory to write")
	f.StringVar(&clusterName, "cluster-name", "lifeboat", "the NATS cluster's name (recorded in cluster.json; --cluster-name of up sets it)")
	f.BoolVar(&force, "force", false, "replace existing files (every host must then get the new ones)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return c
}
