// Package auth is who may join a lifeboat cluster and send it commands:
// the files `lifeboat init-cluster` writes (a route credential, an NKey
// per host, per operator and per runner, and cluster.json with the public
// halves), the NATS user permissions of each role, and the signature an
// operator puts on every command (sign.go).
//
// Roles: a host (a `lifeboat up` process) may use every subject of the
// cluster's account; an operator (the CLI) too, and its commands are
// signed with its key, so that the audit trail names who sent them; a
// runner (the job wrapper on a host, see the job-tracker issue) may only
// use its host's runner subjects, lifeboat.runner.<host>.>, and publish
// the job reports (job started, heartbeat, exited).
package auth

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/nats-io/nkeys"

	"lifeboat.dev/pkg/bus"
)

// The files of an auth directory.
const (
	// ClusterFile holds the public keys of every role and the route
	// credential: every host needs it.
	ClusterFile = "cluster.json"
	// OperatorSeedFile is the operator's NKey seed: the CLI's
	// --nats-nkey, which also signs its commands.
	OperatorSeedFile = "operator.nk"
	// OperatorName is the name init-cluster gives its operator.
	OperatorName = "operator"
)

// HostSeedFile is host's NKey seed: its `lifeboat up --auth DIR` needs it
// and cluster.json, nothing else.
func HostSeedFile(host string) string { return "host-" + host + ".nk" }

// RunnerSeedFile is the seed of host's runner credential.
func RunnerSeedFile(host string) string { return "runner-" + host + ".nk" }

// Cluster is cluster.json.
type Cluster struct {
	Version int `json:"version"`
	// ClusterName is the NATS cluster's name the files were made for
	// (informative: --cluster-name still sets it).
	ClusterName string `json:"cluster_name,omitempty"`
	// Route is the credential routes between the nodes present.
	Route Route `json:"route"`
	// Hosts, Operators and Runners map a name (a runner's: its host) to
	// a public NKey.
	Hosts     map[string]string `json:"hosts"`
	Operators map[string]string `json:"operators"`
	Runners   map[string]string `json:"runners"`
}

// Route is the route credential.
type Route struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// hostName is what a host name may be: a NATS subject token and a file
// name.
var hostName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)

// RunnerSubjects are the subjects a runner of host may publish and
// subscribe to beyond its replies: its host's runner space.
func RunnerSubjects(host string) string { return "lifeboat.runner." + host + ".>" }

// jobReports are the events a runner publishes about its jobs.
var jobReports = []string{"lifeboat.event.job.started", "lifeboat.event.job.heartbeat", "lifeboat.event.job.exited"}

// ServerAuth is what the embedded node lets in.
func (c *Cluster) ServerAuth() *bus.ServerAuth {
	a := &bus.ServerAuth{RouteUser: c.Route.User, RoutePassword: c.Route.Password}
	for _, h := range sortedKeys(c.Hosts) {
		a.Users = append(a.Users, bus.User{Name: "host " + h, NKey: c.Hosts[h]})
	}
	for _, o := range sortedKeys(c.Operators) {
		a.Users = append(a.Users, bus.User{Name: "operator " + o, NKey: c.Operators[o]})
	}
	for _, h := range sortedKeys(c.Runners) {
		a.Users = append(a.Users, bus.User{Name: "runner " + h, NKey: c.Runners[h],
			Publish:   append([]string{RunnerSubjects(h)}, jobReports...),
			Subscribe: []string{RunnerSubjects(h), "_INBOX.>"}})
	}
	return a
}

// Operator names the operator whose public key is pub.
func (c *Cluster) Operator(pub string) (string, bool) {
	for name, k := range c.Operators {
		if k == pub {
			return name, true
		}
	}
	return "", false
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Init writes an auth directory for hosts into dir: cluster.json, a seed
// per host and per runner, and the operator's seed, each 0600 in a 0700
// directory. It refuses to overwrite existing files unless force: new
// keys lock out every host still running with the old ones.
func Init(dir string, hosts []string, clusterName string, force bool) ([]string, error) {
	if len(hosts) == 0 {
		return nil, errors.New("no hosts: name every host of the cluster, e.g. --hosts hot,cold,witness")
	}
	for i, h := range hosts {
		if !hostName.MatchString(h) {
			return nil, fmt.Errorf("host name %q: use letters, digits, '-' and '_' (it is a NATS subject token and a file name)", h)
		}
		if slices.Contains(hosts[:i], h) {
			return nil, fmt.Errorf("host %q is listed twice", h)
		}
	}
	c := Cluster{Version: 1, ClusterName: clusterName, Hosts: map[string]string{}, Operators: map[string]string{}, Runners: map[string]string{}}
	var pw [24]byte
	if _, err := rand.Read(pw[:]); err != nil {
		return nil, err
	}
	c.Route = Route{User: "route", Password: hex.EncodeToString(pw[:])}
	files := map[string][]byte{}
	add := func(file string, m map[string]string, name string) error {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return err
		}
		seed, _ := kp.Seed()
		pub, _ := kp.PublicKey()
		files[file] = append(seed, '\n')
		m[name] = pub
		return nil
	}
	for _, h := range hosts {
		if err := add(HostSeedFile(h), c.Hosts, h); err != nil {
			return nil, err
		}
		if err := add(RunnerSeedFile(h), c.Runners, h); err != nil {
			return nil, err
		}
	}
	if err := add(OperatorSeedFile, c.Operators, OperatorName); err != nil {
		return nil, err
	}
	js, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	files[ClusterFile] = append(js, '\n')
	names := make([]string, 0, len(files))
	for n := range files {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil && !force {
			return nil, fmt.Errorf("%s already exists: new keys lock out every host running with the old ones; pass --force to replace them, or choose another --out", filepath.Join(dir, n))
		}
		names = append(names, n)
	}
	slices.Sort(names)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		if err := writePrivate(p, files[n]); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// writePrivate writes data to path, 0600, replacing it whole.
func writePrivate(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// CheckPrivate refuses a credential file that others than its owner may
// read or write: anyone who can read it can join the cluster as its role.
func CheckPrivate(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("credential file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("credential file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("credential file %s is readable or writable by others (mode %04o): anyone who reads it can join the cluster; run chmod 600 %s", path, perm, path)
	}
	return nil
}

// Load reads dir's cluster.json (which must be private).
func Load(dir string) (*Cluster, error) {
	p := filepath.Join(dir, ClusterFile)
	if err := CheckPrivate(p); err != nil {
		return nil, fmt.Errorf("auth: %w (it is written by lifeboat init-cluster)", err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	var c Cluster
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("auth: %s: %w", p, err)
	}
	if c.Version != 1 {
		return nil, fmt.Errorf("auth: %s: version %d; this lifeboat reads version 1", p, c.Version)
	}
	if c.Route.User == "" || c.Route.Password == "" {
		return nil, fmt.Errorf("auth: %s: no route credential (route.user, route.password)", p)
	}
	for role, m := range map[string]map[string]string{"hosts": c.Hosts, "operators": c.Operators, "runners": c.Runners} {
		for name, k := range m {
			if !nkeys.IsValidPublicUserKey(k) {
				return nil, fmt.Errorf("auth: %s: %s.%s: %q is not a user's public NKey (U...)", p, role, name, k)
			}
		}
	}
	return &c, nil
}

// HostSeed is the path of host's seed in dir, checked: private, and the
// key cluster.json lists for host.
func (c *Cluster) HostSeed(dir, host string) (string, error) {
	want, ok := c.Hosts[host]
	if !ok {
		return "", fmt.Errorf("auth: host %q is not in %s (hosts: %s); run lifeboat init-cluster with every host's name", host, filepath.Join(dir, ClusterFile), strings.Join(sortedKeys(c.Hosts), ", "))
	}
	p := filepath.Join(dir, HostSeedFile(host))
	kp, err := ReadSeed(p)
	if err != nil {
		return "", err
	}
	if pub, _ := kp.PublicKey(); pub != want {
		return "", fmt.Errorf("auth: %s is not the key %s lists for host %q: the files come from different init-cluster runs", p, ClusterFile, host)
	}
	return p, nil
}

// ReadSeed reads an NKey seed file, which must be private.
func ReadSeed(path string) (nkeys.KeyPair, error) {
	if err := CheckPrivate(path); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	kp, err := nkeys.ParseDecoratedNKey(data)
	if err != nil {
		return nil, fmt.Errorf("auth: %s holds no NKey seed: %w", path, err)
	}
	return kp, nil
}
