package events

import "time"

// samples holds one fully populated, valid value of every catalog type,
// keyed by Go name: the validation tests' good cases and the fuzz seeds.
// A new catalog type needs one here (TestSamplesCoverCatalog).
func samples() map[string]any {
	at := time.Date(2015, 12, 23, 12, 19, 17, 0, time.FixedZone("", -5*3600))
	sum := "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	return map[string]any{
		"HostHeartbeat": HostHeartbeat{Host: "hot-1", Address: "10.0.0.1:9180", Services: []string{"sync", "restore"}, SentAt: at, Interval: 5000},
		"HostDown":      HostDown{Host: "hot-1", LastSeen: at, Reason: "no heartbeat for 15s", DetectedBy: "volume-monitor@cold-1"},
		"HostUp":        HostUp{Host: "hot-1", LastSeen: at, Reason: "heartbeat resumed", DetectedBy: "volume-monitor@cold-1"},
		"BackupTaken": BackupTaken{
			Plan: "wr", Instance: "wr-manager", Backup: "backup-2015-12-23_12-19-17-0500", Kind: BackupScheduled,
			Store: "sqlite", Host: "hot-1", Dir: "/var/lib/wr/backups", Bytes: 4096, SHA256: sum,
			Files:         []BackupFile{{Path: "db.sqlite", Bytes: 4096, SHA256: sum}},
			FormatVersion: 1, TakenAt: at, ConsistentAt: at, Duration: 120, RequestID: "01HX",
		},
		"BackupFailed": BackupFailed{Plan: "wr", Instance: "wr-manager", Kind: BackupManual, Backup: "backup-2015-12-23_12-19-17-0500", Host: "hot-1",
			Error: "integrity_check: database disk image is malformed", Step: "integrity_check", FailedAt: at, RequestID: "01HX"},
		"BackupPruned": BackupPruned{Plan: "wr", Instance: "wr-manager", Host: "hot-1",
			Pruned: []PrunedBackup{{Backup: "backup-2015-12-16_12-19-17-0500", Reason: "older than 7d"}}, Kept: 30, PrunedAt: at},
		"PlanChanged": PlanChanged{Plan: "wr", Action: PlanActionSet, ChangedAt: at, Set: &PlanFields{
			Instance: ptr("wr-manager"), Description: ptr(""), Schedule: ptr("1h,1d/7d"), Directory: ptr("/var/lib/wr/backups"),
			Store: &PlanStore{Kind: "command", Path: "/var/lib/wr", Include: []string{"data/"}, Exclude: []string{"*.tmp"},
				Dump: []string{"wr", "dump"}, Load: []string{"wr", "load"}, Timeout: 3600000},
			Hooks:   &PlanHooks{Pre: &PlanHook{Command: []string{"fsfreeze", "--freeze", "/data"}, Timeout: 30000}, Post: &PlanHook{Command: []string{"fsfreeze", "--unfreeze", "/data"}}},
			Targets: &[]string{"cold-disk"}, MinKeep: ptr(2), Disabled: ptr(false)}},
		"SyncCompleted": SyncCompleted{Target: "cold-disk", Plan: "wr", Instance: "wr-manager", Backup: "backup-2015-12-23_12-19-17-0500", Host: "cold-1",
			BytesSent: 100, BytesTotal: 4096, ChunksSent: 1, ChunksTotal: 3, Lag: 900, Duration: 800, CompletedAt: at},
		"SyncFailed": SyncFailed{Target: "s3-offsite", Plan: "wr", Backup: "backup-2015-12-23_12-19-17-0500", Error: "s3: connection refused",
			BytesSent: 10, BytesTotal: 4096, Attempt: 2, RetryIn: 4000, FailedAt: at},
		"SyncStalled": SyncStalled{Target: "s3-offsite", Plan: "wr", Backup: "backup-2015-12-23_12-19-17-0500", Lag: 600000,
			StallTimeout: 300000, LastProgressAt: at, Error: "s3: connection refused", BytesSent: 10, BytesTotal: 4096},
		"VolumeOverflow":  VolumeOverflow{Volume: "spool", Host: "hot-1", Path: "/var/spool/lb", Plan: "wr", Used: 100, Capacity: 100, SampledAt: at},
		"VolumeNearFull":  VolumeNearFull{Volume: "spool", Host: "hot-1", Path: "/var/spool/lb", Plan: "wr", Used: 90, Capacity: 100, HighWater: 90, SampledAt: at},
		"VolumeRecovered": VolumeRecovered{Volume: "spool", Host: "hot-1", Plan: "wr", Used: 10, Capacity: 100, Backup: "backup-2015-12-23_12-19-17-0500", Reason: "hash backup completed", SampledAt: at},
		"RestoreStaged":   RestoreStaged{Instance: "aurora", Backup: "backup-2015-12-23_12-19-17-0500", Host: "cold-1", Records: 42, Duration: 10, StagedAt: at},
		"RestoreCommitted": RestoreCommitted{Instance: "aurora", Backup: "backup-2015-12-23_12-19-17-0500", Host: "cold-1", Staged: true,
			RecordsDeleted: 3, SafetyCopy: "/var/lib/aurora/safety/1", Duration: 50, CommittedAt: at},
		"RestoreFailed":   RestoreFailed{Instance: "aurora", Backup: "backup-2015-12-23_12-19-17-0500", Host: "cold-1", Error: "start hook exited 1", Step: "start-hook", FailedAt: at},
		"FailoverStarted": FailoverStarted{Instance: "wr-manager", From: "hot-1", To: "cold-1", Reason: "host hot-1 down", Epoch: 7, StartedAt: at},
		"InstanceActivated": InstanceActivated{Instance: "wr-manager", From: "hot-1", To: "cold-1", Address: "10.0.0.2", Epoch: 7,
			Backup: "backup-2015-12-23_12-19-17-0500", ActivatedAt: at},
		"FailoverCompleted": FailoverCompleted{Instance: "wr-manager", From: "hot-1", To: "cold-1", Address: "10.0.0.2", Epoch: 7,
			Backup: "backup-2015-12-23_12-19-17-0500", FailedAt: at, ConsistentAt: at.Add(-time.Minute), RPO: 60000, RTO: 9000, CompletedAt: at},
		"JobStarted":       JobStarted{Job: "j1", Host: "hot-1", PID: 4242, Command: []string{"sleep", "60"}, Retries: 3, Token: "secret", StartedAt: at},
		"JobHeartbeat":     JobHeartbeat{Job: "j1", Host: "hot-1", PID: 4242, Token: "secret", SentAt: at},
		"JobExited":        JobExited{Job: "j1", Host: "hot-1", PID: 4242, ExitCode: 0, Duration: 60000, Token: "secret", ExitedAt: at},
		"JobLost":          JobLost{Job: "j1", Host: "hot-1", Reason: "host hot-1 down", LastSeen: at},
		"JobBuried":        JobBuried{Job: "j1", Host: "hot-1", Reason: "confirmed dead"},
		"JobRetried":       JobRetried{Job: "j1", Host: "hot-1", Reason: "kicked", RetriesLeft: 2},
		"JobKillRequested": JobKillRequested{Job: "j9", Host: "hot-1", PID: 4243, Reason: "unknown job after restore (unknown_jobs: kill)"},
		"DNSRecordUpdated": DNSRecordUpdated{Name: "wr.example.com.", Type: "A", Old: "10.0.0.1", New: "10.0.0.2", TTL: 60, Provider: "embedded",
			Instance: "wr-manager", Epoch: 7, VerifiedAfter: 35, UpdatedAt: at},
		"DNSUpdateFailed": DNSUpdateFailed{Name: "wr.example.com.", Type: "A", New: "10.0.0.2", Provider: "rfc2136", Instance: "wr-manager", Epoch: 7,
			Error: "update refused: BADSIG (check the TSIG secret)", Rcode: "BADSIG", Attempts: 5, FailedAt: at},
		"CommandAudited": CommandAudited{Subject: "lifeboat.cmd.dns-updater.set", ID: "01HX", Service: "dns-updater", Host: "cold-1",
			Operator: "operator", Key: "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4", SignedAt: at, ReceivedAt: at, Accepted: true},
		"BackupTake":             BackupTake{Plan: "wr", Kind: BackupHash, Reason: "volume spool overflowed"},
		"SyncKick":               SyncKick{Host: "cold-1"},
		"SyncStartSynchronizing": SyncStartSynchronizing{Target: "s3-offsite"},
		"SyncStopSynchronizing":  SyncStopSynchronizing{Target: "s3-offsite"},
		"SyncPromote":            SyncPromote{Target: "s3-offsite"},
		"RestoreFailover":        RestoreFailover{Instance: "wr-manager", To: "cold-1", Drill: true, Reason: "quarterly drill"},
		"JobTrackerConfirmDead":  JobTrackerConfirmDead{Host: "hot-1"},
		"JobTrackerKick":         JobTrackerKick{Job: "j1"},
		"DNSSet":                 DNSSet{Name: "wr.example.com.", Address: "10.0.0.2", TTL: 60},
	}
}

func ptr[T any](v T) *T { return &v }
