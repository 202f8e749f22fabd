package api

import "time"

// volume-monitor's endpoints (events.ServiceVolumeMonitor).
const (
	// Hosts takes nothing and answers []Host.
	Hosts = "hosts"
)

// Host is one host as volume-monitor knows it from its heartbeats and
// from HostDown/HostUp.
type Host struct {
	Host       string     `json:"host"`
	Address    string     `json:"address,omitempty"`
	Services   []string   `json:"services"`
	LastSeen   *time.Time `json:"last_seen,omitempty"`
	State      string     `json:"state"` // up or down
	StateSince time.Time  `json:"state_since"`
	Reason     string     `json:"reason,omitempty"`
	DetectedBy string     `json:"detected_by,omitempty"`
}

// VolumeMonitorStatus is volume-monitor's part of its status reply
// (ServiceStatus.Details).
type VolumeMonitorStatus struct {
	HostsUp   int `json:"hosts_up"`
	HostsDown int `json:"hosts_down"`
}
