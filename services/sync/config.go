package syncer

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"lifeboat.dev/pkg/config"
)

// Standby is the target name a plan lists (or gets when it lists none)
// for its instance's other hosts, each a dir target named by its host.
const Standby = "standby"

// FileConfig is lifeboat.yaml's sync section.
type FileConfig struct {
	// StallTimeout is how long a target with backups waiting may go
	// without advancing before SyncStalled (default 5m).
	StallTimeout time.Duration `yaml:"stall_timeout"`
	// Bandwidth limits each standby target (bytes a second, e.g.
	// 20MiB/s: the seed's WAN shaping); empty for none.
	Bandwidth string `yaml:"bandwidth"`
	// Targets are named targets a plan lists in its targets besides
	// standby.
	Targets map[string]TargetConfig `yaml:"targets"`
}

// TargetConfig is a named target, sync.targets.<name>.
type TargetConfig struct {
	// Kind is the target's kind: dir (the only one so far).
	Kind string `yaml:"kind"`
	// Path is the backup directory a plan's backups go to; {plan} stands
	// for the plan's name, {host} for the host's. Each plan needs a
	// directory of its own, so a target that several plans list puts
	// {plan} in its path.
	Path string `yaml:"path"`
	// Host is the host whose disk holds Path (bytes reach it through
	// NATS); empty for the host that takes the backup.
	Host string `yaml:"host"`
	// Bandwidth limits the target (bytes a second, e.g. 20MiB/s); empty
	// for none.
	Bandwidth string `yaml:"bandwidth"`
}

// Plan is what sync needs of a backup plan.
type Plan struct {
	// Directory is this host's backup directory of the plan.
	Directory string
	// Instance is the plan's instance ("" or undeclared: a host's own).
	Instance string
	// Targets are the plan's targets (none: standby).
	Targets []string
}

// Target is a named target as the service uses it.
type Target struct {
	Path      string // {plan} not yet resolved
	Host      string // "" for the host that takes the backup
	Bandwidth int64  // bytes a second, 0 for no limit
}

// PathOf is the target's directory of plan.
func (t Target) PathOf(plan string) string { return strings.ReplaceAll(t.Path, "{plan}", plan) }

// Resolve checks the section (key prefix, e.g. "sync") against the plans
// and the instances' hosts, naming the key at fault, and returns the
// service's configuration but for Plans and Instances.
func (c FileConfig) Resolve(f *config.File, prefix string, plans []PlanTargets, hosts []string) (Config, error) {
	var out Config
	if c.StallTimeout < 0 {
		return out, f.Errorf(prefix+".stall_timeout", "must be positive (e.g. 5m), or left out for the default")
	}
	out.StallTimeout = c.StallTimeout
	if c.Bandwidth != "" {
		n, err := config.ParseRate(c.Bandwidth)
		if err != nil {
			return out, f.Errorf(prefix+".bandwidth", "%v", err)
		}
		out.Bandwidth = n
	}
	targets := map[string]Target{}
	for name, tc := range c.Targets {
		key := prefix + ".targets." + name
		switch {
		case name == Standby:
			return out, f.Errorf(key, "%q is the instance's other hosts, which every plan has by that name: choose another name", name)
		case slices.Contains(hosts, name):
			return out, f.Errorf(key, "%q is a host's name, which names its standby target in lifeboat sync status: choose another name", name)
		case strings.ContainsAny(name, ".*> \t"):
			return out, f.Errorf(key, "%q is not a usable target name (letters, digits, - and _)", name)
		case tc.Kind != "dir":
			return out, f.Errorf(key+".kind", "%q is not a target kind here: use dir (a backup directory on this host, or on host: H)", tc.Kind)
		case tc.Path == "":
			return out, f.Errorf(key+".path", "a dir target needs the directory its plans' backups go to, e.g. /mnt/offsite/{plan}")
		case tc.Host != "" && !slices.Contains(hosts, tc.Host):
			return out, f.Errorf(key+".host", "%q is not a host of any instance (instances.<name>.hosts): name one, or leave host out for the host that takes the backup", tc.Host)
		}
		t := Target{Path: filepath.Clean(tc.Path), Host: tc.Host}
		if tc.Bandwidth != "" {
			n, err := config.ParseRate(tc.Bandwidth)
			if err != nil {
				return out, f.Errorf(key+".bandwidth", "%v", err)
			}
			t.Bandwidth = n
		}
		targets[name] = t
	}
	// Each plan's targets are declared, and no two plans (nor a plan and
	// its own directory) share a target directory.
	owner := map[string]string{}
	for _, p := range plans {
		owner[filepath.Clean(p.Directory)] = fmt.Sprintf("plan %s's own backup directory", p.Name)
	}
	for _, p := range plans {
		for j, name := range p.Targets {
			if name == Standby {
				continue
			}
			key := fmt.Sprintf("%s.targets[%d]", p.Key, j)
			t, ok := targets[name]
			if !ok {
				return out, f.Errorf(key, "%q is not a sync target: declare it under %s.targets, or list standby (the instance's other hosts)", name, prefix)
			}
			dir := t.PathOf(p.Name)
			if other, ok := owner[dir]; ok {
				return out, f.Errorf(prefix+".targets."+name+".path", "%s, plan %s's copy at target %s, is also %s: put {plan} in the path so each plan has its own", dir, p.Name, name, other)
			}
			owner[dir] = fmt.Sprintf("plan %s's copy at target %s", p.Name, name)
		}
	}
	out.Targets = targets
	return out, nil
}

// PlanTargets is what Validate needs of a plan.
type PlanTargets struct {
	Key       string // its key in the file, e.g. backup.plans[0]
	Name      string
	Directory string
	Targets   []string
}
