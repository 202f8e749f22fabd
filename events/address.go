package events

import (
	"fmt"
	"strings"
)

// Addressing across hosts (DESIGN §1 "Commands are addressed"): a command
// for host-bound work carries its host in the subject,
// lifeboat.cmd.<service>.<host>.<verb>, and only that host's process
// consumes it; a question for one host's process is a host-scoped request,
// lifeboat.api.<service>.<host>.<endpoint>. Host names hold no dot (lifeboat
// up refuses one), so the host is always exactly one subject token.

// HostCommandSubject is the subject of the command type t addressed to
// host: lifeboat.cmd.<service>.<host>.<verb>.
func HostCommandSubject(t Type, host string) (string, error) {
	if t.Kind != Command {
		return "", fmt.Errorf("events: %s is not a command; only commands are addressed to a host", t.Name)
	}
	if err := checkHostToken(host); err != nil {
		return "", err
	}
	verb := strings.TrimPrefix(t.Subject, CommandSubject(t.Service, ""))
	return CommandSubject(t.Service, host+"."+verb), nil
}

// HostCommandFilter matches every command addressed to service's process
// on host: lifeboat.cmd.<service>.<host>.*.
func HostCommandFilter(service, host string) string {
	return CommandSubject(service, host+".*")
}

// HostAPISubject is the subject of a host-scoped endpoint,
// lifeboat.api.<service>.<host>.<endpoint>; with an empty endpoint it is
// the group's prefix.
func HostAPISubject(service, host, endpoint string) string {
	return APISubject(service, join(host, endpoint))
}

// AddressedHost returns the host an addressed command's subject names, and
// false for a subject that is not an addressed command.
func AddressedHost(subject string) (string, bool) {
	rest, ok := strings.CutPrefix(subject, "lifeboat.cmd.")
	if !ok {
		return "", false
	}
	tokens := strings.Split(rest, ".")
	if len(tokens) != 3 {
		return "", false
	}
	return tokens[1], true
}

// unaddressed turns lifeboat.cmd.<service>.<host>.<verb> into
// lifeboat.cmd.<service>.<verb>; any other subject is returned as it is.
func unaddressed(subject string) string {
	rest, ok := strings.CutPrefix(subject, "lifeboat.cmd.")
	if !ok {
		return subject
	}
	tokens := strings.Split(rest, ".")
	if len(tokens) != 3 {
		return subject
	}
	return CommandSubject(tokens[0], tokens[2])
}

// checkHostToken refuses a host name that is not one subject token.
func checkHostToken(host string) error {
	if host == "" || strings.ContainsAny(host, ".*> \t\r\n") {
		return fmt.Errorf("events: host %q cannot address a subject: a host name is one token, without dots, spaces or wildcards", host)
	}
	return nil
}

func join(a, b string) string {
	if b == "" {
		return a
	}
	return a + "." + b
}
